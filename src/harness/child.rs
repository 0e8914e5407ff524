//! Processes a test kills with SIGKILL, as in a crash: the test executable
//! started again on one of its own tests (the child's body, which returns
//! at once unless the marker variable is set), so the child runs the
//! code under test without a binary of its own to build.
//!
//! ```no_run
//! use activity_tracking::harness::{Killable, run_processor_from_env, test_child};
//!
//! const CHILD: &str = "MY_TESTS_CHILD_PROCESSOR";
//!
//! #[test]
//! fn child_processor() {
//!     if std::env::var_os(CHILD).is_some() {
//!         run_processor_from_env();
//!     }
//! }
//!
//! # fn test() {
//! let mut command = test_child("child_processor", CHILD);
//! command.env("STREAM_KEY", "s");
//! let mut processor = Killable::spawn(command);
//! processor.kill();
//! # }
//! ```

use std::process::{Child, Command, Stdio};

/// A child process killed with SIGKILL, and reaped, on `kill` or on drop.
#[derive(Debug)]
pub struct Killable(Option<Child>);

impl Killable {
    /// SIGKILL: whatever the child holds in memory is lost, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            child.kill().expect("SIGKILL the child");
            child.wait().expect("reap the child");
        }
    }

    /// Starts `command` (see [`test_child`]).
    pub fn spawn(mut command: Command) -> Killable {
        Killable(Some(command.spawn().expect("start a test child")))
    }

    /// Whether it is still running (not killed, not exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.0 {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Killable {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A command starting this test executable again on its test `test`
/// (exactly, one thread) with `marker` set to `1`, its input and output
/// discarded; the caller adds the child's environment (and may send its
/// stderr to a log) and starts it with [`Killable::spawn`].
pub fn test_child(test: &str, marker: &str) -> Command {
    let exe = std::env::current_exe().expect("test executable");
    let mut command = Command::new(exe);
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(marker, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}
