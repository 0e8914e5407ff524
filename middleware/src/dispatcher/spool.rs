//! The local spool: an append-only file of batches, the last resort when
//! neither the stream nor the database takes a batch.
//!
//! Each record is one batch:
//!
//! ```text
//! length | TIMED: u32 LE | crc32: u32 LE | written_ms: i64 LE | payload: `length` bytes
//! ```
//!
//! where the payload is the batch's wire JSON (`docs/wire-format.md`), one
//! activity per line; `written_ms` is when the record was written, in
//! milliseconds since the Unix epoch (the batch's first arrival, which
//! replay passes on as [`WireBatch::arrived_at`]); `TIMED` is the length
//! word's top bit (`0x8000_0000`), set on every record written now; and the
//! CRC32 (`crc32fast`) covers `written_ms` and the payload. A record
//! without the bit (what trackers before the write time wrote) has no
//! `written_ms`, its CRC32 covers the payload alone, and it replays with no
//! arrival of its own; so a spool left by an older tracker still replays.
//! The bit leaves payloads of at most `0x7fff_ffff` bytes, far above any
//! batch. A tracker from before the bit reads a record with it as a torn
//! tail (its length word promises more bytes than the file holds) and cuts
//! it off: let the spool drain before going back to one.
//!
//! A record is appended with one write and then `fdatasync`ed before the
//! dispatcher counts its events as `spooled`, so a spooled event survives a
//! crash of the app or the machine. A crash in the middle of an append
//! leaves a torn record at the end: on opening, the file is read record by
//! record and the first record that is short or fails its checksum ends the
//! readable part; it and everything after it are counted
//! (`spool_corrupt_records`) and cut off, never misread.
//!
//! Replay reads records oldest first from an in-memory offset; once every
//! record has been written elsewhere the file is truncated to zero. Records
//! replayed before a crash are replayed again at the next start: harmless,
//! since every activity's id is its idempotency key downstream, and the
//! record's `written_ms` makes its events' arrival the same each time.

use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader};

use crate::{Activity, WireBatch};

/// Bytes of each record's length word and CRC32.
const HEADER: u64 = 8;

/// Bytes of a timed record's `written_ms`, after the header.
const WRITTEN_MS: u64 = 8;

/// The length word's bit marking a record that carries `written_ms`.
const TIMED: u32 = 0x8000_0000;

/// The length word's bits that hold the payload's length.
const LENGTH_MASK: u32 = !TIMED;

