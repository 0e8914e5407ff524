//! An axum app served on a free port of 127.0.0.1, stopped gracefully.

use std::net::SocketAddr;

use axum::Router;
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
