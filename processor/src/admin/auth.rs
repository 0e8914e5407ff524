//! Bearer authentication of the admin API: static tokens (`ADMIN_TOKENS`,
//! compared in constant time) or HS256 JWTs signed with `ADMIN_JWT_SECRET`
//! whose `role` is `admin`.
//!
//! A JWT must carry `exp`; it is refused before its `nbf`, after its
//! `exp` (no leeway), and when it lives longer than `ADMIN_JWT_MAX_TTL`:
//! `exp` more than that after its `iat`, or after now when it has no
//! `iat` or an `iat` in the future (so a token cannot claim a long life
//! by leaving `iat` out or dating it ahead).

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use subtle::ConstantTimeEq;

use super::AdminState;
use super::error::ApiError;

/// The role of the admin endpoints (static tokens in `ADMIN_TOKENS`, or a
/// JWT's `role`).
pub const ADMIN_ROLE: &str = "admin";
/// The role of erasure and export (static tokens in `ADMIN_PRIVACY_TOKENS`,
/// or a JWT's `role`).
pub const PRIVACY_ROLE: &str = "privacy";

/// What a route demands of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything but erasure and export.
    Admin,
    /// Erasure and export only.
    Privacy,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Admin => ADMIN_ROLE,
            Role::Privacy => PRIVACY_ROLE,
        }
    }
}

/// Who called, as the audit records name them: a static token's name
/// (`name=token`, or `admin#N` / `privacy#N` for the N-th bare token of
/// its list), or a JWT's `sub`. Put in the request's extensions for the
/// handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The name.
    pub name: String,
    admin: bool,
    privacy: bool,
}

impl Caller {
    /// Whether it has `role`.
    pub fn has(&self, role: Role) -> bool {
        match role {
            Role::Admin => self.admin,
            Role::Privacy => self.privacy,
        }
    }
}

/// One static token.
#[derive(Clone)]
struct StaticToken {
    name: String,
    /// Bytes, for the constant-time compare.
    secret: Vec<u8>,
    role: Role,
}

/// Who may call the admin API. Its `Debug` never shows a token or the secret.
#[derive(Clone)]
pub struct AdminAuth {
    /// The accepted static tokens, of both roles.
    tokens: Vec<StaticToken>,
    /// The HS256 key, when a JWT secret is configured.
    jwt: Option<DecodingKey>,
    /// The longest life a JWT may claim (`ADMIN_JWT_MAX_TTL`).
    max_ttl: Duration,
}

impl Default for AdminAuth {
    fn default() -> Self {
        AdminAuth {
            tokens: Vec::new(),
            jwt: None,
            max_ttl: DEFAULT_JWT_MAX_TTL,
        }
    }
}

/// Default of `ADMIN_JWT_MAX_TTL`: 24 hours.
pub const DEFAULT_JWT_MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth")
            .field("static_tokens", &self.tokens.len())
            .field("jwt", &self.jwt.is_some())
            .field("max_ttl", &self.max_ttl)
            .finish()
    }
}

/// The entries of a token list: `name=token` or a bare token, named
/// `<role>#<position>`; blanks ignored. A bare token holding `=` (base64
/// padding) is read whole when what follows the first `=` starts with `=`
/// or is empty; give it a name otherwise.
fn parse_tokens(list: Option<&str>, role: Role) -> Vec<StaticToken> {
    list.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .enumerate()
        .map(|(i, entry)| {
            let (name, secret) = match entry.split_once('=') {
                Some((name, secret))
                    if !name.trim().is_empty()
                        && !secret.trim().is_empty()
                        && !secret.starts_with('=') =>
                {
                    (name.trim().to_owned(), secret.trim())
                }
                _ => (format!("{}#{}", role.name(), i + 1), entry),
            };
            StaticToken {
                name,
                secret: secret.as_bytes().to_vec(),
                role,
            }
        })
        .collect()
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
    #[serde(default)]
    sub: Option<String>,
    /// Checked by the decoder too; read again for the lifetime bound.
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
}

