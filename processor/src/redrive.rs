//! `activity-processor redrive-dead`: puts dead-lettered entries back on the
//! stream, so that events refused before a fix (a NUL the database
//! refused, before the store replaced it) are stored after it.
//!
//! Each dead letter of `<stream key>:dead` that matches the filter is
//! re-added to the stream in the shape it was dead-lettered in, then
//! deleted from the dead letters (`XDEL`) once the `XADD` succeeded:
//!
//! - `data` (a version 1 entry, a legacy element, or one line of a version
//!   2 entry): a version 1 entry `data`;
//! - `events`, `n` (and `codec`): a version 2 entry with those fields.
//!
//! Idempotent, because every event keeps its id: an event that had no
//! `id` gets, written into its JSON, the id the reader had derived for it
//! (from the original entry's id and the line's index, recorded in the
//! dead letter's `entry` and `index`; from the payload for a legacy
//! element or an old dead letter without `entry`). Redriving twice, or a
//! redrive stopped between its `XADD` and `XDEL`, stores nothing twice.
//! The exception: the id-less lines of a whole version 2 entry (not
//! rewritten) get ids from their new entry.

use std::collections::HashMap;
use std::time::Duration;

use activity_tracker::{RedisClient, RedisConnection};
use chrono::NaiveDate;
use redis::streams::{StreamId, StreamRangeReply};
use serde_json::value::RawValue;

use crate::consumer::decode::{derived_id, derived_legacy_id};

/// Dead letters read per `XRANGE`.
const PAGE: usize = 100;

/// Which dead letters to redrive.
#[derive(Debug, Clone, Default)]
pub struct RedriveFilter {
    /// Only those whose `reason` contains this text.
    pub reason_contains: Option<String>,
    /// Only those dead-lettered on or after this UTC day.
    pub since: Option<NaiveDate>,
}

/// What a redrive did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedriveReport {
    /// Dead letters looked at.
    pub examined: u64,
    /// Re-added as version 1 entries (`data`).
    pub redriven_events: u64,
    /// Re-added as whole version 2 entries (`events`, `n`).
    pub redriven_entries: u64,
    /// Of the redriven events, those given the id the reader had derived.
    pub ids_kept: u64,
    /// Not matching the filter, left.
    pub skipped: u64,
    /// With neither `data` nor `events`: nothing to re-add, left.
    pub unusable: u64,
}

impl std::ops::AddAssign for RedriveReport {
    fn add_assign(&mut self, other: RedriveReport) {
        self.examined += other.examined;
        self.redriven_events += other.redriven_events;
        self.redriven_entries += other.redriven_entries;
        self.ids_kept += other.ids_kept;
        self.skipped += other.skipped;
        self.unusable += other.unusable;
    }
}

/// Why a redrive stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedriveError {
    /// Redis could not be reached or refused a command.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Redrives the dead letters of `stream_key` (a stream, or one shard of
/// it) matching `filter` into it.
pub async fn redrive_dead(
    redis: &RedisClient,
    stream_key: &str,
    filter: &RedriveFilter,
) -> Result<RedriveReport, RedriveError> {
    let mut con = redis.connect(Duration::from_secs(2), None).await?;
    let dead_key = activity_tracker::dead_letter_key(stream_key);
    let mut report = RedriveReport::default();
    let mut start = match filter.since {
        Some(day) => format!(
            "{}",
            day.and_hms_opt(0, 0, 0)
                .unwrap_or_default()
                .and_utc()
                .timestamp_millis()
                .max(0)
        ),
        None => "-".to_owned(),
    };
    loop {
        let page: StreamRangeReply = redis::cmd("XRANGE")
            .arg(&dead_key)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(&mut con)
            .await?;
        let Some(last) = page.ids.last() else { break };
        start = format!("({}", last.id);
        let full = page.ids.len() < PAGE;
        for dead in &page.ids {
            report.examined += 1;
            redrive_one(&mut con, stream_key, &dead_key, dead, filter, &mut report).await?;
        }
        if full {
            break;
        }
    }
    Ok(report)
}

