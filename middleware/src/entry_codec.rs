//! The `codec` field of a version 2 stream entry: how its `events` field
//! is compressed. Without the field, `events` is the JSON lines as they are;
//! with `codec` = `lz4`, it is those lines as one LZ4 frame (the LZ4 frame
//! format, which every LZ4 library reads and writes: `lz4.frame` in Python,
//! `lz4` on the command line).
//!
//! The tracker compresses when configured to
//! ([`StreamFormat::V2Lz4`](crate::StreamFormat)); the processor
//! decompresses with a bound on the size, so an entry cannot make it hold
//! more than [`MAX_DECOMPRESSED_BYTES`].
//!
//! ```
//! use activity_tracker::EntryCodec;
//!
//! let lines = b"{\"v\":1}\n{\"v\":1}".repeat(100);
//! let codec = EntryCodec::from_name(b"lz4").unwrap();
//! let compressed = codec.compress(&lines);
//! assert!(compressed.len() < lines.len() / 4);
//! assert_eq!(codec.decompress(&compressed).unwrap(), lines);
//! ```

use std::io::{Read as _, Write as _};

use lz4_flex::frame::{BlockMode, BlockSize, FrameDecoder, FrameEncoder, FrameInfo};

/// The most bytes one entry's `events` may decompress to: far above any
/// batch a producer writes (the tracker's are well under a megabyte), and a
/// bound on what one hostile entry makes the processor hold.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;

/// A codec an entry's `codec` field names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryCodec {
    /// `lz4`: the LZ4 frame format.
    Lz4,
}

/// Why an entry's `events` could not be decompressed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Not a valid frame of the codec (or cut short).
    #[error("events is not a valid {codec} frame: {reason}")]
    Invalid {
        /// The codec's name.
        codec: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// Larger than [`MAX_DECOMPRESSED_BYTES`] once decompressed.
    #[error("events decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes")]
    TooLarge,
}

impl EntryCodec {
    /// The codec a `codec` field names, if it is one this crate knows.
    pub fn from_name(name: &[u8]) -> Option<Self> {
        match name {
            b"lz4" => Some(EntryCodec::Lz4),
            _ => None,
        }
    }

    /// The name written in the `codec` field.
    pub fn name(self) -> &'static str {
        match self {
            EntryCodec::Lz4 => "lz4",
        }
    }

    /// `lines` compressed.
    pub fn compress(self, lines: &[u8]) -> Vec<u8> {
        match self {
            EntryCodec::Lz4 => {
                // Linked blocks: a line may repeat what the previous block
                // ended with. The content size lets a reader check the
                // frame is whole.
                let info = FrameInfo::new()
                    .block_size(BlockSize::Max256KB)
                    .block_mode(BlockMode::Linked)
                    .content_size(Some(lines.len() as u64));
                let mut encoder =
                    FrameEncoder::with_frame_info(info, Vec::with_capacity(lines.len() / 3 + 64));
                encoder
                    .write_all(lines)
                    .expect("writing to a Vec cannot fail");
                encoder
                    .finish()
                    .expect("finishing a frame into a Vec cannot fail")
            }
        }
    }

    /// `bytes` decompressed, at most [`MAX_DECOMPRESSED_BYTES`] of them.
    pub fn decompress(self, bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
        match self {
            EntryCodec::Lz4 => {
                if bytes.is_empty() {
                    // An empty field is no frame at all, not an empty one.
                    return Err(CodecError::Invalid {
                        codec: self.name(),
                        reason: "empty".into(),
                    });
                }
                let mut out = Vec::new();
                FrameDecoder::new(bytes)
                    .take(MAX_DECOMPRESSED_BYTES as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(|error| CodecError::Invalid {
                        codec: self.name(),
                        reason: error.to_string(),
                    })?;
                if out.len() > MAX_DECOMPRESSED_BYTES {
                    return Err(CodecError::TooLarge);
                }
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_what_is_not_a_frame() {
        let codec = EntryCodec::Lz4;
        for lines in [&b"x"[..], &b"{\"v\":1}\n".repeat(100_000)] {
            assert_eq!(codec.decompress(&codec.compress(lines)).unwrap(), lines);
        }
        let frame = codec.compress(&b"{\"v\":1}\n".repeat(1000));
        for bad in [&b""[..], b"not lz4", &frame[..frame.len() / 2]] {
            assert!(
                matches!(codec.decompress(bad), Err(CodecError::Invalid { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(EntryCodec::from_name(b"LZ4"), None);
        assert_eq!(EntryCodec::from_name(b"lz4"), Some(EntryCodec::Lz4));
    }

    #[test]
    fn a_frame_past_the_bound_is_refused() {
        let codec = EntryCodec::Lz4;
        // Zeros compress about 250 to 1: a small frame, a large content.
        let bomb = codec.compress(&vec![0u8; MAX_DECOMPRESSED_BYTES + 1]);
        assert!(bomb.len() < MAX_DECOMPRESSED_BYTES / 100);
        assert!(matches!(codec.decompress(&bomb), Err(CodecError::TooLarge)));
    }
}
