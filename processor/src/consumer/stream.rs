//! The stream sources: `XREADGROUP` on a dedicated connection, and the
//! periodic `XAUTOCLAIM` of entries left pending by stopped consumers.

use std::sync::Arc;
use std::time::Duration;

use redis::streams::{StreamAutoClaimReply, StreamId};
use redis::{FromRedisValue, ParsingError, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use activity_tracker::RedisClient;

use super::Backoff;
use super::entry::{self, Entry};
use super::link::{Link, retry_sleep};
use super::{Item, Settings, ensure_group};
use crate::stats::ProcessorStats;

/// Reads new entries for this consumer until cancelled. First re-reads
/// this consumer's own pending entries (a restart with the same
/// `CONSUMER_NAME`), then new ones with `>`.
pub(crate) async fn read_loop(
    settings: Settings,
    redis: RedisClient,
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
    let mut count = ReadCount::new(settings.batch_size);
    while !token.is_cancelled() {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&settings.group)
            .arg(&settings.consumer)
            .arg("COUNT")
            .arg(count.entries());
        if pending_after.is_none() {
            cmd.arg("BLOCK")
                .arg(settings.block.as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS")
            .arg(settings.stream_key())
            .arg(pending_after.as_deref().unwrap_or(">"));
        let entries = match link.query::<ReadReply>(&cmd).await {
            Ok(ReadReply(entries)) => {
                backoff.reset();
                entries
            }
            Err(e) => {
                tracing::warn!(error = %e, stream = %settings.stream_key(), "reading the stream failed; retrying");
                if e.code() == Some("NOGROUP")
                    && let Ok(conn) = link.get().await
                {
                    let _ = ensure_group(conn, settings.stream_key(), &settings.group).await;
                }
                if !retry_sleep(&mut backoff, &token).await {
                    break;
                }
                continue;
            }
        };
        if let Some(after) = &mut pending_after {
            match entries.last() {
                Some(last) => *after = last.id.clone(),
                None => pending_after = None,
            }
        }
        stats.set_backlogged(entries.len() >= count.entries());
        match send_all(&settings, entries, &tx, &token, &stats).await {
            Some(largest) => count.saw(largest),
            None => break,
        }
    }
}

/// Claims entries idle longer than `CLAIM_IDLE_MS` (their consumer
/// stopped), at start and then every half of that, and feeds them through
/// the same path.
pub(crate) async fn claim_loop(
    settings: Settings,
    redis: RedisClient,
    stats: Arc<ProcessorStats>,
    tx: mpsc::Sender<Item>,
    token: CancellationToken,
) {
    let mut link = Link::new(redis, None);
    let period =
        (settings.claim_idle / 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
    let mut count = ReadCount::new(settings.batch_size);
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
                .arg(settings.stream_key())
                .arg(&settings.group)
                .arg(&settings.consumer)
                .arg(settings.claim_idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(count.entries())
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
                stats.record_reclaimed(claimed);
            }
            let entries = reply.claimed.into_iter().map(Entry::from).collect();
            match send_all(&settings, entries, &tx, &token, &stats).await {
                Some(largest) => count.saw(largest),
                None => return,
            }
            if reply.next_stream_id == "0-0" || token.is_cancelled() {
                break;
            }
            cursor = reply.next_stream_id;
        }
    }
}

/// Decodes and sends the entries' events to the sink (counting them as
/// consumed); returns the most events one entry held, or `None` when
/// cancelled while waiting for room (the rest stay pending and are claimed
/// later) or the sink is gone.
async fn send_all(
    settings: &Settings,
    entries: Vec<Entry>,
    tx: &mpsc::Sender<Item>,
    token: &CancellationToken,
    stats: &ProcessorStats,
) -> Option<usize> {
    let received = tokio::time::Instant::now();
    let mut largest = 0;
    for entry in entries {
        let items = entry::items(settings.stream_key(), settings.shard, entry, received);
        largest = largest.max(items.len());
        stats.record_consumed(items.len() as u64);
        for item in items {
            tokio::select! {
                biased;
                sent = tx.send(item) => if sent.is_err() { return None },
                _ = token.cancelled() => return None,
            }
        }
    }
    Some(largest)
}

/// How many entries a read asks for: `COUNT` counts entries, and a
/// version 2 entry holds many events, so a read asks for about a batch of
/// events: the batch size over the most events an entry of the last read
/// held. What one read brings into memory stays near a batch whatever the
/// entries' sizes (the first read asks for one entry, its size unknown).
#[derive(Debug)]
struct ReadCount {
    batch_size: usize,
    events_per_entry: usize,
}

impl ReadCount {
    fn new(batch_size: usize) -> Self {
        let batch_size = batch_size.max(1);
        ReadCount {
            batch_size,
            events_per_entry: batch_size,
        }
    }

    fn entries(&self) -> usize {
        (self.batch_size / self.events_per_entry).max(1)
    }

    /// The last read's largest entry held `events` events (0: it read
    /// nothing, which says nothing).
    fn saw(&mut self, events: usize) {
        if events > 0 {
            self.events_per_entry = events;
        }
    }
}

impl From<StreamId> for Entry {
    fn from(entry: StreamId) -> Self {
        Entry {
            id: entry.id,
            fields: entry.map.into_iter().collect(),
        }
    }
}

/// The entries of an `XREADGROUP` reply, moved out of the reply as they
/// are. (The redis crate's `StreamReadReply` copies the whole reply before
/// converting it, which cost the processor as much as parsing it.)
#[derive(Debug)]
struct ReadReply(Vec<Entry>);

impl FromRedisValue for ReadReply {
    fn from_redis_value(reply: Value) -> Result<Self, ParsingError> {
        let streams: Vec<Value> = match reply {
            // `BLOCK` ran out with nothing new.
            Value::Nil => Vec::new(),
            // RESP2: [[key, entries], ...]
            Value::Array(streams) => streams
                .into_iter()
                .map(|stream| match stream {
                    Value::Array(mut pair) if pair.len() == 2 => Ok(pair.swap_remove(1)),
                    other => Err(unexpected("stream", &other)),
                })
                .collect::<Result<_, _>>()?,
            // RESP3: {key: entries, ...}
            Value::Map(streams) => streams.into_iter().map(|(_, entries)| entries).collect(),
            other => return Err(unexpected("reply", &other)),
        };
        let mut read = Vec::new();
        for entries in streams {
            match entries {
                Value::Array(entries) => {
                    read.reserve(entries.len());
                    for entry in entries {
                        read.push(Entry::from_value(entry)?);
                    }
                }
                Value::Nil => {}
                other => return Err(unexpected("entries", &other)),
            }
        }
        Ok(ReadReply(read))
    }
}

impl Entry {
    /// `[id, [field, value, ...]]`; anything after that (the delivery
    /// counts of `XREADGROUP ... CLAIM`) is not needed here.
    fn from_value(entry: Value) -> Result<Self, ParsingError> {
        let Value::Array(parts) = entry else {
            return Err(unexpected("entry", &entry));
        };
        let mut parts = parts.into_iter();
        let id = match parts.next() {
            Some(Value::BulkString(bytes)) => String::from_utf8(bytes)?,
            Some(Value::SimpleString(text)) => text,
            other => return Err(unexpected("entry id", &other.unwrap_or(Value::Nil))),
        };
        let name = |value: Value| match value {
            Value::BulkString(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Value::SimpleString(text) => Ok(text),
            other => Err(unexpected("field name", &other)),
        };
        let fields = match parts.next() {
            None | Some(Value::Nil) => Vec::new(),
            Some(Value::Array(flat)) => {
                let mut fields = Vec::with_capacity(flat.len() / 2);
                let mut flat = flat.into_iter();
                while let (Some(field), Some(value)) = (flat.next(), flat.next()) {
                    fields.push((name(field)?, value));
                }
                fields
            }
            Some(Value::Map(pairs)) => pairs
                .into_iter()
                .map(|(field, value)| Ok((name(field)?, value)))
                .collect::<Result<_, ParsingError>>()?,
            Some(other) => return Err(unexpected("entry fields", &other)),
        };
        Ok(Entry { id, fields })
    }
}

fn unexpected(what: &str, value: &Value) -> ParsingError {
    let mut shown = format!("{value:?}");
    activity_tracker::truncate_chars(&mut shown, 200);
    ParsingError::from(format!("unexpected {what} in a stream reply: {shown}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn entries(reply: Value) -> Vec<(String, Vec<(String, Value)>)> {
        ReadReply::from_redis_value(reply)
            .unwrap()
            .0
            .into_iter()
            .map(|entry| (entry.id, entry.fields))
            .collect()
    }

    #[test]
    fn read_replies_in_both_protocols() {
        let stream = || {
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("data"), bulk("{}"), bulk("x"), bulk("y")]),
                ]),
                // Deleted while pending: the id alone.
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ])
        };
        let expected = vec![
            (
                "1-0".to_owned(),
                vec![("data".to_owned(), bulk("{}")), ("x".to_owned(), bulk("y"))],
            ),
            ("2-0".to_owned(), vec![]),
        ];
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("s"), stream()])]);
        assert_eq!(entries(resp2), expected);
        let resp3 = Value::Map(vec![(bulk("s"), stream())]);
        assert_eq!(entries(resp3), expected);
        assert!(entries(Value::Nil).is_empty());
        let error = ReadReply::from_redis_value(Value::Int(1)).unwrap_err();
        assert!(error.to_string().contains("unexpected reply"), "{error}");
    }
}
