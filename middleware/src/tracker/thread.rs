//! Starting the dispatcher on a thread of its own.

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::BuildError;
use crate::dispatcher::{Dispatcher, ShutdownSummary};

/// Runs the dispatcher on a thread of its own, with a single-threaded
/// runtime, rather than as a task of the app's runtime: its writes (a
/// pipeline to Redis, a transaction into PostgreSQL, a spool append) then
/// never hold a worker thread that a request is waiting for. Chosen by
/// measurement with Redis down: as a task, the direct writes into
/// PostgreSQL made every request slower; on its own thread, requests are
/// as fast as with Redis up (`bench/redis_down_latency.sh`, see
/// docs/benchmarks.md). Its summary comes back through the returned
/// receiver.
pub(super) fn start_dispatcher(
    dispatcher: Dispatcher,
    cancel: CancellationToken,
) -> Result<oneshot::Receiver<ShutdownSummary>, BuildError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BuildError::DispatcherThread)?;
    let (done, summary) = oneshot::channel();
    std::thread::Builder::new()
        .name("activity-dispatcher".into())
        .spawn(move || {
            let _ = done.send(runtime.block_on(dispatcher.run(cancel)));
        })
        .map_err(BuildError::DispatcherThread)?;
    Ok(summary)
}
