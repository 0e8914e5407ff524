//! Why a tracker could not be built.

#[cfg(doc)]
use crate::ActivityTrackerBuilder;
use crate::capture::CaptureConfigError;

/// Why [`ActivityTrackerBuilder::build`] failed. Redis being unreachable is
/// not an error: the app starts and the dispatcher retries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The Redis URL could not be parsed.
    #[error("invalid redis url {url:?}: {source}")]
    InvalidRedisUrl {
        /// The URL given.
        url: String,
        /// What was wrong with it.
        #[source]
        source: redis::RedisError,
    },
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    InvalidSetting(&'static str),
    /// The dispatcher's thread or its runtime could not be started (the
    /// system is out of threads or file descriptors).
    #[error("the activity dispatcher thread could not be started: {0}")]
    DispatcherThread(#[source] std::io::Error),
    /// A capture setting is wrong (a route pattern, a proxy CIDR, a
    /// session header name).
    #[error("invalid capture setting: {0}")]
    Capture(#[from] CaptureConfigError),
}
