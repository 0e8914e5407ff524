//! The command line: subcommands and every setting, each a flag and an
//! environment variable with its default shown by `--help`.
//!
//! ```
//! use activity_processor::config::{Cli, Command};
//! use clap::Parser;
//!
//! let cli = Cli::try_parse_from(["activity-processor", "serve", "--batch-size", "500"]).unwrap();
//! let Command::Serve(config) = cli.command else { unreachable!() };
//! assert_eq!(config.batch_size, 500);
//! assert_eq!(config.consumer_group, "activity-processor");
//! config.validate().unwrap();
//! ```

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// `activity-processor`: drains the activity stream into PostgreSQL and
/// serves the health, metrics and admin endpoints.
#[derive(Debug, Parser)]
#[command(name = "activity-processor", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
// Parsed once at start: the size of `Serve` does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the consumer and the HTTP server (health, metrics, admin API)
    /// until SIGTERM or SIGINT. Applies the migrations first.
    Serve(Config),
    /// Apply the embedded database migrations, create the partitions ahead,
    /// and exit.
    Migrate(DatabaseArgs),
    /// Recompute the admin API's rollups from the raw rows (after rows
    /// reached the table outside the processor: a backfill, a restore),
    /// and exit. Safe while processors run.
    RebuildRollups(RebuildArgs),
    /// Put dead-lettered entries (`<STREAM_KEY>:dead`) back on the stream,
    /// so that what was refused before a fix is stored after it (run it
    /// with a processor that has the fix). Each is re-added as it was
    /// dead-lettered (a version 1 `data` entry, one line of a version 2
    /// entry as a version 1 entry, or a whole version 2 entry), then
    /// deleted from the dead letters. Idempotent: an event without an
    /// `id` gets the id the processor had derived for it, so running it
    /// twice stores nothing twice. Prints what it did.
    RedriveDead(RedriveArgs),
}

/// Settings of `redrive-dead`.
#[derive(Debug, Clone, Args)]
pub struct RedriveArgs {
    /// Redis connection URL. Several nodes separated by commas
    /// (`redis://a:7000,redis://b:7001,...`) are a Redis Cluster.
    #[arg(long, env = "REDIS_URL", default_value = DEFAULT_REDIS_URL)]
    pub redis_url: String,

    /// Speak Redis Cluster to REDIS_URL even when it is one address (the
    /// other nodes are discovered from it).
    #[arg(long, env = "REDIS_CLUSTER", default_value_t = false, action = clap::ArgAction::Set)]
    pub redis_cluster: bool,

    /// The stream whose dead letters (`<STREAM_KEY>:dead`) are redriven.
    #[arg(long, env = "STREAM_KEY", default_value = "user_activities_stream")]
    pub stream_key: String,

    /// The stream's shards, as for `serve`: each shard's dead letters go
    /// back onto that shard.
    #[arg(long, env = "STREAM_SHARDS", default_value_t = 1, value_parser = parse_stream_shards)]
    pub stream_shards: usize,

    /// Only dead letters whose `reason` contains this text (e.g. `22P05`,
    /// PostgreSQL's code for a NUL in JSON). Unset: all.
    #[arg(long, value_name = "TEXT")]
    pub reason_contains: Option<String>,

    /// Only dead letters written on or after this UTC day (YYYY-MM-DD).
    /// Unset: all.
    #[arg(long, value_name = "DATE")]
    pub since: Option<chrono::NaiveDate>,

    /// Log filter, as for `serve` [default: `RUST_LOG` if set, else info].
    #[arg(long, env = "LOG_LEVEL")]
    pub log_level: Option<String>,
}

/// Settings of `rebuild-rollups`.
#[derive(Debug, Clone, Args)]
pub struct RebuildArgs {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// First UTC day (YYYY-MM-DD) to recompute; earlier buckets are kept.
    /// Unset: everything.
    #[arg(long)]
    pub since: Option<chrono::NaiveDate>,
}

/// Settings of a command that only needs the database.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or a
    /// tracing-subscriber directive such as `activity_processor=debug`)
    /// [default: `RUST_LOG` if set, else info].
    #[arg(long, env = "LOG_LEVEL")]
    pub log_level: Option<String>,
}

