//! `activity-processor`: drains the activity stream into PostgreSQL and
//! serves the health, metrics and admin endpoints. See `--help`.

use std::io::IsTerminal;
use std::process::ExitCode;

use activity_processor::config::{Cli, Command, DatabaseArgs, RebuildArgs, RedriveArgs};
use activity_processor::db_message::describe_schema;
use activity_store::schema;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("activity-processor: {} (see --help)", usage_error(&e));
            return ExitCode::from(2);
        }
    };
    let log_level = match &cli.command {
        Command::Serve(config) => config.log_level.clone(),
        Command::Migrate(args) => args.log_level.clone(),
        Command::RebuildRollups(args) => args.database.log_level.clone(),
        Command::RedriveDead(args) => args.log_level.clone(),
        _ => None,
    };
    init_logging(log_level);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("activity-processor: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(config) => serve(config).await,
            Command::Migrate(args) => migrate(args).await,
            Command::RebuildRollups(args) => rebuild_rollups(args).await,
            Command::RedriveDead(args) => redrive_dead(args).await,
            _ => Err("this subcommand is not available in this build".to_owned()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("activity-processor: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: activity_processor::Config) -> Result<(), String> {
    let token = CancellationToken::new();
    tokio::spawn(cancel_on_signal(token.clone()));
    activity_processor::run(config, token)
        .await
        .map_err(|e| e.to_string())
}

async fn migrate(args: DatabaseArgs) -> Result<(), String> {
    args.validate().map_err(|e| e.to_string())?;
    let pool = activity_processor::connect_database(&args.database_url)
        .await
        .map_err(|e| e.to_string())?;
    schema::migrate(&pool)
        .await
        .map_err(|e| describe_schema(&e))?;
    let created = schema::ensure_partitions(&pool, chrono::Utc::now(), 2)
        .await
        .map_err(|e| describe_schema(&e))?;
    println!("migrations applied; partitions created: {}", created.len());
    pool.close().await;
    Ok(())
}

async fn rebuild_rollups(args: RebuildArgs) -> Result<(), String> {
    args.database.validate().map_err(|e| e.to_string())?;
    let pool = activity_processor::connect_database(&args.database.database_url)
        .await
        .map_err(|e| e.to_string())?;
    schema::migrate(&pool)
        .await
        .map_err(|e| describe_schema(&e))?;
    let outcome = activity_store::rollups::rebuild_rollups(&pool, args.since)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "rollups rebuilt from {} rows{} in {:.1} s",
        outcome.rows,
        args.since
            .map(|d| format!(" since {d}"))
            .unwrap_or_default(),
        outcome.took.as_secs_f64()
    );
    pool.close().await;
    Ok(())
}

/// SIGTERM or SIGINT: stop reading, commit and acknowledge the batch in
/// hand, exit 0. A second signal exits at once.
async fn redrive_dead(args: RedriveArgs) -> Result<(), String> {
    let redis = args.redis_client().map_err(|e| e.to_string())?;
    let filter = activity_processor::redrive::RedriveFilter {
        reason_contains: args.reason_contains,
        since: args.since,
    };
    // Each shard's dead letters back onto that shard.
    let shards = activity_tracker::StreamShards::new(&args.stream_key, args.stream_shards);
    let mut report = activity_processor::redrive::RedriveReport::default();
    for key in shards.keys() {
        report += activity_processor::redrive::redrive_dead(&redis, key, &filter)
            .await
            .map_err(|e| e.to_string())?;
    }
    let dead_letters = match shards.len() {
        1 => format!("{}:dead", args.stream_key),
        count => format!("{}:{{...}}:dead ({count} shards)", args.stream_key),
    };
    println!(
        "{dead_letters}: {} dead letters examined; redriven to {}: {} events (ids kept for {} without one) and {} whole version 2 entries; {} left as not matching, {} left with nothing to redrive",
        report.examined,
        args.stream_key,
        report.redriven_events,
        report.ids_kept,
        report.redriven_entries,
        report.skipped,
        report.unusable,
    );
    Ok(())
}

async fn cancel_on_signal(token: CancellationToken) {
    wait_for_signal().await;
    tracing::info!("shutting down: finishing the batch in hand");
    token.cancel();
    wait_for_signal().await;
    tracing::warn!("second signal: exiting now; unacknowledged entries are claimed later");
    std::process::exit(130);
}

async fn wait_for_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// clap's error as one line without its own `error: ` prefix; a bad value
/// that came from an environment variable is named by the variable
/// (`BATCH_SIZE`), not by the flag it stands for.
fn usage_error(error: &clap::Error) -> String {
    let text = error.to_string();
    let first = text.lines().next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first).to_owned();
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else {
        return first;
    };
    let Some(long) = arg
        .split_whitespace()
        .next()
        .and_then(|flag| flag.strip_prefix("--"))
    else {
        return first;
    };
    let on_command_line = std::env::args_os().any(|given| {
        given
            .to_str()
            .and_then(|given| given.strip_prefix("--"))
            .is_some_and(|given| given == long || given.starts_with(&format!("{long}=")))
    });
    let cli = Cli::command();
    let env = cli
        .get_subcommands()
        .flat_map(|command| command.get_arguments())
        .find(|argument| argument.get_long() == Some(long))
        .and_then(|argument| argument.get_env())
        .and_then(|env| env.to_str());
    match env {
        Some(var) if !on_command_line => first.replace(&format!("'{arg}'"), var),
        _ => first,
    }
}

fn init_logging(level: Option<String>) {
    use tracing_subscriber::EnvFilter;
    let filter = level
        .and_then(|l| EnvFilter::try_new(l).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not into a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
