//! The request's `XADD` to a single Redis node, sent over connections of
//! the ingest's own: the command's header written for the entry's length
//! and sent with the entry's lines as they are, in one `writev`, and the
//! one-line reply read back by the request itself.
//!
//! Why not the `redis` crate's connection: it copies a 55 KB entry three
//! times on its way to the socket (into the `Cmd`, into the packed
//! command, into its write buffer), and its multiplexed connection hands
//! each command to a task of its own and the reply back, two wake-ups a
//! request (`docs/benchmarks.md`, "Ingest"). A Redis Cluster (and a
//! node this module cannot reach itself: TLS) is still written through
//! the crate, which routes, follows `MOVED` and reconnects.
//!
//! A connection opened here sends the URL's `AUTH` and `SELECT` first,
//! as the crate's would; it speaks RESP2 whatever the URL's protocol
//! (only `XADD` is sent, whose reply is the same in both).

use std::io::IoSlice;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use activity_tracker::RedisClient;
use redis::{ConnectionAddr, ErrorKind, RedisError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Semaphore;

/// At most this many connections at once (writes beyond wait for one):
/// a write holds one for a round trip, so a few serve many requests.
const MAX_CONNECTIONS: usize = 32;
/// The longest reply read: `XADD`'s is an entry id, `AUTH`'s and
/// `SELECT`'s an `OK` or an error line.
const MAX_REPLY_BYTES: usize = 4096;

/// Where the node is.
#[derive(Debug, Clone)]
enum Address {
    /// `host:port`.
    Tcp(String, u16),
    /// A Unix socket's path.
    Unix(PathBuf),
}

/// Writes entries to one Redis node.
#[derive(Debug)]
pub(crate) struct NodeWriter {
    address: Address,
    /// `AUTH` and `SELECT` as the URL asks (packed), sent first on each
    /// new connection, and how many replies they give.
    setup: (Vec<u8>, usize),
    /// Connections between writes; locked only to push or pop one.
    idle: Mutex<Vec<Connection>>,
    /// One permit a connection in use (or being opened).
    permits: Semaphore,
    /// How long a write waits for a connection, and for its reply.
    timeout: Duration,
}

impl NodeWriter {
    /// A writer for `client` when it is a single node this module can
    /// reach (plain TCP or a Unix socket); `None` for a cluster or TLS.
    pub(crate) fn for_client(client: &RedisClient, timeout: Duration) -> Option<Self> {
        let RedisClient::Node(client) = client else {
            return None;
        };
        let info = client.get_connection_info();
        let address = match info.addr() {
            ConnectionAddr::Tcp(host, port) => Address::Tcp(host.clone(), *port),
            ConnectionAddr::Unix(path) => Address::Unix(path.clone()),
            _ => return None,
        };
        let settings = info.redis_settings();
        let mut setup = (Vec::new(), 0);
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(username) = settings.username() {
                auth.arg(username);
            }
            auth.arg(password).write_packed_command(&mut setup.0);
            setup.1 += 1;
        }
        if settings.db() != 0 {
            redis::cmd("SELECT")
                .arg(settings.db())
                .write_packed_command(&mut setup.0);
            setup.1 += 1;
        }
        Some(NodeWriter {
            address,
            setup,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(MAX_CONNECTIONS),
            timeout,
        })
    }

    /// `XADD <key> * n <count> events <events>`; `Ok` once Redis has
    /// the entry.
    pub(crate) async fn xadd(
        &self,
        key: &str,
        count: usize,
        events: &[u8],
    ) -> Result<(), RedisError> {
        let _permit = tokio::time::timeout(self.timeout, self.permits.acquire())
            .await
            .map_err(|_| timed_out("no connection to Redis was free"))?
            .expect("never closed: the semaphore lives as long as the writer");
        let mut count_text = itoa::Buffer::new();
        let count = count_text.format(count);
        let mut events_len = itoa::Buffer::new();
        let events_len = events_len.format(events.len());
        let mut key_len = itoa::Buffer::new();
        let key_len = key_len.format(key.len());
        let mut count_len = itoa::Buffer::new();
        let count_len = count_len.format(count.len());
        let header = [
            "*7\r\n$4\r\nXADD\r\n$",
            key_len,
            "\r\n",
            key,
            "\r\n$1\r\n*\r\n$1\r\nn\r\n$",
            count_len,
            "\r\n",
            count,
            "\r\n$6\r\nevents\r\n$",
            events_len,
            "\r\n",
        ]
        .concat();
        let command: [&[u8]; 3] = [header.as_bytes(), events, b"\r\n"];
        // A connection idle in the pool may have been closed meanwhile (a
        // Redis restart, its idle timeout): then the write is sent again
        // on a new one. Should the first have reached Redis after all, the
        // entry is there twice with the same lines, which the consumer
        // stores once (by the events' ids).
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(mut conn) = idle {
            match self.send(&mut conn, &command).await {
                Ok(reply) => return self.keep(conn, reply),
                Err(e) if e.is_io_error() && !e.is_timeout() => {}
                Err(e) => return Err(e),
            }
        }
        let mut conn = tokio::time::timeout(self.timeout, self.connect())
            .await
            .map_err(|_| timed_out("connecting to Redis timed out"))??;
        let reply = self.send(&mut conn, &command).await?;
        self.keep(conn, reply)
    }

    /// The connection back into the pool after a reply (an error reply
    /// leaves it as good as it was).
    fn keep(&self, conn: Connection, reply: redis::Value) -> Result<(), RedisError> {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        reply.extract_error().map(drop)
    }

    /// Sends `command` and reads its reply, within the timeout.
    async fn send(
        &self,
        conn: &mut Connection,
        command: &[&[u8]; 3],
    ) -> Result<redis::Value, RedisError> {
        tokio::time::timeout(self.timeout, async {
            conn.write_all(command).await?;
            conn.reply().await
        })
        .await
        .map_err(|_| timed_out("Redis did not answer in time"))?
    }

    /// A new connection, set up as the URL asks.
    async fn connect(&self) -> Result<Connection, RedisError> {
        let stream = match &self.address {
            Address::Tcp(host, port) => {
                let stream = TcpStream::connect((host.as_str(), *port)).await?;
                stream.set_nodelay(true)?;
                Stream::Tcp(stream)
            }
            Address::Unix(path) => Stream::Unix(UnixStream::connect(path).await?),
        };
        let mut conn = Connection {
            stream,
            read: Vec::with_capacity(64),
        };
        if self.setup.1 > 0 {
            conn.write_all(&[self.setup.0.as_slice()]).await?;
            for _ in 0..self.setup.1 {
                conn.reply().await?.extract_error()?;
            }
        }
        Ok(conn)
    }
}

