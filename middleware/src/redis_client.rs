//! One connection abstraction over a single Redis node and a Redis
//! Cluster, for the tracker and the processor alike.
//!
//! A single node is the `redis` crate's `Client` and its multiplexed
//! connection; a cluster is the crate's cluster client, whose connection
//! routes each command by its key's slot, follows `MOVED` and `ASK`, and
//! reconnects to nodes that come back or replace a failed master. Code
//! above this module holds a [`RedisClient`] and a [`RedisConnection`] and
//! sends commands through `redis::aio::ConnectionLike`, whichever it is.
//!
//! A cluster is meant when `REDIS_URL` lists several nodes separated by
//! commas (`redis://a:7000,redis://b:7001`), or when asked for explicitly
//! (`REDIS_CLUSTER=true`, for a cluster reached through one address).

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// How many times the cluster client sends a command again itself (after
/// `MOVED` or `ASK`, a refused connection, `CLUSTERDOWN` or `TRYAGAIN`)
/// before its caller sees the error. The crate's default, 16 retries
/// waiting from 1.28 s up to 655 s, would hold a tracker's batch write
/// for minutes while a failover or an outage lasts (a production failover
/// takes `cluster-node-timeout`, 15 s by default, and more), so its
/// buffer would fill and drop events instead of falling back to
/// PostgreSQL. With these a command fails within about two seconds and
/// the caller's own retries and fallback take over, as with one node.
const CLUSTER_RETRIES: u32 = 5;

/// The cluster client's wait before retry `r`: a random time from the
/// first figure to `min(first * 2^r, second)` milliseconds (at most
/// 0.1, 0.2, 0.4, 0.8, 0.8 s for the five retries).
const CLUSTER_RETRY_WAIT_MS: (u64, u64) = (50, 800);

/// Where Redis is: one node, or the seed nodes of a cluster.
#[derive(Clone)]
pub enum RedisClient {
    /// A single Redis server.
    Node(redis::Client),
    /// A Redis Cluster, known by the nodes it was given (the rest are
    /// discovered from them).
    Cluster(ClusterClient),
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The clients' own `Debug` would print passwords of the URLs.
        f.write_str(match self {
            RedisClient::Node(_) => "RedisClient::Node",
            RedisClient::Cluster(_) => "RedisClient::Cluster",
        })
    }
}

impl RedisClient {
    /// The Redis at `url`: a cluster when `url` lists several nodes
    /// separated by commas, or when `cluster` is set; else a single node.
    /// A node given without a scheme (`host:port`) takes `redis://`. Fails
    /// only on a URL that cannot be parsed; nothing is contacted.
    pub fn open(url: &str, cluster: bool) -> RedisResult<Self> {
        let nodes = cluster_nodes(url);
        if !cluster && nodes.len() == 1 {
            return Ok(RedisClient::Node(redis::Client::open(url.trim())?));
        }
        let infos = nodes
            .iter()
            .map(|node| redis::IntoConnectionInfo::into_connection_info(node.as_str()))
            .collect::<RedisResult<Vec<_>>>()?;
        let client = ClusterClientBuilder::new(infos)
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(CLUSTER_RETRY_WAIT_MS.0)
            .max_retry_wait(CLUSTER_RETRY_WAIT_MS.1)
            .retry_wait_formula(CLUSTER_RETRY_WAIT_MS.0, 2)
            .build()?;
        Ok(RedisClient::Cluster(client))
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisClient::Cluster(_))
    }

    /// Opens a connection, waiting at most `connect_timeout` for each node
    /// and `response_timeout` (when set; else the `redis` crate's default)
    /// for each reply. A cluster connection connects to every master and
    /// reads the slot map before it returns.
    pub async fn connect(
        &self,
        connect_timeout: Duration,
        response_timeout: Option<Duration>,
    ) -> RedisResult<RedisConnection> {
        match self {
            RedisClient::Node(client) => {
                let mut config =
                    AsyncConnectionConfig::new().set_connection_timeout(Some(connect_timeout));
                if let Some(timeout) = response_timeout {
                    config = config.set_response_timeout(Some(timeout));
                }
                let conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(RedisConnection::Node(conn))
            }
            RedisClient::Cluster(client) => {
                let mut config = ClusterConfig::new().set_connection_timeout(connect_timeout);
                if let Some(timeout) = response_timeout {
                    config = config.set_response_timeout(timeout);
                }
                let conn = client.get_async_connection_with_config(config).await?;
                Ok(RedisConnection::Cluster(conn))
            }
        }
    }
}

