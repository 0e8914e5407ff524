//! The legacy LIST source, for producers written for the original design
//! (`LPUSH user_activities_queue <json>`).
//!
//! Reliable queue pattern: each element is moved atomically (`BLMOVE`/`LMOVE
//! <key> <key>:processing:<consumer> RIGHT LEFT`) into this consumer's
//! processing list and removed from there (`LREM`) only after its row is
//! committed. On start the consumer re-reads its own processing list (same
//! `CONSUMER_NAME`), and periodically moves back to the queue the
//! processing lists of consumers that are gone from the group or idle
//! longer than `CLAIM_IDLE_MS`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use activity_tracker::RedisClient;
use chrono::Utc;
use redis::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Backoff;
use super::decode::decode_legacy;
use super::link::{Link, retry_sleep};
use bytes::Bytes;

use super::entry::Payload;
use super::{Item, Origin, Settings};
use crate::stats::ProcessorStats;

/// The processing list of `consumer` for the list `key`.
pub(crate) fn processing_key(key: &str, consumer: &str) -> String {
    format!("{key}:processing:{consumer}")
}

/// Drains the legacy list until cancelled.
pub(crate) async fn read_loop(
    settings: Settings,
    redis: RedisClient,
    stats: Arc<ProcessorStats>,
    tx: mpsc::Sender<Item>,
    token: CancellationToken,
) {
    let Some(key) = settings.legacy_list_key.clone() else {
        return;
    };
    let processing = processing_key(&key, &settings.consumer);
    let mut link = Link::new(redis, Some(settings.block + Duration::from_secs(5)));
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

    // Our own processing list first: elements moved before a restart.
    loop {
        match link
            .query::<Vec<Vec<u8>>>(redis::cmd("LRANGE").arg(&processing).arg(0).arg(-1))
            .await
        {
            Ok(left) => {
                if !left.is_empty() {
                    tracing::info!(count = left.len(), list = %processing, "recovering the legacy processing list");
                    stats.record_consumed(left.len() as u64);
                    stats.record_reclaimed(left.len() as u64);
                }
                if !send_all(left, &tx, &token).await {
                    return;
                }
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the legacy processing list failed; retrying");
                if !retry_sleep(&mut backoff, &token).await {
                    return;
                }
            }
        }
    }

    let recover_every =
        (settings.claim_idle / 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
    let mut next_recovery = Instant::now();
    while !token.is_cancelled() {
        if Instant::now() >= next_recovery {
            if let Err(e) = recover_orphans(&mut link, &settings, &key).await {
                tracing::warn!(error = %e, "recovering orphaned legacy processing lists failed");
            }
            next_recovery = Instant::now() + recover_every;
        }
        let moved = take_some(&mut link, &settings, &key, &processing).await;
        match moved {
            Ok(payloads) => {
                backoff.reset();
                stats.record_consumed(payloads.len() as u64);
                if !send_all(payloads, &tx, &token).await {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, list = %key, "reading the legacy list failed; retrying");
                if !retry_sleep(&mut backoff, &token).await {
                    return;
                }
            }
        }
    }
}

/// One blocking move, then up to a batch more without blocking.
async fn take_some(
    link: &mut Link,
    settings: &Settings,
    key: &str,
    processing: &str,
) -> redis::RedisResult<Vec<Vec<u8>>> {
    let first: Option<Vec<u8>> = link
        .query(
            redis::cmd("BLMOVE")
                .arg(key)
                .arg(processing)
                .arg("RIGHT")
                .arg("LEFT")
                .arg(settings.block.as_secs_f64()),
        )
        .await?;
    let Some(first) = first else {
        return Ok(Vec::new());
    };
    let mut pipe = redis::pipe();
    for _ in 1..settings.batch_size.min(500) {
        pipe.cmd("LMOVE")
            .arg(key)
            .arg(processing)
            .arg("RIGHT")
            .arg("LEFT");
    }
    let more: Vec<Option<Vec<u8>>> = if settings.batch_size > 1 {
        link.pipe(&pipe).await?
    } else {
        Vec::new()
    };
    let mut all = vec![first];
    all.extend(more.into_iter().flatten());
    Ok(all)
}

/// Moves back to the queue the processing lists whose consumer left the
/// group or has been idle longer than `CLAIM_IDLE_MS`.
async fn recover_orphans(
    link: &mut Link,
    settings: &Settings,
    key: &str,
) -> redis::RedisResult<()> {
    let prefix = processing_key(key, "");
    let mut lists = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = link
            .query(
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{}*", escape_glob(&prefix)))
                    .arg("COUNT")
                    .arg(1000),
            )
            .await?;
        lists.extend(keys);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    if lists.is_empty() {
        return Ok(());
    }
    let consumers: Vec<HashMap<String, Value>> = link
        .query(
            redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(settings.stream_key())
                .arg(&settings.group),
        )
        .await?;
    let alive: Vec<String> = consumers
        .iter()
        .filter(|c| {
            let idle = c.get("idle").and_then(as_int).unwrap_or(i64::MAX);
            idle < settings.claim_idle.as_millis() as i64
        })
        .filter_map(|c| match c.get("name") {
            Some(Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Some(Value::SimpleString(s)) => Some(s.clone()),
            _ => None,
        })
        .collect();
    for list in lists {
        let owner = &list[prefix.len()..];
        if owner == settings.consumer || alive.iter().any(|a| a == owner) {
            continue;
        }
        let mut moved = 0u64;
        // One element at a time, atomically: nothing is lost if we stop half-way.
        while let Some(_payload) = link
            .query::<Option<Vec<u8>>>(
                redis::cmd("LMOVE")
                    .arg(&list)
                    .arg(key)
                    .arg("LEFT")
                    .arg("RIGHT"),
            )
            .await?
        {
            moved += 1;
        }
        if moved > 0 {
            tracing::info!(moved, list = %list, "moved an orphaned legacy processing list back to the queue");
        }
    }
    Ok(())
}

fn as_int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

async fn send_all(
    payloads: Vec<Vec<u8>>,
    tx: &mpsc::Sender<Item>,
    token: &CancellationToken,
) -> bool {
    let arrived_at = Utc::now();
    let received = Instant::now();
    for payload in payloads {
        let decoded = decode_legacy(&payload, arrived_at);
        let item = Item {
            origin: Origin::Legacy,
            payload: Payload::Data(Bytes::from(payload)),
            received,
            decoded,
        };
        tokio::select! {
            biased;
            sent = tx.send(item) => if sent.is_err() { return false },
            _ = token.cancelled() => return false,
        }
    }
    true
}
