//! The audit log: one JSON line per request, written before the response is released.
//!
//! Records hold only the allow-listed fields of [`AuditRecord`]: never a token, plaintext,
//! ciphertext, share or context value. A dedicated thread appends records in batches and, when
//! configured, calls `fdatasync` once per batch, so concurrent requests share one disk flush.
//!
//! A request is admitted only while the log is healthy: the last write succeeded and no write
//! has been stuck for longer than the timeout. A request rejected at admission never runs, so
//! an init or a key rotation rejected for want of an audit record has no effect. Its record is
//! queued for the log without waiting. An admitted request whose record is not durable
//! within the timeout is answered with 503 as well, although it ran; its record is written
//! when the device recovers. A stuck audit device slows nothing but the refused requests.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::oneshot;

use crate::error::Error;

/// Records that may wait for the writer before new requests are refused.
const QUEUE_CAPACITY: usize = 4096;

/// One audit record. Every field is safe to store: ids, names, codes and addresses.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditRecord {
    /// RFC 3339 time the request finished.
    pub time: String,
    /// Id also returned to the client in `x-request-id` and in error bodies.
    pub request_id: String,
    /// Accessor of the token that made the request, when one was presented and known.
    pub accessor: Option<String>,
    /// Operation name, such as `datakey.generate`, or `unknown` for unmatched routes.
    pub operation: String,
    /// HTTP method and path (at most 256 bytes of the path).
    pub method: String,
    pub path: String,
    /// Accessor of the token that the request created (token create, init, generate-root), so
    /// that the trail ties the new token to its creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_accessor: Option<String>,
    /// Key name and version the operation used, when it reached a key.
    pub key: Option<String>,
    pub key_version: Option<u32>,
    /// Keys (never values) of the encryption context.
    pub context_keys: Vec<String>,
    /// `ok`, or the error code returned.
    pub outcome: String,
    /// HTTP status returned.
    pub status: u16,
    /// Peer address of the connection.
    pub remote_addr: Option<String>,
}

struct Pending {
    line: Vec<u8>,
    done: Option<oneshot::Sender<bool>>,
}

/// State of the audit device, written by the writer thread and read by request handlers.
#[derive(Debug)]
struct Health {
    /// Whether the last write failed.
    failing: AtomicBool,
    /// Milliseconds after `epoch`, plus one, at which the writer began the write it is still
    /// in; zero while it waits for records.
    busy_since: AtomicU64,
    epoch: Instant,
    /// Refusal records dropped because the queue was full.
    dropped: AtomicU64,
}

impl Health {
    fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Handle to the audit writer thread.
#[derive(Debug, Clone)]
pub struct AuditLog {
    queue: SyncSender<Pending>,
    timeout: Duration,
    path: PathBuf,
    health: Arc<Health>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("bytes", &self.line.len())
            .finish()
    }
}

