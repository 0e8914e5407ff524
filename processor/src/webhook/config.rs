//! The webhook settings (`ALERT_WEBHOOK_URLS`, `ALERT_WEBHOOK_SECRET`,
//! `ALERT_WEBHOOK_RETRY_HOURS`, `ALERT_LINK_BASE_URL`) checked into a
//! [`WebhookConfig`], and the TLS settings of the client it sends with.
//!
//! ```
//! use activity_processor::webhook::{WebhookConfig, WebhookSettings};
//!
//! let settings = WebhookSettings {
//!     urls: Some("https://hooks.example.com/alerts, http://10.0.0.7:9000/in"),
//!     secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
//!     retry_hours: 24,
//!     link_base_url: None,
//!     admin_listen: "127.0.0.1:8080".parse()?,
//! };
//! let config = WebhookConfig::from_settings(&settings)?.expect("URLs are set");
//! assert_eq!(config.urls.len(), 2);
//! assert_eq!(config.link_base_url, "http://127.0.0.1:8080");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::Uri;
use hyper_rustls::ConfigBuilderExt;

use super::WebhookSecret;

/// Default of [`WebhookConfig::retry_for`]: `ALERT_WEBHOOK_RETRY_HOURS`.
pub const DEFAULT_RETRY_HOURS: u32 = 24;
/// Default of [`WebhookConfig::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`WebhookConfig::backoff_initial`].
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(5);
/// Default of [`WebhookConfig::backoff_max`].
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(3600);
/// Default of [`WebhookConfig::poll_interval`].
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Default of [`WebhookConfig::max_in_flight`].
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;
/// How much longer than the request timeout a claimed delivery stays
/// leased: time to read the alert and record the outcome.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// A webhook setting that cannot work; each names the variable and says
/// what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookConfigError {
    /// An entry of `ALERT_WEBHOOK_URLS` is not an absolute http(s) URL.
    #[error(
        "ALERT_WEBHOOK_URLS entry {url:?} {reason}; give comma-separated absolute URLs such as https://hooks.example.com/alerts"
    )]
    Url {
        /// The entry as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// URLs without a secret: deliveries are always signed.
    #[error(
        "ALERT_WEBHOOK_URLS is set but ALERT_WEBHOOK_SECRET is not: webhook deliveries are always signed; set ALERT_WEBHOOK_SECRET to whsec_ followed by the base64 of at least 24 random bytes (e.g. whsec_$(openssl rand -base64 32))"
    )]
    MissingSecret,
    /// `ALERT_WEBHOOK_SECRET` does not parse.
    #[error(
        "ALERT_WEBHOOK_SECRET is not a webhook secret: {reason}; use whsec_ followed by the base64 of at least 24 random bytes (e.g. whsec_$(openssl rand -base64 32))"
    )]
    Secret {
        /// What is wrong with it (never the value).
        reason: String,
    },
    /// `ALERT_LINK_BASE_URL` is not an absolute http(s) URL.
    #[error(
        "ALERT_LINK_BASE_URL {url:?} {reason}; give the admin API's address as receivers reach it, e.g. https://admin.example.com"
    )]
    LinkBaseUrl {
        /// The value as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An https URL is configured and the system has no trusted roots.
    #[error(
        "ALERT_WEBHOOK_URLS has https URLs but no trusted root certificates could be loaded ({reason}); install the system's CA certificates (ca-certificates) or point SSL_CERT_FILE at a PEM bundle"
    )]
    NoTrustedRoots {
        /// What loading the system's certificates said.
        reason: String,
    },
}

/// The webhook settings as the command line gives them, before checking.
#[derive(Debug, Clone, Copy)]
pub struct WebhookSettings<'a> {
    /// `ALERT_WEBHOOK_URLS`: comma-separated; unset or blank, no webhooks.
    pub urls: Option<&'a str>,
    /// `ALERT_WEBHOOK_SECRET`: `whsec_` + base64; required with URLs.
    pub secret: Option<&'a str>,
    /// `ALERT_WEBHOOK_RETRY_HOURS`.
    pub retry_hours: u32,
    /// `ALERT_LINK_BASE_URL`; unset, `http://` + `admin_listen`.
    pub link_base_url: Option<&'a str>,
    /// The address the admin API listens on (the bound one, when
    /// `ADMIN_LISTEN` asked for port 0).
    pub admin_listen: SocketAddr,
}

