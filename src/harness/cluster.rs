//! A private Redis Cluster on free ports (masters, each with its
//! replicas) that a test can crash a master of and wait for the failover.
//!
//! The harness talks to the nodes with plain single-node connections and
//! parses `CLUSTER NODES` itself, so it checks the product's cluster code
//! instead of sharing it: a key's slot is computed here ([`key_slot`]) and
//! checked against `CLUSTER KEYSLOT` by the harness's own test, and
//! [`RedisCluster::query`] routes a command to the master of its key's slot
//! and follows `MOVED` and `ASK` replies.
//!
//! Starting is blocking (it spawns processes and waits for them);
//! [`RedisCluster::wait_for_failover`] and the commands are async, so a
//! tracker or a processor running in the same runtime keeps running while
//! the cluster fails over.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::TcpListener;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::{FromRedisValue, Value};

use super::{command_failed, port_open, remove_dir, temp_dir, wait_blocking};

/// The slots of a Redis Cluster.
pub const CLUSTER_SLOTS: u16 = 16384;

/// How a [`RedisCluster`] is laid out.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Masters, which share the slots (`redis-cli --cluster create` needs
    /// at least 3).
    pub masters: usize,
    /// Replicas of each master.
    pub replicas_per_master: usize,
    /// `cluster-node-timeout`: how long a node may not answer before the
    /// others count it as failing. Small, so a failover takes seconds.
    pub node_timeout: Duration,
    /// `cluster-require-full-coverage`: `true` (Redis's default) stops the
    /// whole cluster taking commands while any slot has no master, as a
    /// deployment left at its defaults does during a failover; `false`
    /// keeps the other masters serving their slots meanwhile.
    pub require_full_coverage: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            masters: 3,
            replicas_per_master: 1,
            node_timeout: Duration::from_millis(1000),
            require_full_coverage: true,
        }
    }
}

/// A node of the cluster: its id (`CLUSTER MYID`) and its port on 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterNode {
    /// The node's id (40 hex digits).
    pub id: String,
    /// Its client port on 127.0.0.1.
    pub port: u16,
}

impl ClusterNode {
    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl fmt::Display for ClusterNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "127.0.0.1:{}", self.port)
    }
}

/// A master as every live node sees it: the slots it serves and its
/// replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    /// The master itself.
    pub node: ClusterNode,
    /// Its slot ranges, in order.
    pub slots: Vec<RangeInclusive<u16>>,
    /// Its replicas that are not failing, by port.
    pub replicas: Vec<ClusterNode>,
}

impl Master {
    /// Whether it serves `slot`.
    pub fn owns(&self, slot: u16) -> bool {
        self.slots.iter().any(|range| range.contains(&slot))
    }

    /// How many slots it serves.
    pub fn slot_count(&self) -> usize {
        self.slots
            .iter()
            .map(|r| usize::from(r.end() - r.start()) + 1)
            .sum()
    }
}

/// What [`RedisCluster::wait_for_failover`] saw happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    /// The master that was killed.
    pub dead: ClusterNode,
    /// Its replica, now the master of its slots.
    pub promoted: ClusterNode,
    /// The slots that moved from `dead` to `promoted`.
    pub slots: Vec<RangeInclusive<u16>>,
    /// From the kill to the cluster being whole again.
    pub took: Duration,
}

/// The Redis Cluster slot of `key`: CRC16 (XMODEM) of the key, or of its
/// hash tag (what lies between the first `{` and the next `}`, when that
/// is not empty), modulo 16384; what `CLUSTER KEYSLOT` answers.
pub fn key_slot(key: impl AsRef<[u8]>) -> u16 {
    let key = key.as_ref();
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16_xmodem(hashed) % CLUSTER_SLOTS
}

fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// How many of `keys` land on each of `masters` (by [`key_slot`]), in the
/// order of `masters`, masters without any key included with 0: how evenly
/// a set of keys (the shards of a stream) spreads over the cluster.
/// Panics if a key's slot has no master in `masters`.
pub fn keys_per_master<K: AsRef<[u8]>>(
    masters: &[Master],
    keys: impl IntoIterator<Item = K>,
) -> Vec<(ClusterNode, usize)> {
    let mut counts: Vec<(ClusterNode, usize)> =
        masters.iter().map(|m| (m.node.clone(), 0)).collect();
    for key in keys {
        let slot = key_slot(&key);
        let index = masters
            .iter()
            .position(|m| m.owns(slot))
            .unwrap_or_else(|| panic!("no master serves slot {slot}"));
        counts[index].1 += 1;
    }
    counts
}

