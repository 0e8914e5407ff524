//! The load generator of `bench/layer_overhead.sh` and
//! `bench/layer_instructions.sh`: plain HTTP/1.1 keep-alive `GET`s over
//! blocking sockets, one thread per connection, in one of two modes.
//!
//! - `count ADDR PATH REQUESTS CONNECTIONS`: sends exactly `REQUESTS`
//!   requests as fast as the server answers (closed loop) and prints
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

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
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

/// Open loop at `rate` requests per second for `seconds`: this thread
/// releases each request when it is due into a queue, and a pool of
/// `connections` threads, one keep-alive connection each, takes them in
/// turn. The pool only bounds how many requests can be in flight at once;
/// a request waiting in the queue for a free connection is charged for
/// the wait. (One connection per thread with requests assigned in turn
/// made a slow request hold back every later one on its connection, which
/// turned the latency of a near-busy connection into queueing on it.)
fn rate(addr: &str, path: &str, rate: &str, seconds: &str, connections: &str) -> Result<(), Error> {
    let rate: f64 = number(rate, "RATE")?;
    let seconds: f64 = number(seconds, "SECONDS")?;
    let connections: u64 = number::<u64>(connections, "CONNECTIONS")?.max(1);
    if rate <= 0.0 || seconds <= 0.0 {
        return Err("RATE and SECONDS must be above 0".into());
    }
    let total = (rate * seconds) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let queue = Arc::new(DueQueue::default());
    // Every connection is opened before the clock starts.
    let mut conns = Vec::new();
    for _ in 0..connections {
        conns.push(Connection::open(addr, path)?);
    }
    let threads: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let queue = queue.clone();
            std::thread::spawn(move || -> Result<Vec<u32>, Error> {
                let mut latencies = Vec::new();
                while let Some(due) = queue.take() {
                    conn.get()?;
                    let micros = due.elapsed().as_micros();
                    latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                }
                Ok(latencies)
            })
        })
        .collect();
    let start = Instant::now() + Duration::from_millis(50);
    for k in 0..total {
        let due = start + interval.mul_f64(k as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        queue.push(due);
    }
    queue.close();
    let mut latencies = Vec::with_capacity(total as usize);
    for thread in threads {
        latencies.extend(
            thread
                .join()
                .map_err(|_| "a connection thread panicked")??,
        );
    }
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

/// The requests released and not yet taken, by when each was due.
#[derive(Default)]
struct DueQueue {
    /// The due times, oldest first, and whether the run is over.
    state: Mutex<(VecDeque<Instant>, bool)>,
    /// Signalled at each push and at the close.
    ready: Condvar,
}

impl DueQueue {
    fn push(&self, due: Instant) {
        self.lock().0.push_back(due);
        self.ready.notify_one();
    }

    fn close(&self) {
        self.lock().1 = true;
        self.ready.notify_all();
    }

    /// The oldest request, waiting for one; `None` once closed and empty.
    fn take(&self) -> Option<Instant> {
        let mut state = self.lock();
        loop {
            if let Some(due) = state.0.pop_front() {
                return Some(due);
            }
            if state.1 {
                return None;
            }
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (VecDeque<Instant>, bool)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
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
