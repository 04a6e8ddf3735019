//! The audit log: one JSON line per request, written before the response is released.
//!
//! Records hold only the allow-listed fields of [`AuditRecord`]: never a token, plaintext,
//! ciphertext, share or context value. A dedicated thread appends records in batches and, when
//! configured, calls `fdatasync` once per batch, so concurrent requests share one disk flush.
//! A request whose record is not durable within the configured timeout, or that finds the queue
//! full, is refused with 503: a stuck audit device slows nothing but the refused requests.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Duration;

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
    done: oneshot::Sender<bool>,
}

/// Handle to the audit writer thread.
#[derive(Debug, Clone)]
pub struct AuditLog {
    queue: SyncSender<Pending>,
    timeout: Duration,
    path: PathBuf,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("bytes", &self.line.len()).finish()
    }
}

impl AuditLog {
    /// Opens `path` for appending (mode 0600) and starts the writer thread.
    pub fn open(path: &Path, fsync: bool, timeout: Duration) -> Result<AuditLog, Error> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io(format!("cannot open audit log {}", path.display()), e))?;
        let (queue, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("audit-writer".to_owned())
            .spawn(move || write_loop(file, rx, fsync, &shown))
            .map_err(|e| Error::io("cannot start the audit writer thread", e))?;
        Ok(AuditLog { queue, timeout, path: path.to_owned() })
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
        match self.queue.try_send(Pending { line, done }) {
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

fn write_loop(mut file: File, rx: Receiver<Pending>, fsync: bool, path: &str) {
    let mut failures: u64 = 0;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let result = write_batch(&mut file, &batch, fsync);
        if let Err(error) = &result {
            failures += 1;
            // Count repeats so a broken disk does not flood the log.
            if failures.is_power_of_two() {
                tracing::error!(%path, %error, failures, "writing the audit log failed");
            }
        }
        for pending in batch {
            let _ = pending.done.send(result.is_ok());
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
        assert_eq!(text.lines().count(), 2);
        let value: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(value["request_id"], "r1");
        assert_eq!(value["status"], 200);
    }

    #[tokio::test]
    async fn record_fails_when_the_device_is_full() {
        let log = AuditLog::open(Path::new("/dev/full"), false, Duration::from_secs(5)).unwrap();
        let err = log.record(&AuditRecord::default()).await.unwrap_err();
        assert!(matches!(err, Error::AuditUnavailable(_)), "{err:?}");
    }
}
