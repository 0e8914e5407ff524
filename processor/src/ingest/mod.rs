//! The ingest API: the Segment tracking API's shape on `INGEST_LISTEN`, so
//! unmodified Segment (and RudderStack) SDKs can record activities by
//! changing only their host. `docs/ingest.md` has every rule.
//!
//! A request is read within the limits (`limits`), its write key checked
//! (`auth`), its source's rate taken (`rate_limit`), each message mapped
//! to an activity or a rejection (`mapping`), and the activities written
//! as one stream entry (`writer`) before the 200; the consumer stores
//! them like any other producer's.
//!
//! Most requests take a faster way to the same lines: the body split into
//! its events by a scanner (`scan`), and each message written straight
//! into its wire line (`direct`, with `details` from the message's text:
//! `details`). Whatever that way does not read exactly as `serde_json`
//! does, and every event to reject, goes the way above.
//!
//! ```no_run
//! # async fn example(config: &activity_processor::Config, redis: redis::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use activity_processor::http::{self, ConnectionTimeouts, StackSettings};
//! use activity_processor::ingest::{self, IngestState};
//! use tokio_util::sync::CancellationToken;
//!
//! if let Some(state) = IngestState::from_config(config, redis)? {
//!     let listener = tokio::net::TcpListener::bind(&config.ingest_listen).await?;
//!     let settings = StackSettings::ingest(config.http_request_timeout());
//!     let app = http::stack(ingest::router(state), &settings);
//!     http::serve(listener, app, ConnectionTimeouts::default(), CancellationToken::new()).await?;
//! }
//! # Ok(()) }
//! ```

mod auth;
mod details;
mod direct;
mod error;
mod limits;
mod mapping;
mod node;
mod openapi;
mod rate_limit;
mod scan;
mod timestamp;
mod writer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use activity_tracker::{ClientIpResolver, RedisClient, WireBatch};
use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use self::auth::{DEFAULT_SOURCE, WriteKeys, WriteKeysError};
pub use self::limits::{BodyError, MAX_EVENT_BYTES, MAX_REQUEST_BYTES};
pub use self::mapping::{MAX_FUTURE, MESSAGE_ID_NAMESPACE, message_uuid};
pub use self::openapi::{OPENAPI_PATH, document as openapi_document};
pub use self::writer::WriteError;

use self::direct::{Direct, Message, Scratch};
use self::error::{IngestError, RejectedEvent};
use self::limits::Encoding;
use self::mapping::{Kind, Mapped, ObjectOnly, RequestFacts};
use self::rate_limit::RateLimit;
use self::writer::StreamWriter;
use crate::config::{Config, ConfigError};

/// `Retry-After` when Redis cannot be written.
const REDIS_RETRY_AFTER: Duration = Duration::from_secs(1);
/// `Retry-After` while the backlog is over `INGEST_MAX_BACKLOG`.
const BACKLOG_RETRY_AFTER: Duration = Duration::from_secs(2);

/// The paths, each also with a trailing slash; `None` is `/v1/batch`.
const PATHS: [(&str, Option<Kind>); 7] = [
    ("/v1/batch", None),
    ("/v1/track", Some(Kind::Track)),
    ("/v1/page", Some(Kind::Page)),
    ("/v1/screen", Some(Kind::Screen)),
    ("/v1/identify", Some(Kind::Identify)),
    ("/v1/group", Some(Kind::Group)),
    ("/v1/alias", Some(Kind::Alias)),
];

/// What every ingest request shares.
#[derive(Debug, Clone)]
pub struct IngestState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    keys: WriteKeys,
    /// Sources whose `context.ip` is the client's (`INGEST_TRUSTED_IP_SOURCES`).
    trusted_ip_sources: Vec<String>,
    /// The proxies in front of the ingest (`INGEST_TRUSTED_PROXIES`).
    proxies: ClientIpResolver,
    /// `INGEST_RATE_LIMIT`, when set.
    rate_limit: Option<RateLimit>,
    writer: StreamWriter,
}

