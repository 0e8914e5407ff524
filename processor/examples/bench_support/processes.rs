//! Processes and events shared by the end-to-end benchmark programs
//! (`bench_processor`, `bench_alerts`): a private `redis-server`, child
//! processes killed on drop or stopped with SIGTERM, free ports, and
//! events shaped as the layer makes them.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration as StdDuration, Instant};

use activity_tracker::{Activity, ActivityType};
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use rand::Rng;
use rand::rngs::StdRng;

const USER_AGENTS: [&str; 3] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "okhttp/4.12.0",
];

/// An event as the layer makes it: user, action, resource, the details
/// the layer adds, IP, user agent, session.
pub(crate) fn event(rng: &mut StdRng, at: DateTime<Utc>) -> Activity {
    let user = rng.random_range(0..5000usize);
    let actions: Vec<ActivityType> = ActivityType::catalogue().collect();
    Activity::at(actions[rng.random_range(0..actions.len())].clone(), at)
        .user_id(format!("user-{user}"))
        .resource("case", format!("case-{}", rng.random_range(0..200_000)))
        .ip_address(IpAddr::V4(Ipv4Addr::new(
            10,
            rng.random_range(0..255),
            rng.random_range(0..255),
            rng.random_range(1..255),
        )))
        .user_agent(USER_AGENTS[user % USER_AGENTS.len()])
        .session_id(format!("sess-{user}"))
        .detail("method", "POST")
        .detail("route", "/api/cases/{id}")
        .detail("status", 200)
        .detail("latency_ms", rng.random_range(1..400))
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// Kills the child process on drop (a failed run leaves nothing behind).
pub(crate) struct Reaped(pub(crate) Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn start_redis(port: u16, dir: &Path) -> anyhow::Result<Reaped> {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .context("running redis-server")?;
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > StdDuration::from_secs(10) {
            bail!("redis-server did not start");
        }
        std::thread::sleep(StdDuration::from_millis(20));
    }
    Ok(Reaped(child))
}

pub(crate) fn stop(mut child: Reaped) -> anyhow::Result<()> {
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()?;
    let status = child.0.wait()?;
    if !status.success() {
        bail!("the processor exited with {status} after SIGTERM");
    }
    Ok(())
}

/// Entries left in `stream` (`XLEN`) and pending for the processor's
/// default group (`XPENDING`; -1 if the reply is not understood): a drain
/// is over when both are 0.
pub(crate) async fn stream_backlog(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
) -> anyhow::Result<(u64, i64)> {
    let mut pipe = redis::pipe();
    pipe.cmd("XLEN").arg(stream);
    pipe.cmd("XPENDING").arg(stream).arg("activity-processor");
    let (length, pending): (u64, redis::Value) = pipe.query_async(conn).await?;
    let pending = match pending {
        redis::Value::Array(summary) => match summary.first() {
            Some(redis::Value::Int(n)) => *n,
            _ => 0,
        },
        _ => -1,
    };
    Ok((length, pending))
}
