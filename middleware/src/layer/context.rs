//! What the layer needs at run time, and the one place it hands a capture
//! to the dispatcher: a `try_send` into the bounded channel, counted,
//! never waiting.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::ConnectInfo;
use axum::extract::connect_info::MockConnectInfo;
use http::{Request, Response};
use tokio::sync::mpsc;

use crate::PeerAddr;
use crate::capture::{CaptureConfig, CaptureConfigError, Pending};
use crate::counters::Counters;
use crate::envelope::Envelope;

/// The config, the channel to the dispatcher and the counters. Made by the
/// tracker, shared by every clone of the layer and its services behind one
/// `Arc`.
#[derive(Debug)]
pub(crate) struct CaptureContext {
    /// The validated config: which requests are recorded, and what to keep.
    pub(crate) config: Arc<CaptureConfig>,
    /// The dispatcher's bounded channel; only `try_send` is used on it.
    pub(crate) sender: mpsc::Sender<Envelope>,
    /// Bumped on every offer: `captured`, `dropped_full`, `dropped_closed`.
    pub(crate) counters: Arc<Counters>,
    /// Whether a mapped request without any client address was logged
    /// (once per tracker: the app's set-up is wrong, not the request).
    pub(crate) warned_no_peer: AtomicBool,
}

impl CaptureContext {
    /// Checks the config and puts the pieces together.
    pub(crate) fn new(
        config: Arc<CaptureConfig>,
        sender: mpsc::Sender<Envelope>,
        counters: Arc<Counters>,
    ) -> Result<Self, CaptureConfigError> {
        config.validate()?;
        Ok(CaptureContext {
            config,
            sender,
            counters,
            warned_no_peer: AtomicBool::new(false),
        })
    }

    /// Starts capturing `request`: `None` for an unmapped one.
    pub(crate) fn begin<B>(
        self: &Arc<Self>,
        request: &Request<B>,
        layer_peer: Option<SocketAddr>,
    ) -> Option<InFlight> {
        let pending = self.config.begin(request, layer_peer)?;
        if layer_peer.is_none()
            && !self.warned_no_peer.load(Ordering::Relaxed)
            && !carries_peer(request)
        {
            self.warn_no_peer();
        }
        Some(InFlight {
            pending,
            context: self.clone(),
        })
    }
}

impl CaptureContext {
    /// Logs, once, that activities are recorded without a client IP.
    #[cold]
    fn warn_no_peer(&self) {
        if !self.warned_no_peer.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "a tracked request carries no client address, so its activity has no ip_address: \
                 serve the axum app with `into_make_service_with_connect_info::<SocketAddr>()`, \
                 or give the layer the peer address (`ActivityLayer::peer_addr`, or a `PeerAddr` \
                 request extension); said once"
            );
        }
    }
}

/// Whether `request` carries the client's address in an extension the
/// capture reads (axum's `ConnectInfo` or `MockConnectInfo`, a `PeerAddr`).
fn carries_peer<B>(request: &Request<B>) -> bool {
    let extensions = request.extensions();
    extensions.get::<ConnectInfo<SocketAddr>>().is_some()
        || extensions.get::<PeerAddr>().is_some()
        || extensions.get::<MockConnectInfo<SocketAddr>>().is_some()
}

/// A mapped request inside the inner service: what was captured so far,
/// and where to offer it when the response comes.
#[derive(Debug)]
pub(crate) struct InFlight {
    pending: Pending,
    context: Arc<CaptureContext>,
}

impl InFlight {
    /// Completes the capture with the response and, unless the request is
    /// not recorded after all, offers it with one `try_send`.
    pub(crate) fn finish<B>(self, response: &mut Response<B>) {
        if let Some(captured) = self.pending.finish(response) {
            let envelope = Envelope::Captured(captured);
            self.context
                .counters
                .record_offer(self.context.sender.try_send(envelope));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ActivityType;

    #[test]
    fn an_invalid_config_makes_no_context() {
        let (sender, _receiver) = mpsc::channel(1);
        assert!(
            CaptureContext::new(
                Arc::new(CaptureConfig::new().resource("case", "id")),
                sender,
                Arc::new(Counters::default()),
            )
            .is_err()
        );
        let (sender, _receiver) = mpsc::channel(1);
        let config = CaptureConfig::new().route(http::Method::POST, "/login", ActivityType::Login);
        assert!(
            CaptureContext::new(Arc::new(config), sender, Arc::new(Counters::default())).is_ok()
        );
    }
}
