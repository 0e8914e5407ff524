//! HTTP for tests: an axum app served on a free port of 127.0.0.1 and
//! stopped gracefully, and a GET of a JSON endpoint with a bearer token.

use std::net::SocketAddr;

use axum::Router;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

/// `router` served on a port-0 listener, with the peer's address as
/// `ConnectInfo` (as the layer's client-IP resolution wants it).
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Binds a free port and serves `router` on it in a task.
    pub async fn start(router: Router) -> HttpServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("the bound address");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                axum::serve(
                    listener,
                    router.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
                .expect("the server runs");
            }
        });
        HttpServer {
            addr,
            shutdown,
            task,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets the requests in flight finish, and returns
    /// once the server has stopped.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// `GET http://<addr><path>` with `Authorization: Bearer <token>`, its
/// JSON body; panics on a status other than 2xx (with the body) or a body
/// that is not JSON.
pub async fn get_json(addr: SocketAddr, path: &str, token: &str) -> serde_json::Value {
    let client: Client<_, String> = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::get(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(String::new())
        .expect("a request");
    let response = client.request(request).await.expect("the server answers");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    assert!(status.is_success(), "{path}: {status} {body:?}");
    serde_json::from_slice(&body).expect("JSON")
}