/// How alerts are delivered: where, signed with what, for how long, and
/// the delivery worker's pacing. Made by [`WebhookConfig::from_settings`]
/// or [`WebhookConfig::new`]; the pacing fields may be changed after.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// `ALERT_WEBHOOK_URLS`, checked, in their order, as written (the
    /// delivery rows and `user_activity_webhook_disabled` hold them so).
    pub urls: Vec<String>,
    /// `ALERT_WEBHOOK_SECRET`: the key every request is signed with.
    pub secret: WebhookSecret,
    /// `ALERT_WEBHOOK_RETRY_HOURS`: how long after an alert was raised a
    /// delivery answered by timeouts, connection errors, 429 or 5xx is
    /// still retried; then it is `failed`.
    pub retry_for: Duration,
    /// The admin API's base URL for the alert link (`admin_url`), without
    /// a trailing `/`.
    pub link_base_url: String,
    /// How long one attempt (connecting, sending, reading the answer) may
    /// take before it counts as a timeout.
    pub request_timeout: Duration,
    /// First delay before a retry; doubled per attempt, with jitter.
    pub backoff_initial: Duration,
    /// Cap on the delay between retries.
    pub backoff_max: Duration,
    /// How often an idle worker looks for due deliveries.
    pub poll_interval: Duration,
    /// Deliveries one worker sends at the same time (a slow receiver does
    /// not hold up the others).
    pub max_in_flight: usize,
    /// The TLS client settings (ring, the system's trusted roots), made
    /// once at start-up so that a missing root store is a start-up error.
    tls: Arc<rustls::ClientConfig>,
}

impl WebhookConfig {
    /// Checks the settings: `None` when no URL is configured (no webhooks),
    /// else the configuration with the default pacing.
    pub fn from_settings(
        settings: &WebhookSettings<'_>,
    ) -> Result<Option<WebhookConfig>, WebhookConfigError> {
        let urls = parse_urls(settings.urls.unwrap_or(""))?;
        if urls.is_empty() {
            return Ok(None);
        }
        let secret = settings
            .secret
            .ok_or(WebhookConfigError::MissingSecret)?
            .parse::<WebhookSecret>()?;
        let link_base_url = match settings.link_base_url {
            Some(url) => parse_link_base_url(url)?,
            None => default_link_base_url(settings.admin_listen),
        };
        let mut config = WebhookConfig::new(urls, secret, link_base_url)?;
        config.retry_for = retry_for(settings.retry_hours);
        Ok(Some(config))
    }

    /// `urls` (checked with [`parse_urls`]) signed with `secret`, links to
    /// `link_base_url`, the default retry window and pacing. Loads the
    /// system's trusted roots (an error only if a URL is https).
    pub fn new(
        urls: Vec<String>,
        secret: WebhookSecret,
        link_base_url: String,
    ) -> Result<WebhookConfig, WebhookConfigError> {
        let needs_tls = urls.iter().any(|u| u.starts_with("https://"));
        Ok(WebhookConfig {
            urls,
            secret,
            retry_for: retry_for(DEFAULT_RETRY_HOURS),
            link_base_url: link_base_url.trim_end_matches('/').to_owned(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            tls: Arc::new(tls_config(needs_tls)?),
        })
    }

    /// How long a claimed delivery is leased: a worker that dies while
    /// sending leaves it to another once this has passed.
    pub fn lease(&self) -> Duration {
        self.request_timeout + LEASE_MARGIN
    }

    /// The link to an alert in the admin API.
    pub fn admin_url(&self, alert_id: uuid::Uuid) -> String {
        format!(
            "{}/api/v1/admin/user-activities/alerts/{alert_id}",
            self.link_base_url
        )
    }

    /// Sends https requests with these TLS settings instead of the
    /// system's trusted roots: for receivers behind a private CA, or that
    /// want a client certificate. Build them with
    /// `rustls::ClientConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())`.
    pub fn with_tls(mut self, tls: rustls::ClientConfig) -> Self {
        self.tls = Arc::new(tls);
        self
    }

    /// The TLS client settings.
    pub(super) fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.tls.clone()
    }
}

