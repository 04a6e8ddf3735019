//! Running file system work off the async runtime, on several threads, with progress reports.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::error::{Error, Result};

/// Maximum number of threads that encrypt or decrypt files at once.
const MAX_THREADS: usize = 8;
/// Plaintext bytes that one read moves, and so the step of the progress reports.
pub(super) const BUFFER_LEN: usize = 256 * 1024;

/// Reports processed bytes from the blocking threads to the caller's progress function.
#[derive(Debug)]
pub(super) struct Progress {
    sender: mpsc::UnboundedSender<u64>,
}

impl Progress {
    pub(super) fn new(sender: mpsc::UnboundedSender<u64>) -> Self {
        Progress { sender }
    }

    /// Reports `bytes` more processed bytes. Fails with [`Error::Cancelled`] once the caller
    /// dropped the operation, so that the work stops at the next read.
    pub(super) fn advance(&self, bytes: u64) -> Result<()> {
        if bytes == 0 {
            return self.check();
        }
        self.sender.send(bytes).map_err(|_| Error::Cancelled)
    }

    /// Fails with [`Error::Cancelled`] once the caller dropped the operation.
    pub(super) fn check(&self) -> Result<()> {
        if self.sender.is_closed() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// Runs `work` on tokio's blocking thread pool and calls `progress` on this task with each
/// report, so the caller's function needs to be neither `'static` nor thread-safe beyond
/// `Sync`.
///
/// Dropping the returned future closes the channel, and the work stops with
/// [`Error::Cancelled`] at its next report.
pub(super) async fn run_blocking<T, F>(progress: &(dyn Fn(u64) + Send + Sync), work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Progress) -> Result<T> + Send + 'static,
{
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let task = tokio::task::spawn_blocking(move || work(&Progress::new(sender)));
    // The sender is dropped when `work` returns, which ends this loop.
    while let Some(bytes) = receiver.recv().await {
        progress(bytes);
    }
    match task.await {
        Ok(outcome) => outcome,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => Err(Error::Cancelled),
    }
}

/// Runs `work` on every job across up to [`MAX_THREADS`] threads, each with its own zeroizing
/// buffer of [`BUFFER_LEN`] bytes, and returns the error of the lowest failing job.
///
/// After the first failure the threads take no new jobs, so jobs after it may not have run.
///
/// TODO: one job is one file on one thread, so a folder of a single large file uses one core.
/// `stream::encrypt_file` splits a file across cores, but it reports no progress.
pub(super) fn for_each_parallel<J, F>(jobs: &[J], work: F) -> Result<()>
where
    J: Sync,
    F: Fn(&J, &mut [u8]) -> Result<()> + Sync,
{
    let threads = thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(MAX_THREADS)
        .min(jobs.len());
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<(usize, Error)>> = Mutex::new(None);
    let run = || {
        let mut buffer = Zeroizing::new(vec![0; BUFFER_LEN]);
        loop {
            if lock(&failure).is_some() {
                return;
            }
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(job) = jobs.get(index) else {
                return;
            };
            if let Err(err) = work(job, &mut buffer) {
                let mut failure = lock(&failure);
                if failure.as_ref().is_none_or(|(first, _)| index < *first) {
                    *failure = Some((index, err));
                }
            }
        }
    };
    if threads <= 1 {
        run();
    } else {
        thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(run);
            }
        });
    }
    match failure.into_inner() {
        Ok(None) => Ok(()),
        Ok(Some((_, err))) => Err(err),
        Err(poisoned) => poisoned.into_inner().map_or(Ok(()), |(_, err)| Err(err)),
    }
}

/// Locks the failure slot. A panic while it is held cannot leave it half-written, so a
/// poisoned lock is used as is.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
