//! Standard Webhooks signatures: the secret (`whsec_` + base64) and the
//! three headers of a signed request.
//!
//! The signed content is `{webhook-id}.{webhook-timestamp}.{body}`, its
//! HMAC-SHA256 under the decoded secret is sent base64-encoded after `v1,`.
//! Any Standard Webhooks library verifies it (docs/webhooks.md).
//!
//! ```
//! use activity_processor::webhook::WebhookSecret;
//!
//! let secret: WebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse()?;
//! let headers = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
//! assert_eq!(headers.signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
//! assert_eq!(headers.timestamp, "1614265330");
//! # Ok::<(), activity_processor::webhook::WebhookConfigError>(())
//! ```

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::WebhookConfigError;

/// What every Standard Webhooks secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";
/// Fewest bytes a decoded secret may have: the Standard Webhooks
/// specification asks for 24 to 64 random bytes, and a short key is a
/// guessable one.
pub const MIN_SECRET_BYTES: usize = 24;

/// Standard base64 that reads a secret with or without its `=` padding,
/// as the reference libraries do.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The signing key of `ALERT_WEBHOOK_SECRET`: the bytes the base64 after
/// `whsec_` decodes to. Never printed (`Debug` shows `***`).
#[derive(Clone)]
pub struct WebhookSecret {
    /// The decoded key the HMAC is made with.
    key: Vec<u8>,
}

/// The headers that sign one request, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `webhook-id`: the delivery's id, the same on every attempt.
    pub id: String,
    /// `webhook-timestamp`: when this attempt was signed, Unix seconds.
    pub timestamp: String,
    /// `webhook-signature`: `v1,` and the base64 of the HMAC-SHA256.
    pub signature: String,
}

impl WebhookSecret {
    /// Reads `whsec_<base64>` (padding optional); the error says what is
    /// wrong with `ALERT_WEBHOOK_SECRET` without repeating its value.
    pub fn parse(text: &str) -> Result<Self, WebhookConfigError> {
        let text = text.trim();
        let Some(encoded) = text.strip_prefix(SECRET_PREFIX) else {
            return Err(WebhookConfigError::Secret {
                reason: format!("it must start with `{SECRET_PREFIX}`, then base64"),
            });
        };
        let key = SECRET_BASE64
            .decode(encoded)
            .map_err(|e| WebhookConfigError::Secret {
                reason: format!("what follows `{SECRET_PREFIX}` is not standard base64 ({e})"),
            })?;
        if key.len() < MIN_SECRET_BYTES {
            return Err(WebhookConfigError::Secret {
                reason: format!(
                    "it decodes to {} bytes, fewer than {MIN_SECRET_BYTES}",
                    key.len()
                ),
            });
        }
        Ok(Self { key })
    }

    /// The headers of a request with this `id`, signed at `timestamp`
    /// (Unix seconds) over exactly these `body` bytes.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> SignedHeaders {
        let timestamp = timestamp.to_string();
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        let signature = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        SignedHeaders {
            id: id.to_owned(),
            timestamp,
            signature,
        }
    }
}

impl std::str::FromStr for WebhookSecret {
    type Err = WebhookConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of the Standard Webhooks specification (and of its
    /// reference libraries' tests).
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_like_the_specification_vector() {
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        let headers = secret.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY);
        assert_eq!(
            headers,
            SignedHeaders {
                id: SPEC_ID.into(),
                timestamp: "1614265330".into(),
                signature: SPEC_SIGNATURE.into(),
            }
        );
    }

    #[test]
    fn every_signed_part_changes_the_signature() {
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        let other_id = secret.sign("msg_other", SPEC_TIMESTAMP, SPEC_BODY);
        let other_time = secret.sign(SPEC_ID, SPEC_TIMESTAMP + 1, SPEC_BODY);
        let other_body = secret.sign(SPEC_ID, SPEC_TIMESTAMP, br#"{"test": 2432232315}"#);
        for headers in [other_id, other_time, other_body] {
            assert_ne!(headers.signature, SPEC_SIGNATURE);
        }
    }

    #[test]
    fn padding_is_optional() {
        // 24 bytes encode without padding; 25 bytes need `==`.
        let padded = format!("{SECRET_PREFIX}{}", STANDARD.encode([7u8; 25]));
        assert!(padded.ends_with("=="));
        let unpadded = padded.trim_end_matches('=');
        let a = WebhookSecret::parse(&padded).unwrap().sign("id", 1, b"{}");
        let b = WebhookSecret::parse(unpadded).unwrap().sign("id", 1, b"{}");
        assert_eq!(a, b);
    }

    #[test]
    fn malformed_secrets_are_refused_naming_the_variable() {
        let cases = [
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "must start with `whsec_`",
            ),
            ("whsec_not base64!", "not standard base64"),
            ("whsec_c2hvcnQ=", "decodes to 5 bytes, fewer than 24"),
            ("whsec_", "decodes to 0 bytes"),
        ];
        for (text, expected) in cases {
            let message = WebhookSecret::parse(text).unwrap_err().to_string();
            assert!(message.contains("ALERT_WEBHOOK_SECRET"), "{message}");
            assert!(message.contains(expected), "{text}: {message}");
            // The value itself is never repeated in the message.
            assert!(
                text.len() <= SECRET_PREFIX.len() || !message.contains(text),
                "{message}"
            );
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        assert_eq!(format!("{secret:?}"), "WebhookSecret(***)");
    }
}