fn timed_out(what: &'static str) -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, what))
}

/// One connection and what it read past the last reply.
#[derive(Debug)]
struct Connection {
    stream: Stream,
    /// Bytes read and not yet taken as a reply.
    read: Vec<u8>,
}

#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Connection {
    /// Writes the parts of one message, with as few system calls as the
    /// socket takes them in.
    async fn write_all<const N: usize>(&mut self, parts: &[&[u8]; N]) -> std::io::Result<()> {
        let mut slices = parts.map(IoSlice::new);
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            let written = match &mut self.stream {
                Stream::Tcp(stream) => stream.write_vectored(slices).await?,
                Stream::Unix(stream) => stream.write_vectored(slices).await?,
            };
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut slices, written);
        }
        Ok(())
    }

    /// Reads one reply: a simple string, an error, an integer or a bulk
    /// string (what the commands sent here answer).
    async fn reply(&mut self) -> Result<redis::Value, RedisError> {
        loop {
            if let Some(len) = reply_len(&self.read)? {
                let value = redis::parse_redis_value(&self.read[..len]);
                self.read.drain(..len);
                return value;
            }
            if self.read.len() >= MAX_REPLY_BYTES {
                return Err(protocol_error("a reply longer than any expected"));
            }
            let read = match &mut self.stream {
                Stream::Tcp(stream) => stream.read_buf(&mut self.read).await?,
                Stream::Unix(stream) => stream.read_buf(&mut self.read).await?,
            };
            if read == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
        }
    }
}

/// The length of the reply at the start of `read` once it is all there.
fn reply_len(read: &[u8]) -> Result<Option<usize>, RedisError> {
    let Some(&kind) = read.first() else {
        return Ok(None);
    };
    let Some(line) = read.windows(2).position(|pair| pair == b"\r\n") else {
        return Ok(None);
    };
    let after_line = line + 2;
    match kind {
        b'+' | b'-' | b':' => Ok(Some(after_line)),
        b'$' => {
            let len: i64 = std::str::from_utf8(&read[1..line])
                .ok()
                .and_then(|len| len.parse().ok())
                .ok_or_else(|| protocol_error("a bulk string's length is not a number"))?;
            let Ok(len) = usize::try_from(len) else {
                // `$-1`: no value.
                return Ok(Some(after_line));
            };
            let whole = after_line + len + 2;
            Ok((read.len() >= whole).then_some(whole))
        }
        _ => Err(protocol_error(
            "a reply of a type no command sent here gives",
        )),
    }
}

fn protocol_error(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::Parse, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_framed_once_whole() {
        for (read, len) in [
            (&b""[..], None),
            (b"+OK", None),
            (b"+OK\r\n", Some(5)),
            (b"-ERR wrong\r\n+OK\r\n", Some(12)),
            (b":12\r\n", Some(5)),
            (b"$15\r\n1733342400000-0", None),
            (b"$15\r\n1733342400000-0\r\n", Some(22)),
            (b"$-1\r\n", Some(5)),
        ] {
            assert_eq!(reply_len(read).unwrap(), len, "{:?}", read);
        }
        assert!(reply_len(b"*1\r\n").is_err());
        assert!(reply_len(b"$x\r\n").is_err());
    }
}
