//! The write keys (`INGEST_WRITE_KEYS`) and how a request presents one, as
//! the Segment SDKs send it: HTTP Basic with the key as the user name and
//! an empty password, or `writeKey` in the body.
//!
//! ```
//! use activity_processor::ingest::WriteKeys;
//!
//! let keys = WriteKeys::parse("web=k-web-1,web=k-web-2,k-bare").unwrap();
//! assert_eq!(keys.source_of("k-web-2"), Some("web"));
//! assert_eq!(keys.source_of("k-bare"), Some("default"));
//! assert_eq!(keys.source_of("k-web"), None);
//! ```

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The source name of a bare key.
pub const DEFAULT_SOURCE: &str = "default";

/// One accepted key.
#[derive(Clone)]
struct WriteKey {
    /// The source's name, recorded as `details.source`.
    source: String,
    /// SHA-256 of the key: compared in constant time at a fixed length,
    /// so neither the contents nor the length of a key leak through
    /// timing.
    digest: [u8; 32],
}

/// The accepted write keys. Its `Debug` never shows a key.
#[derive(Clone, Default)]
pub struct WriteKeys {
    keys: Vec<WriteKey>,
}

impl std::fmt::Debug for WriteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteKeys")
            .field("sources", &self.sources())
            .finish()
    }
}

/// Why `INGEST_WRITE_KEYS` cannot work (never shows a key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteKeysError {
    /// No key at all.
    #[error("INGEST_WRITE_KEYS holds no key; give name=key pairs or unset it")]
    Empty,
    /// `name=` or `=key`.
    #[error("INGEST_WRITE_KEYS entry {0} has an empty name or key; write name=key")]
    EmptyPart(usize),
    /// One key given to two sources.
    #[error("INGEST_WRITE_KEYS gives one key to two sources ({0} and {1}); a key names one source")]
    SharedKey(String, String),
}

impl WriteKeys {
    /// From `name=key,...`; a bare key is the source `default`. One source
    /// may have several keys (to rotate one without changing the source's
    /// ids, made of its name).
    pub fn parse(list: &str) -> Result<Self, WriteKeysError> {
        let mut keys: Vec<WriteKey> = Vec::new();
        for (i, entry) in list.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let (source, key) = match entry.split_once('=') {
                Some((name, key)) => (name.trim(), key.trim()),
                None => (DEFAULT_SOURCE, entry),
            };
            if source.is_empty() || key.is_empty() {
                return Err(WriteKeysError::EmptyPart(i + 1));
            }
            let digest = digest(key.as_bytes());
            if let Some(other) = keys
                .iter()
                .find(|k| k.digest == digest && k.source != source)
            {
                return Err(WriteKeysError::SharedKey(
                    other.source.clone(),
                    source.to_owned(),
                ));
            }
            keys.push(WriteKey {
                source: source.to_owned(),
                digest,
            });
        }
        if keys.is_empty() {
            return Err(WriteKeysError::Empty);
        }
        Ok(WriteKeys { keys })
    }

    /// The source names, each once.
    pub fn sources(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.keys.iter().map(|k| k.source.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The source `key` belongs to. Every configured key is compared,
    /// whichever matches, so the time taken does not tell which did.
    pub fn source_of(&self, key: &str) -> Option<&str> {
        let presented = digest(key.as_bytes());
        let mut found = None;
        for k in &self.keys {
            if bool::from(k.digest.ct_eq(&presented)) {
                found = found.or(Some(k.source.as_str()));
            }
        }
        found
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The key of an `Authorization: Basic` header: the user name, the
/// password ignored (the SDKs send it empty). `None` for another scheme
/// or a value that does not decode.
pub(crate) fn basic_user(header: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let user = decoded.split_once(':').map_or(decoded.as_str(), |(u, _)| u);
    Some(user.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_mistakes_are_named_without_the_key() {
        let keys = WriteKeys::parse(" web = a1 , mobile=b2,").unwrap();
        assert_eq!(keys.sources(), ["mobile", "web"]);
        assert_eq!(keys.source_of("a1"), Some("web"));
        assert_eq!(keys.source_of("b2"), Some("mobile"));
        assert_eq!(keys.source_of("a"), None);
        assert_eq!(keys.source_of("a1a1"), None);
        assert_eq!(keys.source_of(""), None);
        assert_eq!(WriteKeys::parse(" , ").unwrap_err(), WriteKeysError::Empty);
        assert_eq!(
            WriteKeys::parse("web=").unwrap_err(),
            WriteKeysError::EmptyPart(1)
        );
        let error = WriteKeys::parse("web=secret-x,app=secret-x").unwrap_err();
        assert!(!error.to_string().contains("secret-x"), "{error}");
        assert!(!format!("{keys:?}").contains("a1"));
    }

    #[test]
    fn basic_headers() {
        // base64("k1:")
        assert_eq!(basic_user(b"Basic azE6").as_deref(), Some("k1"));
        // base64("k1"), no colon
        assert_eq!(basic_user(b"basic azE=").as_deref(), Some("k1"));
        assert_eq!(basic_user(b"Bearer azE6"), None);
        assert_eq!(basic_user(b"Basic !!!"), None);
    }
}
