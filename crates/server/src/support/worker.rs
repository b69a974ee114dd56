//! The shape every background queue shares: keep up to `concurrency` jobs running; whenever
//! there is room, ask for more due work; wake on a signal, on a finished job, or after `scan`;
//! at shutdown stop asking and wait for the running jobs to end.

use std::future::Future;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Runs until `cancel` fires. `due(room)` returns at most `room` items; `job(item)` is spawned
/// for each.
pub(crate) async fn drain<T, Due, DueFut, Job, JobFut>(
    concurrency: usize,
    scan: Duration,
    wake: &Notify,
    cancel: CancellationToken,
    due: Due,
    job: Job,
) where
    Due: Fn(usize) -> DueFut,
    DueFut: Future<Output = Vec<T>>,
    Job: Fn(T) -> JobFut,
    JobFut: Future<Output = ()> + Send + 'static,
{
    let mut running: JoinSet<()> = JoinSet::new();
    loop {
        while running.try_join_next().is_some() {}
        let room = concurrency.saturating_sub(running.len());
        if room > 0 && !cancel.is_cancelled() {
            for item in due(room).await {
                running.spawn(job(item));
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(scan) => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    running.shutdown().await;
}
