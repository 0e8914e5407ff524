//! The stream sources: `XREADGROUP` on a dedicated connection, and the
//! periodic `XAUTOCLAIM` of entries left pending by stopped consumers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::decode::decode_entry;
use super::link::{Backoff, Link};
use super::{Item, Origin, Settings, ensure_group};
use crate::stats::ProcessorStats;

/// Reads new entries for this consumer until cancelled. First re-reads
/// this consumer's own pending entries (a restart with the same
/// `CONSUMER_NAME`), then new ones with `>`.
pub(crate) async fn read_loop(
    settings: Settings,
    redis: redis::Client,
    stats: Arc<ProcessorStats>,
    tx: mpsc::Sender<Item>,
    token: CancellationToken,
) {
    // The reply of a blocking read comes after up to `block`: the timeout
    // must exceed it by a margin (redis' 500 ms default would not).
    let mut link = Link::new(redis, Some(settings.block + Duration::from_secs(5)));
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    // `Some(id)`: still walking this consumer's own pending entries after `id`.
    let mut pending_after = Some("0".to_owned());
    while !token.is_cancelled() {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&settings.group)
            .arg(&settings.consumer)
            .arg("COUNT")
            .arg(settings.batch_size);
        if pending_after.is_none() {
            cmd.arg("BLOCK")
                .arg(settings.block.as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS")
            .arg(&settings.stream_key)
            .arg(pending_after.as_deref().unwrap_or(">"));
        let reply: Option<StreamReadReply> = match link.query(&cmd).await {
            Ok(reply) => {
                backoff.reset();
                reply
            }
            Err(e) => {
                tracing::warn!(error = %e, stream = %settings.stream_key, "reading the stream failed; retrying");
                if e.code() == Some("NOGROUP")
                    && let Ok(conn) = link.get().await
                {
                    let _ = ensure_group(conn, &settings.stream_key, &settings.group).await;
                }
                if !backoff.sleep(&token).await {
                    break;
                }
                continue;
            }
        };
        let entries: Vec<StreamId> = reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default();
        if let Some(after) = &mut pending_after {
            match entries.last() {
                Some(last) => *after = last.id.clone(),
                None => pending_after = None,
            }
        }
        stats.record_consumed(entries.len() as u64);
        if !send_all(&settings, entries, &tx, &token).await {
            break;
        }
    }
}

/// Claims entries idle longer than `CLAIM_IDLE_MS` (their consumer
/// stopped), at start and then every half of that, and feeds them through
/// the same path.
pub(crate) async fn claim_loop(
    settings: Settings,
    redis: redis::Client,
    stats: Arc<ProcessorStats>,
    tx: mpsc::Sender<Item>,
    token: CancellationToken,
) {
    let mut link = Link::new(redis, None);
    let period =
        (settings.claim_idle / 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let mut cursor = "0-0".to_owned();
        loop {
            let cmd = redis::cmd("XAUTOCLAIM")
                .arg(&settings.stream_key)
                .arg(&settings.group)
                .arg(&settings.consumer)
                .arg(settings.claim_idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(settings.batch_size)
                .to_owned();
            let reply: StreamAutoClaimReply = match link.query(&cmd).await {
                Ok(reply) => reply,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming idle entries failed; next round retries");
                    break;
                }
            };
            let claimed = reply.claimed.len() as u64;
            if claimed > 0 {
                tracing::info!(
                    claimed,
                    "claimed entries left pending by a stopped consumer"
                );
                stats.record_consumed(claimed);
                stats.record_reclaimed(claimed);
            }
            if !send_all(&settings, reply.claimed, &tx, &token).await {
                return;
            }
            if reply.next_stream_id == "0-0" || token.is_cancelled() {
                break;
            }
            cursor = reply.next_stream_id;
        }
    }
}

/// Decodes and sends entries to the sink; `false` when cancelled while
/// waiting for room (the rest stay pending and are claimed later) or the
/// sink is gone.
async fn send_all(
    settings: &Settings,
    entries: Vec<StreamId>,
    tx: &mpsc::Sender<Item>,
    token: &CancellationToken,
) -> bool {
    let received = tokio::time::Instant::now();
    for entry in entries {
        let item = to_item(settings, entry, received);
        tokio::select! {
            biased;
            sent = tx.send(item) => if sent.is_err() { return false },
            _ = token.cancelled() => return false,
        }
    }
    true
}

fn to_item(settings: &Settings, entry: StreamId, received: tokio::time::Instant) -> Item {
    let StreamId { id, mut map, .. } = entry;
    let data = match map.remove("data") {
        Some(Value::BulkString(bytes)) => Some(bytes),
        Some(Value::SimpleString(text)) => Some(text.into_bytes()),
        _ => None,
    };
    let decoded = decode_entry(&settings.stream_key, &id, data.as_deref());
    // Without a `data` field, the dead letter keeps the fields there were.
    let payload = data.unwrap_or_else(|| fields_as_json(&map));
    Item {
        origin: Origin::Stream(id),
        payload,
        received,
        decoded,
    }
}

fn fields_as_json(map: &HashMap<String, Value>) -> Vec<u8> {
    let object: serde_json::Map<String, serde_json::Value> = map
        .iter()
        .map(|(field, value)| {
            let text = match value {
                Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                other => format!("{other:?}"),
            };
            (field.clone(), serde_json::Value::String(text))
        })
        .collect();
    serde_json::to_vec(&object).unwrap_or_default()
}