/// Every setting of `serve`; also what [`crate::run`] takes.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Redis connection URL. Several nodes separated by commas
    /// (`redis://a:7000,redis://b:7001,...`) are a Redis Cluster.
    #[arg(long, env = "REDIS_URL", default_value = DEFAULT_REDIS_URL)]
    pub redis_url: String,

    /// Speak Redis Cluster to REDIS_URL even when it is one address (the
    /// other nodes are discovered from it).
    #[arg(long, env = "REDIS_CLUSTER", default_value_t = false, action = clap::ArgAction::Set)]
    pub redis_cluster: bool,

    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// The Redis Stream the apps write to. Entries that can never be stored
    /// go to `<STREAM_KEY>:dead`.
    #[arg(long, env = "STREAM_KEY", default_value = "user_activities_stream")]
    pub stream_key: String,

    /// How many shards the stream has, as the apps were given: 1 is the
    /// stream key itself; N (up to 1024) are the streams
    /// `<STREAM_KEY>:{<tag>}`, each on a Redis Cluster slot of its own, each
    /// with its own consumer group and `:dead` stream. Every shard is read.
    #[arg(long, env = "STREAM_SHARDS", default_value_t = 1, value_parser = parse_stream_shards)]
    pub stream_shards: usize,

    /// Consumer group; processors in the same group share the work.
    #[arg(long, env = "CONSUMER_GROUP", default_value = "activity-processor")]
    pub consumer_group: String,

    /// This processor's name in the group (default: `<hostname>-<pid>`).
    #[arg(
        long,
        env = "CONSUMER_NAME",
        help = "This processor's name in the group [default: <hostname>-<pid>]"
    )]
    pub consumer_name: Option<String>,

    /// Events per database write: a batch is flushed when it holds this many.
    // 2000: with two writers, as fast as larger batches (the per-user
    // rollups are folded across batches, not per batch) in less memory
    // (docs/benchmarks.md).
    #[arg(long, env = "BATCH_SIZE", default_value_t = 2000)]
    pub batch_size: usize,

    /// ... or when its oldest event has waited this long (milliseconds).
    #[arg(long, env = "FLUSH_INTERVAL_MS", default_value_t = 200)]
    pub flush_interval_ms: u64,

    /// Batches written to the database at once, each in its own
    /// transaction: while one commits, the next is being written.
    #[arg(long, env = "DB_WRITERS", default_value_t = 3)]
    pub db_writers: usize,

    /// Entries left pending this long (milliseconds) by a consumer that died
    /// are claimed and stored by this one.
    #[arg(long, env = "CLAIM_IDLE_MS", default_value_t = 60_000)]
    pub claim_idle_ms: u64,

    /// How often (milliseconds) the per-user counts that writers leave
    /// pending are folded into the per-user rollups. Queries fold what is
    /// left before reading, so this bounds their work, not their accuracy.
    /// While the stream has a backlog, only every fifth interval folds.
    #[arg(long, env = "ROLLUP_FOLD_INTERVAL_MS", default_value_t = 2000)]
    pub rollup_fold_interval_ms: u64,

    /// Address of the HTTP server (`/healthz`, `/readyz`, `/metrics`, admin
    /// API, the dashboard page at `/admin/`).
    #[arg(long, env = "ADMIN_LISTEN", default_value = "127.0.0.1:8080")]
    pub admin_listen: String,

    /// Origins whose browser pages may call the admin API cross-origin,
    /// comma-separated (`https://admin.example.com`; no path, no
    /// wildcard). Unset: none (same-origin pages and non-browser clients
    /// only).
    #[arg(long, env = "ADMIN_CORS_ORIGINS")]
    pub admin_cors_origins: Option<String>,

    /// A request not answered within this long (milliseconds) gets 408: a
    /// body that stalls, a handler that hangs. A response body (an export)
    /// streams for as long as it takes.
    #[arg(long, env = "HTTP_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub http_request_timeout_ms: u64,

    /// A connection that has not sent a request's headers within this long
    /// (milliseconds) is closed: a new one, or a kept-alive one between
    /// requests.
    #[arg(long, env = "HTTP_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub http_header_read_timeout_ms: u64,

    /// A connection on which nothing is read or written for this long
    /// (milliseconds) is closed; longer than HTTP_REQUEST_TIMEOUT_MS.
    #[arg(long, env = "HTTP_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub http_idle_timeout_ms: u64,

    /// Drop whole monthly partitions older than this many days; 0 keeps
    /// everything.
    #[arg(long, env = "RETENTION_DAYS", default_value_t = 0)]
    pub retention_days: u32,

    /// Also drain this Redis LIST, where producers written for the original
    /// design `LPUSH` JSON strings (it used `user_activities_queue`). Unset:
    /// no list is read.
    #[arg(long, env = "LEGACY_LIST_KEY")]
    pub legacy_list_key: Option<String>,

    /// Static bearer tokens accepted by the admin API, comma-separated.
    /// With neither this nor ADMIN_JWT_SECRET set, the admin API refuses
    /// every request.
    #[arg(long, env = "ADMIN_TOKENS", hide_env_values = true)]
    pub admin_tokens: Option<crate::admin::Secret>,

    /// Secret of the HS256 JWTs accepted by the admin API (claims `role:
    /// admin` or `role: privacy`, and a future `exp`, required; the `sub`
    /// names the caller in audit records).
    #[arg(long, env = "ADMIN_JWT_SECRET", hide_env_values = true)]
    pub admin_jwt_secret: Option<crate::admin::Secret>,

    /// The longest life an admin JWT may claim: a token whose `exp` is
    /// further than this from its `iat` (or from now, without `iat` or
    /// with one in the future) is refused, as is one used before its
    /// `nbf`. A number and a unit: s, m, h, d.
    #[arg(long, env = "ADMIN_JWT_MAX_TTL", default_value = "24h")]
    pub admin_jwt_max_ttl: String,

    /// Static bearer tokens of the privacy role, comma-separated, each
    /// `name=token` or a bare token (named by its position): they may erase
    /// and export a user's data, and nothing else. A token also in
    /// ADMIN_TOKENS has both roles. ADMIN_TOKENS entries may be
    /// `name=token` too.
    #[arg(long, env = "ADMIN_PRIVACY_TOKENS", hide_env_values = true)]
    pub admin_privacy_tokens: Option<crate::admin::Secret>,

    /// Key of the pseudonyms (`erased:` + HMAC-SHA-256 of the user id) and
    /// of the erasure list's hashes. Unset: erasure with mode=pseudonymize
    /// is refused (409), and erased users are not held against late events.
    #[arg(long, env = "PSEUDONYM_KEY", hide_env_values = true)]
    pub pseudonym_key: Option<crate::admin::Secret>,

    /// The `details` keys a pseudonymized row keeps, comma-separated (empty:
    /// none).
    #[arg(
        long,
        env = "ERASE_KEEP_DETAIL_KEYS",
        default_value = "method,route,status,latency_ms,request_id"
    )]
    pub erase_keep_detail_keys: String,

    /// Days an erased user's late events (still in the stream, in an app's
    /// spool, from its direct fallback) are erased the same way on arrival;
    /// 0: not held.
    #[arg(long, env = "ERASURE_HOLD_DAYS", default_value_t = activity_store::privacy::DEFAULT_HOLD_DAYS)]
    pub erasure_hold_days: u32,

    /// Store client addresses cut to their network: `<IPv4 prefix>,<IPv6
    /// prefix>`, e.g. `24,48` (the /24 and the /48), for events from every
    /// producer. Unset: addresses are stored whole.
    #[arg(long, env = "IP_TRUNCATION")]
    pub ip_truncation: Option<activity_tracker::IpTruncation>,

    /// Record each admin read of one user's data (`user/{id}`,
    /// `user/{id}/path`) as an `admin_read` activity (who, which user,
    /// which endpoint).
    #[arg(long, env = "AUDIT_ADMIN_READS", default_value_t = false, action = clap::ArgAction::Set)]
    pub audit_admin_reads: bool,

    /// The alert rules: unset, the three built-in rules with their defaults
    /// (`rate`, `failed_then_success`, `new_ip`); `none`, no rules; else
    /// the path of a TOML file of rules (docs/alerts.md). A file that
    /// cannot work stops start-up, naming the rule and field.
    #[arg(long, env = "ALERT_RULES")]
    pub alert_rules: Option<String>,

    /// Events stored longer than this after their `created_at` (a spool
    /// replayed after an outage), or dated this far ahead, are stored but
    /// not evaluated by the rules, and counted
    /// (`activity_processor_alert_events_late_total`). A number and a
    /// unit: s, m, h, d.
    #[arg(long, env = "ALERT_MAX_LATENESS", default_value = "1h")]
    pub alert_max_lateness: String,

    /// How often (milliseconds) an idle processor looks for stored events
    /// to evaluate. One processor evaluates at a time; the others take
    /// over when it stops.
    #[arg(long, env = "ALERT_EVALUATE_INTERVAL_MS", default_value_t = 200)]
    pub alert_evaluate_interval_ms: u64,

    /// Where new alerts are posted, comma-separated http(s) URLs, signed
    /// the Standard Webhooks way with ALERT_WEBHOOK_SECRET (docs/webhooks.md).
    /// Unset: no webhooks.
    #[arg(long, env = "ALERT_WEBHOOK_URLS")]
    pub alert_webhook_urls: Option<String>,

    /// The webhook signing secret, `whsec_` followed by base64 (required
    /// with ALERT_WEBHOOK_URLS).
    #[arg(long, env = "ALERT_WEBHOOK_SECRET", hide_env_values = true)]
    pub alert_webhook_secret: Option<crate::admin::Secret>,

    /// How long (hours) a delivery answered by timeouts or 5xx is retried,
    /// with backoff, before it is given up.
    #[arg(long, env = "ALERT_WEBHOOK_RETRY_HOURS", default_value_t = 24)]
    pub alert_webhook_retry_hours: u32,

    /// The admin API's address as receivers reach it, for the alert link
    /// in webhook bodies (e.g. `https://admin.example.com`). Unset:
    /// `http://` + ADMIN_LISTEN.
    #[arg(long, env = "ALERT_LINK_BASE_URL")]
    pub alert_link_base_url: Option<String>,

    /// The parts this process runs, comma-separated: `consumer` (the
    /// stream consumer and the timers: partitions, retention, folds, alert
    /// rules, webhooks), `admin` (ADMIN_LISTEN: health, metrics, admin
    /// API), `ingest` (INGEST_LISTEN, with INGEST_WRITE_KEYS). An
    /// internet-facing ingest can run alone (`ingest`: needs Redis only).
    #[arg(long, env = "SERVE_ROLES", default_value = "consumer,admin,ingest")]
    pub serve_roles: String,

    /// Address of the ingest server (the Segment tracking API's paths,
    /// docs/ingest.md); separate from ADMIN_LISTEN, since it may face the
    /// internet.
    #[arg(long, env = "INGEST_LISTEN", default_value = "127.0.0.1:8081")]
    pub ingest_listen: String,

    /// The ingest's write keys, comma-separated `name=key` (a bare key is
    /// the source `default`); the name is recorded as `details.source`
    /// and makes the ids of non-UUID message ids, so a source may have
    /// two keys while one is rotated. Unset: no ingest server.
    #[arg(long, env = "INGEST_WRITE_KEYS", hide_env_values = true)]
    pub ingest_write_keys: Option<crate::admin::Secret>,

    /// Sources (names from INGEST_WRITE_KEYS, comma-separated) whose
    /// `context.ip` is stored as the client's address: server-side SDKs
    /// forwarding their own client's. Other sources get the connection's
    /// address (through INGEST_TRUSTED_PROXIES).
    #[arg(long, env = "INGEST_TRUSTED_IP_SOURCES")]
    pub ingest_trusted_ip_sources: Option<String>,

    /// Proxies in front of the ingest server, comma-separated CIDRs or
    /// addresses: from them, `Forwarded` / `X-Forwarded-For` / `X-Real-IP`
    /// name the client (the right-most address not a trusted proxy).
    /// Unset: none, the connection's peer is the client.
    #[arg(long, env = "INGEST_TRUSTED_PROXIES")]
    pub ingest_trusted_proxies: Option<String>,

    /// Events waiting in the stream (the queue-status estimate) above
    /// which the ingest answers 503 with Retry-After, so the SDKs keep
    /// their events instead of Redis filling up (docs/ingest.md says how
    /// the default was chosen).
    #[arg(long, env = "INGEST_MAX_BACKLOG", default_value_t = DEFAULT_INGEST_MAX_BACKLOG)]
    pub ingest_max_backlog: u64,

    /// Events per second each ingest source may send; above it, 429 with
    /// Retry-After. Unset: no limit.
    #[arg(long, env = "INGEST_RATE_LIMIT")]
    pub ingest_rate_limit: Option<u32>,

    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or a
    /// tracing-subscriber directive such as `activity_processor=debug`)
    /// [default: `RUST_LOG` if set, else info].
    #[arg(long, env = "LOG_LEVEL")]
    pub log_level: Option<String>,
}

