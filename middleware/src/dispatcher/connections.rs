//! The Redis connections the stream sink writes through: a `bb8-redis`
//! pool for a single node, the cluster client's own connection for a
//! Redis Cluster. The sink sees one [`RedisConnection`] either way.

use std::time::Duration;

use bb8_redis::RedisConnectionManager;

use super::SinkError;
use crate::{RedisClient, RedisConnection, is_connection_failure};

/// Where the sink's connections come from.
pub(super) enum Connections {
    /// Multiplexed connections, checked with `PING` when taken out so a
    /// connection broken by a Redis restart is replaced; as many as
    /// writes under way.
    Node(bb8::Pool<RedisConnectionManager>),
    /// One cluster connection shared by every write: it already holds a
    /// multiplexed connection to each master, routes each command to its
    /// key's master, follows `MOVED`/`ASK` and reconnects nodes. Opened on
    /// the first write and again after a connection-level failure, so a
    /// failed master's promoted replica is found by a fresh slot map.
    Cluster {
        client: Box<RedisClient>,
        connect_timeout: Duration,
        response_timeout: Duration,
        shared: tokio::sync::Mutex<Option<RedisConnection>>,
    },
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Connections::Node(pool) => f.debug_tuple("Node").field(&pool.state()).finish(),
            Connections::Cluster { .. } => f.write_str("Cluster"),
        }
    }
}

impl Connections {
    /// Connections to `client`, connecting lazily (nothing is contacted
    /// here), each write waiting at most `connect_timeout` for one.
    pub(super) fn new(
        client: RedisClient,
        pool_size: u32,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self, redis::RedisError> {
        Ok(match client {
            RedisClient::Node(node) => {
                let manager = RedisConnectionManager::new(node.get_connection_info().clone())?;
                let pool = bb8::Pool::builder()
                    .max_size(pool_size.max(1))
                    .connection_timeout(connect_timeout)
                    .build_unchecked(manager);
                Connections::Node(pool)
            }
            cluster @ RedisClient::Cluster(_) => Connections::Cluster {
                client: Box::new(cluster),
                connect_timeout,
                response_timeout,
                shared: tokio::sync::Mutex::new(None),
            },
        })
    }

    /// Sets how long the cluster connection waits for each reply (a pooled
    /// connection gets its timeout at each write instead).
    pub(super) fn set_cluster_response_timeout(&mut self, timeout: Duration) {
        if let Connections::Cluster {
            response_timeout, ..
        } = self
        {
            *response_timeout = timeout;
        }
    }

    /// A connection for one write, its replies waited for at most
    /// `response_timeout`.
    pub(super) async fn get(&self, response_timeout: Duration) -> Result<Writer<'_>, SinkError> {
        match self {
            Connections::Node(pool) => {
                let mut conn = pool.get().await.map_err(|e| match e {
                    bb8::RunError::User(e) => SinkError::unavailable(e),
                    bb8::RunError::TimedOut => SinkError::PoolTimedOut,
                })?;
                conn.set_response_timeout(response_timeout);
                Ok(Writer::Pooled(conn))
            }
            Connections::Cluster {
                client,
                connect_timeout,
                response_timeout: cluster_timeout,
                shared,
            } => {
                let mut shared = shared.lock().await;
                if shared.is_none() {
                    let conn = tokio::time::timeout(
                        *connect_timeout,
                        client.connect(*connect_timeout, Some(*cluster_timeout)),
                    )
                    .await
                    .map_err(|_| SinkError::PoolTimedOut)?
                    .map_err(SinkError::unavailable)?;
                    *shared = Some(conn);
                }
                Ok(Writer::Shared(shared.clone().expect("set just above")))
            }
        }
    }

    /// Forgets the cluster connection after `error` if it says the
    /// connection (not the command) failed, so the next write opens a new
    /// one with a fresh slot map. A pooled connection is checked by the
    /// pool instead.
    pub(super) async fn after_error(&self, error: &redis::RedisError) {
        if let Connections::Cluster { shared, .. } = self
            && is_connection_failure(error)
        {
            *shared.lock().await = None;
        }
    }
}

/// The connection one write goes through.
pub(super) enum Writer<'a> {
    Pooled(bb8::PooledConnection<'a, RedisConnectionManager>),
    Shared(RedisConnection),
}

impl Writer<'_> {
    /// Sends `pipe` and takes its replies as `()` (a server error still
    /// fails).
    pub(super) async fn send(&mut self, pipe: &redis::Pipeline) -> redis::RedisResult<()> {
        match self {
            Writer::Pooled(conn) => pipe.query_async::<()>(&mut **conn).await,
            Writer::Shared(conn) => pipe.query_async::<()>(conn).await,
        }
    }
}
