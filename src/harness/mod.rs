//! Private servers for tests that stop, kill or restart Redis or
//! PostgreSQL, never touching the shared ones, and a private Redis Cluster
//! whose masters a test can crash ([`RedisCluster`]); child processes to
//! kill as in a crash ([`Killable`]); an HTTP load whose every request is
//! looked up in the table afterwards ([`load`]); free ports; waiting with
//! a deadline; a stream read back as the processor reads it.
//!
//! ```no_run
//! use std::time::Duration;
//! use activity_tracking::harness::{PrivatePostgres, PrivateRedis, wait_until};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let mut redis = PrivateRedis::start()?;
//! let mut postgres = PrivatePostgres::start()?;
//! // ... point the processor at redis.url() and postgres.url() ...
//! postgres.stop()?;
//! postgres.start_again()?;
//! redis.kill()?; // SIGKILL: nothing acknowledged is lost (appendfsync always)
//! redis.start_again()?;
//! wait_until("redis answers", Duration::from_secs(5), || async {
//!     std::net::TcpStream::connect(("127.0.0.1", redis.port())).is_ok().then_some(())
//! })
//! .await?;
//! # Ok(())
//! # }
//! ```

mod child;
mod cluster;
mod http;
pub mod load;
mod postgres;
mod processor;
mod redis;
mod scratch_database;
mod stream;
mod wait;

pub use self::child::{Killable, test_child};
pub use self::cluster::{
    CLUSTER_SLOTS, ClusterNode, ClusterOptions, Failover, Master, RedisCluster, key_slot,
    keys_per_master,
};
pub use self::http::{HttpServer, get_json};
pub use self::load::{Load, LoadPlan, Outcome, send_load};
pub use self::postgres::PrivatePostgres;
pub use self::processor::{processor_child, processor_config, run_processor_from_env};
pub use self::redis::PrivateRedis;
pub use self::scratch_database::ScratchDatabase;
pub use self::stream::{stream_activities, stream_events};
pub use self::wait::{WaitTimeout, wait_until};

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0,
/// then released).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// A new empty directory under the system's temporary directory, named
/// `<prefix>-<uuid>`; the caller removes it.
fn temp_dir(prefix: &str) -> io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Removes `dir` and everything in it, ignoring errors (best effort in `Drop`).
fn remove_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// An error for a command that exited unsuccessfully, with its output.
fn command_failed(what: &str, output: &std::process::Output) -> io::Error {
    io::Error::other(format!(
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        std::time::Duration::from_millis(200),
    )
    .is_ok()
}

/// Polls `check` every 20 ms until it is true or `timeout` passes
/// (blocking: for the synchronous start and stop of the servers).
fn wait_blocking(
    what: &str,
    timeout: std::time::Duration,
    mut check: impl FnMut() -> bool,
) -> io::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    while !check() {
        if std::time::Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what}: not within {timeout:?}"),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}