async fn redrive_one(
    con: &mut RedisConnection,
    stream_key: &str,
    dead_key: &str,
    dead: &StreamId,
    filter: &RedriveFilter,
    report: &mut RedriveReport,
) -> Result<(), RedriveError> {
    let field = |name: &str| -> Option<Vec<u8>> { dead.get::<Vec<u8>>(name) };
    let reason = field("reason")
        .map(|r| String::from_utf8_lossy(&r).into_owned())
        .unwrap_or_default();
    if let Some(needle) = &filter.reason_contains
        && !reason.contains(needle.as_str())
    {
        report.skipped += 1;
        return Ok(());
    }
    let mut add = redis::cmd("XADD");
    add.arg(stream_key).arg("*");
    if let Some(data) = field("data") {
        let entry = field("entry").map(|e| String::from_utf8_lossy(&e).into_owned());
        let index =
            field("index").and_then(|i| String::from_utf8_lossy(&i).trim().parse::<usize>().ok());
        let id = match &entry {
            Some(entry) => derived_id(stream_key, entry, index),
            None => derived_legacy_id(&data),
        };
        let (data, kept) = with_id(data, id);
        report.ids_kept += u64::from(kept);
        add.arg("data").arg(data);
        report.redriven_events += 1;
    } else if let (Some(events), Some(n)) = (field("events"), field("n")) {
        add.arg("n").arg(n);
        if let Some(codec) = field("codec") {
            add.arg("codec").arg(codec);
        }
        add.arg("events").arg(events);
        report.redriven_entries += 1;
    } else {
        report.unusable += 1;
        return Ok(());
    }
    let _: String = add.query_async(con).await?;
    // Only once re-added: a stop in between leaves it in both, which a
    // second redrive makes harmless (the same ids).
    let _: i64 = redis::cmd("XDEL")
        .arg(dead_key)
        .arg(&dead.id)
        .query_async(con)
        .await?;
    Ok(())
}

/// `data` with `"id": id` added when it is a JSON object without an `id`
/// key (and whether it was added); anything else as it is, to be refused
/// (or stored) again for what it is.
fn with_id(data: Vec<u8>, id: uuid::Uuid) -> (Vec<u8>, bool) {
    let Some(open) = data.iter().position(|b| !b.is_ascii_whitespace()) else {
        return (data, false);
    };
    if data[open] != b'{' {
        return (data, false);
    }
    // Values are kept as their text: a number beyond f64 must not fail this.
    match serde_json::from_slice::<HashMap<String, &RawValue>>(&data) {
        Ok(fields) if !fields.contains_key("id") => {
            let rest = &data[open + 1..];
            let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
            let mut out = Vec::with_capacity(data.len() + 50);
            out.extend_from_slice(&data[..=open]);
            out.extend_from_slice(format!("\"id\":\"{id}\"").as_bytes());
            if !empty {
                out.push(b',');
            }
            out.extend_from_slice(rest);
            (out, true)
        }
        _ => (data, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_added_only_where_none_is() {
        let id = uuid::Uuid::nil();
        let (out, kept) = with_id(br#" {"action":"login"}"#.to_vec(), id);
        assert!(kept);
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["id"], id.to_string());
        assert_eq!(value["action"], "login");
        let (out, kept) = with_id(b"{}".to_vec(), id);
        assert!(kept);
        assert_eq!(out, format!("{{\"id\":\"{id}\"}}").into_bytes());
        for unchanged in [
            &br#"{"id":"0193a0c4-6f1e-7b8a-9c2d-3e4f5a6b7c8d","action":"x"}"#[..],
            br#"{"id":null}"#,
            b"not json",
            b"[1,2]",
        ] {
            assert_eq!(with_id(unchanged.to_vec(), id), (unchanged.to_vec(), false));
        }
    }
}
