//! The Redis connections the stream sink writes through: for a single
//! node, a few blocking connections written on tokio's blocking threads;
//! for a Redis Cluster, the cluster client's own connection. A single
//! node is sent each batch's commands as the sink packed them in RESP
//! itself, with the batch's lines written to the socket straight from the
//! batch's own buffer ([`PackedCommands`]): no copy of a line on its way
//! (the `redis` crate's async path copies it into a `Cmd`, into the packed
//! pipeline and into the connection's write buffer: three copies).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::SinkError;
use crate::{RedisClient, RedisConnection, is_connection_failure};

/// Where the sink's connections come from.
pub(super) enum Connections {
    /// Blocking connections to one node, as many as writes under way
    /// (`pool_size`). One idle for a while is checked with `PING` when
    /// taken out, and one that fails at once is replaced and its write
    /// made again, so a connection broken by a Redis restart never fails a
    /// batch.
    Node {
        /// The client and the idle connections, shared with the blocking
        /// threads that write.
        node: Arc<Node>,
        /// One permit a write under way: at most `pool_size` connections.
        permits: Arc<tokio::sync::Semaphore>,
        /// How long a write waits for a permit and then for a new
        /// connection.
        connect_timeout: Duration,
    },
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

/// A batch's commands in RESP for a single node, in the order they are
/// sent: `head`, then the bytes of `shared` (the batch's lines, the last
/// argument of its `XADD`, shared with the batch rather than copied), then
/// `tail`.
#[derive(Debug, Default)]
pub(super) struct PackedCommands {
    head: Vec<u8>,
    pub(super) shared: Option<Arc<Vec<u8>>>,
    tail: Vec<u8>,
    /// How many commands, so how many replies.
    pub(super) count: usize,
}

impl PackedCommands {
    /// One command packed already.
    pub(super) fn one(packed: Vec<u8>) -> Self {
        PackedCommands {
            head: packed,
            count: 1,
            ..PackedCommands::default()
        }
    }

    /// Where the next bytes of commands go: after the shared part once
    /// there is one.
    pub(super) fn out(&mut self) -> &mut Vec<u8> {
        if self.shared.is_some() {
            &mut self.tail
        } else {
            &mut self.head
        }
    }

    /// The parts, in order.
    fn parts(&self) -> [&[u8]; 3] {
        [
            &self.head,
            self.shared.as_deref().map_or(&[][..], Vec::as_slice),
            &self.tail,
        ]
    }
}

/// A connection between writes, and when its last write succeeded.
struct IdleConnection {
    conn: redis::Connection,
    since: Instant,
}

/// How long an idle connection is trusted without a `PING`. Checking one
/// that wrote a moment ago costs a round trip that waits behind the other
/// writes Redis is storing (it answers in order), which halved the
/// tracker's rate with two writes under way (docs/benchmarks.md); one that
/// broke meanwhile (a Redis restart within this time) fails its write,
/// which is retried on a new connection.
const TRUSTED_IDLE: Duration = Duration::from_secs(1);

/// `client` with `TCP_NODELAY` on its connections. A batch goes out as
/// three writes (the commands' head, the lines from the batch's buffer,
/// the rest); with Nagle's algorithm the last, small one waits for the
/// acknowledgement of the lines, which Redis delays: a few milliseconds a
/// batch, which capped the tracker's rate (docs/benchmarks.md).
fn without_nagle(client: &redis::Client) -> Result<redis::Client, redis::RedisError> {
    let info = client.get_connection_info().clone();
    let settings = info.tcp_settings().clone().set_nodelay(true);
    redis::Client::open(info.set_tcp_settings(settings))
}

/// A single node's client and its idle connections.
pub(super) struct Node {
    /// Opens connections (lazily: nothing is contacted until a write).
    client: redis::Client,
    /// Connections between writes; locked only to push or pop one.
    idle: Mutex<Vec<IdleConnection>>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Connections::Node { permits, .. } => f
                .debug_struct("Node")
                .field("free_permits", &permits.available_permits())
                .finish(),
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
            RedisClient::Node(client) => Connections::Node {
                node: Arc::new(Node {
                    client: without_nagle(&client)?,
                    idle: Mutex::new(Vec::new()),
                }),
                permits: Arc::new(tokio::sync::Semaphore::new(pool_size.max(1) as usize)),
                connect_timeout,
            },
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

    /// Whether writes go to a single node (as packed commands, through
    /// [`Connections::send_packed`]) rather than to a cluster (as a
    /// pipeline, through [`Connections::cluster`]).
    pub(super) fn is_node(&self) -> bool {
        matches!(self, Connections::Node { .. })
    }