impl IngestState {
    /// From the `INGEST_*` settings; `None` without `INGEST_WRITE_KEYS`.
    pub fn from_config(
        config: &Config,
        redis: impl Into<RedisClient>,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(keys) = config.ingest_write_keys()? else {
            return Ok(None);
        };
        Ok(Some(IngestState {
            inner: Arc::new(Inner {
                trusted_ip_sources: config.ingest_trusted_ip_sources(),
                proxies: config.ingest_trusted_proxies()?,
                rate_limit: config.ingest_rate_limit.map(RateLimit::new),
                writer: StreamWriter::new(
                    redis.into(),
                    config.stream_shards(),
                    config.ingest_max_backlog,
                ),
                keys,
            }),
        }))
    }
}

/// The ingest routes (every path with and without a trailing slash,
/// `/healthz` and the OpenAPI document).
pub fn router(state: IngestState) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route(OPENAPI_PATH, get(openapi_json));
    for (path, kind) in PATHS {
        let handler =
            post(move |state: State<IngestState>, request: Request| ingest(state, kind, request));
        router = router
            .route(path, handler.clone())
            .route(&format!("{path}/"), handler);
    }
    router.with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn openapi_json() -> Json<serde_json::Value> {
    Json(openapi::document())
}

/// The answer to a request with at least one valid event.
#[derive(Debug, Serialize)]
struct Accepted {
    success: bool,
    /// Events written to the stream, to be stored.
    accepted: usize,
    /// `identify`, `group` and `alias` calls: accepted, not stored.
    not_stored: usize,
    /// Events refused, by index, with the reason.
    rejected: Vec<RejectedEvent>,
}

#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
    #[serde(rename = "writeKey", default)]
    write_key: Option<String>,
}

#[derive(Deserialize)]
struct SingleBody {
    #[serde(rename = "writeKey", default)]
    write_key: Option<String>,
}

async fn ingest(
    State(state): State<IngestState>,
    kind: Option<Kind>,
    request: Request,
) -> Response {
    match handle(&state, kind, request).await {
        Ok(accepted) => (StatusCode::OK, Json(accepted)).into_response(),
        Err(error) => {
            metrics::counter!("activity_processor_ingest_requests_refused_total", "error" => error.code())
                .increment(1);
            error.into_response()
        }
    }
}

