//! The whole pipeline in one command: migrations, the example app with the
//! activity layer, the processor with its admin API, a short scenario
//! driven through the app, and what an admin sees.
//!
//! ```sh
//! cargo run --release --example quickstart           # serves until Ctrl-C
//! cargo run --release --example quickstart -- --once # exits after the report
//! ```
//!
//! Uses PostgreSQL and Redis on their default ports (starting private ones
//! for the run when they are installed but not running), or `DATABASE_URL`
//! and `REDIS_URL`. Without `DATABASE_URL` it makes the database
//! `activity_quickstart` afresh at each run and empties the stream
//! `activity_quickstart_stream`, so the figures are the run's own. Also
//! reads `STREAM_KEY`, `CONSUMER_GROUP`, `APP_LISTEN` (default
//! `127.0.0.1:3000`), `ADMIN_LISTEN` (default `127.0.0.1:8080`; a taken
//! address is replaced by a free port, and said so) and `ADMIN_TOKENS`
//! (default: a random token, printed).

use std::io::IsTerminal;

use activity_tracking::quickstart::{self, Options};

#[tokio::main]
async fn main() {
    // Warnings only: the quick start prints its own progress.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let options = Options {
        once: std::env::args().skip(1).any(|arg| arg == "--once"),
        ..Options::from_env()
    };
    let mut out = std::io::stdout();
    let until = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(e) = quickstart::run(options, &mut out, until).await {
        eprintln!("quickstart: {e}");
        std::process::exit(1);
    }
}