impl AuditLog {
    /// Opens `path` for appending (mode 0600), writes a `daemon.start` record, and starts the
    /// writer thread.
    ///
    /// A device that rejects the start record does not stop the daemon. It starts and rejects
    /// every request with 503 until a write succeeds, so that clients and the log see the
    /// failure instead of a daemon that is simply absent.
    pub fn open(path: &Path, fsync: bool, timeout: Duration) -> Result<AuditLog, Error> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io(format!("cannot open audit log {}", path.display()), e))?;
        let health = Arc::new(Health {
            failing: AtomicBool::new(false),
            busy_since: AtomicU64::new(0),
            epoch: Instant::now(),
            dropped: AtomicU64::new(0),
        });
        let start = AuditRecord {
            time: crate::core::rfc3339(crate::core::now()),
            operation: "daemon.start".to_owned(),
            outcome: "ok".to_owned(),
            ..AuditRecord::default()
        };
        let mut line = serde_json::to_vec(&start)
            .map_err(|_| Error::AuditUnavailable("the record could not be serialized"))?;
        line.push(b'\n');
        if let Err(error) = write_batch(&mut file, &[Pending { line, done: None }], fsync) {
            tracing::error!(
                path = %path.display(), %error,
                "the audit log refused the start record; requests are refused until it accepts one"
            );
            health.failing.store(true, Ordering::Release);
        }
        let (queue, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let shown = path.display().to_string();
        let writer_health = Arc::clone(&health);
        std::thread::Builder::new()
            .name("audit-writer".to_owned())
            .spawn(move || write_loop(file, rx, fsync, &shown, &writer_health))
            .map_err(|e| Error::io("cannot start the audit writer thread", e))?;
        Ok(AuditLog {
            queue,
            timeout,
            path: path.to_owned(),
            health,
        })
    }

    /// Checks that a new request may run: the last write succeeded and no write has been
    /// stuck for longer than the timeout.
    pub fn admit(&self) -> Result<(), Error> {
        if self.health.failing.load(Ordering::Acquire) {
            return Err(Error::AuditUnavailable(
                "writing the audit log failed, so requests are rejected: check the audit device",
            ));
        }
        let since = self.health.busy_since.load(Ordering::Acquire);
        let timeout = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        if since != 0 && self.health.millis().saturating_sub(since - 1) > timeout {
            return Err(Error::AuditUnavailable(
                "writing the audit log timed out, so requests are rejected: check the audit device",
            ));
        }
        Ok(())
    }

    /// Queues the record of a request refused at admission, without waiting for it. When the
    /// queue is full the record is dropped and counted in the daemon log.
    pub fn record_refusal(&self, record: &AuditRecord) {
        let Ok(mut line) = serde_json::to_vec(record) else {
            return;
        };
        line.push(b'\n');
        if self.queue.try_send(Pending { line, done: None }).is_err() {
            let dropped = self.health.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::error!(dropped, "audit records of rejected requests were dropped");
            }
        }
    }

    /// The file the log appends to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` and waits until it is written, or fails with `AuditUnavailable`.
    pub async fn record(&self, record: &AuditRecord) -> Result<(), Error> {
        let mut line = serde_json::to_vec(record)
            .map_err(|_| Error::AuditUnavailable("the record could not be serialized"))?;
        line.push(b'\n');
        let (done, written) = oneshot::channel();
        match self.queue.try_send(Pending {
            line,
            done: Some(done),
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(Error::AuditUnavailable("the audit queue is full"));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(Error::AuditUnavailable("the audit writer stopped"));
            }
        }
        match tokio::time::timeout(self.timeout, written).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(Error::AuditUnavailable("writing the audit log failed")),
            Ok(Err(_)) => Err(Error::AuditUnavailable("the audit writer stopped")),
            Err(_) => Err(Error::AuditUnavailable("writing the audit log timed out")),
        }
    }
}

fn write_loop(mut file: File, rx: Receiver<Pending>, fsync: bool, path: &str, health: &Health) {
    let mut failures: u64 = 0;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        health
            .busy_since
            .store(health.millis() + 1, Ordering::Release);
        let result = write_batch(&mut file, &batch, fsync);
        health.busy_since.store(0, Ordering::Release);
        health.failing.store(result.is_err(), Ordering::Release);
        if let Err(error) = &result {
            failures += 1;
            // Count repeats so a broken disk does not flood the log.
            if failures.is_power_of_two() {
                tracing::error!(%path, %error, failures, "writing the audit log failed");
            }
        }
        for pending in batch {
            if let Some(done) = pending.done {
                let _ = done.send(result.is_ok());
            }
        }
    }
}

fn write_batch(file: &mut File, batch: &[Pending], fsync: bool) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(batch.iter().map(|p| p.line.len()).sum());
    for pending in batch {
        bytes.extend_from_slice(&pending.line);
    }
    file.write_all(&bytes)?;
    if fsync {
        file.sync_data()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn record_appends_one_json_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, true, Duration::from_secs(5)).unwrap();
        let record = AuditRecord {
            request_id: "r1".into(),
            operation: "sys.status".into(),
            outcome: "ok".into(),
            status: 200,
            ..AuditRecord::default()
        };
        log.record(&record).await.unwrap();
        log.record(&record).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        let start: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(start["operation"], "daemon.start");
        let value: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(value["request_id"], "r1");
        assert_eq!(value["status"], 200);
    }

    #[tokio::test]
    async fn full_device_refuses_admission_from_the_start() {
        let log = AuditLog::open(Path::new("/dev/full"), false, Duration::from_secs(5)).unwrap();
        assert!(matches!(log.admit(), Err(Error::AuditUnavailable(_))));
        let err = log.record(&AuditRecord::default()).await.unwrap_err();
        assert!(matches!(err, Error::AuditUnavailable(_)), "{err:?}");
        assert!(matches!(log.admit(), Err(Error::AuditUnavailable(_))));
    }
}