/// Default of `INGEST_MAX_BACKLOG` (docs/ingest.md, "Backlog").
pub const DEFAULT_INGEST_MAX_BACKLOG: u64 = 500_000;

/// The parts of the processor `SERVE_ROLES` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// The stream consumer and the timers.
    pub consumer: bool,
    /// The admin listener (health, metrics, admin API).
    pub admin: bool,
    /// The ingest listener (when INGEST_WRITE_KEYS is set).
    pub ingest: bool,
}

/// Default of `REDIS_URL`.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default of `DATABASE_URL`.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A setting that cannot work, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `REDIS_URL` does not parse.
    #[error("REDIS_URL {url:?} is not a Redis URL ({reason}); use e.g. redis://127.0.0.1:6379")]
    RedisUrl {
        /// The value given.
        url: String,
        /// Why the parser refused it.
        reason: String,
    },
    /// `DATABASE_URL` does not parse.
    #[error(
        "DATABASE_URL {url:?} is not a PostgreSQL URL ({reason}); use e.g. postgres://user:password@host:5432/dbname"
    )]
    DatabaseUrl {
        /// The value given.
        url: String,
        /// Why the parser refused it.
        reason: String,
    },
    /// A number that must be positive is zero.
    #[error("{name} must be at least 1 (got 0); unset it to use the default")]
    Zero {
        /// The environment variable name.
        name: &'static str,
    },
    /// `ADMIN_LISTEN` is not `host:port`.
    #[error("ADMIN_LISTEN {0:?} is not an address; use e.g. 127.0.0.1:8080 or 0.0.0.0:8080")]
    Listen(String),
    /// A key or name is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// `ALERT_RULES` names a file that cannot work.
    #[error("ALERT_RULES: {0}")]
    AlertRules(String),
    /// A duration setting does not parse.
    #[error("{name} {value:?} is not a duration; use a number and a unit (s, m, h, d), like 1h")]
    Duration {
        /// The environment variable name.
        name: &'static str,
        /// The value given.
        value: String,
    },
    /// `ADMIN_CORS_ORIGINS` holds something that is not an origin.
    #[error("ADMIN_CORS_ORIGINS: {0}")]
    CorsOrigins(String),
    /// The idle timeout would close connections under requests still
    /// within their time.
    #[error(
        "HTTP_IDLE_TIMEOUT_MS ({idle_ms}) must be longer than HTTP_REQUEST_TIMEOUT_MS ({request_ms})"
    )]
    IdleTimeout {
        /// `HTTP_IDLE_TIMEOUT_MS`.
        idle_ms: u64,
        /// `HTTP_REQUEST_TIMEOUT_MS`.
        request_ms: u64,
    },
    /// A secret key is too short to resist guessing.
    #[error("{0} must be at least 16 characters (a long random secret)")]
    ShortKey(&'static str),
    /// `SERVE_ROLES` names no role, or one that does not exist.
    #[error("SERVE_ROLES {0:?}: {1}; use a comma-separated list of consumer, admin, ingest")]
    Roles(String, String),
    /// `INGEST_LISTEN` is not `host:port`.
    #[error("INGEST_LISTEN {0:?} is not an address; use e.g. 127.0.0.1:8081 or 0.0.0.0:8081")]
    IngestListen(String),
    /// `INGEST_WRITE_KEYS` cannot work.
    #[error(transparent)]
    WriteKeys(#[from] crate::ingest::WriteKeysError),
    /// `INGEST_TRUSTED_PROXIES` holds something that is not a CIDR.
    #[error("INGEST_TRUSTED_PROXIES: {0}")]
    TrustedProxies(String),
    /// `INGEST_TRUSTED_IP_SOURCES` names a source without a write key.
    #[error("INGEST_TRUSTED_IP_SOURCES names {0:?}, which is not a source of INGEST_WRITE_KEYS")]
    UnknownIpSource(String),
    /// `LEGACY_LIST_KEY` with a Redis Cluster: the legacy reader finds its
    /// processing lists with `SCAN`, which sees one node of a cluster.
    #[error(
        "LEGACY_LIST_KEY is not supported on a Redis Cluster (its processing lists are found with SCAN, which sees one node); drain the legacy list on a single Redis first"
    )]
    LegacyListOnCluster,
    /// `SERVE_ROLES=ingest` alone without write keys: nothing to run.
    #[error("SERVE_ROLES has only ingest, but INGEST_WRITE_KEYS is unset: set the write keys")]
    IngestWithoutKeys,
}

