//! The accept loop of every listener: HTTP/1.1 connections with a
//! header-read timeout and an idle timeout, the peer's address given to
//! the handlers (`ConnectInfo`), and a graceful stop.

use std::io;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::idle::IdleTimeout;

/// How long the requests in flight may take to finish once the server
/// is told to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a failed `accept` (out of file descriptors, say) waits before
/// the next one, instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The limits on a connection's time (`HTTP_HEADER_READ_TIMEOUT_MS`,
/// `HTTP_IDLE_TIMEOUT_MS`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionTimeouts {
    /// A connection waiting for a request's headers (a new one, or a
    /// kept-alive one between requests) is closed after this long.
    pub header_read: Duration,
    /// A connection on which nothing is read or written for this long is
    /// closed (a body that stalls, a client that stops reading).
    pub idle: Duration,
}

impl Default for ConnectionTimeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
        }
    }
}

/// Serves `app` on `listener` until `token` is cancelled, then stops
/// accepting, closes idle connections and lets the requests in flight
/// finish (for up to ten seconds).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    timeouts: ConnectionTimeouts,
    token: CancellationToken,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read);
    loop {
        let (stream, peer) = tokio::select! {
            _ = token.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // The listener itself is fine: a connection reset before
                    // it was accepted, or no descriptor left for it.
                    tracing::debug!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        // Small JSON answers: waiting to fill a segment only adds latency.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "setting TCP_NODELAY failed");
        }
        let io = TokioIo::new(IdleTimeout::new(stream, timeouts.idle));
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move { app.oneshot(request).await }
        });
        let connection = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // A client going away or timing out is its business.
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("requests still in flight after {SHUTDOWN_GRACE:?} of shutdown; closing them");
        }
    }
    Ok(())
}
