//! What to capture: the route table, the trusted proxies, where the
//! session id is, whether errors are recorded; and the mistakes made while
//! saying so, reported by [`CaptureConfig::validate`].

use std::sync::Arc;

use http::{HeaderName, Method};

#[cfg(doc)]
use super::ActivityEnrichment;
use super::captured::ClientResolver;
use super::routes::RouteTable;
use crate::{ActivityType, IpTruncation, IpTruncationError};

/// Why a [`CaptureConfig`] is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureConfigError {
    /// `matchit` refused the pattern (syntax, or a conflict with another
    /// pattern of the table).
    #[error("invalid route pattern `{pattern}`: {reason}")]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The same method and pattern were mapped twice.
    #[error("route {method} {pattern} is mapped twice")]
    Duplicate {
        /// The method.
        method: Method,
        /// The pattern.
        pattern: String,
    },
    /// `resource(...)` came before any `route(...)`.
    #[error("`resource({kind:?}, {param:?})` must follow a `route(...)`")]
    ResourceWithoutRoute {
        /// The resource type given.
        kind: String,
        /// The parameter given.
        param: String,
    },
    /// The last route's pattern has no such path parameter.
    #[error("route pattern `{pattern}` has no path parameter `{param}` for the resource id")]
    NoSuchParam {
        /// The pattern of the last route.
        pattern: String,
        /// The parameter asked for.
        param: String,
    },
    /// A trusted proxy that is neither a CIDR nor an IP address.
    #[error(
        "invalid trusted proxy `{value}` (expected a CIDR such as 10.0.0.0/8 or an IP): {reason}"
    )]
    InvalidProxy {
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A session header name that is not a valid HTTP header name.
    #[error("invalid session header name `{0}`")]
    InvalidHeaderName(String),
    /// An empty session cookie name.
    #[error("the session cookie name is empty")]
    EmptyCookieName,
    /// An IP truncation prefix longer than the address.
    #[error(transparent)]
    IpTruncation(#[from] IpTruncationError),
}

/// How requests map to activities and where client facts come from.
///
/// Builder-style: every method takes and returns the config. Mistakes
/// (a bad pattern, a bad CIDR) are collected and reported by
/// [`CaptureConfig::validate`], which the tracker's `build()` calls, so a
/// chain of calls never needs a `?` in the middle.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Method + pattern → action (and resource), looked up per request.
    pub(super) routes: RouteTable,
    /// The trusted proxies and the session cookie's name: read on the
    /// request path to know what to keep, and handed to the dispatcher
    /// (as a copy) to turn what was kept into the client IP and session.
    pub(super) client: ClientResolver,
    /// The header a session id may come in when there is no cookie.
    pub(super) session_header: Option<HeaderName>,
    /// Whether 4xx/5xx responses are recorded.
    pub(super) record_errors: bool,
    /// Mistakes made while building, reported by `validate`.
    errors: Vec<CaptureConfigError>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            routes: RouteTable::default(),
            client: ClientResolver::default(),
            session_header: None,
            record_errors: true,
            errors: Vec::new(),
        }
    }
}

impl CaptureConfig {
    /// No route mapped, no trusted proxy, no session source, 4xx/5xx
    /// recorded.
    pub fn new() -> Self {
        CaptureConfig::default()
    }

    /// Records `action` for requests with this method whose route matches
    /// `pattern` (axum/matchit syntax: `/api/v1/cases/{id}`,
    /// `/files/{*path}`). Inside an axum `Router` the pattern must be
    /// written as the route is (it is compared with axum's `MatchedPath`).
    /// Methods are matched exactly: a `HEAD` that axum serves with a `GET`
    /// handler is not recorded unless `HEAD` is mapped too.
    pub fn route(mut self, method: Method, pattern: &str, action: ActivityType) -> Self {
        if let Err(error) = self.routes.insert(method, pattern, action) {
            self.errors.push(error);
        }
        self
    }

