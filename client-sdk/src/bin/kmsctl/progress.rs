//! Progress bars on stderr for long file and backup work.
//!
//! A bar is drawn only when stderr is a terminal and the work has run for [`SHOW_AFTER`], so
//! pipelines, redirected stderr and short runs print nothing. It shows the bytes done, the
//! rate and, when the total is known, the time left.

use std::io::{self, IsTerminal, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Delay before a bar appears.
const SHOW_AFTER: Duration = Duration::from_secs(1);
/// Interval at which the bar of a whole-file operation reads the byte count so far.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Redraw interval of a bar while no bytes arrive, such as while `pg_dump` is busy.
const TICK_INTERVAL: Duration = Duration::from_millis(200);

const BAR_TEMPLATE: &str = "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} \
                            {binary_bytes_per_sec} ETA {eta}";
const SPINNER_TEMPLATE: &str = "{msg} {spinner} {binary_bytes} {binary_bytes_per_sec} {elapsed}";

/// Progress bar of one operation. Dropping it clears the bar from the terminal.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    terminal: bool,
    drawing: AtomicBool,
}

impl Progress {
    /// Creates a hidden bar for `total` bytes, or a spinner when the total is unknown.
    /// `label` names the work, such as `encrypting dump.sql`.
    pub fn new(total: Option<u64>, label: String) -> Self {
        let (template, length) = match total {
            Some(total) => (BAR_TEMPLATE, Some(total)),
            None => (SPINNER_TEMPLATE, None),
        };
        let bar =
            ProgressBar::with_draw_target(length, ProgressDrawTarget::hidden()).with_message(label);
        // The templates are constants that parse. If one did not, the default style would stay.
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress {
            bar,
            started: Instant::now(),
            terminal: io::stderr().is_terminal(),
            drawing: AtomicBool::new(false),
        }
    }

    /// Adds `bytes` to the position.
    pub fn inc(&self, bytes: u64) {
        self.bar.inc(bytes);
        self.show_when_due();
    }

    /// Sets the position, which never moves past the total.
    pub fn set_position(&self, bytes: u64) {
        let bytes = self.bar.length().map_or(bytes, |total| bytes.min(total));
        self.bar.set_position(bytes);
        self.show_when_due();
    }

    /// Wraps `reader` so that every byte read moves the bar.
    pub fn wrap_read<R: Read>(&self, reader: R) -> ProgressReader<'_, R> {
        ProgressReader {
            progress: self,
            inner: reader,
        }
    }

    /// Runs `work`, which reads its input through positioned reads on other threads, and
    /// moves the bar by the bytes that this process reads meanwhile.
    ///
    /// `encrypt_file` and `decrypt_file` report no progress themselves, so a thread polls the
    /// kernel's count of bytes read by the process (`rchar` in `/proc/self/io`). Before the
    /// work starts everything else has been read, so the count is the input read so far.
    /// NOTE: without `/proc/self/io` (systems other than Linux) the work runs with no bar.
    pub fn track_reads<T>(&self, work: impl FnOnce() -> T) -> T {
        if !self.terminal {
            return work();
        }
        let Some(baseline) = bytes_read_by_process() else {
            return work();
        };
        let (stop, stopped) = mpsc::channel::<()>();
        thread::scope(|scope| {
            scope.spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(POLL_INTERVAL) {
                    if let Some(now) = bytes_read_by_process() {
                        self.set_position(now.saturating_sub(baseline));
                    }
                }
            });
            let outcome = work();
            // Dropping the sender ends the polling thread, which the scope then joins.
            drop(stop);
            outcome
        })
    }

    /// Starts drawing once the work has run for [`SHOW_AFTER`] with stderr on a terminal.
    fn show_when_due(&self) {
        if !self.terminal || self.drawing.load(Ordering::Relaxed) {
            return;
        }
        if self.started.elapsed() >= SHOW_AFTER && !self.drawing.swap(true, Ordering::Relaxed) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.bar.enable_steady_tick(TICK_INTERVAL);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// A reader that moves a [`Progress`] by the bytes it returns.
pub struct ProgressReader<'a, R> {
    progress: &'a Progress,
    inner: R,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let count = self.inner.read(buffer)?;
        self.progress.inc(count as u64);
        Ok(count)
    }
}

/// Returns the bytes that this process has read through system calls, from `/proc/self/io`.
fn bytes_read_by_process() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/io").ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("rchar:"))
        .and_then(|value| value.trim().parse().ok())
}