/// `ALERT_WEBHOOK_RETRY_HOURS` as a duration.
pub fn retry_for(hours: u32) -> Duration {
    Duration::from_secs(u64::from(hours) * 3600)
}

/// Splits `ALERT_WEBHOOK_URLS` at commas and checks each entry: an
/// absolute `http://` or `https://` URL with a host, no credentials, not
/// listed twice. A blank list is no URL.
pub fn parse_urls(list: &str) -> Result<Vec<String>, WebhookConfigError> {
    if list.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut urls: Vec<String> = Vec::new();
    for entry in list.split(',') {
        let url = entry.trim();
        let error = |reason: &str| WebhookConfigError::Url {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if url.is_empty() {
            return Err(error(
                "is empty (two commas in a row, or one at the start or end)",
            ));
        }
        check_http_url(url).map_err(|reason| error(&reason))?;
        if urls.iter().any(|u| u == url) {
            return Err(error("is listed twice"));
        }
        urls.push(url.to_owned());
    }
    Ok(urls)
}

/// Checks `ALERT_LINK_BASE_URL` (an absolute http(s) URL, a path prefix
/// allowed) and drops a trailing `/`.
pub fn parse_link_base_url(url: &str) -> Result<String, WebhookConfigError> {
    let url = url.trim();
    check_http_url(url).map_err(|reason| WebhookConfigError::LinkBaseUrl {
        url: url.to_owned(),
        reason,
    })?;
    if url.contains(['?', '#']) {
        return Err(WebhookConfigError::LinkBaseUrl {
            url: url.to_owned(),
            reason: "has a query or fragment, where the alert's path is appended".into(),
        });
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// The link base when `ALERT_LINK_BASE_URL` is unset: the admin API's own
/// address (reachable from other machines only if it listens on one of
/// theirs).
pub fn default_link_base_url(admin_listen: SocketAddr) -> String {
    if admin_listen.ip().is_unspecified() {
        tracing::warn!(
            %admin_listen,
            "ALERT_LINK_BASE_URL is unset and ADMIN_LISTEN names no one address: webhook alert links will not lead anywhere; set ALERT_LINK_BASE_URL to the address receivers reach the admin API at"
        );
    }
    format!("http://{admin_listen}")
}

/// Why `url` is not an absolute http(s) URL that a request can go to.
fn check_http_url(url: &str) -> Result<(), String> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains a space or control character".into());
    }
    if !url.contains("://") {
        return Err("is not absolute (it must start with http:// or https://)".into());
    }
    let uri: Uri = url.parse().map_err(|e| format!("is not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(format!("has the scheme {other:?}, not http or https")),
        None => return Err("is not absolute (it must start with http:// or https://)".into()),
    }
    let Some(authority) = uri.authority() else {
        return Err("has no host".into());
    };
    if authority.as_str().contains('@') {
        return Err(
            "carries credentials (user:password@), which are never sent; put a token in the path or query instead"
                .into(),
        );
    }
    if authority.host().is_empty() {
        return Err("has no host".into());
    }
    Ok(())
}

/// The TLS client settings: ring's provider, safe default protocol
/// versions, the system's trusted roots. Without any root the settings
/// still work for http URLs, so that is an error only when `needs_tls`.
fn tls_config(needs_tls: bool) -> Result<rustls::ClientConfig, WebhookConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports rustls' default protocol versions")
    };
    match builder().with_native_roots() {
        Ok(with_roots) => Ok(with_roots.with_no_client_auth()),
        Err(e) if needs_tls => Err(WebhookConfigError::NoTrustedRoots {
            reason: e.to_string(),
        }),
        Err(_) => Ok(builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn settings<'a>(urls: Option<&'a str>, secret: Option<&'a str>) -> WebhookSettings<'a> {
        WebhookSettings {
            urls,
            secret,
            retry_hours: 24,
            link_base_url: None,
            admin_listen: "127.0.0.1:8080".parse().unwrap(),
        }
    }

    #[test]
    fn urls_are_split_trimmed_and_kept_as_written() {
        let urls =
            parse_urls(" https://a.example/hook?token=x , http://10.0.0.7:9000/in,http://[::1]:8/")
                .unwrap();
        assert_eq!(
            urls,
            [
                "https://a.example/hook?token=x",
                "http://10.0.0.7:9000/in",
                "http://[::1]:8/"
            ]
        );
        assert!(parse_urls("").unwrap().is_empty());
        assert!(parse_urls("  ").unwrap().is_empty());
    }

    #[test]
    fn bad_urls_are_refused_naming_the_variable_and_entry() {
        let cases = [
            ("ftp://a.example/x", "scheme \"ftp\""),
            ("a.example/hook", "not absolute"),
            ("/hook", "not absolute"),
            ("http://a.example/x,,http://b.example/", "is empty"),
            ("http://a.example/x,", "is empty"),
            ("http://a.example/x, http://a.example/x", "listed twice"),
            ("http://user:pw@a.example/x", "credentials"),
            ("http://a.exa mple/x", "space"),
            ("http://", "not a URL"),
        ];
        for (list, expected) in cases {
            let message = parse_urls(list).unwrap_err().to_string();
            assert!(message.starts_with("ALERT_WEBHOOK_URLS entry"), "{message}");
            assert!(message.contains(expected), "{list}: {message}");
        }
    }

    #[test]
    fn no_urls_is_no_webhooks_even_with_a_secret() {
        assert!(
            WebhookConfig::from_settings(&settings(None, None))
                .unwrap()
                .is_none()
        );
        assert!(
            WebhookConfig::from_settings(&settings(Some(" "), Some(SECRET)))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn urls_without_a_secret_are_a_start_up_error() {
        let error =
            WebhookConfig::from_settings(&settings(Some("http://a.example/x"), None)).unwrap_err();
        assert!(matches!(error, WebhookConfigError::MissingSecret));
        let message = error.to_string();
        assert!(message.contains("ALERT_WEBHOOK_SECRET is not"), "{message}");
        let error = WebhookConfig::from_settings(&settings(
            Some("http://a.example/x"),
            Some("not-a-secret"),
        ))
        .unwrap_err();
        assert!(
            error.to_string().contains("ALERT_WEBHOOK_SECRET"),
            "{error}"
        );
    }

    #[test]
    fn defaults_and_settings_are_applied() {
        let mut s = settings(Some("http://a.example/x"), Some(SECRET));
        let config = WebhookConfig::from_settings(&s).unwrap().unwrap();
        assert_eq!(config.retry_for, Duration::from_secs(24 * 3600));
        assert_eq!(config.request_timeout, Duration::from_secs(10));
        assert_eq!(config.link_base_url, "http://127.0.0.1:8080");
        assert_eq!(config.lease(), Duration::from_secs(40));
        let id = uuid::Uuid::nil();
        assert_eq!(
            config.admin_url(id),
            format!("http://127.0.0.1:8080/api/v1/admin/user-activities/alerts/{id}")
        );

        s.retry_hours = 2;
        s.link_base_url = Some("https://admin.example.com/activity/");
        let config = WebhookConfig::from_settings(&s).unwrap().unwrap();
        assert_eq!(config.retry_for, Duration::from_secs(7200));
        assert_eq!(
            config.admin_url(id),
            format!("https://admin.example.com/activity/api/v1/admin/user-activities/alerts/{id}")
        );
    }

    #[test]
    fn a_bad_link_base_is_refused_naming_the_variable() {
        for url in ["admin.example.com", "https://admin.example.com/?x=1"] {
            let mut s = settings(Some("http://a.example/x"), Some(SECRET));
            s.link_base_url = Some(url);
            let message = WebhookConfig::from_settings(&s).unwrap_err().to_string();
            assert!(message.starts_with("ALERT_LINK_BASE_URL"), "{message}");
        }
    }
}
