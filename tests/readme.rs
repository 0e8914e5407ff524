//! README.md's integration snippet is `examples/readme.rs` word for word,
//! and that program runs as written: it serves, records a login and a case
//! view into the stream, and stops on Ctrl-C (SIGINT) with exit code 0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use activity_tracking::harness::{PrivateRedis, free_port};

/// The code block after `## Adding the layer to an axum app` that is Rust.
fn readme_snippet() -> String {
    let readme = include_str!("../README.md");
    let section = readme
        .split_once("## Adding the layer to an axum app")
        .expect("the README section")
        .1;
    let code = section.split_once("```rust\n").expect("a rust block").1;
    code.split_once("```\n")
        .expect("the end of the block")
        .0
        .to_owned()
}

/// `examples/readme.rs` without its `//!` header.
fn example_code() -> String {
    let example = include_str!("../examples/readme.rs");
    let body: Vec<&str> = example
        .lines()
        .skip_while(|line| line.starts_with("//!"))
        .skip(1)
        .collect();
    body.join("\n") + "\n"
}

#[test]
fn the_readme_snippet_is_the_example_word_for_word() {
    let (readme, example) = (readme_snippet(), example_code());
    assert!(readme.contains("fn main()"), "{readme}");
    assert_eq!(
        readme, example,
        "README.md's snippet and examples/readme.rs differ"
    );
}

/// `target/<profile>/examples/readme`, which `cargo test` builds with the
/// tests.
fn example_binary() -> PathBuf {
    let test = std::env::current_exe().expect("the test's path");
    let profile_dir = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let binary = profile_dir.join("examples").join("readme");
    assert!(
        binary.is_file(),
        "{} is not built: `cargo test` builds the examples with the tests \
         (`--test readme` alone does not; `cargo build --example readme` first)",
        binary.display()
    );
    binary
}

/// Kills the child if the test fails before it stops it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends one HTTP/1.1 request and answers the status line.
fn request(port: u16, method: &str, path: &str, headers: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the app answers");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\n{headers}connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.lines().next().unwrap_or_default().to_owned()
}

/// Every string in a Redis reply, flattened.
fn strings(value: &redis::Value, into: &mut Vec<String>) {
    match value {
        redis::Value::BulkString(bytes) => into.push(String::from_utf8_lossy(bytes).into_owned()),
        redis::Value::SimpleString(text) => into.push(text.clone()),
        redis::Value::Array(items) => items.iter().for_each(|item| strings(item, into)),
        _ => {}
    }
}

#[test]
fn the_readme_snippet_records_requests_and_stops_on_ctrl_c() {
    let redis = PrivateRedis::start().expect("a private redis-server");
    let port = free_port().unwrap();
    let closed = free_port().unwrap();
    let app = Running(
        Command::new(example_binary())
            .env("REDIS_URL", redis.url())
            // The fallback's pool is lazy: no database is needed to start.
            .env(
                "DATABASE_URL",
                format!("postgres://postgres@127.0.0.1:{closed}/postgres"),
            )
            .env("APP_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "off")
            .spawn()
            .expect("the example starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the example never listened");
        std::thread::sleep(Duration::from_millis(50));
    }

    assert!(request(port, "POST", "/api/v1/auth/login", "").contains("200"));
    let view = request(
        port,
        "GET",
        "/api/v1/cases/c-7",
        "authorization: Bearer user:bob\r\n",
    );
    assert!(view.contains("200"), "{view}");

    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let entries = loop {
        let reply: redis::Value = redis::cmd("XRANGE")
            .arg("user_activities_stream")
            .arg("-")
            .arg("+")
            .query(&mut conn)
            .unwrap();
        let mut found = Vec::new();
        strings(&reply, &mut found);
        let text = found.join("\n");
        if text.contains("case_view") && text.contains("\"login\"") {
            break text;
        }
        assert!(Instant::now() < deadline, "not in the stream: {text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    for fact in [
        r#""user_id":"alice""#,
        r#""user_id":"bob""#,
        r#""resource_type":"case""#,
        r#""resource_id":"c-7""#,
        r#""ip_address":"127.0.0.1""#,
    ] {
        assert!(entries.contains(fact), "{fact} not in {entries}");
    }

    let mut app = app;
    let interrupted = Command::new("kill")
        .args(["-INT", &app.0.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let stopped = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = app.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < stopped, "no exit after Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}
