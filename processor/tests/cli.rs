//! The binary's command line: every option in `--help`, and one clear line
//! and a non-zero exit for each misconfiguration.

use std::process::Command;

fn processor() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_activity-processor"));
    // The test environment's own settings must not leak into these runs.
    for var in [
        "REDIS_URL",
        "DATABASE_URL",
        "STREAM_KEY",
        "CONSUMER_GROUP",
        "CONSUMER_NAME",
        "BATCH_SIZE",
        "FLUSH_INTERVAL_MS",
        "CLAIM_IDLE_MS",
        "ADMIN_LISTEN",
        "RETENTION_DAYS",
        "LEGACY_LIST_KEY",
        "LOG_LEVEL",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command
}

#[test]
fn help_lists_every_option_with_its_variable_and_default() {
    let output = processor().args(["serve", "--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for (flag, var) in [
        ("--redis-url", "REDIS_URL"),
        ("--database-url", "DATABASE_URL"),
        ("--stream-key", "STREAM_KEY"),
        ("--consumer-group", "CONSUMER_GROUP"),
        ("--consumer-name", "CONSUMER_NAME"),
        ("--batch-size", "BATCH_SIZE"),
        ("--flush-interval-ms", "FLUSH_INTERVAL_MS"),
        ("--claim-idle-ms", "CLAIM_IDLE_MS"),
        ("--admin-listen", "ADMIN_LISTEN"),
        ("--retention-days", "RETENTION_DAYS"),
        ("--legacy-list-key", "LEGACY_LIST_KEY"),
        ("--log-level", "LOG_LEVEL"),
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
        assert!(
            help.contains(&format!("env: {var}")),
            "{var} missing from:\n{help}"
        );
    }
    for default in [
        "redis://127.0.0.1:6379",
        "user_activities_stream",
        "[default: activity-processor]",
        "127.0.0.1:8080",
        "<hostname>-<pid>",
    ] {
        assert!(help.contains(default), "{default} missing from:\n{help}");
    }

    let output = processor().arg("--help").output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for subcommand in ["serve", "migrate"] {
        assert!(
            help.contains(subcommand),
            "{subcommand} missing from:\n{help}"
        );
    }
}

fn fails_with_one_line(args: &[&str], env: &[(&str, &str)], needle: &str) {
    let output = processor()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!output.status.success(), "{args:?} {env:?} succeeded");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?} {env:?}: expected one line, got:\n{stderr}"
    );
    assert!(
        lines[0].contains(needle),
        "{args:?} {env:?}: {needle:?} not in {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn misconfiguration_exits_non_zero_with_one_clear_line() {
    fails_with_one_line(
        &["serve"],
        &[("BATCH_SIZE", "0")],
        "BATCH_SIZE must be at least 1",
    );
    fails_with_one_line(&["serve", "--batch-size", "lots"], &[], "--batch-size");
    fails_with_one_line(&["serve"], &[("REDIS_URL", "localhost:6379")], "REDIS_URL");
    fails_with_one_line(
        &["serve"],
        &[("DATABASE_URL", "mysql://db/x")],
        "DATABASE_URL",
    );
    fails_with_one_line(
        &["serve"],
        &[("ADMIN_LISTEN", "everywhere")],
        "ADMIN_LISTEN",
    );
    // Nothing listens on port 1: the database is unreachable at start.
    fails_with_one_line(
        &["serve"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres")],
        "cannot connect to the database",
    );
    fails_with_one_line(
        &["migrate"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres")],
        "cannot connect to the database",
    );
}
