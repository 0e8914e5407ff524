//! The queue's length in events, as users read it, from a stream whose
//! entries may each hold many (version 2).
//!
//! `XLEN` counts entries. The events are estimated from the `n` of a
//! sample of the newest entries (`SAMPLE` of them, read by a script that
//! returns only their `n`, so the events themselves never leave Redis):
//! exact when the stream holds no more entries than the sample, else the
//! sampled events plus the other entries at the sample's mean. Bounds: at
//! least `XLEN` (every entry holds an event) and at most `XLEN` times the
//! largest entry a producer writes (the tracker's `max_batch`); equal to
//! the truth when the older entries hold as many events as the newest ones
//! do, as under a steady load. A stream of several shards is the sum of
//! its shards.

use activity_tracker::{RedisConnection, StreamShards};

/// Entries sampled.
pub(crate) const SAMPLE: usize = 16;

/// Returns the `n` of the newest `ARGV[1]` entries (1 for an entry
/// without one: version 1).
const SAMPLE_SCRIPT: &str = r"
local entries = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[1])
local counts = {}
for i, entry in ipairs(entries) do
  local fields = entry[2]
  local n = 1
  for j = 1, #fields, 2 do
    if fields[j] == 'n' then
      n = tonumber(fields[j + 1]) or 1
      break
    end
  end
  counts[i] = n
end
return counts
";

/// The stream's length: entries (exact) and events (estimated as the
/// module docs say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct QueueLength {
    pub(crate) entries: u64,
    pub(crate) events: u64,
}

impl QueueLength {
    /// The length of every shard together.
    pub(crate) fn sum(lengths: &[QueueLength]) -> QueueLength {
        QueueLength {
            entries: lengths.iter().map(|l| l.entries).sum(),
            events: lengths.iter().map(|l| l.events).sum(),
        }
    }
}

/// Reads the queue length of each shard, shard 0 first.
pub(crate) async fn shard_lengths(
    con: &mut RedisConnection,
    shards: &StreamShards,
) -> redis::RedisResult<Vec<QueueLength>> {
    let mut lengths = Vec::with_capacity(shards.len());
    for key in shards.keys() {
        lengths.push(queue_length(con, key).await?);
    }
    Ok(lengths)
}

/// Reads the queue length of `key`.
pub(crate) async fn queue_length(
    con: &mut RedisConnection,
    key: &str,
) -> redis::RedisResult<QueueLength> {
    let entries: u64 = redis::cmd("XLEN").arg(key).query_async(con).await?;
    if entries == 0 {
        return Ok(QueueLength::default());
    }
    let counts: Vec<i64> = redis::cmd("EVAL")
        .arg(SAMPLE_SCRIPT)
        .arg(1)
        .arg(key)
        .arg(SAMPLE)
        .query_async(con)
        .await?;
    Ok(QueueLength {
        entries,
        events: estimate(entries, &counts),
    })
}

/// The events of a stream of `entries` entries whose newest hold `sample`.
fn estimate(entries: u64, sample: &[i64]) -> u64 {
    let sampled: u64 = sample.iter().map(|&n| n.max(1) as u64).sum();
    let seen = sample.len() as u64;
    if seen == 0 {
        return entries;
    }
    if entries <= seen {
        return sampled;
    }
    let rest = entries - seen;
    sampled + (rest * sampled + seen / 2) / seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_for_small_streams_and_at_the_sample_mean_beyond() {
        assert_eq!(estimate(3, &[10, 20, 30]), 60);
        assert_eq!(estimate(100, &[1; 16]), 100);
        assert_eq!(estimate(116, &[1000; 16]), 116_000);
        assert_eq!(
            estimate(32, &[3, 5, 3, 5, 3, 5, 3, 5, 3, 5, 3, 5, 3, 5, 3, 5]),
            128
        );
        // Never below one event an entry.
        assert_eq!(estimate(20, &[0; 16]), 20);
        assert_eq!(estimate(20, &[]), 20);
    }
}
