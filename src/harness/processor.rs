//! A processor for a test: its settings, small batches and quick claims
//! so a scenario drains in seconds, in this process or in a child process
//! the test can kill.

use std::process::Command;
use std::time::Duration;

use activity_processor::Config;
use tokio_util::sync::CancellationToken;

use super::test_child;

/// The processor's settings from the environment, for `stream_key` on the
/// servers at `redis_url` and `database_url`: the admin API on a free
/// port, batches of 500 written within 50 ms, a dead consumer's entries
/// claimed after a second, consumer `in-process`, no legacy list.
pub fn processor_config(redis_url: &str, database_url: &str, stream_key: &str) -> Config {
    let mut config = Config::from_env();
    config.redis_url = redis_url.to_owned();
    config.database_url = database_url.to_owned();
    config.stream_key = stream_key.to_owned();
    config.admin_listen = "127.0.0.1:0".into();
    config.batch_size = 500;
    config.flush_interval_ms = 50;
    config.claim_idle_ms = 1000;
    config.consumer_name = Some("in-process".into());
    config.legacy_list_key = None;
    config
}

/// [`test_child`] on the test `child_processor` for a processor as
/// [`processor_config`] makes it, as consumer `name`, and no retention.
/// Its body is [`run_processor_from_env`].
pub fn processor_child(
    marker: &str,
    redis_url: &str,
    database_url: &str,
    stream_key: &str,
    name: &str,
) -> Command {
    let mut command = test_child("child_processor", marker);
    command
        .env("REDIS_URL", redis_url)
        .env("DATABASE_URL", database_url)
        .env("STREAM_KEY", stream_key)
        .env("CONSUMER_NAME", name)
        .env("CLAIM_IDLE_MS", "1000")
        .env("BATCH_SIZE", "500")
        .env("FLUSH_INTERVAL_MS", "50")
        .env("ADMIN_LISTEN", "127.0.0.1:0")
        .env_remove("LEGACY_LIST_KEY")
        .env_remove("RETENTION_DAYS");
    command
}

/// The body of a processor child: `activity-processor serve` with the
/// settings from the environment, until killed. A start that fails (the
/// database or Redis not accepting connections yet) is retried, as a
/// supervisor would.
pub fn run_processor_from_env() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        loop {
            let config = activity_processor::Config::from_env();
            match activity_processor::run(config, CancellationToken::new()).await {
                Ok(()) => return,
                Err(e) => {
                    eprintln!("processor child: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
}