impl From<redis::Client> for RedisClient {
    fn from(client: redis::Client) -> Self {
        RedisClient::Node(client)
    }
}

/// The node URLs of a comma-separated list, each with a scheme.
fn cluster_nodes(url: &str) -> Vec<String> {
    url.split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .map(|node| match node.contains("://") {
            true => node.to_owned(),
            false => format!("redis://{node}"),
        })
        .collect()
}

/// Whether `error` says the connection failed rather than the command
/// (the socket is gone, a reply timed out, the cluster's slot map is
/// stale or a node is down): the connection should be dropped and a new
/// one opened, which for a cluster reads the slot map afresh.
///
/// A slot map gone stale also shows inside the errors of a transaction
/// or a pipeline: the cluster client follows `MOVED` for a single
/// command, but a `MULTI`/`EXEC` sent to a slot's old owner comes back
/// as `EXECABORT` holding a `MOVED` per command, and is neither
/// redirected nor does it refresh the map. Retried on the same
/// connection it would fail the same way for ever.
pub fn is_connection_failure(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
        || error.is_cluster_error()
        || holds_cluster_error(error)
}

/// Whether a pipeline's or a transaction's errors include a redirection
/// or a cluster state error.
fn holds_cluster_error(error: &redis::RedisError) -> bool {
    use redis::ServerErrorKind::{Ask, ClusterDown, Moved, TryAgain};
    error.clone().into_server_errors().is_some_and(|errors| {
        errors
            .iter()
            .any(|(_, e)| matches!(e.kind(), Some(Moved | Ask | TryAgain | ClusterDown)))
    })
}

/// A connection to a node or to a cluster; both multiplex commands, so a
/// clone shares the connection. A blocking command (`XREADGROUP ...
/// BLOCK`) holds up every command queued behind it on the same
/// connection: give it a connection of its own.
#[derive(Clone)]
pub enum RedisConnection {
    /// A single node's multiplexed connection.
    Node(MultiplexedConnection),
    /// A cluster's connection (one multiplexed connection per node).
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisConnection::Node(_) => "RedisConnection::Node",
            RedisConnection::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl RedisConnection {
    /// Sets how long a single node's replies are waited for; a cluster
    /// connection keeps the timeout it was opened with.
    pub fn set_response_timeout(&mut self, timeout: Duration) {
        if let RedisConnection::Node(conn) = self {
            conn.set_response_timeout(timeout);
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Node(conn) => conn.req_packed_command(cmd),
            RedisConnection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Node(conn) => conn.req_packed_commands(pipeline, offset, count),
            RedisConnection::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Node(conn) => conn.get_db(),
            RedisConnection::Cluster(conn) => conn.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_is_a_node_and_a_list_is_a_cluster() {
        assert!(
            !RedisClient::open("redis://127.0.0.1:6379", false)
                .unwrap()
                .is_cluster()
        );
        assert!(
            RedisClient::open("redis://127.0.0.1:6379", true)
                .unwrap()
                .is_cluster()
        );
        assert!(
            RedisClient::open("redis://127.0.0.1:7000, 127.0.0.1:7001,", false)
                .unwrap()
                .is_cluster()
        );
        assert!(RedisClient::open("nonsense://x", false).is_err());
        assert_eq!(
            cluster_nodes("redis://a:1, b:2 ,,rediss://c:3"),
            ["redis://a:1", "redis://b:2", "rediss://c:3"]
        );
    }
}
