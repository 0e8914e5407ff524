//! A connection's idle timeout: a stream that fails once nothing has been
//! read from it or written to it for a while, so a client that stops
//! sending in the middle of a body, or stops reading a response, does not
//! hold its connection (and its memory) forever.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `inner`, failing its reads and writes with `TimedOut` after `idle`
/// without progress either way.
#[derive(Debug)]
pub(super) struct IdleTimeout<S> {
    inner: S,
    /// Fires at `last_progress + idle` or earlier; re-armed lazily when it
    /// fires early, so progress costs a clock read, not a timer reset.
    /// Boxed so the stream stays `Unpin`, as hyper wants it.
    timer: Pin<Box<Sleep>>,
    idle: Duration,
    last_progress: Instant,
}

impl<S> IdleTimeout<S> {
    pub(super) fn new(inner: S, idle: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
            idle,
            last_progress: now,
        }
    }
}

impl<S: Unpin> IdleTimeout<S> {
    /// Called when the inner stream is not ready: an error once the
    /// connection has been idle too long, else `Pending` with the timer
    /// armed to wake this task.
    fn poll_idle<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        loop {
            let deadline = self.last_progress + self.idle;
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            ready!(self.timer.as_mut().poll(cx));
            if Instant::now() >= deadline {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection was idle too long",
                )));
            }
        }
    }

    /// `result` of the inner stream: progress when ready, else the idle check.
    fn after<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(result) => {
                self.last_progress = Instant::now();
                Poll::Ready(result)
            }
            Poll::Pending => self.poll_idle(cx),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.after(cx, result)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => this.poll_idle(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_stream_idle_too_long_fails_and_progress_keeps_it_open() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = IdleTimeout::new(server, Duration::from_secs(2));
        let mut client = client;
        let mut byte = [0u8; 1];
        // Progress every 0.8 s keeps it open past 2 s.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(800)).await;
            client.write_all(b"x").await.expect("write");
            server
                .read_exact(&mut byte)
                .await
                .expect("read within the idle time");
        }
        let error = server
            .read_exact(&mut byte)
            .await
            .expect_err("idle too long");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}
