//! A private `redis-server` on a free port, with durable writes
//! (`appendfsync always`), that a test can kill and start again.

use std::io;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, port_open, remove_dir, temp_dir, wait_blocking};

/// A `redis-server` of the test's own: `--port <free> --save "" --appendonly
/// yes --appendfsync always --dir <temp dir>`. Every write acknowledged
/// survives [`PrivateRedis::kill`]. Killed and its directory removed on drop.
#[derive(Debug)]
pub struct PrivateRedis {
    /// The port it listens on, kept across restarts.
    port: u16,
    /// Its data directory (the append-only file), removed on drop.
    dir: PathBuf,
    /// The running server; `None` while stopped.
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> io::Result<Self> {
        let mut redis = PrivateRedis {
            port: free_port()?,
            dir: temp_dir("private-redis")?,
            child: None,
        };
        redis.start_again()?;
        Ok(redis)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port (the same after a restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the server again on the same port and data directory (it
    /// reloads its append-only file); a no-op if it is running.
    pub fn start_again(&mut self) -> io::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "yes"])
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run redis-server: {e}")))?;
        self.child = Some(child);
        let port = self.port;
        wait_blocking(
            "private redis-server to accept connections",
            Duration::from_secs(10),
            || port_open(port),
        )
    }

    /// SIGKILL, as a crash: no chance to save anything more.
    pub fn kill(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, a clean shutdown; waits until the process has exited.
    pub fn stop(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()?;
            if !status.success() {
                child.kill()?;
            }
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.kill();
        remove_dir(&self.dir);
    }
}