    /// Sends `packed` (commands in RESP, made by the caller) to the single
    /// node on a blocking thread and reads a reply for each, each waited
    /// for at most `response_timeout`; any error reply fails the write. A
    /// connection that failed is dropped, not put back.
    pub(super) async fn send_packed(
        &self,
        packed: PackedCommands,
        response_timeout: Duration,
    ) -> Result<(), SinkError> {
        let Connections::Node {
            node,
            permits,
            connect_timeout,
        } = self
        else {
            unreachable!("send_packed is only called for a single node (is_node)")
        };
        let permit = tokio::time::timeout(*connect_timeout, permits.clone().acquire_owned())
            .await
            .map_err(|_| SinkError::PoolTimedOut)?
            .expect("never closed: the semaphore lives as long as the sink");
        let node = node.clone();
        let connect_timeout = *connect_timeout;
        tokio::task::spawn_blocking(move || {
            let result = node.send(&packed, connect_timeout, response_timeout);
            drop(permit);
            result
        })
        .await
        .map_err(|e| SinkError::unavailable(std::io::Error::other(e)))?
        .map_err(SinkError::unavailable)
    }

    /// The cluster connection for one write.
    pub(super) async fn cluster(&self) -> Result<RedisConnection, SinkError> {
        let Connections::Cluster {
            client,
            connect_timeout,
            response_timeout,
            shared,
        } = self
        else {
            unreachable!("cluster is only called for a cluster (!is_node)")
        };
        let mut shared = shared.lock().await;
        if shared.is_none() {
            let conn = tokio::time::timeout(
                *connect_timeout,
                client.connect(*connect_timeout, Some(*response_timeout)),
            )
            .await
            .map_err(|_| SinkError::PoolTimedOut)?
            .map_err(SinkError::unavailable)?;
            *shared = Some(conn);
        }
        Ok(shared.clone().expect("set just above"))
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

impl Node {
    /// Takes an idle connection, or opens one. One that wrote within
    /// [`TRUSTED_IDLE`] is taken as it is (`true`: not checked); an older
    /// one must answer `PING` first.
    fn checkout(
        &self,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> redis::RedisResult<(redis::Connection, bool)> {
        loop {
            let idle = self
                .idle
                .lock()
                .expect("never poisoned: no panics held")
                .pop();
            let Some(IdleConnection { mut conn, since }) = idle else {
                break;
            };
            if since.elapsed() < TRUSTED_IDLE {
                return Ok((conn, true));
            }
            if redis::cmd("PING").query::<()>(&mut conn).is_ok() {
                return Ok((conn, false));
            }
        }
        Ok((self.connect(connect_timeout, response_timeout)?, false))
    }

    /// A new connection, its timeouts set.
    fn connect(
        &self,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> redis::RedisResult<redis::Connection> {
        let conn = self.client.get_connection_with_timeout(connect_timeout)?;
        conn.set_read_timeout(Some(response_timeout))?;
        conn.set_write_timeout(Some(response_timeout))?;
        Ok(conn)
    }

    /// One write: `packed` sent, a reply a command read and checked. A
    /// connection taken unchecked that turns out broken (closed by a Redis
    /// restart: the write or the read fails at once, nothing stored) is
    /// replaced by a new one and the write made again; a timeout is not
    /// (Redis may have stored the entry). On any failure the connection is
    /// dropped (it may hold half a command, or replies not read).
    fn send(
        &self,
        packed: &PackedCommands,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> redis::RedisResult<()> {
        let (mut conn, unchecked) = self.checkout(connect_timeout, response_timeout)?;
        let result = match write(&mut conn, packed) {
            Err(error)
                if unchecked
                    && (error.is_connection_dropped() || error.is_io_error())
                    && !error.is_timeout() =>
            {
                conn = self.connect(connect_timeout, response_timeout)?;
                write(&mut conn, packed)
            }
            result => result,
        };
        result?;
        self.idle
            .lock()
            .expect("never poisoned: no panics held")
            .push(IdleConnection {
                conn,
                since: Instant::now(),
            });
        Ok(())
    }
}

/// Sends `packed` part by part on `conn` and reads a reply a command,
/// failing on an error reply.
fn write(conn: &mut redis::Connection, packed: &PackedCommands) -> redis::RedisResult<()> {
    for part in packed.parts() {
        if !part.is_empty() {
            conn.send_packed_command(part)?;
        }
    }
    let mut replies = 0;
    while replies < packed.count {
        match conn.recv_response()? {
            // RESP3 may put pushed data between replies.
            redis::Value::Push { .. } => {}
            value => {
                value.extract_error()?;
                replies += 1;
            }
        }
    }
    Ok(())
}
