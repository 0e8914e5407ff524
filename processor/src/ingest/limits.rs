//! The size limits of an ingest request, the same as Segment's, and the
//! body read within them: the bytes as sent, then, for `Content-Encoding:
//! gzip`, the bytes decompressed, each bounded, so a small gzip body that
//! inflates to gigabytes (a decompression bomb) stops at the limit.

use std::io::Read;

use axum::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt;

/// The largest request body, decompressed or not (Segment's 500 KB).
pub const MAX_REQUEST_BYTES: usize = 500 * 1024;
/// The largest event, its JSON as sent (Segment's 32 KB).
pub const MAX_EVENT_BYTES: usize = 32 * 1024;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// Over [`MAX_REQUEST_BYTES`], as sent or decompressed.
    #[error("the request body is over {MAX_REQUEST_BYTES} bytes{}", if *.decompressed { " once decompressed" } else { "" })]
    TooLarge {
        /// Whether the limit was reached while decompressing.
        decompressed: bool,
    },
    /// A `Content-Encoding` other than gzip or identity.
    #[error("Content-Encoding {0:?} is not accepted; send gzip or no encoding")]
    Encoding(String),
    /// The gzip stream is broken.
    #[error("the gzip body cannot be decompressed: {0}")]
    Gzip(#[source] std::io::Error),
    /// The connection failed while the body was read.
    #[error("the request body could not be read: {0}")]
    Read(String),
}

/// The body's encoding, from its `Content-Encoding` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Identity,
    Gzip,
}

impl Encoding {
    /// The encoding a `Content-Encoding` value names.
    pub(crate) fn from_header(value: Option<&[u8]>) -> Result<Self, BodyError> {
        let Some(value) = value else {
            return Ok(Encoding::Identity);
        };
        let text = String::from_utf8_lossy(value);
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(Encoding::Identity),
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            _ => Err(BodyError::Encoding(text.into_owned())),
        }
    }
}

/// Reads `body` whole, within [`MAX_REQUEST_BYTES`] as sent and, when
/// gzip, decompressed.
pub(crate) async fn read_body(body: Body, encoding: Encoding) -> Result<Bytes, BodyError> {
    let limited = http_body_util::Limited::new(body, MAX_REQUEST_BYTES);
    let sent = match limited.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(BodyError::TooLarge {
                decompressed: false,
            });
        }
        Err(e) => return Err(BodyError::Read(e.to_string())),
    };
    match encoding {
        Encoding::Identity => Ok(sent),
        Encoding::Gzip => gunzip(&sent).map(Bytes::from),
    }
}

/// Decompresses `compressed` (one or more gzip members), reading at most
/// one byte past the limit: what is held never exceeds it.
fn gunzip(compressed: &[u8]) -> Result<Vec<u8>, BodyError> {
    let decoder = flate2::read::MultiGzDecoder::new(compressed);
    let mut out = Vec::with_capacity((compressed.len() * 4).min(MAX_REQUEST_BYTES + 1));
    decoder
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(BodyError::Gzip)?;
    if out.len() > MAX_REQUEST_BYTES {
        return Err(BodyError::TooLarge { decompressed: true });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[tokio::test]
    async fn gzip_is_decompressed_and_a_bomb_stops_at_the_limit() {
        let text = br#"{"batch":[]}"#;
        let body = Body::from(gzip(text));
        assert_eq!(&read_body(body, Encoding::Gzip).await.unwrap()[..], text);

        let bomb = gzip(&vec![b' '; 50 * 1024 * 1024]);
        assert!(bomb.len() < MAX_REQUEST_BYTES);
        let error = read_body(Body::from(bomb), Encoding::Gzip)
            .await
            .unwrap_err();
        assert!(matches!(error, BodyError::TooLarge { decompressed: true }));

        let exact = vec![b' '; MAX_REQUEST_BYTES];
        assert_eq!(
            read_body(Body::from(gzip(&exact)), Encoding::Gzip)
                .await
                .unwrap()
                .len(),
            MAX_REQUEST_BYTES
        );
        let error = read_body(
            Body::from(vec![b' '; MAX_REQUEST_BYTES + 1]),
            Encoding::Identity,
        )
        .await
        .unwrap_err();
        assert!(matches!(
            error,
            BodyError::TooLarge {
                decompressed: false
            }
        ));
        assert!(matches!(
            read_body(Body::from(&b"not gzip"[..]), Encoding::Gzip).await,
            Err(BodyError::Gzip(_))
        ));
    }

    #[test]
    fn encodings() {
        assert_eq!(Encoding::from_header(None).unwrap(), Encoding::Identity);
        assert_eq!(
            Encoding::from_header(Some(b"GZIP")).unwrap(),
            Encoding::Gzip
        );
        assert!(Encoding::from_header(Some(b"br")).is_err());
    }
}
