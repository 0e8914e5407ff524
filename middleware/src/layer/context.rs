//! What the layer needs at run time, and the one place it hands a capture
//! to the dispatcher: a `try_send` into the bounded channel, counted,
//! never waiting.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use tokio::sync::mpsc;

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
        })
    }

    /// Starts capturing `request`: `None` for an unmapped one.
    pub(crate) fn begin<B>(
        self: &Arc<Self>,
        request: &Request<B>,
        layer_peer: Option<SocketAddr>,
    ) -> Option<InFlight> {
        let pending = self.config.begin(request, layer_peer)?;
        Some(InFlight {
            pending,
            context: self.clone(),
        })
    }
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
