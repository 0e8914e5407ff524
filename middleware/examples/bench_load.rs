//! The load generator of `bench/layer_overhead.sh` and
//! `bench/layer_instructions.sh`: plain HTTP/1.1 keep-alive `GET`s, in
//! one of two modes.
//!
//! - `count ADDR PATH REQUESTS CONNECTIONS`: sends exactly `REQUESTS`
//!   requests as fast as the server answers (closed loop, blocking
//!   sockets, one thread per connection) and prints
//!   `requests=N seconds=S`. For counting instructions per request, where
//!   what matters is the number of requests, not their pace.
//! - `rate ADDR PATH RATE SECONDS CONNECTIONS`: open loop. Request `k` of
//!   the run is due at `k / RATE` seconds after the start, whether or not
//!   earlier ones were answered; whichever of the `CONNECTIONS` is free
//!   sends it. Each latency is measured from when the request was due,
//!   not from when it was sent, so a server that falls behind is charged
//!   for the wait (no coordinated omission). Prints
//!   `requests=N seconds=S p50_us=.. p90_us=.. p99_us=.. p999_us=.. max_us=..`.
//!
//! ```text
//! cargo run --release -p activity-tracker --example bench_load -- rate 127.0.0.1:3000 /hello 20000 10 32
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("count") if args.len() == 5 => count(&args[1], &args[2], &args[3], &args[4]),
        Some("rate") if args.len() == 6 => rate(&args[1], &args[2], &args[3], &args[4], &args[5]),
        _ => Err("usage: bench_load count ADDR PATH REQUESTS CONNECTIONS\n       bench_load rate ADDR PATH RATE SECONDS CONNECTIONS".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench_load: {error}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn number<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, Error> {
    text.parse()
        .map_err(|_| format!("{what} must be a positive number, not {text:?}").into())
}

/// Closed loop: `requests` in all, split over the connections.
fn count(addr: &str, path: &str, requests: &str, connections: &str) -> Result<(), Error> {
    let requests: u64 = number(requests, "REQUESTS")?;
    let connections: u64 = number::<u64>(connections, "CONNECTIONS")?.max(1);
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let share = requests / connections + u64::from(c < requests % connections);
            let (addr, path) = (addr.to_owned(), path.to_owned());
            std::thread::spawn(move || -> Result<(), Error> {
                let mut conn = Connection::open(&addr, &path)?;
                for _ in 0..share {
                    conn.get()?;
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .map_err(|_| "a connection thread panicked")??;
    }
    println!(
        "requests={requests} seconds={:.3}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The timer thread's shortest sleep.
const TIMER_STEP: Duration = Duration::from_micros(100);

/// Open loop at `rate` requests per second for `seconds`.
///
/// A timer thread wakes when the next request is due (`thread::sleep` is
/// precise to some 60 µs, tokio's timer only to a millisecond) and hands
/// every request then due, as its due time, to one thread running all
/// the connections on a tokio runtime of its own: whichever connection is
/// free takes the next. So the load costs one wake-up per batch of due
/// requests and per batch of answers, not a thread switch per request,
/// which on two shared cores would be what the latencies measure; and a
/// slow answer holds back only the requests that find every connection
/// busy (each then charged for its wait).
fn rate(addr: &str, path: &str, rate: &str, seconds: &str, connections: &str) -> Result<(), Error> {
    let rate: f64 = number(rate, "RATE")?;
    let seconds: f64 = number(seconds, "SECONDS")?;
    let connections: u64 = number::<u64>(connections, "CONNECTIONS")?.max(1);
    if rate <= 0.0 || seconds <= 0.0 {
        return Err("RATE and SECONDS must be above 0".into());
    }
    let total = (rate * seconds) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
    // Every connection is opened before the clock starts.
    let conns = runtime.block_on(async {
        let mut conns = Vec::new();
        for _ in 0..connections {
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            stream.set_nodelay(true)?;
            conns.push(stream);
        }
        Ok::<_, Error>(conns)
    })?;
    let (due_tx, due_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let start = Instant::now() + Duration::from_millis(50);
    let timer = std::thread::spawn(move || {
        let mut k = 0;
        while k < total {
            let due = start + interval.mul_f64(k as f64);
            let now = Instant::now();
            if due > now {
                // Waking for each request would cost more than the app
                // spends on it; every latency still counts from its due
                // time, so this adds at most TIMER_STEP to either mode.
                std::thread::sleep((due - now).max(TIMER_STEP));
            }
            let now = Instant::now();
            // Everything due by now goes at once.
            while k < total {
                let due = start + interval.mul_f64(k as f64);
                if due > now || due_tx.send(due).is_err() {
                    break;
                }
                k += 1;
            }
        }
    });
    let due_rx = std::sync::Arc::new(tokio::sync::Mutex::new(due_rx));
    let results = runtime.block_on(async {
        let tasks = tokio::task::LocalSet::new();
        let handles: Vec<_> = conns
            .into_iter()
            .map(|stream| {
                let due_rx = due_rx.clone();
                let request = request.clone();
                tasks.spawn_local(async move {
                    let mut conn = AsyncConnection::new(stream);
                    let mut latencies = Vec::new();
                    loop {
                        let next = due_rx.lock().await.recv().await;
                        let Some(due) = next else { break };
                        conn.get(&request).await?;
                        let micros = due.elapsed().as_micros();
                        latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                    }
                    Ok::<_, Error>(latencies)
                })
            })
            .collect();
        tasks
            .run_until(async {
                let mut all = Vec::with_capacity(total as usize);
                for handle in handles {
                    all.extend(handle.await.map_err(|_| "a connection task panicked")??);
                }
                Ok::<_, Error>(all)
            })
            .await
    });
    timer.join().map_err(|_| "the timer thread panicked")?;
    let mut latencies = results?;
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
        latencies[i - 1]
    };
    println!(
        "requests={} seconds={elapsed:.3} p50_us={} p90_us={} p99_us={} p999_us={} max_us={}",
        latencies.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        at(0.999),
        latencies.last().copied().unwrap_or(0)
    );
    Ok(())
}

/// One keep-alive connection of the open loop, on the runtime.
struct AsyncConnection {
    stream: tokio::net::TcpStream,
    /// What was read and not yet consumed.
    buffer: Vec<u8>,
}

impl AsyncConnection {
    fn new(stream: tokio::net::TcpStream) -> Self {
        AsyncConnection {
            stream,
            buffer: Vec::with_capacity(4096),
        }
    }

    /// Sends the request and reads the whole response; a status other
    /// than 2xx is an error.
    async fn get(&mut self, request: &[u8]) -> Result<(), Error> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.stream.write_all(request).await?;
        loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buffer[..end])?;
                if !head.starts_with("HTTP/1.1 2") {
                    let status = head.lines().next().unwrap_or_default();
                    return Err(format!("unexpected response: {status}").into());
                }
                let length = head
                    .lines()
                    .filter_map(|line| line.split_once(':'))
                    .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                    .map_or(Ok(0), |(_, value)| value.trim().parse::<usize>())?;
                let whole = end + 4 + length;
                if self.buffer.len() >= whole {
                    self.buffer.drain(..whole);
                    return Ok(());
                }
            }
            let mut chunk = [0u8; 4096];
            let read = self.stream.read(&mut chunk).await?;
            if read == 0 {
                return Err("the server closed the connection".into());
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One keep-alive connection sending the same `GET`.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    request: Vec<u8>,
    line: String,
    body: Vec<u8>,
}

impl Connection {
    fn open(addr: &str, path: &str) -> Result<Self, Error> {
        let stream =
            TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            request: format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes(),
            line: String::new(),
            body: Vec::new(),
        })
    }

    /// Sends the request and reads the whole response; a status other
    /// than 2xx is an error.
    fn get(&mut self) -> Result<(), Error> {
        self.writer.write_all(&self.request)?;
        let mut length = 0usize;
        let mut first = true;
        loop {
            self.line.clear();
            if self.reader.read_line(&mut self.line)? == 0 {
                return Err("the server closed the connection".into());
            }
            let line = self.line.trim_end();
            if first {
                if !line.starts_with("HTTP/1.1 2") {
                    return Err(format!("unexpected response: {line}").into());
                }
                first = false;
            } else if line.is_empty() {
                break;
            } else if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse()?;
            }
        }
        self.body.resize(length, 0);
        self.reader.read_exact(&mut self.body)?;
        Ok(())
    }
}