/// One `redis-server` process of the cluster.
#[derive(Debug)]
struct NodeProcess {
    /// Client port.
    port: u16,
    /// Cluster bus port (`cluster-port`), chosen free as well: the default
    /// `port + 10000` may be taken or beyond 65535 for a free port.
    bus_port: u16,
    /// Its own directory (append-only files, `nodes.conf`, log).
    dir: PathBuf,
    /// The running server; `None` once killed.
    child: Option<Child>,
}

/// A Redis Cluster of the test's own, on free ports in one temporary
/// directory: every node is killed and the directory removed on drop.
///
/// Each node runs `redis-server` with:
/// - `--cluster-enabled yes --cluster-config-file <dir>/nodes.conf`: a
///   cluster node, its cluster state in its own directory;
/// - `--cluster-node-timeout <ms>` ([`ClusterOptions::node_timeout`]):
///   small, so a crash is noticed and failed over in seconds;
/// - `--cluster-port <free>`: the bus port chosen free rather than
///   `port + 10000`;
/// - `--cluster-require-full-coverage` ([`ClusterOptions`]);
/// - `--appendonly yes --appendfsync everysec`: the deployment's
///   durability; a crashed master's writes survive through its replica
///   (replication), not its own file, which nothing reloads here;
/// - `--save ""`: no snapshots beside the append-only file;
/// - `--repl-diskless-sync-delay 0`: Redis 7 otherwise waits 5 s for more
///   replicas before the first full sync, and a replica without its data
///   is no use to a failover;
/// - `--port <free> --bind 127.0.0.1 --dir <node dir> --logfile`: private,
///   its log kept for the errors of [`RedisCluster::start`].
#[derive(Debug)]
pub struct RedisCluster {
    /// How it was laid out.
    options: ClusterOptions,
    /// The temporary directory of all nodes, removed on drop.
    dir: PathBuf,
    /// Every node, in start order.
    nodes: Vec<NodeProcess>,
    /// The slot map as every live node agreed on it, after the start or
    /// the last failover.
    masters: Vec<Master>,
    /// A master killed and not yet failed over, with the time of the kill.
    killed: Option<(ClusterNode, Instant)>,
}

impl RedisCluster {
    /// Starts the default cluster: 3 masters with a replica each, a node
    /// timeout of 1 s. Blocks until the cluster is whole
    /// ([`RedisCluster::start_with`]).
    pub fn start() -> io::Result<Self> {
        Self::start_with(ClusterOptions::default())
    }

