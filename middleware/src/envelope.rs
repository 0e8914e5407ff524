//! What travels from the request path (and the manual API) to the
//! dispatcher through the bounded channel. Sent by the layer and the
//! tracker, received by the dispatcher; it names capture's facts, and
//! capture never names it.

use crate::Activity;
use crate::capture::CapturedRequest;

/// One message on the tracker's channel.
///
/// The request path only gathers cheap facts ([`CapturedRequest`]); the id,
/// the strings and the JSON are made by the dispatcher, off the request path.
#[derive(Debug)]
pub(crate) enum Envelope {
    /// Facts captured by the layer, turned into an [`Activity`] by the dispatcher.
    Captured(Box<CapturedRequest>),
    /// An activity built by the app through the manual `track_*` API.
    Activity(Box<Activity>),
}
