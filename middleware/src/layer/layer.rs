use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use tower_layer::Layer;

use super::ActivityService;
use super::context::CaptureContext;

/// [`Layer`] that records mapped requests as activities, fire and forget.
///
/// Made by the tracker (`tracker.layer()`); cheap to clone (one `Arc`).
/// See the [module docs](crate::layer) for where to put it.
#[derive(Clone)]
pub struct ActivityLayer {
    pub(crate) context: Arc<CaptureContext>,
    pub(crate) peer: Option<SocketAddr>,
}

impl ActivityLayer {
    /// A layer capturing through `context` (config, intake, counters).
    pub(crate) fn new(context: Arc<CaptureContext>) -> Self {
        ActivityLayer {
            context,
            peer: None,
        }
    }

    /// The socket peer of every request through this layer, for a plain
    /// hyper server that makes one service per connection. Used when the
    /// request carries neither axum's `ConnectInfo<SocketAddr>` nor a
    /// [`PeerAddr`](crate::PeerAddr).
    pub fn peer_addr(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }
}

impl fmt::Debug for ActivityLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActivityLayer")
            .field("config", &self.context.config)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ActivityLayer {
    type Service = ActivityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ActivityService {
            inner,
            context: self.context.clone(),
            peer: self.peer,
        }
    }
}
