//! A private PostgreSQL cluster on a free port that a test can stop and
//! start again.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the
//! cluster belongs to the `postgres` user: its directory is chowned to it
//! and `initdb`/`pg_ctl` run through `runuser -u postgres --`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::{command_failed, free_port, port_open, remove_dir, temp_dir, wait_blocking};

/// A PostgreSQL cluster of the test's own (trust authentication, user
/// `postgres`, database `postgres`, `fsync=off` for speed: it is thrown
/// away). Stopped and its directory removed on drop.
#[derive(Debug)]
pub struct PrivatePostgres {
    /// The port it listens on, kept across restarts.
    port: u16,
    /// The cluster's directory: `data/`, the log and the Unix socket.
    dir: PathBuf,
    /// Where `initdb` and `pg_ctl` are.
    bin_dir: PathBuf,
    /// Whether `initdb`/`pg_ctl` must run as the `postgres` user (we are root).
    as_postgres_user: bool,
    /// Whether the server is running (started and not stopped since).
    running: bool,
}

impl PrivatePostgres {
    /// Creates a cluster (`initdb`) and starts it; waits until it accepts
    /// connections.
    pub fn start() -> io::Result<Self> {
        let as_postgres_user = is_root()?;
        let dir = temp_dir("private-postgres")?;
        let mut postgres = PrivatePostgres {
            port: free_port()?,
            bin_dir: find_bin_dir()?,
            dir,
            as_postgres_user,
            running: false,
        };
        if as_postgres_user {
            let output = Command::new("chown")
                .arg("-R")
                .arg("postgres")
                .arg(&postgres.dir)
                .output()?;
            if !output.status.success() {
                return Err(command_failed("chown of the cluster directory", &output));
            }
        }
        let data = postgres.data_dir();
        let output = postgres.run_tool(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        if !output.status.success() {
            return Err(command_failed("initdb", &output));
        }
        postgres.start_again()?;
        Ok(postgres)
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of database `name` on this cluster.
    pub fn url_for(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The port (the same after a restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server is running.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Starts the server (again) and waits until it accepts connections; a
    /// no-op if it is running.
    pub fn start_again(&mut self) -> io::Result<()> {
        if self.running {
            return Ok(());
        }
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.display()
        );
        let data = self.data_dir();
        let log = self.dir.join("log");
        let output = self.run_tool(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "30".as_ref(),
                "start".as_ref(),
            ],
        )?;
        if !output.status.success() {
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            return Err(io::Error::other(format!(
                "{}\nserver log:\n{log}",
                command_failed("pg_ctl start", &output)
            )));
        }
        self.running = true;
        let port = self.port;
        wait_blocking(
            "private PostgreSQL to accept connections",
            Duration::from_secs(30),
            || port_open(port),
        )
    }

    /// Stops the server (`pg_ctl stop -m fast`: connections are cut, as
    /// when a database goes away) and waits until it has stopped.
    pub fn stop(&mut self) -> io::Result<()> {
        self.stop_with("fast")
    }

    /// Stops the server like a crash (`pg_ctl stop -m immediate`).
    pub fn kill(&mut self) -> io::Result<()> {
        self.stop_with("immediate")
    }

    fn stop_with(&mut self, mode: &str) -> io::Result<()> {
        if !self.running {
            return Ok(());
        }
        let data = self.data_dir();
        let output = self.run_tool(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                mode.as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        )?;
        if !output.status.success() {
            return Err(command_failed("pg_ctl stop", &output));
        }
        self.running = false;
        Ok(())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn run_tool(&self, tool: &str, args: &[&std::ffi::OsStr]) -> io::Result<Output> {
        let program = self.bin_dir.join(tool);
        let mut command = if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            // The cluster directory is the working directory: `postgres`
            // may not be able to enter the caller's.
            .current_dir(&self.dir)
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", program.display())))
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.kill();
        remove_dir(&self.dir);
    }
}

fn is_root() -> io::Result<bool> {
    let output = Command::new("id").arg("-u").output()?;
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// The directory holding `initdb` and `pg_ctl`: from `PATH`, else the
/// newest `/usr/lib/postgresql/<version>/bin` (Debian keeps them there).
fn find_bin_dir() -> io::Result<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "initdb and pg_ctl not found on PATH nor in /usr/lib/postgresql/*/bin",
        )
    })
}

fn has_tools(bin: &Path) -> bool {
    bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()
}