/// The outcome of checking a request's credentials.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Accepted(Caller),
    /// A valid JWT whose role is neither.
    NoRole,
    Expired,
    /// Before its `nbf`.
    NotYetValid,
    /// Its `exp` is further away than `ADMIN_JWT_MAX_TTL` allows.
    TooLong,
    Invalid,
}

impl AdminAuth {
    /// From `ADMIN_TOKENS` (comma-separated `name=token` or bare tokens;
    /// blanks ignored) and `ADMIN_JWT_SECRET` (an empty secret counts as
    /// unset).
    pub fn new(admin_tokens: Option<&str>, jwt_secret: Option<&str>) -> Self {
        let tokens = parse_tokens(admin_tokens, Role::Admin);
        let jwt = jwt_secret
            .filter(|s| !s.is_empty())
            .map(|s| DecodingKey::from_secret(s.as_bytes()));
        Self {
            tokens,
            jwt,
            max_ttl: DEFAULT_JWT_MAX_TTL,
        }
    }

    /// Sets the longest life a JWT may claim (`ADMIN_JWT_MAX_TTL`).
    pub fn with_max_ttl(mut self, max_ttl: Duration) -> Self {
        self.max_ttl = max_ttl;
        self
    }

    /// Adds the privacy role's static tokens (`ADMIN_PRIVACY_TOKENS`, the
    /// same syntax as `ADMIN_TOKENS`).
    pub fn with_privacy_tokens(mut self, privacy_tokens: Option<&str>) -> Self {
        self.tokens
            .extend(parse_tokens(privacy_tokens, Role::Privacy));
        self
    }

    /// From the `ADMIN_TOKENS`, `ADMIN_PRIVACY_TOKENS` and
    /// `ADMIN_JWT_SECRET` settings.
    pub fn from_secrets(
        admin_tokens: Option<&Secret>,
        privacy_tokens: Option<&Secret>,
        jwt_secret: Option<&Secret>,
    ) -> Self {
        Self::new(
            admin_tokens.map(Secret::expose),
            jwt_secret.map(Secret::expose),
        )
        .with_privacy_tokens(privacy_tokens.map(Secret::expose))
    }

    /// Whether any credential is accepted at all.
    pub fn is_configured(&self) -> bool {
        !self.tokens.is_empty() || self.jwt.is_some()
    }

    /// Logs a warning at start-up when every admin request will be refused.
    pub fn warn_if_unconfigured(&self) {
        if !self.is_configured() {
            tracing::warn!(
                "none of ADMIN_TOKENS, ADMIN_PRIVACY_TOKENS and ADMIN_JWT_SECRET is set: the admin API refuses every request"
            );
        }
    }

    fn verdict(&self, token: &str) -> Verdict {
        // Every configured token is compared, whatever matched, so the time
        // taken does not tell which one (or how much of one) matched.
        let mut caller: Option<Caller> = None;
        for t in &self.tokens {
            if bool::from(t.secret.as_slice().ct_eq(token.as_bytes())) {
                let caller = caller.get_or_insert_with(|| Caller {
                    name: t.name.clone(),
                    admin: false,
                    privacy: false,
                });
                match t.role {
                    Role::Admin => caller.admin = true,
                    Role::Privacy => caller.privacy = true,
                }
            }
        }
        if let Some(caller) = caller {
            return Verdict::Accepted(caller);
        }
        let Some(key) = &self.jwt else {
            return Verdict::Invalid;
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.leeway = 0;
        validation.validate_nbf = true;
        match jsonwebtoken::decode::<Claims>(token, key, &validation) {
            Ok(data) => {
                if !self.lifetime_allowed(&data.claims) {
                    return Verdict::TooLong;
                }
                let role = data.claims.role.as_deref();
                let (admin, privacy) = (role == Some(ADMIN_ROLE), role == Some(PRIVACY_ROLE));
                if !admin && !privacy {
                    return Verdict::NoRole;
                }
                Verdict::Accepted(Caller {
                    name: data.claims.sub.unwrap_or_else(|| "jwt".to_owned()),
                    admin,
                    privacy,
                })
            }
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Verdict::Expired,
            Err(e) if matches!(e.kind(), ErrorKind::ImmatureSignature) => Verdict::NotYetValid,
            Err(_) => Verdict::Invalid,
        }
    }

    /// Whether `exp` lies within `max_ttl` of the token's start: its `iat`,
    /// or now when it has none or one in the future.
    fn lifetime_allowed(&self, claims: &Claims) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let start = claims.iat.map_or(now, |iat| iat.min(now));
        claims.exp.saturating_sub(start) <= self.max_ttl.as_secs()
    }
}

