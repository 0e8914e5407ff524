//! The local spool: an append-only file of batches, the last resort when
//! neither the stream nor the database takes a batch.
//!
//! Each record is one batch:
//!
//! ```text
//! length: u32 LE | crc32: u32 LE | payload: `length` bytes
//! ```
//!
//! where the payload is the batch's wire JSON (`docs/wire-format.md`), one
//! activity per line, and the CRC32 (`crc32fast`) covers the payload. A
//! record is appended with one write and then `fdatasync`ed before the
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
//! since every activity's id is its idempotency key downstream.

use std::io;
use std::path::{Path, PathBuf};

use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader};

use crate::{Activity, WireBatch};

/// Bytes before each record's payload: length and CRC32.
const HEADER: u64 = 8;

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

    /// Appends `batch` as one record and syncs it to disk. Returns the
    /// record's size. On failure the file is cut back to its last whole
    /// record.
    pub(crate) async fn append(&mut self, batch: &WireBatch) -> Result<u64, SpoolError> {
        let payload = batch.as_bytes();
        let record = HEADER + payload.len() as u64;
        if payload.len() > u32::MAX as usize || self.len + record > self.max_bytes {
            return Err(SpoolError::Full {
                size: self.len,
                record,
                limit: self.max_bytes,
            });
        }
        let bytes = encode_record(payload);
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
    /// each with the offset where it ends (for [`Spool::mark_replayed`]).
    /// Lines that are not valid activities (which the checksum makes
    /// unlikely) are left out and counted in the second value.
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
                Some(Record::Valid { end, payload }) => {
                    // Lines are checked, so that one the stream or the
                    // database would refuse is counted here, not sent.
                    let mut batch = WireBatch::with_capacity(payload.len());
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

/// The bytes of one record holding `payload` (at most `u32::MAX` bytes).
pub(crate) fn encode_record(payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER as usize + payload.len());
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// The payloads of the whole records at the start of `file` (a spool's
/// contents), read as [`Spool::open`] reads them, and whether a corrupt or
/// torn tail followed them.
#[cfg(feature = "fuzzing")]
pub(crate) fn read_records(file: &[u8]) -> (Vec<Vec<u8>>, bool) {
    use futures_util::FutureExt;
    let mut reader = file;
    let mut at = 0;
    let mut payloads = Vec::new();
    loop {
        // Reading from memory never waits.
        match read_record(&mut reader, at, file.len() as u64).now_or_never() {
            Some(Ok(Some(Record::Valid { end, payload }))) => {
                payloads.push(payload);
                at = end;
            }
            Some(Ok(None)) => return (payloads, false),
            _ => return (payloads, true),
        }
    }
}

/// One record read back.
enum Record {
    /// A whole record whose checksum matches, ending at `end`.
    Valid { end: u64, payload: Vec<u8> },
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
    let len = u64::from(u32::from_le_bytes(header[..4].try_into().expect("4 bytes")));
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if file_len - at - HEADER < len {
        return Ok(Some(Record::Corrupt));
    }
    let mut payload = vec![0u8; len as usize];
    reader.read_exact(&mut payload).await?;
    if crc32fast::hash(&payload) != crc {
        return Ok(Some(Record::Corrupt));
    }
    Ok(Some(Record::Valid {
        end: at + HEADER + len,
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
