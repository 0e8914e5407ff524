//! What the layer captures per request, and how it becomes an [`Activity`].
//! (Placeholder: the capture layer fills this module.)

use crate::Activity;

/// How requests map to activities and where client facts come from.
#[derive(Debug, Clone, Default)]
pub struct CaptureConfig {}

/// Cheap facts gathered on the request path.
#[derive(Debug)]
pub(crate) struct CapturedRequest {}

impl CapturedRequest {
    /// Builds the activity, off the request path (in the dispatcher).
    #[allow(dead_code)]
    pub(crate) fn into_activity(self, _config: &CaptureConfig) -> Option<Activity> {
        None
    }
}