impl Config {
    /// The settings of `serve` with no flag: the environment variables where
    /// set, the defaults otherwise.
    pub fn from_env() -> Self {
        Cli::try_parse_from(["activity-processor", "serve"])
            .map(|cli| match cli.command {
                Command::Serve(config) => config,
                _ => unreachable!("parsed `serve`"),
            })
            .expect("the defaults parse")
    }

    /// Checks what clap cannot: URLs parse, sizes are positive, names are set.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.redis_client()?.is_cluster() && self.legacy_list_key.is_some() {
            return Err(ConfigError::LegacyListOnCluster);
        }
        validate_database_url(&self.database_url)?;
        if self.batch_size == 0 {
            return Err(ConfigError::Zero { name: "BATCH_SIZE" });
        }
        if self.db_writers == 0 {
            return Err(ConfigError::Zero { name: "DB_WRITERS" });
        }
        if self.flush_interval_ms == 0 {
            return Err(ConfigError::Zero {
                name: "FLUSH_INTERVAL_MS",
            });
        }
        if self.claim_idle_ms == 0 {
            return Err(ConfigError::Zero {
                name: "CLAIM_IDLE_MS",
            });
        }
        if self.rollup_fold_interval_ms == 0 {
            return Err(ConfigError::Zero {
                name: "ROLLUP_FOLD_INTERVAL_MS",
            });
        }
        if self.alert_evaluate_interval_ms == 0 {
            return Err(ConfigError::Zero {
                name: "ALERT_EVALUATE_INTERVAL_MS",
            });
        }
        self.alert_max_lateness()?;
        self.admin_jwt_max_ttl()?;
        self.alert_rules()?;
        self.listen_addr()?;
        self.cors_origins()?;
        self.connection_timeouts()?;
        if self.stream_key.is_empty() {
            return Err(ConfigError::Empty("STREAM_KEY"));
        }
        if self.consumer_group.is_empty() {
            return Err(ConfigError::Empty("CONSUMER_GROUP"));
        }
        if self.consumer_name.as_deref() == Some("") {
            return Err(ConfigError::Empty("CONSUMER_NAME"));
        }
        if self.legacy_list_key.as_deref() == Some("") {
            return Err(ConfigError::Empty("LEGACY_LIST_KEY"));
        }
        if self
            .pseudonym_key
            .as_ref()
            .is_some_and(|key| key.expose().len() < 16)
        {
            return Err(ConfigError::ShortKey("PSEUDONYM_KEY"));
        }
        self.validate_ingest()?;
        Ok(())
    }

    /// The `SERVE_ROLES` and `INGEST_*` checks.
    fn validate_ingest(&self) -> Result<(), ConfigError> {
        let roles = self.serve_roles()?;
        self.ingest_listen_addr()?;
        let keys = self.ingest_write_keys()?;
        if roles.ingest && !roles.consumer && !roles.admin && keys.is_none() {
            return Err(ConfigError::IngestWithoutKeys);
        }
        self.ingest_trusted_proxies()?;
        if self.ingest_rate_limit == Some(0) {
            return Err(ConfigError::Zero {
                name: "INGEST_RATE_LIMIT",
            });
        }
        let sources = keys.as_ref().map(|k| k.sources()).unwrap_or_default();
        if let Some(unknown) = self
            .ingest_trusted_ip_sources()
            .into_iter()
            .find(|name| !sources.contains(&name.as_str()))
        {
            return Err(ConfigError::UnknownIpSource(unknown));
        }
        Ok(())
    }

    /// `SERVE_ROLES` read.
    pub fn serve_roles(&self) -> Result<Roles, ConfigError> {
        let mut roles = Roles {
            consumer: false,
            admin: false,
            ingest: false,
        };
        let mut any = false;
        for role in self
            .serve_roles
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            match role {
                "consumer" => roles.consumer = true,
                "admin" => roles.admin = true,
                "ingest" => roles.ingest = true,
                _ => {
                    return Err(ConfigError::Roles(
                        self.serve_roles.clone(),
                        format!("unknown role `{role}`"),
                    ));
                }
            }
            any = true;
        }
        if !any {
            return Err(ConfigError::Roles(
                self.serve_roles.clone(),
                "no role".to_owned(),
            ));
        }
        Ok(roles)
    }

    /// `INGEST_LISTEN` as a socket address.
    pub fn ingest_listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        SocketAddr::from_str(&self.ingest_listen)
            .map_err(|_| ConfigError::IngestListen(self.ingest_listen.clone()))
    }

    /// `INGEST_WRITE_KEYS` read; `None` when unset or blank.
    pub fn ingest_write_keys(&self) -> Result<Option<crate::ingest::WriteKeys>, ConfigError> {
        match &self.ingest_write_keys {
            Some(list) if !list.expose().trim().is_empty() => {
                Ok(Some(crate::ingest::WriteKeys::parse(list.expose())?))
            }
            _ => Ok(None),
        }
    }

    /// `INGEST_TRUSTED_IP_SOURCES` as names.
    pub fn ingest_trusted_ip_sources(&self) -> Vec<String> {
        self.ingest_trusted_ip_sources
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// `INGEST_TRUSTED_PROXIES` read.
    pub fn ingest_trusted_proxies(
        &self,
    ) -> Result<activity_tracker::ClientIpResolver, ConfigError> {
        let list = self.ingest_trusted_proxies.as_deref().unwrap_or("");
        activity_tracker::ClientIpResolver::new(
            list.split(',').map(str::trim).filter(|net| !net.is_empty()),
        )
        .map_err(|e| ConfigError::TrustedProxies(e.to_string()))
    }

    /// `ADMIN_LISTEN` as a socket address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        SocketAddr::from_str(&self.admin_listen)
            .map_err(|_| ConfigError::Listen(self.admin_listen.clone()))
    }

    /// `ADMIN_CORS_ORIGINS` as header values (empty when unset).
    pub fn cors_origins(&self) -> Result<Vec<axum::http::HeaderValue>, ConfigError> {
        match &self.admin_cors_origins {
            None => Ok(Vec::new()),
            Some(list) => crate::http::parse_cors_origins(list).map_err(ConfigError::CorsOrigins),
        }
    }

    /// `HTTP_REQUEST_TIMEOUT_MS` as a duration.
    pub fn http_request_timeout(&self) -> Duration {
        Duration::from_millis(self.http_request_timeout_ms)
    }

    /// `HTTP_HEADER_READ_TIMEOUT_MS` and `HTTP_IDLE_TIMEOUT_MS`, checked:
    /// positive, and the idle timeout longer than a request may take (a
    /// handler still working must not have its connection closed under it).
    pub fn connection_timeouts(&self) -> Result<crate::http::ConnectionTimeouts, ConfigError> {
        for (name, value) in [
            ("HTTP_REQUEST_TIMEOUT_MS", self.http_request_timeout_ms),
            (
                "HTTP_HEADER_READ_TIMEOUT_MS",
                self.http_header_read_timeout_ms,
            ),
            ("HTTP_IDLE_TIMEOUT_MS", self.http_idle_timeout_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { name });
            }
        }
        if self.http_idle_timeout_ms <= self.http_request_timeout_ms {
            return Err(ConfigError::IdleTimeout {
                idle_ms: self.http_idle_timeout_ms,
                request_ms: self.http_request_timeout_ms,
            });
        }
        Ok(crate::http::ConnectionTimeouts {
            header_read: Duration::from_millis(self.http_header_read_timeout_ms),
            idle: Duration::from_millis(self.http_idle_timeout_ms),
        })
    }

    /// `CONSUMER_NAME`, or `<hostname>-<pid>` when unset.
    pub fn consumer_name(&self) -> String {
        self.consumer_name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()))
    }

    /// `FLUSH_INTERVAL_MS` as a duration.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms)
    }

    /// `ALERT_MAX_LATENESS` as a duration.
    pub fn alert_max_lateness(&self) -> Result<Duration, ConfigError> {
        crate::alerts::rules::parse_duration(&self.alert_max_lateness).ok_or_else(|| {
            ConfigError::Duration {
                name: "ALERT_MAX_LATENESS",
                value: self.alert_max_lateness.clone(),
            }
        })
    }

    /// `ADMIN_JWT_MAX_TTL` as a duration (at least a second).
    pub fn admin_jwt_max_ttl(&self) -> Result<Duration, ConfigError> {
        crate::alerts::rules::parse_duration(&self.admin_jwt_max_ttl)
            .filter(|ttl| ttl.as_secs() > 0)
            .ok_or_else(|| ConfigError::Duration {
                name: "ADMIN_JWT_MAX_TTL",
                value: self.admin_jwt_max_ttl.clone(),
            })
    }

    /// The rules `ALERT_RULES` names (reads the file).
    pub fn alert_rules(&self) -> Result<crate::alerts::rules::RuleSet, ConfigError> {
        crate::alerts::rules::RuleSet::from_setting(self.alert_rules.as_deref())
            .map_err(|e| ConfigError::AlertRules(e.to_string()))
    }

    /// `CLAIM_IDLE_MS` as a duration.
    pub fn claim_idle(&self) -> Duration {
        Duration::from_millis(self.claim_idle_ms)
    }

    /// `ERASE_KEEP_DETAIL_KEYS` as a list.
    pub fn erase_keep_detail_keys(&self) -> Vec<String> {
        self.erase_keep_detail_keys
            .split(',')
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The dead-letter stream of shard 0: with one shard,
    /// `<STREAM_KEY>:dead`; each shard's is `stream_shards().dead_key(k)`.
    pub fn dead_letter_key(&self) -> String {
        self.stream_shards().dead_key(0)
    }

    /// The stream's shards (`STREAM_KEY`, `STREAM_SHARDS`).
    pub fn stream_shards(&self) -> activity_tracker::StreamShards {
        activity_tracker::StreamShards::new(&self.stream_key, self.stream_shards)
    }

    /// The Redis at `REDIS_URL` (a cluster when it lists several nodes or
    /// `REDIS_CLUSTER` is set); nothing is contacted.
    pub fn redis_client(&self) -> Result<activity_tracker::RedisClient, ConfigError> {
        redis_client(&self.redis_url, self.redis_cluster)
    }
}

