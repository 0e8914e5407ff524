//! The same activity layer on a bare hyper 1 server (no axum router): the
//! layer matches routes itself and takes the client address per
//! connection.
//!
//! ```sh
//! cargo run --example hyper_app
//! curl -s -X POST localhost:3000/api/v1/auth/login -d '{"username":"bob","password":"secret"}'
//! curl -s localhost:3000/api/v1/cases/case-7 -H 'authorization: Bearer user:bob'
//! redis-cli XRANGE user_activities_stream - +
//! ```
//!
//! Environment: `APP_LISTEN`, `REDIS_URL`, `STREAM_KEY`, `TRUSTED_PROXIES`,
//! as for `axum_app`.

use std::convert::Infallible;

use activity_tracker::{ActivityEnrichment, ActivityTracker, ActivityType};
use activity_tracking::demo_app::fake_auth_user;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};

/// The response body type of this app.
type Body = http_body_util::Full<hyper::body::Bytes>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // Colours only for a terminal, not into a file the output goes to.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let listen = env_or("APP_LISTEN", "127.0.0.1:3000");
    let trusted: Vec<String> = std::env::var("TRUSTED_PROXIES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|cidr| !cidr.is_empty())
        .map(str::to_owned)
        .collect();
    let tracker = ActivityTracker::builder()
        .redis_url(env_or("REDIS_URL", "redis://127.0.0.1:6379"))
        .stream_key(env_or("STREAM_KEY", "user_activities_stream"))
        .route(Method::POST, "/api/v1/auth/login", ActivityType::Login)
        .route(Method::POST, "/api/v1/auth/logout", ActivityType::Logout)
        .route(Method::POST, "/api/v1/cases", ActivityType::CaseCreate)
        .route(Method::GET, "/api/v1/cases/{id}", ActivityType::CaseView)
        .resource("case", "id")
        .route(Method::PUT, "/api/v1/cases/{id}", ActivityType::CaseUpdate)
        .resource("case", "id")
        .trusted_proxies(&trusted)
        .session_cookie("session_id")
        .build()
        .await?;

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = &mut shutdown => break,
        };
        // One tracked service per connection, told the peer's address.
        let service = ServiceBuilder::new()
            .layer(tracker.layer().peer_addr(peer))
            .service_fn(handle);
        tokio::spawn(async move {
            let hyper_service = hyper::service::service_fn(move |request: Request<Incoming>| {
                service.clone().oneshot(with_fake_auth(request))
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), hyper_service)
                .await
            {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }

    let summary = tracker.shutdown().await;
    tracing::info!(
        sent = summary.sent,
        unsent = summary.unsent,
        "activity tracker stopped"
    );
    Ok(())
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Fake authentication: `Authorization: Bearer user:<id>` is user `<id>`.
fn with_fake_auth<B>(mut request: Request<B>) -> Request<B> {
    if let Some(user) = fake_auth_user(request.headers()) {
        request.extensions_mut().insert(user);
    }
    request
}

fn json_response(status: StatusCode, value: Value) -> Response<Body> {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

async fn handle(request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(json_response(StatusCode::BAD_REQUEST, json!({}))),
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let response = match (&method, segments.as_slice()) {
        (&Method::POST, ["api", "v1", "auth", "login"]) => {
            let user = body.get("username").and_then(Value::as_str);
            let password = body.get("password").and_then(Value::as_str);
            match (user, password) {
                (Some(user), Some("secret")) => {
                    let mut response = json_response(
                        StatusCode::OK,
                        json!({"token": format!("user:{user}"), "user_id": user}),
                    );
                    // The user id is only known here: hand it to the layer.
                    response
                        .extensions_mut()
                        .insert(ActivityEnrichment::new().user_id(user));
                    response
                }
                _ => json_response(
                    StatusCode::UNAUTHORIZED,
                    json!({"error": "invalid credentials"}),
                ),
            }
        }
        (&Method::POST, ["api", "v1", "auth", "logout"]) => {
            json_response(StatusCode::OK, json!({"ok": true}))
        }
        (&Method::POST, ["api", "v1", "cases"]) => {
            let id = format!("case-{}", uuid::Uuid::now_v7().simple());
            let mut response = json_response(StatusCode::CREATED, json!({"id": id}));
            response
                .extensions_mut()
                .insert(ActivityEnrichment::new().resource("case", &id));
            response
        }
        (&Method::GET, ["api", "v1", "cases", id]) => {
            json_response(StatusCode::OK, json!({"id": id, "status": "open"}))
        }
        (&Method::PUT, ["api", "v1", "cases", id]) => {
            json_response(StatusCode::OK, json!({"id": id, "updated": body}))
        }
        _ => json_response(StatusCode::NOT_FOUND, json!({"error": "not found"})),
    };
    Ok(response)
}
