//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): the
//! stream entry reader, reached without making it part of the API. Not for
//! use by anything else; may change at any time.

use crate::consumer::decode::{DecodeError, Decoded};

/// The events of stream entry `entry_id` of `stream_key` with `fields`
/// (name, value), each decoded or refused, as the consumer reads them: a
/// version 1 entry is one, a version 2 entry one per line, an unreadable
/// version 2 entry one refusal.
pub fn entry_events(
    stream_key: &str,
    entry_id: &str,
    fields: &[(&str, &[u8])],
) -> Vec<Result<Decoded, DecodeError>> {
    let entry = crate::consumer::entry::Entry {
        id: entry_id.to_owned(),
        fields: fields
            .iter()
            .map(|(name, value)| ((*name).to_owned(), redis::Value::BulkString(value.to_vec())))
            .collect(),
    };
    crate::consumer::entry::items(stream_key, 0, entry, tokio::time::Instant::now())
        .into_iter()
        .map(|item| item.decoded)
        .collect()
}
