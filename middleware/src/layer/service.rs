use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::context::CaptureContext;
use super::{ActivityLayer, ResponseFuture};

/// Middleware that records mapped requests as activities.
///
/// Made by [`ActivityLayer`]; see the [module docs](crate::layer).
#[derive(Clone)]
pub struct ActivityService<S> {
    pub(crate) inner: S,
    pub(crate) context: Arc<CaptureContext>,
    pub(crate) peer: Option<SocketAddr>,
}

impl<S> ActivityService<S> {
    /// Wraps `inner`, capturing through the same context as `layer`.
    pub fn new(inner: S, layer: &ActivityLayer) -> Self {
        ActivityService {
            inner,
            context: layer.context.clone(),
            peer: layer.peer,
        }
    }

    /// The same as [`ActivityService::new`], in the tower-http spelling:
    /// returns the layer to apply.
    pub fn layer(layer: &ActivityLayer) -> ActivityLayer {
        layer.clone()
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for ActivityService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActivityService")
            .field("inner", &self.inner)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ActivityService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let pending = self.context.begin(&request, self.peer);
        ResponseFuture {
            inner: self.inner.call(request),
            pending,
        }
    }
}