    /// Names the resource of the route added last: `resource_type` is
    /// `kind` and `resource_id` the value of the path parameter `param`
    /// (percent-decoded).
    pub fn resource(mut self, kind: &str, param: &str) -> Self {
        if let Err(error) = self.routes.resource(kind, param) {
            self.errors.push(error);
        }
        self
    }

    /// Peers whose proxy headers (`Forwarded`, `X-Forwarded-For`,
    /// `X-Real-IP`) are believed: CIDRs (`10.0.0.0/8`, `fd00::/8`) or
    /// single addresses. Adds to the ones given before.
    pub fn trusted_proxies<I>(mut self, proxies: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        for proxy in proxies {
            if let Err(error) = self.client.trusted.add(proxy.as_ref()) {
                self.errors.push(error);
            }
        }
        self
    }

    /// Keeps only the network of each client address: its first
    /// `v4_prefix` bits for IPv4 (an IPv4-mapped IPv6 address counts as
    /// IPv4), `v6_prefix` bits for IPv6; `ip_truncation(24, 48)` stores the
    /// /24 and the /48 (default: the whole address). Applied on the
    /// dispatcher's thread, after the trusted proxies are resolved.
    pub fn ip_truncation(mut self, v4_prefix: u8, v6_prefix: u8) -> Self {
        match IpTruncation::new(v4_prefix, v6_prefix) {
            Ok(cut) => self.client.ip_truncation = Some(cut),
            Err(error) => self.errors.push(error.into()),
        }
        self
    }

    /// Reads the session id from this cookie.
    pub fn session_cookie(mut self, name: &str) -> Self {
        if name.trim().is_empty() {
            self.errors.push(CaptureConfigError::EmptyCookieName);
        } else {
            self.client.session_cookie = Some(Arc::from(name.trim()));
        }
        self
    }

    /// Reads the session id from this header (when no session cookie is
    /// configured or the request has none).
    pub fn session_header(mut self, name: &str) -> Self {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(header) => self.session_header = Some(header),
            Err(_) => self
                .errors
                .push(CaptureConfigError::InvalidHeaderName(name.to_owned())),
        }
        self
    }

    /// Whether responses with a 4xx or 5xx status are recorded (default:
    /// yes; the `status` detail says what happened). When not, they are
    /// skipped even if the handler attached an [`ActivityEnrichment`].
    pub fn record_errors(mut self, record: bool) -> Self {
        self.record_errors = record;
        self
    }

    /// The first mistake made while building this config, if any.
    pub fn validate(&self) -> Result<(), CaptureConfigError> {
        match self.errors.first() {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// Whether no route is mapped (the layer then records nothing).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// What writing a captured request's line needs besides its facts:
    /// the trusted proxies, the session cookie's name, the IP truncation.
    pub(crate) fn client_resolver(&self) -> &ClientResolver {
        &self.client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_mistakes_are_clear_errors() {
        let error = CaptureConfig::new()
            .trusted_proxies(["10.0.0.0/8", "10.0.0.0/40"])
            .validate()
            .unwrap_err();
        assert!(matches!(error, CaptureConfigError::InvalidProxy { .. }));
        assert!(error.to_string().contains("10.0.0.0/40"), "{error}");

        let error = CaptureConfig::new()
            .session_header("bad header")
            .validate()
            .unwrap_err();
        assert_eq!(
            error,
            CaptureConfigError::InvalidHeaderName("bad header".into())
        );
        assert!(matches!(
            CaptureConfig::new().session_cookie(" ").validate(),
            Err(CaptureConfigError::EmptyCookieName)
        ));
        assert!(matches!(
            CaptureConfig::new()
                .route(Method::GET, "/a/{", ActivityType::Login)
                .validate(),
            Err(CaptureConfigError::Pattern { .. })
        ));
        assert!(crate::capture::tests::config().validate().is_ok());
        assert!(CaptureConfig::default().is_empty());
    }
}