async fn handle(
    state: &IngestState,
    kind: Option<Kind>,
    request: Request,
) -> Result<Accepted, IngestError> {
    let inner = &*state.inner;
    let received_at = Utc::now();
    let (parts, body) = request.into_parts();
    let basic = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| auth::basic_user(value.as_bytes()));
    // A key in the header is checked before the body is read.
    let header_source = match &basic {
        Some(key) => Some(inner.keys.source_of(key).ok_or_else(unknown_key)?),
        None => None,
    };
    let encoding = Encoding::from_header(
        parts
            .headers
            .get(header::CONTENT_ENCODING)
            .map(|value| value.as_bytes()),
    )
    .map_err(|e| {
        IngestError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            e.to_string(),
        )
    })?;
    let bytes = limits::read_body(body, encoding)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge { .. } => IngestError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                e.to_string(),
            ),
            e => IngestError::new(StatusCode::BAD_REQUEST, "invalid_body", e.to_string()),
        })?;
    let text = std::str::from_utf8(&bytes).map_err(|_| not_json("the body is not UTF-8 text"))?;
    // Each message with its fields read, when they could be: by the
    // scanner in its pass over a batch, else one by one.
    let (mut messages, body_key): (Vec<(&str, Option<Message<'_>>)>, Option<String>) = match kind {
        None => match scan::batch(text, Message::read_at) {
            Some(scanned) => (scanned.events, scanned.write_key.map(str::to_owned)),
            None => {
                let ObjectOnly(body): ObjectOnly<BatchBody<'_>> = serde_json::from_str(text)
                    .map_err(|e| {
                        not_json(format!(
                            "the body is not a batch ({{\"batch\": [...]}}): {e}"
                        ))
                    })?;
                let messages = body
                    .batch
                    .iter()
                    .map(|raw| (raw.get(), Message::read(raw.get())))
                    .collect();
                (messages, body.write_key)
            }
        },
        Some(_) => {
            let ObjectOnly(body): ObjectOnly<SingleBody> = serde_json::from_str(text)
                .map_err(|e| not_json(format!("the body is not a JSON object: {e}")))?;
            (vec![(text, Message::read(text))], body.write_key)
        }
    };
    let source = match header_source {
        Some(source) => source,
        None => match body_key {
            Some(key) => inner.keys.source_of(&key).ok_or_else(unknown_key)?,
            None => {
                return Err(IngestError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing_write_key",
                    "no write key: send it as the HTTP Basic user name or as `writeKey` in the body",
                ));
            }
        },
    };
    if messages.is_empty() {
        return Err(IngestError::new(
            StatusCode::BAD_REQUEST,
            "no_events",
            "the batch holds no event",
        ));
    }
    if let Some(limit) = &inner.rate_limit
        && let Err(wait) = limit.take(source, messages.len(), Instant::now())
    {
        metrics::counter!("activity_processor_ingest_rate_limited_total", "source" => source.to_owned())
            .increment(1);
        return Err(IngestError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("source {source:?} is over INGEST_RATE_LIMIT; retry later"),
        )
        .retry_after(wait));
    }

    let peer_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| inner.proxies.client_ip(addr.ip(), &parts.headers));
    let facts = RequestFacts {
        source,
        trusts_context_ip: inner.trusted_ip_sources.iter().any(|s| s == source),
        peer_ip,
        received_at,
    };
    let mut batch = WireBatch::with_capacity(text.len() + 256 * messages.len());
    let mut not_stored = Vec::new();
    let mut rejected = Vec::new();
    let mut scratch = Scratch::default();
    let count = messages.len();
    for (index, (raw, message)) in messages.iter_mut().enumerate() {
        let raw: &str = raw;
        match direct::map(
            raw,
            message.as_mut(),
            kind,
            &facts,
            &mut batch,
            &mut scratch,
        ) {
            Some(Direct::Stored) => continue,
            Some(Direct::NotStored(kind)) => {
                not_stored.push(kind);
                continue;
            }
            None => {}
        }
        match mapping::map(raw, kind, &facts) {
            Ok(Mapped::Stored(activity)) => batch.push(&activity),
            Ok(Mapped::NotStored(kind)) => not_stored.push(kind),
            Err(rejection) => rejected.push(RejectedEvent {
                index,
                reason: rejection.reason,
                message: rejection.message,
            }),
        }
    }
    for event in &rejected {
        metrics::counter!("activity_processor_ingest_events_rejected_total", "reason" => event.reason)
            .increment(1);
    }
    if batch.is_empty() && not_stored.is_empty() {
        return Err(IngestError::new(
            StatusCode::BAD_REQUEST,
            "no_valid_events",
            format!("none of the {count} events can be stored; see `rejected`"),
        )
        .with_rejected(rejected));
    }
    if !batch.is_empty() {
        let written = match inner.writer.check_backlog().await {
            Ok(()) => inner.writer.write(&batch).await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            let (cause, wait) = match &e {
                // A state the gauges and this counter show, not news at
                // every request.
                WriteError::Backlog { .. } => {
                    tracing::debug!(error = %e, source, "ingest request refused with 503");
                    ("backlog", BACKLOG_RETRY_AFTER)
                }
                _ => {
                    tracing::warn!(error = %e, source, "ingest request refused with 503");
                    ("redis", REDIS_RETRY_AFTER)
                }
            };
            metrics::counter!("activity_processor_ingest_unavailable_total", "cause" => cause)
                .increment(1);
            return Err(IngestError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("{e}; retry later"),
            )
            .retry_after(wait));
        }
    }
    metrics::counter!("activity_processor_ingest_events_accepted_total", "source" => source.to_owned())
        .increment(batch.len() as u64);
    for kind in &not_stored {
        metrics::counter!("activity_processor_ingest_events_not_stored_total", "type" => kind.name())
            .increment(1);
    }
    Ok(Accepted {
        success: true,
        accepted: batch.len(),
        not_stored: not_stored.len(),
        rejected,
    })
}

fn unknown_key() -> IngestError {
    IngestError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_write_key",
        "the write key is not one of INGEST_WRITE_KEYS",
    )
}

fn not_json(message: impl Into<String>) -> IngestError {
    IngestError::new(StatusCode::BAD_REQUEST, "invalid_json", message)
}
