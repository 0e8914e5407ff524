//! The activity stream as `STREAM_SHARDS` keys, each on a Redis Cluster
//! slot of its own: the one definition of the shard keys, shared by every
//! producer (the tracker, the ingest API) and the processor.
//!
//! With one shard the stream is the stream key itself, as before shards
//! existed. With `N` > 1, shard `k` is `<stream key>:{<tag>}` and its
//! dead letters `<stream key>:{<tag>}:dead` (the same hash tag, so the
//! same slot). Redis Cluster puts a key on slot `CRC16(tag) mod 16384`,
//! and `redis-cli --cluster create` gives each of `M` masters an equal,
//! contiguous range of slots. Tags `{0}`, `{1}`, `{2}` fall where their
//! CRC happens to put them (two of the three on one master of a
//! three-master cluster), so the tag of shard `k` is chosen instead to put
//! it in the middle half of the `k`-th of `N` equal slot ranges: `k`
//! itself when its slot lies there, else the first `k.j` (j = 1, 2, ...)
//! whose slot does. `N` shards then spread over `M` equal masters as
//! evenly as `N` and `M` allow (`N = M`: one each; `N = 2M`: two each),
//! and the middle half keeps them clear of the masters' range boundaries,
//! which differ by a slot between layouts. After a resharding a shard
//! stays on its slot and moves with it: the slots of the shards are in
//! [`StreamShards::slot`] (and `CLUSTER KEYSLOT`) for choosing what to
//! move. The tags depend on `N`: changing `STREAM_SHARDS` changes the
//! keys, so the old keys must be drained first (docs/scaling.md, "Changing
//! `STREAM_SHARDS`").

/// The slots of a Redis Cluster.
pub const CLUSTER_SLOTS: u16 = 16384;

/// The most shards a stream may have: past this the slot ranges get too
/// narrow to place a tag in, and no deployment needs that many.
pub const MAX_STREAM_SHARDS: usize = 1024;

/// The Redis Cluster slot of `key` (`CLUSTER KEYSLOT`): CRC16 (XMODEM) of
/// the key's hash tag, the text between its first `{` and the next `}`
/// when that is not empty, else of the whole key.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % CLUSTER_SLOTS
}

/// The keys of a stream of one or more shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamShards {
    stream_key: String,
    keys: Vec<String>,
}

impl StreamShards {
    /// The shards of `stream_key` with `count` shards (0 counts as 1;
    /// more than [`MAX_STREAM_SHARDS`] as that many: callers check the
    /// setting first and say so).
    pub fn new(stream_key: &str, count: usize) -> Self {
        let count = count.clamp(1, MAX_STREAM_SHARDS);
        let keys = match count {
            1 => vec![stream_key.to_owned()],
            _ => (0..count)
                .map(|shard| format!("{stream_key}:{{{}}}", shard_tag(shard, count)))
                .collect(),
        };
        StreamShards {
            stream_key: stream_key.to_owned(),
            keys,
        }
    }

    /// The stream key the shards are named after (`STREAM_KEY`).
    pub fn stream_key(&self) -> &str {
        &self.stream_key
    }

    /// How many shards.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a stream has at least one shard.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The key of every shard, shard 0 first.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The key of shard `shard` (which must be below [`Self::len`]).
    pub fn key(&self, shard: usize) -> &str {
        &self.keys[shard]
    }

    /// The dead-letter stream of shard `shard`: its key and `:dead`.
    pub fn dead_key(&self, shard: usize) -> String {
        dead_letter_key(&self.keys[shard])
    }

    /// The cluster slot of shard `shard`.
    pub fn slot(&self, shard: usize) -> u16 {
        key_slot(self.keys[shard].as_bytes())
    }
}

/// The dead-letter stream of the stream (or shard) `key`.
pub fn dead_letter_key(key: &str) -> String {
    format!("{key}:dead")
}

/// The hash tag of shard `shard` of `count` (see the module docs).
fn shard_tag(shard: usize, count: usize) -> String {
    let slots = usize::from(CLUSTER_SLOTS);
    let start = shard * slots / count;
    let width = (shard + 1) * slots / count - start;
    let wanted = start + width / 4..start + width - width / 4;
    let fits = |tag: &str| wanted.contains(&usize::from(key_slot(tag.as_bytes())));
    let plain = shard.to_string();
    if fits(&plain) {
        return plain;
    }
    (1..)
        .map(|j| format!("{shard}.{j}"))
        .find(|tag| fits(tag))
        .expect("a CRC16 covers every slot range within a few thousand tries")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_redis_hash_tags() {
        // Values from `CLUSTER KEYSLOT` of Redis 7.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"123456789"), 0x31C3 % CLUSTER_SLOTS);
    }

    #[test]
    fn one_shard_is_the_stream_key_itself() {
        let shards = StreamShards::new("s", 1);
        assert_eq!(shards.keys(), ["s"]);
        assert_eq!(shards.dead_key(0), "s:dead");
        assert_eq!(StreamShards::new("s", 0).keys(), ["s"]);
    }

    #[test]
    fn shards_fall_in_equal_slot_ranges_and_their_dead_letters_with_them() {
        for count in [2, 3, 4, 6, 8, 16, 100, MAX_STREAM_SHARDS] {
            let shards = StreamShards::new("user_activities_stream", count);
            assert_eq!(shards.len(), count);
            let mut distinct = shards.keys().to_vec();
            distinct.dedup();
            assert_eq!(distinct.len(), count);
            for shard in 0..count {
                let slots = usize::from(CLUSTER_SLOTS);
                let (start, end) = (shard * slots / count, (shard + 1) * slots / count);
                let slot = usize::from(shards.slot(shard));
                let margin = (end - start) / 4;
                assert!(
                    (start + margin..end - margin).contains(&slot),
                    "{count} shards: shard {shard} on slot {slot}"
                );
                assert_eq!(
                    key_slot(shards.dead_key(shard).as_bytes()),
                    shards.slot(shard)
                );
                assert!(shards.key(shard).starts_with("user_activities_stream:{"));
            }
        }
    }

    #[test]
    fn shards_spread_evenly_over_the_masters_of_a_default_cluster() {
        // `redis-cli --cluster create` with three masters: 0-5460,
        // 5461-10922, 10923-16383.
        let master = |slot: u16| match slot {
            0..=5460 => 0,
            5461..=10922 => 1,
            _ => 2,
        };
        for (count, expected) in [(3, [1, 1, 1]), (6, [2, 2, 2]), (4, [2, 1, 1])] {
            let shards = StreamShards::new("s", count);
            let mut per_master = [0; 3];
            for shard in 0..count {
                per_master[master(shards.slot(shard))] += 1;
            }
            per_master.sort_unstable_by(|a, b| b.cmp(a));
            assert_eq!(per_master, expected, "{count} shards");
        }
    }
}