impl RedriveArgs {
    /// The Redis at `REDIS_URL`, as for `serve`.
    pub fn redis_client(&self) -> Result<activity_tracker::RedisClient, ConfigError> {
        redis_client(&self.redis_url, self.redis_cluster)
    }
}

/// The Redis at `url` (every node of a list must start with a Redis scheme).
fn redis_client(url: &str, cluster: bool) -> Result<activity_tracker::RedisClient, ConfigError> {
    let invalid = |reason: String| ConfigError::RedisUrl {
        url: redact(url),
        reason,
    };
    for node in url
        .split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
    {
        if !["redis://", "rediss://", "redis+unix://", "unix://"]
            .iter()
            .any(|scheme| node.starts_with(scheme))
        {
            return Err(invalid(
                "each node must start with redis://, rediss:// or unix://".to_owned(),
            ));
        }
    }
    activity_tracker::RedisClient::open(url, cluster).map_err(|e| invalid(e.to_string()))
}

/// `STREAM_SHARDS`: 1 to `MAX_STREAM_SHARDS`.
fn parse_stream_shards(text: &str) -> Result<usize, String> {
    let max = activity_tracker::MAX_STREAM_SHARDS;
    match text.trim().parse::<usize>() {
        Ok(count) if (1..=max).contains(&count) => Ok(count),
        _ => Err(format!("must be a whole number from 1 to {max}")),
    }
}