/// Middleware: lets the request through with credentials of `role`, the
/// [`Caller`] in its extensions.
pub(super) async fn require(
    State((state, role)): State<(AdminState, Role)>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let auth = &state.auth;
    if !auth.is_configured() {
        return Err(ApiError::unauthorized(
            "admin_api_disabled",
            "the admin API is disabled: set ADMIN_TOKENS, ADMIN_PRIVACY_TOKENS or ADMIN_JWT_SECRET",
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
        Verdict::Accepted(caller) if caller.has(role) => {
            request.extensions_mut().insert(caller);
            Ok(next.run(request).await)
        }
        Verdict::Accepted(_) | Verdict::NoRole => Err(ApiError::forbidden(format!(
            "the token is valid but its role is not {}",
            role.name()
        ))),
        Verdict::Expired => Err(ApiError::unauthorized(
            "token_expired",
            "the token has expired",
        )),
        Verdict::NotYetValid => Err(ApiError::unauthorized(
            "token_not_yet_valid",
            "the token is not valid yet (its nbf is in the future)",
        )),
        Verdict::TooLong => Err(ApiError::unauthorized(
            "token_lifetime_too_long",
            "the token's exp is further from its iat (or from now) than ADMIN_JWT_MAX_TTL allows",
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

    fn caller(auth: &AdminAuth, token: &str) -> Caller {
        match auth.verdict(token) {
            Verdict::Accepted(caller) => caller,
            other => panic!("{token}: {other:?}"),
        }
    }

    #[test]
    fn static_tokens_match_exactly() {
        let auth = AdminAuth::new(Some(" a-token ,,b-token"), None);
        assert!(caller(&auth, "a-token").has(Role::Admin));
        assert!(!caller(&auth, "b-token").has(Role::Privacy));
        assert_eq!(auth.verdict("a-toke"), Verdict::Invalid);
        assert_eq!(auth.verdict("a-tokenx"), Verdict::Invalid);
        assert!(!AdminAuth::new(Some(" , "), Some("")).is_configured());
        assert!(
            AdminAuth::new(None, None)
                .with_privacy_tokens(Some("p"))
                .is_configured()
        );
    }

    #[test]
    fn tokens_are_named_and_roles_add_up() {
        let auth = AdminAuth::new(Some("ops=admin-secret, shared, padded=="), None)
            .with_privacy_tokens(Some("dpo=privacy-secret,shared"));
        let ops = caller(&auth, "admin-secret");
        assert_eq!(ops.name, "ops");
        assert!(ops.has(Role::Admin) && !ops.has(Role::Privacy));
        let dpo = caller(&auth, "privacy-secret");
        assert_eq!(dpo.name, "dpo");
        assert!(dpo.has(Role::Privacy) && !dpo.has(Role::Admin));
        let both = caller(&auth, "shared");
        assert_eq!(both.name, "admin#2");
        assert!(both.has(Role::Admin) && both.has(Role::Privacy));
        assert_eq!(caller(&auth, "padded==").name, "admin#3");
        assert_eq!(auth.verdict("ops=admin-secret"), Verdict::Invalid);
    }
}
