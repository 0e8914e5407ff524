//! What travels from the request path (and the manual API) to the
//! dispatcher through the bounded channel. Sent by the layer and the
//! tracker, received by the dispatcher; it names capture's facts, and
//! capture never names it.

use crate::capture::CapturedRequest;

/// One message on the tracker's channel.
///
/// The request path only gathers cheap facts ([`CapturedRequest`]); the id,
/// the strings and the JSON are made by the dispatcher, off the request path.
/// An app's own activity comes as its finished wire line: the caller that
/// built it writes it (and frees its strings) on its own thread, so the
/// many tasks calling `track` share the work instead of queueing it all on
/// the dispatcher's one thread.
#[derive(Debug)]
pub(crate) enum Envelope {
    /// Facts captured by the layer, written as a line by the dispatcher.
    Captured(Box<CapturedRequest>),
    /// An activity built by the app through the manual `track_*` API,
    /// normalized and written as its wire JSON line by the caller.
    Line(Vec<u8>),
}
