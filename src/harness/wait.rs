//! Waiting for a condition with a deadline, instead of sleeps that guess.

use std::future::Future;
use std::time::Duration;

/// The condition did not hold before the deadline.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {timeout:?} waiting for {what}")]
pub struct WaitTimeout {
    /// What was awaited.
    pub what: String,
    /// How long it was awaited.
    pub timeout: Duration,
}

/// Calls `check` every 25 ms until it returns `Some`, and returns that
/// value; fails after `timeout`.
pub async fn wait_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<T, WaitTimeout>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(WaitTimeout {
                what: what.to_owned(),
                timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