impl DatabaseArgs {
    /// Checks that `DATABASE_URL` parses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_database_url(&self.database_url)
    }
}

fn validate_database_url(url: &str) -> Result<(), ConfigError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError::DatabaseUrl {
            url: redact(url),
            reason: "it must start with postgres:// or postgresql://".to_owned(),
        });
    }
    sqlx::postgres::PgConnectOptions::from_str(url)
        .map(drop)
        .map_err(|e| ConfigError::DatabaseUrl {
            url: redact(url),
            reason: e.to_string(),
        })
}

/// The URL without its password (`redis://user:***@host`), for messages
/// and logs.
pub fn redact(url: &str) -> String {
    // A Redis Cluster's nodes, each a URL of its own.
    if url.contains(',') {
        return url.split(',').map(redact).collect::<Vec<_>>().join(",");
    }
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((auth, host)) => match auth.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => url.to_owned(),
            },
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The machine's name, for the default consumer name (no `unsafe` call:
/// read from the kernel's file, then the environment).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "processor".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privacy_settings_parse() {
        let config = serve(&[
            "--ip-truncation",
            "24,48",
            "--audit-admin-reads",
            "true",
            "--erase-keep-detail-keys",
            "status, route,",
        ]);
        assert_eq!(
            config.ip_truncation,
            Some(activity_tracker::IpTruncation::new(24, 48).unwrap())
        );
        assert!(config.audit_admin_reads);
        assert_eq!(config.erase_keep_detail_keys(), ["status", "route"]);
        let error =
            Cli::try_parse_from(["activity-processor", "serve", "--ip-truncation", "33,48"])
                .unwrap_err()
                .to_string();
        assert!(error.contains("e.g. 24,48"), "{error}");
    }

    #[test]
    fn the_jwt_lifetime_bound_parses_and_refuses_nonsense() {
        let default = serve(&[]);
        assert_eq!(
            default.admin_jwt_max_ttl().unwrap(),
            Duration::from_secs(86_400)
        );
        let short = serve(&["--admin-jwt-max-ttl", "15m"]);
        assert_eq!(short.admin_jwt_max_ttl().unwrap(), Duration::from_secs(900));
        short.validate().unwrap();
        for bad in ["0s", "forever", ""] {
            let config = serve(&["--admin-jwt-max-ttl", bad]);
            let error = config.validate().unwrap_err().to_string();
            assert!(error.starts_with("ADMIN_JWT_MAX_TTL"), "{bad}: {error}");
        }
    }

    fn serve(args: &[&str]) -> Config {
        let mut all = vec!["activity-processor", "serve"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).unwrap().command {
            Command::Serve(config) => config,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::from_env();
        config.validate().unwrap();
        assert_eq!(config.stream_key, "user_activities_stream");
        assert_eq!(config.dead_letter_key(), "user_activities_stream:dead");
        assert_eq!(config.retention_days, 0);
        assert!(config.legacy_list_key.is_none());
        assert!(config.ip_truncation.is_none() && !config.audit_admin_reads);
        assert_eq!(config.erasure_hold_days, 30);
        assert_eq!(
            config.erase_keep_detail_keys(),
            ["method", "route", "status", "latency_ms", "request_id"]
        );
        assert!(
            config
                .consumer_name()
                .ends_with(&format!("-{}", std::process::id()))
        );
        let roles = config.serve_roles().unwrap();
        assert!(roles.consumer && roles.admin && roles.ingest);
        assert_eq!(config.ingest_listen, "127.0.0.1:8081");
        assert!(config.ingest_write_keys().unwrap().is_none());
        assert!(config.ingest_rate_limit.is_none());
    }

    #[test]
    fn ingest_settings_parse_and_keys_stay_hidden() {
        let config = serve(&[
            "--serve-roles",
            "ingest",
            "--ingest-write-keys",
            "web=secret-key-1,bare-key",
            "--ingest-trusted-ip-sources",
            "web",
            "--ingest-trusted-proxies",
            "10.0.0.0/8, fd00::/8",
        ]);
        config.validate().unwrap();
        let roles = config.serve_roles().unwrap();
        assert!(roles.ingest && !roles.admin && !roles.consumer);
        let keys = config.ingest_write_keys().unwrap().unwrap();
        assert_eq!(keys.sources(), ["default", "web"]);
        assert_eq!(config.ingest_trusted_ip_sources(), ["web"]);
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("secret-key-1") && !shown.contains("bare-key"),
            "{shown}"
        );
    }

    #[test]
    fn misconfiguration_is_one_clear_line() {
        for (args, needle) in [
            (&["--batch-size", "0"][..], "BATCH_SIZE must be at least 1"),
            (&["--redis-url", "http://x"][..], "REDIS_URL"),
            (&["--database-url", "mysql://x"][..], "DATABASE_URL"),
            (&["--admin-listen", "nowhere"][..], "ADMIN_LISTEN"),
            (&["--pseudonym-key", "short"][..], "PSEUDONYM_KEY"),
            (
                &["--serve-roles", "consumer,web"][..],
                "SERVE_ROLES \"consumer,web\": unknown role `web`",
            ),
            (&["--serve-roles", " , "][..], "SERVE_ROLES"),
            (
                &["--serve-roles", "ingest"][..],
                "INGEST_WRITE_KEYS is unset",
            ),
            (&["--ingest-listen", "nowhere"][..], "INGEST_LISTEN"),
            (&["--ingest-write-keys", "web="][..], "INGEST_WRITE_KEYS"),
            (
                &["--ingest-trusted-proxies", "10.0.0.0/33"][..],
                "INGEST_TRUSTED_PROXIES",
            ),
            (&["--ingest-rate-limit", "0"][..], "INGEST_RATE_LIMIT"),
            (
                &[
                    "--ingest-write-keys",
                    "web=k1",
                    "--ingest-trusted-ip-sources",
                    "app",
                ][..],
                "INGEST_TRUSTED_IP_SOURCES",
            ),
        ] {
            let message = serve(args).validate().unwrap_err().to_string();
            assert!(message.contains(needle), "{message}");
            assert_eq!(message.lines().count(), 1, "{message}");
        }
    }
}
