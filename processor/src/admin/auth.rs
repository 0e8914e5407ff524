//! Bearer authentication of the admin API: static tokens (`ADMIN_TOKENS`,
//! compared in constant time) or HS256 JWTs signed with `ADMIN_JWT_SECRET`
//! whose `role` is `admin`.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use subtle::ConstantTimeEq;

use super::AdminState;
use super::error::ApiError;

/// The role a JWT must carry.
pub const ADMIN_ROLE: &str = "admin";

/// Who may call the admin API. Its `Debug` never shows a token or the secret.
#[derive(Clone, Default)]
pub struct AdminAuth {
    /// The accepted static tokens (bytes, for the constant-time compare).
    tokens: Vec<Vec<u8>>,
    /// The HS256 key, when a JWT secret is configured.
    jwt: Option<DecodingKey>,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth")
            .field("static_tokens", &self.tokens.len())
            .field("jwt", &self.jwt.is_some())
            .finish()
    }
}

/// A setting that must never be shown (a token list, a signing secret):
/// its `Debug` and `Display` print `***`, so logging a configuration
/// cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

#[derive(Debug, serde::Deserialize)]
struct Claims {
    #[serde(default)]
    role: Option<String>,
}

/// The outcome of checking a request's credentials.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Admin,
    NotAdmin,
    Expired,
    Invalid,
}

impl AdminAuth {
    /// From `ADMIN_TOKENS` (comma-separated; blanks ignored) and
    /// `ADMIN_JWT_SECRET` (an empty secret counts as unset).
    pub fn new(admin_tokens: Option<&str>, jwt_secret: Option<&str>) -> Self {
        let tokens = admin_tokens
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| t.as_bytes().to_vec())
            .collect();
        let jwt = jwt_secret
            .filter(|s| !s.is_empty())
            .map(|s| DecodingKey::from_secret(s.as_bytes()));
        Self { tokens, jwt }
    }

    /// From the `ADMIN_TOKENS` and `ADMIN_JWT_SECRET` settings.
    pub fn from_secrets(admin_tokens: Option<&Secret>, jwt_secret: Option<&Secret>) -> Self {
        Self::new(
            admin_tokens.map(Secret::expose),
            jwt_secret.map(Secret::expose),
        )
    }

    /// Whether any credential is accepted at all.
    pub fn is_configured(&self) -> bool {
        !self.tokens.is_empty() || self.jwt.is_some()
    }

    /// Logs a warning at start-up when every admin request will be refused.
    pub fn warn_if_unconfigured(&self) {
        if !self.is_configured() {
            tracing::warn!(
                "neither ADMIN_TOKENS nor ADMIN_JWT_SECRET is set: the admin API refuses every request"
            );
        }
    }

    fn verdict(&self, token: &str) -> Verdict {
        // Every configured token is compared, whatever matched, so the time
        // taken does not tell which one (or how much of one) matched.
        let mut matched = subtle::Choice::from(0u8);
        for t in &self.tokens {
            matched |= t.as_slice().ct_eq(token.as_bytes());
        }
        if bool::from(matched) {
            return Verdict::Admin;
        }
        let Some(key) = &self.jwt else {
            return Verdict::Invalid;
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.leeway = 0;
        match jsonwebtoken::decode::<Claims>(token, key, &validation) {
            Ok(data) if data.claims.role.as_deref() == Some(ADMIN_ROLE) => Verdict::Admin,
            Ok(_) => Verdict::NotAdmin,
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Verdict::Expired,
            Err(_) => Verdict::Invalid,
        }
    }
}

/// Middleware: lets the request through only with admin credentials.
pub(super) async fn require_admin(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let auth = &state.auth;
    if !auth.is_configured() {
        return Err(ApiError::unauthorized(
            "admin_api_disabled",
            "the admin API is disabled: set ADMIN_TOKENS or ADMIN_JWT_SECRET",
        ));
    }
    let Some(header) = request.headers().get(AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "missing_token",
            "send Authorization: Bearer <token>",
        ));
    };
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty());
    let Some(token) = token else {
        return Err(ApiError::unauthorized(
            "invalid_token",
            "the Authorization header must be: Bearer <token>",
        ));
    };
    match auth.verdict(token) {
        Verdict::Admin => Ok(next.run(request).await),
        Verdict::NotAdmin => Err(ApiError::forbidden(
            "the token is valid but its role is not admin",
        )),
        Verdict::Expired => Err(ApiError::unauthorized(
            "token_expired",
            "the token has expired",
        )),
        Verdict::Invalid => Err(ApiError::unauthorized(
            "invalid_token",
            "the token is not accepted",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_secret() {
        let auth = AdminAuth::new(Some("s3cret-token, other"), Some("jwt-secret-value"));
        let shown = format!("{auth:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("jwt-secret"));
        assert!(shown.contains("static_tokens: 2"));
    }

    #[test]
    fn static_tokens_match_exactly() {
        let auth = AdminAuth::new(Some(" a-token ,,b-token"), None);
        assert_eq!(auth.verdict("a-token"), Verdict::Admin);
        assert_eq!(auth.verdict("b-token"), Verdict::Admin);
        assert_eq!(auth.verdict("a-toke"), Verdict::Invalid);
        assert_eq!(auth.verdict("a-tokenx"), Verdict::Invalid);
        assert!(!AdminAuth::new(Some(" , "), Some("")).is_configured());
    }
}
