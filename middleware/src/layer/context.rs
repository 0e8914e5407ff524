//! What the layer needs at run time, and the one place it hands a capture
//! to the dispatcher: its line written and offered to the intake, counted,
//! never waiting.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::ConnectInfo;
use axum::extract::connect_info::MockConnectInfo;
use http::{Request, Response};

use crate::PeerAddr;
use crate::capture::{CaptureConfig, CaptureConfigError, Pending};
use crate::counters::Counters;
use crate::dispatcher::intake::IntakeSender;

/// The config, the intake of the dispatcher and the counters. Made by the
/// tracker, shared by every clone of the layer and its services behind one
/// `Arc`.
#[derive(Debug)]
pub(crate) struct CaptureContext {
    /// The validated config: which requests are recorded, and what to keep.
    pub(crate) config: Arc<CaptureConfig>,
    /// Where events go to the dispatcher; never waits.
    pub(crate) sender: IntakeSender,
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
        sender: IntakeSender,
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
    /// not recorded after all, writes its line and offers it to the intake.
    pub(crate) fn finish<B>(self, response: &mut Response<B>) {
        if let Some(captured) = self.pending.finish(response) {
            let client = self.context.config.client_resolver();
            let offer = self
                .context
                .sender
                .offer_with(|out| captured.write_line_and_recycle(client, out));
            self.context.counters.record_offer(offer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ActivityType;
    use crate::dispatcher::intake::Intake;

    #[test]
    fn an_invalid_config_makes_no_context() {
        let (sender, _intake) = Intake::new(1, 1, std::time::Duration::ZERO);
        assert!(
            CaptureContext::new(
                Arc::new(CaptureConfig::new().resource("case", "id")),
                sender,
                Arc::new(Counters::default()),
            )
            .is_err()
        );
        let (sender, _intake) = Intake::new(1, 1, std::time::Duration::ZERO);
        let config = CaptureConfig::new().route(http::Method::POST, "/login", ActivityType::Login);
        assert!(
            CaptureContext::new(Arc::new(config), sender, Arc::new(Counters::default())).is_ok()
        );
    }
}