/// Default for the spool's byte limit: 64 MiB.
pub(crate) const DEFAULT_SPOOL_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Why a batch could not be spooled.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpoolError {
    /// The record would take the file past its byte limit.
    #[error("spool full: {size} + {record} bytes would pass the limit of {limit}")]
    Full {
        /// The file's size now.
        size: u64,
        /// The record's size.
        record: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The file could not be opened, read or written.
    #[error("spool file {path}: {source}")]
    Io {
        /// The spool file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
}

/// What opening an existing spool found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Opened {
    /// Whole, valid records waiting to be replayed.
    pub(crate) records: u64,
    /// Records (a torn or corrupt tail counts as one) cut off.
    pub(crate) corrupt_records: u64,
    /// Bytes cut off with them.
    pub(crate) corrupt_bytes: u64,
}

/// An open spool file. Not shared: the fallback chain keeps it behind an
/// async mutex.
#[derive(Debug)]
pub(crate) struct Spool {
    /// The file's path, for errors and logs.
    path: PathBuf,
    /// Opened for appending.
    file: File,
    /// The byte limit.
    max_bytes: u64,
    /// The file's length: the end of its last whole record.
    len: u64,
    /// Where the first record not yet replayed starts.
    replayed_to: u64,
}

impl Spool {
    /// Opens (or creates) the spool at `path`, checks every record, and
    /// cuts off a torn or corrupt tail.
    pub(crate) async fn open(path: &Path, max_bytes: u64) -> Result<(Spool, Opened), SpoolError> {
        let io_err = |source| SpoolError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(io_err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(path)
            .await
            .map_err(io_err)?;
        let file_len = file.metadata().await.map_err(io_err)?.len();
        let mut opened = Opened::default();
        let mut valid = 0u64;
        {
            let mut reader = BufReader::new(file.try_clone().await.map_err(io_err)?);
            while let Some(record) = read_record(&mut reader, valid, file_len)
                .await
                .map_err(io_err)?
            {
                match record {
                    Record::Valid { end, .. } => {
                        valid = end;
                        opened.records += 1;
                    }
                    Record::Corrupt => break,
                }
            }
        }
        if valid < file_len {
            opened.corrupt_records = 1;
            opened.corrupt_bytes = file_len - valid;
            file.set_len(valid).await.map_err(io_err)?;
            file.sync_all().await.map_err(io_err)?;
        }
        let mut file = file;
        file.seek(io::SeekFrom::Start(valid))
            .await
            .map_err(io_err)?;
        Ok((
            Spool {
                path: path.to_owned(),
                file,
                max_bytes,
                len: valid,
                replayed_to: 0,
            },
            opened,
        ))
    }

    /// The file's size in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Whether records wait to be replayed.
    pub(crate) fn has_pending(&self) -> bool {
        self.replayed_to < self.len
    }

    fn io_error(&self, source: io::Error) -> SpoolError {
        SpoolError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends `batch` as one record, written now (or at the batch's own
    /// earlier arrival, when it has one), and syncs it to disk. Returns the
    /// record's size. On failure the file is cut back to its last whole
    /// record.
    pub(crate) async fn append(&mut self, batch: &WireBatch) -> Result<u64, SpoolError> {
        let payload = batch.as_bytes();
        let record = HEADER + WRITTEN_MS + payload.len() as u64;
        if payload.len() > LENGTH_MASK as usize || self.len + record > self.max_bytes {
            return Err(SpoolError::Full {
                size: self.len,
                record,
                limit: self.max_bytes,
            });
        }
        let written = batch.arrived_at().unwrap_or_else(Utc::now);
        let bytes = encode_record(payload, Some(written.timestamp_millis()));
        let written = async {
            self.file.seek(io::SeekFrom::Start(self.len)).await?;
            self.file.write_all(&bytes).await?;
            self.file.flush().await?;
            self.file.sync_data().await
        }
        .await;
        if let Err(error) = written {
            // Leave no half record behind for the next append to follow.
            let _ = self.file.set_len(self.len).await;
            return Err(self.io_error(error));
        }
        self.len += record;
        Ok(record)
    }

    /// Reads up to `max_records` records not yet replayed, oldest first,
    /// each with the offset where it ends (for [`Spool::mark_replayed`]),
    /// the batch's arrival the time its record was written (none for a
    /// record of the format without it). Lines that are not valid
    /// activities (which the checksum makes unlikely) are left out and
    /// counted in the second value.
    pub(crate) async fn read_pending(
        &mut self,
        max_records: usize,
    ) -> Result<(Vec<(u64, WireBatch)>, u64), SpoolError> {
        let mut out = Vec::new();
        let mut bad_lines = 0;
        let mut file = File::open(&self.path).await.map_err(|e| self.io_error(e))?;
        file.seek(io::SeekFrom::Start(self.replayed_to))
            .await
            .map_err(|e| self.io_error(e))?;
        let mut reader = BufReader::new(file);
        let mut at = self.replayed_to;
        while out.len() < max_records {
            match read_record(&mut reader, at, self.len)
                .await
                .map_err(|e| self.io_error(e))?
            {
                Some(Record::Valid {
                    end,
                    written_ms,
                    payload,
                }) => {
                    // Lines are checked, so that one the stream or the
                    // database would refuse is counted here, not sent.
                    let mut batch = WireBatch::with_capacity(payload.len());
                    batch.set_arrived_at(written_ms.and_then(DateTime::from_timestamp_millis));
                    for line in payload.split(|b| *b == b'\n') {
                        match Activity::from_wire_json(line) {
                            Ok(_) => batch.push_with(|out| out.extend_from_slice(line)),
                            Err(_) => bad_lines += 1,
                        }
                    }
                    out.push((end, batch));
                    at = end;
                }
                // Checked when opened and written whole since: only a file
                // changed behind our back gets here; stop reading it.
                Some(Record::Corrupt) => {
                    bad_lines += 1;
                    self.replayed_to = self.len;
                    break;
                }
                None => break,
            }
        }
        Ok((out, bad_lines))
    }

    /// Records up to `end` are stored elsewhere.
    pub(crate) fn mark_replayed(&mut self, end: u64) {
        self.replayed_to = self.replayed_to.max(end.min(self.len));
    }

    /// Empties the file once every record has been replayed.
    pub(crate) async fn truncate_if_replayed(&mut self) -> Result<bool, SpoolError> {
        if self.has_pending() || self.len == 0 {
            return Ok(false);
        }
        self.file.set_len(0).await.map_err(|e| self.io_error(e))?;
        self.file.sync_all().await.map_err(|e| self.io_error(e))?;
        self.len = 0;
        self.replayed_to = 0;
        Ok(true)
    }
}

/// The bytes of one record holding `payload` (at most `0x7fff_ffff`
/// bytes), written at `written_ms` (Unix milliseconds); `None` makes a
/// record of the format without the write time (what older trackers
/// wrote).
pub(crate) fn encode_record(payload: &[u8], written_ms: Option<i64>) -> Vec<u8> {
    let written = written_ms.map(i64::to_le_bytes);
    let extra = written.map_or(0, |w| w.len());
    let mut bytes = Vec::with_capacity(HEADER as usize + extra + payload.len());
    let length = payload.len() as u32 & LENGTH_MASK;
    let mut crc = crc32fast::Hasher::new();
    if let Some(written) = &written {
        crc.update(written);
    }
    crc.update(payload);
    let word = if written.is_some() {
        length | TIMED
    } else {
        length
    };
    bytes.extend_from_slice(&word.to_le_bytes());
    bytes.extend_from_slice(&crc.finalize().to_le_bytes());
    if let Some(written) = &written {
        bytes.extend_from_slice(written);
    }
    bytes.extend_from_slice(payload);
    bytes
}

/// The whole records at the start of `file` (a spool's contents), each
/// as its `written_ms` (none in the format without it) and payload, read
/// as [`Spool::open`] reads them, and whether a corrupt or torn tail
/// followed them.
#[cfg(feature = "fuzzing")]
pub(crate) fn read_records(file: &[u8]) -> (Vec<(Option<i64>, Vec<u8>)>, bool) {
    use futures_util::FutureExt;
    let mut reader = file;
    let mut at = 0;
    let mut records = Vec::new();
    loop {
        // Reading from memory never waits.
        match read_record(&mut reader, at, file.len() as u64).now_or_never() {
            Some(Ok(Some(Record::Valid {
                end,
                written_ms,
                payload,
            }))) => {
                records.push((written_ms, payload));
                at = end;
            }
            Some(Ok(None)) => return (records, false),
            _ => return (records, true),
        }
    }
}

/// One record read back.
enum Record {
    /// A whole record whose checksum matches, ending at `end`, with its
    /// write time when it carries one.
    Valid {
        end: u64,
        written_ms: Option<i64>,
        payload: Vec<u8>,
    },
    /// Short or failing its checksum.
    Corrupt,
}

/// Reads the record starting at `at` (`None` at the end of the readable
/// part, `file_len`).
async fn read_record<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    at: u64,
    file_len: u64,
) -> io::Result<Option<Record>> {
    if at >= file_len {
        return Ok(None);
    }
    if file_len - at < HEADER {
        return Ok(Some(Record::Corrupt));
    }
    let mut header = [0u8; HEADER as usize];
    reader.read_exact(&mut header).await?;
    let word = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    let timed = word & TIMED != 0;
    let len = u64::from(word & LENGTH_MASK);
    let extra = if timed { WRITTEN_MS } else { 0 };
    if file_len - at - HEADER < extra + len {
        return Ok(Some(Record::Corrupt));
    }
    let mut hasher = crc32fast::Hasher::new();
    let written_ms = if timed {
        let mut written = [0u8; WRITTEN_MS as usize];
        reader.read_exact(&mut written).await?;
        hasher.update(&written);
        Some(i64::from_le_bytes(written))
    } else {
        None
    };
    let mut payload = vec![0u8; len as usize];
    reader.read_exact(&mut payload).await?;
    hasher.update(&payload);
    if hasher.finalize() != crc {
        return Ok(Some(Record::Corrupt));
    }
    Ok(Some(Record::Valid {
        end: at + HEADER + extra + len,
        written_ms,
        payload,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ActivityType;

    fn batch(n: usize, tag: &str) -> WireBatch {
        let activities: Vec<Activity> = (0..n)
            .map(|i| Activity::new(ActivityType::Login).user_id(format!("{tag}{i}")))
            .collect();
        WireBatch::from(&activities[..])
    }

    fn temp_path() -> PathBuf {
        std::env::temp_dir()
            .join(format!("spool-test-{}", uuid::Uuid::now_v7()))
            .join("activities.spool")
    }

    fn ids(batch: &WireBatch) -> Vec<uuid::Uuid> {
        batch.activities().unwrap().iter().map(|a| a.id).collect()
    }

    async fn all_pending(spool: &mut Spool) -> Vec<uuid::Uuid> {
        let (records, bad) = spool.read_pending(usize::MAX).await.unwrap();
        assert_eq!(bad, 0);
        records.iter().flat_map(|(_, b)| ids(b)).collect()
    }

    #[tokio::test]
    async fn records_come_back_in_order_and_the_file_empties_after_replay() {
        let path = temp_path();
        let (mut spool, opened) = Spool::open(&path, DEFAULT_SPOOL_MAX_BYTES).await.unwrap();
        assert_eq!(opened, Opened::default());
        let (a, b) = (batch(3, "a"), batch(2, "b"));
        spool.append(&a).await.unwrap();
        spool.append(&b).await.unwrap();
        drop(spool);
        let (mut spool, opened) = Spool::open(&path, DEFAULT_SPOOL_MAX_BYTES).await.unwrap();
        assert_eq!((opened.records, opened.corrupt_records), (2, 0));
        let (records, _) = spool.read_pending(1).await.unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(ids(&records[0].1), ids(&a));
        spool.mark_replayed(records[0].0);
        assert!(!spool.truncate_if_replayed().await.unwrap());
        assert_eq!(all_pending(&mut spool).await, ids(&b));
        spool.mark_replayed(spool.len());
        assert!(spool.truncate_if_replayed().await.unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        spool.append(&a).await.unwrap();
        assert_eq!(all_pending(&mut spool).await, ids(&a));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[tokio::test]
    async fn a_torn_or_corrupt_tail_is_cut_off_and_counted() {
        let path = temp_path();
        let (mut spool, _) = Spool::open(&path, DEFAULT_SPOOL_MAX_BYTES).await.unwrap();
        let good = batch(4, "g");
        spool.append(&good).await.unwrap();
        let good_len = spool.len();
        spool.append(&batch(4, "x")).await.unwrap();
        let full_len = spool.len();
        drop(spool);

        // Torn: the second record lost its last bytes in a crash.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(full_len - 5)
            .unwrap();
        let (mut spool, opened) = Spool::open(&path, DEFAULT_SPOOL_MAX_BYTES).await.unwrap();
        assert_eq!(
            (opened.records, opened.corrupt_records, opened.corrupt_bytes),
            (1, 1, full_len - 5 - good_len)
        );
        assert_eq!(spool.len(), good_len);
        assert_eq!(all_pending(&mut spool).await, ids(&good));

        // Corrupt: a flipped byte in the second record's payload.
        spool.append(&batch(4, "y")).await.unwrap();
        drop(spool);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let (mut spool, opened) = Spool::open(&path, DEFAULT_SPOOL_MAX_BYTES).await.unwrap();
        assert_eq!((opened.records, opened.corrupt_records), (1, 1));
        assert_eq!(all_pending(&mut spool).await, ids(&good));

        // Garbage shorter than a header.
        drop(spool);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"abc").unwrap();
        let (_, opened) = Spool::open(&path, DEFAULT_SPOOL_MAX_BYTES).await.unwrap();
        assert_eq!((opened.records, opened.corrupt_bytes), (1, 3));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[tokio::test]
    async fn a_record_carries_the_time_it_was_written_which_replay_gives_the_batch() {
        let path = temp_path();
        let (mut spool, _) = Spool::open(&path, DEFAULT_SPOOL_MAX_BYTES).await.unwrap();
        let before = Utc::now().timestamp_millis();
        let fresh = batch(2, "f");
        spool.append(&fresh).await.unwrap();
        let after = Utc::now().timestamp_millis();
        // A batch that arrived earlier keeps its arrival.
        let mut earlier = batch(1, "e");
        let at = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        earlier.set_arrived_at(Some(at));
        spool.append(&earlier).await.unwrap();
        drop(spool);

        // On disk: the flag bit, the payload's length, then the time.
        let bytes = std::fs::read(&path).unwrap();
        let word = u32::from_le_bytes(bytes[..4].try_into().unwrap());
        assert_eq!(word, TIMED | fresh.as_bytes().len() as u32);
        let written = i64::from_le_bytes(bytes[8..16].try_into().unwrap());
        assert!((before..=after).contains(&written), "{written}");

        let (mut spool, opened) = Spool::open(&path, DEFAULT_SPOOL_MAX_BYTES).await.unwrap();
        assert_eq!((opened.records, opened.corrupt_records), (2, 0));
        let (records, bad) = spool.read_pending(usize::MAX).await.unwrap();
        assert_eq!(bad, 0);
        let arrivals: Vec<_> = records
            .iter()
            .map(|(_, b)| b.arrived_at().map(|t| t.timestamp_millis()))
            .collect();
        assert_eq!(arrivals, [Some(written), Some(1_700_000_000_123)]);
        assert_eq!(ids(&records[0].1), ids(&fresh));
        assert_eq!(ids(&records[1].1), ids(&earlier));

        // A changed byte of the time fails the checksum like one of the
        // payload's.
        drop(spool);
        let mut changed = bytes.clone();
        changed[9] ^= 0x01;
        std::fs::write(&path, &changed).unwrap();
        let (_, opened) = Spool::open(&path, DEFAULT_SPOOL_MAX_BYTES).await.unwrap();
        assert_eq!((opened.records, opened.corrupt_records), (0, 1));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[tokio::test]
    async fn a_spool_of_the_format_without_write_times_still_replays() {
        // Records as the previous version wrote them, built by hand:
        // `length: u32 LE | crc32(payload): u32 LE | payload`.
        let path = temp_path();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let (a, b) = (batch(3, "old-a"), batch(2, "old-b"));
        let mut file = Vec::new();
        for old in [&a, &b] {
            let payload = old.as_bytes();
            file.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            file.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
            file.extend_from_slice(payload);
        }
        assert_eq!(
            encode_record(a.as_bytes(), None),
            file[..file.len() - 8 - b.as_bytes().len()]
        );
        std::fs::write(&path, &file).unwrap();

        // Opened by this version, appended to, and replayed: both formats
        // in one file.
        let (mut spool, opened) = Spool::open(&path, DEFAULT_SPOOL_MAX_BYTES).await.unwrap();
        assert_eq!((opened.records, opened.corrupt_records), (2, 0));
        let new = batch(1, "new");
        spool.append(&new).await.unwrap();
        let (records, bad) = spool.read_pending(usize::MAX).await.unwrap();
        assert_eq!(bad, 0);
        let got: Vec<_> = records
            .iter()
            .map(|(_, b)| (ids(b), b.arrived_at().is_some()))
            .collect();
        assert_eq!(got, [(ids(&a), false), (ids(&b), false), (ids(&new), true)]);
        spool.mark_replayed(records[2].0);
        assert!(spool.truncate_if_replayed().await.unwrap());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[tokio::test]
    async fn the_byte_limit_is_never_passed() {
        let path = temp_path();
        let (mut spool, _) = Spool::open(&path, 2000).await.unwrap();
        let mut stored = 0;
        loop {
            match spool.append(&batch(2, "z")).await {
                Ok(_) => stored += 1,
                Err(SpoolError::Full { limit, .. }) => {
                    assert_eq!(limit, 2000);
                    break;
                }
                Err(other) => panic!("{other}"),
            }
        }
        assert!(stored > 0);
        assert!(std::fs::metadata(&path).unwrap().len() <= 2000);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