    /// Starts the nodes, joins them with `redis-cli --cluster create`, and
    /// blocks until every node reports `cluster_state:ok`, every node sees
    /// the same masters serving all slots with all their replicas, and
    /// every replica's link to its master is up (its first sync done).
    pub fn start_with(options: ClusterOptions) -> io::Result<Self> {
        if options.masters < 3 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a Redis Cluster needs at least 3 masters",
            ));
        }
        let count = options.masters * (1 + options.replicas_per_master);
        let ports = free_ports(2 * count)?;
        let dir = temp_dir("redis-cluster")?;
        let mut cluster = RedisCluster {
            options,
            dir,
            nodes: Vec::new(),
            masters: Vec::new(),
            killed: None,
        };
        for pair in ports.chunks(2) {
            let node_dir = cluster.dir.join(pair[0].to_string());
            std::fs::create_dir_all(&node_dir)?;
            let child = cluster.spawn(pair[0], pair[1], &node_dir)?;
            cluster.nodes.push(NodeProcess {
                port: pair[0],
                bus_port: pair[1],
                dir: node_dir,
                child: Some(child),
            });
        }
        for node in &cluster.nodes {
            let port = node.port;
            wait_blocking(
                &format!("cluster node {port} to accept connections"),
                Duration::from_secs(10),
                || port_open(port),
            )
            .map_err(|e| cluster.with_logs(e))?;
        }
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(
                cluster
                    .nodes
                    .iter()
                    .map(|n| format!("127.0.0.1:{}", n.port)),
            )
            .args([
                "--cluster-replicas",
                &cluster.options.replicas_per_master.to_string(),
            ])
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run redis-cli: {e}")))?;
        if !output.status.success() {
            return Err(cluster.with_logs(command_failed("redis-cli --cluster create", &output)));
        }
        let timeout = Duration::from_secs(30);
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            let views: Vec<_> = cluster.live_ports().map(|p| (p, view_sync(p))).collect();
            match cluster.assess(&views, None) {
                Ok(masters) => {
                    cluster.masters = masters;
                    return Ok(cluster);
                }
                Err(why) => last = why,
            }
            if Instant::now() >= deadline {
                let e = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the new cluster was not whole within {timeout:?}: {last}"),
                );
                return Err(cluster.with_logs(e));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn(&self, port: u16, bus_port: u16, dir: &Path) -> io::Result<Child> {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-port", &bus_port.to_string()])
            .arg("--cluster-config-file")
            .arg(dir.join("nodes.conf"))
            .args([
                "--cluster-node-timeout",
                &self.options.node_timeout.as_millis().to_string(),
            ])
            .args([
                "--cluster-require-full-coverage",
                yes_no(self.options.require_full_coverage),
            ])
            .args(["--appendonly", "yes"])
            .args(["--appendfsync", "everysec"])
            .args(["--save", ""])
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run redis-server: {e}")))
    }

    /// The ports of the nodes still running.
    fn live_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
    }

    /// `error`, with the last lines of every node's log appended.
    fn with_logs(&self, error: io::Error) -> io::Error {
        let mut text = error.to_string();
        for node in &self.nodes {
            let log = std::fs::read_to_string(node.dir.join("redis.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            text.push_str(&format!(
                "\n--- node {} (bus {}) log tail:",
                node.port, node.bus_port
            ));
            for line in &lines[lines.len().saturating_sub(8)..] {
                text.push_str("\n    ");
                text.push_str(line);
            }
        }
        io::Error::new(error.kind(), text)
    }

    /// The slot map when the views of every live node (`CLUSTER INFO` and
    /// `CLUSTER NODES`) show a whole cluster: state ok, the same masters
    /// serving all slots, `dead` not among them, every master's replicas
    /// all there (only checked without `dead`: the promoted one has none)
    /// and linked. Else why not.
    fn assess(
        &self,
        views: &[(u16, Result<NodeView, String>)],
        dead: Option<&ClusterNode>,
    ) -> Result<Vec<Master>, String> {
        let mut agreed: Option<Vec<Master>> = None;
        for (port, view) in views {
            let view = view.as_ref().map_err(|e| format!("node {port}: {e}"))?;
            if !view.info.contains("cluster_state:ok") {
                return Err(format!("node {port}: not cluster_state:ok"));
            }
            if let Some(link) = &view.replica_link
                && link != "up"
            {
                return Err(format!("replica {port}: master_link_status:{link}"));
            }
            let masters = parse_masters(&view.nodes)?;
            match &agreed {
                None => agreed = Some(masters),
                Some(first) if *first != masters => {
                    return Err(format!("node {port} sees another slot map"));
                }
                Some(_) => {}
            }
        }
        let masters = agreed.ok_or("no live node")?;
        if masters.len() != self.options.masters {
            return Err(format!("{} masters serve slots", masters.len()));
        }
        let covered: usize = masters.iter().map(Master::slot_count).sum();
        if covered != usize::from(CLUSTER_SLOTS) {
            return Err(format!("{covered} slots served"));
        }
        match dead {
            Some(dead) => {
                if masters.iter().any(|m| m.node.id == dead.id) {
                    return Err(format!("{dead} still serves slots"));
                }
            }
            None => {
                if let Some(m) = masters
                    .iter()
                    .find(|m| m.replicas.len() != self.options.replicas_per_master)
                {
                    return Err(format!("{} has {} replicas", m.node, m.replicas.len()));
                }
            }
        }
        Ok(masters)
    }

    /// Every node's address, `127.0.0.1:<port>`, dead ones included, in
    /// start order.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect()
    }

    /// The ports of every node, dead ones included, in start order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The process id of the node on `port` while it runs (`None` once
    /// killed, or for a port that is not one of the nodes'): for reading
    /// a node's CPU time from `/proc/<pid>/stat`, as `bench/redis_cluster.sh`
    /// does for every node.
    pub fn pid(&self, port: u16) -> Option<u32> {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .and_then(|n| n.child.as_ref())
            .map(Child::id)
    }

    /// `redis://127.0.0.1:<p1>,redis://127.0.0.1:<p2>,...`: every node,
    /// the form `REDIS_URL` takes for a cluster.
    pub fn redis_url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The options it was started with.
    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    /// The masters by their first slot, as every live node agreed after
    /// the start or the last [`RedisCluster::wait_for_failover`].
    pub fn masters(&self) -> &[Master] {
        &self.masters
    }

    /// The master serving `slot`.
    pub fn master_of_slot(&self, slot: u16) -> &Master {
        self.masters
            .iter()
            .find(|m| m.owns(slot))
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// The master serving `key`'s slot.
    pub fn master_of_key(&self, key: impl AsRef<[u8]>) -> &Master {
        self.master_of_slot(key_slot(key))
    }

    /// [`keys_per_master`] over this cluster's masters.
    pub fn keys_per_master<K: AsRef<[u8]>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Vec<(ClusterNode, usize)> {
        keys_per_master(&self.masters, keys)
    }

    /// `CLUSTER KEYSLOT key`, asked of a live node.
    pub async fn server_key_slot(&self, key: &str) -> redis::RedisResult<u16> {
        let port = self.live_ports().next().expect("a live node");
        let mut conn = connect(port).await?;
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut conn)
            .await
    }

    /// Sends `cmd`, whose key is `key`, to the master of `key`'s slot,
    /// following `MOVED` (to the node named) and `ASK` (with `ASKING`)
    /// replies up to 5 times. A fresh single-node connection each time.
    pub async fn query<T: FromRedisValue>(
        &self,
        key: impl AsRef<[u8]>,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        let mut port = self.master_of_key(key).node.port;
        let mut asking = false;
        let mut redirects = 0;
        loop {
            let mut conn = connect(port).await?;
            let reply: redis::RedisResult<Value> = if asking {
                let mut pipe = redis::pipe();
                pipe.cmd("ASKING").ignore().add_command(cmd.clone());
                pipe.query_async::<(Value,)>(&mut conn).await.map(|(v,)| v)
            } else {
                cmd.query_async(&mut conn).await
            };
            match reply {
                Ok(value) => return Ok(redis::from_redis_value(value)?),
                Err(e) if redirects < 5 && e.redirect_node().is_some() => {
                    let (addr, _) = e.redirect_node().expect("checked");
                    port = addr
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .ok_or_else(|| e.clone())?;
                    asking = e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::Ask);
                    redirects += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `XLEN key` on the master of its slot.
    pub async fn xlen(&self, key: &str) -> redis::RedisResult<u64> {
        self.query(key, redis::cmd("XLEN").arg(key)).await
    }

    /// The sum of `XLEN` over `keys` (the shards of a stream), each asked
    /// of the master of its slot.
    pub async fn xlen_total<K: AsRef<str>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> redis::RedisResult<u64> {
        let mut total = 0;
        for key in keys {
            total += self.xlen(key.as_ref()).await?;
        }
        Ok(total)
    }

    /// `WAIT <replicas> <timeout>` on every live master: returns once each
    /// has every write so far on all its replicas, or fails naming the
    /// first that had not within `timeout`. Replication is asynchronous:
    /// what a master acknowledged and had not sent on is lost with it.
    pub async fn wait_replicated(&self, timeout: Duration) -> redis::RedisResult<()> {
        for master in &self.masters {
            let wanted = master.replicas.len();
            if wanted == 0 {
                continue;
            }
            let mut conn = connect(master.node.port).await?;
            let acked: usize = redis::cmd("WAIT")
                .arg(wanted)
                .arg(timeout.as_millis() as u64)
                .query_async(&mut conn)
                .await?;
            if acked < wanted {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "not replicated",
                    format!(
                        "{}: {acked} of {wanted} replicas within {timeout:?}",
                        master.node
                    ),
                )));
            }
        }
        Ok(())
    }

    /// How far the replicas of the master serving `slot` are behind it, as
    /// the master reports (`INFO replication`): its replication offset
    /// minus the lowest of its replicas' acknowledged offsets, in bytes of
    /// the replication stream. Replicas acknowledge once a second, so this
    /// is an upper bound on what a crash at this moment would lose.
    pub async fn replication_gap(&self, slot: u16) -> redis::RedisResult<u64> {
        let master = self.master_of_slot(slot);
        let mut conn = connect(master.node.port).await?;
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut conn)
            .await?;
        let field = |line: &str, name: &str| -> Option<u64> {
            line.split([',', ':'])
                .find_map(|part| part.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
        };
        let offset = info
            .lines()
            .find_map(|line| {
                line.strip_prefix("master_repl_offset:")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0u64);
        let acknowledged = info
            .lines()
            .filter(|line| line.starts_with("slave") && line.contains("port="))
            .filter_map(|line| field(line, "offset"))
            .min()
            .unwrap_or(offset);
        Ok(offset.saturating_sub(acknowledged))
    }

    /// SIGKILLs the `index`-th of [`RedisCluster::masters`] (a crash: no
    /// shutdown, no last write to disk) and returns it. Panics if `index`
    /// is out of range or another kill awaits its failover.
    pub fn kill_master(&mut self, index: usize) -> io::Result<ClusterNode> {
        assert!(
            self.killed.is_none(),
            "a killed master awaits wait_for_failover"
        );
        let master = self
            .masters
            .get(index)
            .unwrap_or_else(|| panic!("no master {index} of {}", self.masters.len()))
            .node
            .clone();
        let process = self
            .nodes
            .iter_mut()
            .find(|n| n.port == master.port)
            .expect("a master is one of the nodes");
        if let Some(mut child) = process.child.take() {
            child.kill()?;
            child.wait()?;
        }
        self.killed = Some((master.clone(), Instant::now()));
        Ok(master)
    }

    /// [`RedisCluster::kill_master`] of the master serving `slot`.
    pub fn kill_master_of_slot(&mut self, slot: u16) -> io::Result<ClusterNode> {
        let index = self
            .masters
            .iter()
            .position(|m| m.owns(slot))
            .unwrap_or_else(|| panic!("no master serves slot {slot}"));
        self.kill_master(index)
    }

    /// Moves `slot` and its keys to the master `to` (an index into
    /// [`RedisCluster::masters`]) as `redis-cli --cluster reshard` does,
    /// while clients go on using it: the slot marked importing on the
    /// target and migrating on its owner (from then on the owner answers
    /// `ASK` for keys it no longer holds), the keys moved with `MIGRATE`
    /// in steps of 10, then the slot given to the target on every master.
    /// Returns once every live node sees the new slot map, with how many
    /// keys were moved.
    pub async fn move_slot(&mut self, slot: u16, to: usize) -> io::Result<usize> {
        let from = self.master_of_slot(slot).node.clone();
        let target = self.masters[to].node.clone();
        assert_ne!(from, target, "slot {slot} is on {target} already");
        let redis_error = |e: redis::RedisError| io::Error::other(e.to_string());
        let mut source = connect(from.port).await.map_err(redis_error)?;
        let mut destination = connect(target.port).await.map_err(redis_error)?;
        let setslot = |state: &str, id: &str| {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("SETSLOT").arg(slot).arg(state).arg(id);
            cmd
        };
        let () = setslot("IMPORTING", &from.id)
            .query_async(&mut destination)
            .await
            .map_err(redis_error)?;
        let () = setslot("MIGRATING", &target.id)
            .query_async(&mut source)
            .await
            .map_err(redis_error)?;
        let mut moved = 0;
        loop {
            let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(10)
                .query_async(&mut source)
                .await
                .map_err(redis_error)?;
            if keys.is_empty() {
                break;
            }
            let () = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(target.port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query_async(&mut source)
                .await
                .map_err(redis_error)?;
            moved += keys.len();
        }
        // The target first, then its old owner, then the others (Redis's
        // own order: the owner stops redirecting once it has given it up).
        let mut ports = vec![target.port, from.port];
        ports.extend(
            self.masters
                .iter()
                .map(|m| m.node.port)
                .filter(|p| *p != target.port && *p != from.port),
        );
        for port in ports {
            let mut conn = connect(port).await.map_err(redis_error)?;
            let () = setslot("NODE", &target.id)
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ports: Vec<u16> = self.live_ports().collect();
            let mut views = Vec::with_capacity(ports.len());
            for port in ports {
                views.push((port, view_async(port).await));
            }
            let why = match self.assess(&views, None) {
                Ok(masters) if masters.iter().any(|m| m.node == target && m.owns(slot)) => {
                    self.masters = masters;
                    return Ok(moved);
                }
                Ok(_) => format!("not every node sees slot {slot} on {target} yet"),
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("slot {slot} moved to {target}, but within 30 s: {why}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a replica of the killed master serves its slots: every
    /// live node reports `cluster_state:ok` and the same slot map, which
    /// no longer names the dead node, and every replica left is linked.
    /// Fails after `timeout` with what was still missing. Panics if no
    /// master was killed.
    pub async fn wait_for_failover(&mut self, timeout: Duration) -> io::Result<Failover> {
        let (dead, killed_at) = self
            .killed
            .clone()
            .expect("wait_for_failover after kill_master");
        let before = self
            .masters
            .iter()
            .find(|m| m.node.id == dead.id)
            .expect("the dead node was a master")
            .clone();
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            let ports: Vec<u16> = self.live_ports().collect();
            let mut views = Vec::with_capacity(ports.len());
            for port in ports {
                views.push((port, view_async(port).await));
            }
            match self.assess(&views, Some(&dead)) {
                Ok(masters) => {
                    let promoted = masters
                        .iter()
                        .find(|m| m.slots == before.slots)
                        .map(|m| m.node.clone())
                        .ok_or_else(|| {
                            io::Error::other(format!(
                                "no master took all of {dead}'s slots {:?}",
                                before.slots
                            ))
                        })?;
                    if !before.replicas.contains(&promoted) {
                        return Err(io::Error::other(format!(
                            "{promoted} serves {dead}'s slots but was not its replica"
                        )));
                    }
                    self.masters = masters;
                    self.killed = None;
                    return Ok(Failover {
                        dead,
                        promoted,
                        slots: before.slots,
                        took: killed_at.elapsed(),
                    });
                }
                Err(why) => last = why,
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no failover of {dead} within {timeout:?}: {last}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        remove_dir(&self.dir);
    }
}

/// `count` distinct TCP ports on 127.0.0.1, free a moment ago (all bound
/// at once, then released, so none repeats).
fn free_ports(count: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind(("127.0.0.1", 0)))
        .collect::<io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// What one node says of the cluster.
#[derive(Debug)]
struct NodeView {
    /// `CLUSTER INFO`.
    info: String,
    /// `CLUSTER NODES`.
    nodes: String,
    /// `master_link_status` when it is a replica.
    replica_link: Option<String>,
}

fn replica_link(replication: &str) -> Option<String> {
    if !replication.contains("role:slave") {
        return None;
    }
    let status = replication
        .lines()
        .find_map(|l| l.strip_prefix("master_link_status:"))
        .unwrap_or("unknown");
    Some(status.trim().to_owned())
}

const REPLY_TIMEOUT: Duration = Duration::from_millis(500);

fn view_sync(port: u16) -> Result<NodeView, String> {
    let run = || -> redis::RedisResult<NodeView> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
        let mut conn = client.get_connection_with_timeout(REPLY_TIMEOUT)?;
        conn.set_read_timeout(Some(REPLY_TIMEOUT))?;
        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn)?;
        let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn)?;
        let replication: String = redis::cmd("INFO").arg("replication").query(&mut conn)?;
        Ok(NodeView {
            info,
            nodes,
            replica_link: replica_link(&replication),
        })
    };
    run().map_err(|e| e.to_string())
}

async fn connect(port: u16) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(REPLY_TIMEOUT))
        .set_response_timeout(Some(Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

async fn view_async(port: u16) -> Result<NodeView, String> {
    let run = async {
        let mut conn = connect(port).await?;
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut conn)
            .await?;
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut conn)
            .await?;
        let replication: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut conn)
            .await?;
        redis::RedisResult::Ok(NodeView {
            info,
            nodes,
            replica_link: replica_link(&replication),
        })
    };
    run.await.map_err(|e| e.to_string())
}

/// The masters serving slots in a `CLUSTER NODES` reply, by their first
/// slot, with their replicas not marked failing. Lines are `<id>
/// <ip:port@bus[,hostname]> <flags> <master id or -> <ping> <pong> <epoch>
/// <link> <slot or range>...`; slots being migrated (`[...]`) are skipped.
fn parse_masters(reply: &str) -> Result<Vec<Master>, String> {
    let mut masters = Vec::new();
    let mut replicas: BTreeMap<String, Vec<ClusterNode>> = BTreeMap::new();
    for line in reply.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return Err(format!("CLUSTER NODES line {line:?}"));
        }
        let port = fields[1]
            .split(['@', ','])
            .next()
            .and_then(|addr| addr.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("CLUSTER NODES address {:?}", fields[1]))?;
        let node = ClusterNode {
            id: fields[0].to_owned(),
            port,
        };
        let flags: Vec<&str> = fields[2].split(',').collect();
        if flags.iter().any(|f| *f == "fail" || *f == "fail?") {
            continue;
        }
        if flags.contains(&"slave") {
            replicas.entry(fields[3].to_owned()).or_default().push(node);
            continue;
        }
        let mut slots = Vec::new();
        for slot in fields[8..].iter().filter(|s| !s.starts_with('[')) {
            let (start, end) = slot.split_once('-').unwrap_or((slot, slot));
            let parse = |s: &str| s.parse::<u16>().map_err(|_| format!("slot {slot:?}"));
            slots.push(parse(start)?..=parse(end)?);
        }
        if !slots.is_empty() {
            slots.sort_by_key(|r| *r.start());
            masters.push(Master {
                node,
                slots,
                replicas: Vec::new(),
            });
        }
    }
    for master in &mut masters {
        let mut mine = replicas.remove(&master.node.id).unwrap_or_default();
        mine.sort_by_key(|n| n.port);
        master.replicas = mine;
    }
    masters.sort_by_key(|m| *m.slots[0].start());
    Ok(masters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_hash_tag_rules() {
        // The reference values of the Redis Cluster specification.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        assert_eq!(
            key_slot("foo{}{bar}"),
            crc16_xmodem(b"foo{}{bar}") % CLUSTER_SLOTS
        );
        assert_eq!(key_slot("foo{{bar}}zap"), key_slot("{bar"));
        assert_eq!(key_slot("foo{bar}{zap}"), key_slot("bar"));
        assert_eq!(key_slot(""), 0);
    }

    #[test]
    fn cluster_nodes_reply_is_read_into_masters_and_replicas() {
        let reply = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922 [10923->-c3]
c3 127.0.0.1:7002@17002,host master - 0 0 3 connected 10923-16383
d4 127.0.0.1:7003@17003 slave a1 0 0 1 connected
e5 127.0.0.1:7004@17004 slave,fail b2 0 0 2 disconnected
f6 127.0.0.1:7005@17005 master,fail - 0 0 4 disconnected
";
        let masters = parse_masters(reply).expect("parses");
        assert_eq!(masters.len(), 3);
        assert_eq!(masters[0].node.port, 7000);
        assert_eq!(
            masters[0].replicas,
            vec![ClusterNode {
                id: "d4".into(),
                port: 7003
            }]
        );
        assert_eq!(masters[1].slots, vec![5461..=10922]);
        assert!(
            masters[1].replicas.is_empty(),
            "a failing replica is left out"
        );
        assert_eq!(masters[2].node.port, 7002);
        assert_eq!(masters.iter().map(Master::slot_count).sum::<usize>(), 16384);
        assert!(parse_masters("a1 127.0.0.1:x master").is_err());
    }

    #[test]
    fn keys_are_counted_on_the_master_of_their_slot() {
        let node = |port: u16| ClusterNode {
            id: port.to_string(),
            port,
        };
        let masters = vec![
            Master {
                node: node(1),
                slots: vec![0..=8191],
                replicas: vec![],
            },
            Master {
                node: node(2),
                slots: vec![8192..=16383],
                replicas: vec![],
            },
        ];
        // "foo" is on slot 12182, "123456789" on 12739, "bar" on 5061.
        let counts = keys_per_master(&masters, ["foo", "123456789", "bar"]);
        assert_eq!(counts, vec![(node(1), 1), (node(2), 2)]);
    }
}
