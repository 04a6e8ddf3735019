//! Helpers shared by the tests of `kmsctl file`, `backup` and `field`: running kmsctl against
//! a daemon, and reading and altering encrypted files.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use client_sdk::secrecy::{ExposeSecret, SecretString};
use kms_tests::{Daemon, binary, data_dir};
use serde_json::Value;
use tempfile::TempDir;

/// Name of the key that the tests encrypt under.
pub const KEY: &str = "backups";

/// What one `kmsctl` run returned. stdout stays bytes, because decrypt writes raw plaintext.
pub struct Run {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            status: output.status.code().unwrap_or(-1),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Checks that the command succeeded and printed nothing on stderr.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.status, 0, "kmsctl failed: {}", self.stderr);
        assert_eq!(self.stderr, "", "kmsctl printed on stderr");
        self
    }

    /// Parses stdout as JSON after checking that the command succeeded.
    #[track_caller]
    pub fn json(self) -> Value {
        let run = self.ok();
        serde_json::from_slice(&run.stdout).expect("kmsctl printed JSON")
    }

    /// Returns stdout as text after checking that the command succeeded.
    #[track_caller]
    pub fn text(self) -> String {
        let run = self.ok();
        String::from_utf8(run.stdout).expect("kmsctl printed UTF-8")
    }

    /// Checks that the command failed with `status`, printed nothing on stdout, and printed
    /// exactly `stderr`.
    #[track_caller]
    pub fn fails_with(&self, status: i32, stderr: &str) {
        assert_eq!(
            (self.status, self.stdout.len(), self.stderr.as_str()),
            (status, 0, stderr),
            "expected status {status}, no stdout and the stderr shown"
        );
    }
}

/// A daemon, initialized and unsealed, with the key [`KEY`] created, and a scratch folder.
pub struct Setup {
    pub daemon: Daemon,
    pub token: SecretString,
    /// Folder for the test's plaintext and encrypted files.
    pub work: TempDir,
    _data: TempDir,
}

impl Setup {
    pub async fn start() -> Setup {
        let data = data_dir();
        let daemon = Daemon::start(data.path());
        let init = daemon.init_unsealed().await;
        let setup = Setup {
            daemon,
            token: init.root_token,
            work: data_dir(),
            _data: data,
        };
        setup.kmsctl(&["key", "create", KEY], b"").ok();
        setup
    }

    /// Returns the path of `name` in the scratch folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// Builds a `kmsctl` command pointed at the daemon, with the root token.
    pub fn command(&self) -> Command {
        let mut command = self.daemon.kmsctl();
        command.env("KMS_TOKEN", self.token.expose_secret());
        command
    }

    /// Runs `kmsctl` with `args`, the root token, and `stdin`.
    pub fn kmsctl(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut command = self.command();
        command.args(args);
        run_with_input(&mut command, stdin).into()
    }

    /// Runs `kmsctl` with path arguments mixed in.
    pub fn kmsctl_paths(&self, args: &[&str], paths: &[&Path], stdin: &[u8]) -> Run {
        let mut command = self.command();
        command.args(args).args(paths);
        run_with_input(&mut command, stdin).into()
    }

    /// Runs `kmsctl recovery keygen -o identity` and returns the printed recipient, trimmed.
    pub fn recovery_keygen(&self, identity: &Path) -> String {
        let recipient = self
            .kmsctl_paths(&["recovery", "keygen", "-o"], &[identity], b"")
            .text();
        recipient.trim().to_owned()
    }

    /// Returns the id of [`KEY`].
    pub fn key_id(&self) -> String {
        let key = self
            .kmsctl(&["--format", "json", "key", "show", KEY], b"")
            .json();
        key["id"].as_str().expect("key id").to_owned()
    }
}

pub use kms_tests::run_with_input;

/// Builds a `kmsctl` command with no daemon settings at all: no KMS_ADDR, KMS_TOKEN or KMS_CACERT.
pub fn offline_kmsctl() -> Command {
    let mut command = Command::new(binary("kmsctl"));
    command
        .env_remove("KMS_ADDR")
        .env_remove("KMS_TOKEN")
        .env_remove("KMS_CACERT");
    command
}

/// Returns the header length of an encrypted file, from bytes 6 to 10.
pub fn header_len(encrypted: &[u8]) -> usize {
    let bytes: [u8; 4] = encrypted[6..10].try_into().expect("4 bytes");
    u32::from_be_bytes(bytes) as usize
}

/// Returns the names in `folder`, sorted, to check that a failed run left no file behind.
pub fn folder_names(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .expect("read folder")
        .map(|entry| {
            entry
                .expect("folder entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Synthetic plaintext of `len` bytes: a counter pattern mixed with kernel randomness, so that
/// every run and every length differs.
pub fn plaintext(len: usize) -> Vec<u8> {
    let noise = kms_tests::random_bytes(len.min(4096));
    (0..len)
        .map(|i| {
            let counter = (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0];
            counter ^ noise.get(i % noise.len().max(1)).copied().unwrap_or(0)
        })
        .collect()
}
