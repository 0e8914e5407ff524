use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project::pin_project;

use super::context::InFlight;

/// Response future of [`ActivityService`](super::ActivityService).
///
/// Passes the inner result through untouched; when it is a response to a
/// mapped request, offers the captured facts to the dispatcher first (one
/// offer to the intake, never waiting).
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    pub(crate) inner: F,
    /// The facts of a mapped request, taken once when the response comes.
    pub(crate) pending: Option<InFlight>,
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = ready!(this.inner.poll(cx));
        if let (Some(pending), Ok(response)) = (this.pending.take(), result.as_mut()) {
            pending.finish(response);
        }
        Poll::Ready(result)
    }
}
