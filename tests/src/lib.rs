//! Fixtures for end-to-end tests: a real `kmsd` process on a free loopback port in a temporary
//! data directory, and `kmsctl` invocations pointed at it.
//!
//! The binaries come from the same target directory as the test executable, so run
//! `cargo build --workspace --bins` before `cargo test` (the project's test script does).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use client_sdk::secrecy::SecretString;
use client_sdk::{Client, ClientBuilder, RetryPolicy, Status};
use tempfile::TempDir;

pub mod http;
pub mod postgres;
pub mod share_text;
pub mod softhsm;

use crate::http::Http;

/// How long a daemon may take to print its listening address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Returns the path of a workspace binary next to the running test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> -> target/debug/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the end-to-end tests",
        path.display()
    );
    path
}

/// Environment variables that the test environment may set for kmsd and that would change
/// which root of trust a test daemon uses. Test daemons start without them, and a test sets
/// them through [`Options::env`].
pub(crate) const ROOT_OF_TRUST_ENV: [&str; 8] = [
    "KMS_SEAL",
    "KMS_PKCS11_MODULE",
    "KMS_PKCS11_TOKEN_LABEL",
    "KMS_PKCS11_TOKEN_SERIAL",
    "KMS_PKCS11_PIN",
    "KMS_PKCS11_PIN_FILE",
    "KMS_PKCS11_KEY_LABEL",
    "SOFTHSM2_CONF",
];

/// A running `kmsd`.
pub struct Daemon {
    child: Child,
    data_dir: PathBuf,
    addr: String,
    ca: PathBuf,
    stderr: PathBuf,
    env: Vec<(String, String)>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("pid", &self.child.id())
            .field("data_dir", &self.data_dir)
            .field("addr", &self.addr)
            .field("ca", &self.ca)
            .field("stderr", &self.stderr)
            .field("env", &EnvNames(&self.env))
            .finish()
    }
}

/// Options for starting a daemon beyond the defaults.
#[derive(Clone, Default)]
pub struct Options {
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Log filter (`--log-level`); defaults to `info`.
    pub log_level: Option<String>,
    /// Extra environment variables, such as `KMS_PKCS11_PIN`, for the daemon and for the
    /// `kmsctl` commands that [`Daemon::kmsctl`] builds. `Debug` prints only their names,
    /// because a value may be a PIN.
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("args", &self.args)
            .field("log_level", &self.log_level)
            .field("env", &EnvNames(&self.env))
            .finish()
    }
}

/// Formats environment variables as their names only.
struct EnvNames<'a>(&'a [(String, String)]);

impl std::fmt::Debug for EnvNames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

/// How a `kmsd` ended that exited before it listened.
#[derive(Debug)]
pub struct Exited {
    /// The exit code, or `None` when a signal ended the process.
    pub code: Option<i32>,
    /// Everything the process wrote to stderr.
    pub stderr: String,
}

/// Builds a `kmsd` command for `data_dir` with the test defaults and `options`, without its
/// standard streams set.
fn kmsd_command(data_dir: &Path, options: &Options) -> Command {
    let mut command = Command::new(binary("kmsd"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0", "--workers", "2"])
        .args([
            "--log-level",
            options.log_level.as_deref().unwrap_or("info"),
        ])
        .args(&options.args)
        .env_remove("KMS_CONFIG");
    for name in ROOT_OF_TRUST_ENV {
        command.env_remove(name);
    }
    command.envs(options.env.iter().map(|(name, value)| (name, value)));
    command
}

/// Reads the lines of `stdout` on a thread of its own and sends them to the returned channel,
/// which disconnects when the stream ends.
fn stdout_lines(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Starts `kmsd` in `data_dir` (created if needed) with its stdout piped and its stderr in a
/// new log file in `data_dir`, and returns the process and the log's path.
fn spawn_kmsd(data_dir: &Path, options: &Options) -> (Child, PathBuf) {
    std::fs::create_dir_all(data_dir).expect("create data dir");
    let stderr = data_dir.join(format!("kmsd-{}.log", unique_suffix()));
    let stderr_file = std::fs::File::create(&stderr).expect("create stderr log");
    let child = kmsd_command(data_dir, options)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr_file)
        .spawn()
        .expect("start kmsd");
    (child, stderr)
}

impl Daemon {
    /// Starts a daemon in `data_dir` (created if needed) with default options.
    pub fn start(data_dir: &Path) -> Daemon {
        Daemon::start_with(data_dir, &Options::default())
    }

    /// Starts a daemon in `data_dir` with extra options, and waits until it listens.
    pub fn start_with(data_dir: &Path, options: &Options) -> Daemon {
        let (mut child, stderr) = spawn_kmsd(data_dir, options);
        let stdout = child.stdout.take().expect("kmsd stdout");
        let rx = stdout_lines(stdout);
        let mut addr = None;
        let mut ca = None;
        while addr.is_none() || ca.is_none() {
            let Ok(line) = rx.recv_timeout(START_TIMEOUT) else {
                let _ = child.kill();
                let log = std::fs::read_to_string(&stderr).unwrap_or_default();
                panic!("kmsd did not start within {START_TIMEOUT:?}; its log:\n{log}");
            };
            if let Some(rest) = line.split("listening on ").nth(1) {
                addr = Some(rest.trim().to_owned());
            }
            if let Some(rest) = line.strip_prefix("CA certificate: ") {
                ca = rest.split(" (").next().map(PathBuf::from);
            }
        }
        Daemon {
            child,
            data_dir: data_dir.to_owned(),
            addr: addr.unwrap_or_default(),
            ca: ca.unwrap_or_default(),
            stderr,
            env: options.env.clone(),
        }
    }

    /// Starts a daemon in `data_dir` that is expected to fail at start, waits for it to exit,
    /// and returns its exit code and stderr. Panics if it listens instead.
    pub fn start_expecting_exit(data_dir: &Path, options: &Options) -> Exited {
        let (mut child, stderr) = spawn_kmsd(data_dir, options);
        let rx = stdout_lines(child.stdout.take().expect("kmsd stdout"));
        loop {
            match rx.recv_timeout(START_TIMEOUT) {
                Ok(line) if line.contains("listening on ") => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
                    panic!("kmsd started although it was expected to fail; its log:\n{log}");
                }
                Ok(_) => {}
                // The stream ends when the process exits.
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
                    panic!(
                        "kmsd neither listened nor exited within {START_TIMEOUT:?}; its log:\n{log}"
                    );
                }
            }
        }
        let status = child.wait().expect("wait for kmsd");
        Exited {
            code: status.code(),
            stderr: std::fs::read_to_string(&stderr).expect("read kmsd stderr"),
        }
    }

    /// The base address, such as `https://127.0.0.1:40123`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The generated CA certificate that signs the daemon's certificate.
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Returns the file that receives the daemon's stderr log, which outlives the daemon.
    pub fn log_path(&self) -> &Path {
        &self.stderr
    }

    /// The daemon's stderr log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The audit records of requests so far, parsed; the `daemon.start` records that each
    /// start writes are left out.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.data_dir.join("audit.log")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("audit line is JSON"))
            .filter(|record| record["operation"] != "daemon.start")
            .collect()
    }

    /// A `kmsctl` command pointed at this daemon, with no token set and the environment
    /// variables of [`Options::env`] that the daemon started with.
    pub fn kmsctl(&self) -> Command {
        let mut command = Command::new(binary("kmsctl"));
        command
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .env("KMS_ADDR", &self.addr)
            .env("KMS_CACERT", &self.ca)
            .env_remove("KMS_TOKEN")
            .stdin(Stdio::null());
        command
    }

    /// Returns the audit log file in the data directory (unless `--audit-log` moved it).
    pub fn audit_path(&self) -> PathBuf {
        self.data_dir.join("audit.log")
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited with 0.
    pub fn stop(self) -> bool {
        self.stop_with("TERM")
    }

    /// Sends the signal `name` (such as `INT`) and waits for the process to exit; returns
    /// whether it exited with 0.
    pub fn stop_with(mut self, name: &str) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args([format!("-{name}"), pid])
            .status();
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }

    /// Builds an SDK client for this daemon that trusts its CA, sends `token` when given, and
    /// never retries, so that every call is exactly one request.
    pub fn client(&self, token: Option<&SecretString>) -> Client {
        let mut builder = ClientBuilder::new(self.addr.as_str())
            .ca_cert(&self.ca)
            .retry(RetryPolicy::none())
            .timeout(Duration::from_secs(30));
        if let Some(token) = token {
            builder = builder.token(token.clone());
        }
        builder.build().expect("build SDK client")
    }

    /// Builds a raw HTTPS client for this daemon.
    pub fn http(&self) -> Http {
        Http::new(&self.addr, &self.ca)
    }

    /// Initializes the daemon with `shares` shares and threshold `threshold`.
    pub async fn init(&self, shares: u8, threshold: u8) -> Initialized {
        let output = self
            .client(None)
            .init(shares, threshold, threshold == 1)
            .await
            .unwrap_or_else(|err| panic!("init failed: {err}"));
        Initialized {
            shares: output.shares,
            root_token: output.root_token,
            root_accessor: output.root_token_accessor,
        }
    }

    /// Submits `shares` one by one and returns the last status.
    pub async fn unseal(&self, shares: &[SecretString]) -> Status {
        let client = self.client(None);
        let mut status = None;
        for (i, share) in shares.iter().enumerate() {
            let next = client
                .unseal(share)
                .await
                .unwrap_or_else(|err| panic!("unseal with share {} failed: {err}", i + 1));
            status = Some(next);
        }
        status.expect("at least one share")
    }

    /// Initializes the daemon with 5 shares and threshold 3, unseals it with the first three,
    /// and returns the init output.
    pub async fn init_unsealed(&self) -> Initialized {
        let init = self.init(5, 3).await;
        let status = self.unseal(&init.shares[..3]).await;
        assert!(!status.sealed, "three shares did not unseal the daemon");
        init
    }

    /// Initializes and unseals the daemon as [`Daemon::init_unsealed`] does, then creates the
    /// key `name` with the root token. Returns the init output and a root client.
    pub async fn init_with_key(&self, name: &str) -> (Initialized, Client) {
        let init = self.init_unsealed().await;
        let root = self.client(Some(&init.root_token));
        root.create_key(name).await.expect("create key");
        (init, root)
    }
}

/// What `init` returned, kept for the rest of a test.
pub struct Initialized {
    /// The unseal shares, in the order init returned them.
    pub shares: Vec<SecretString>,
    /// The root token.
    pub root_token: SecretString,
    /// The root token's accessor.
    pub root_accessor: String,
}

impl std::fmt::Debug for Initialized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initialized")
            .field("shares", &self.shares.len())
            .field("root_accessor", &self.root_accessor)
            .finish_non_exhaustive()
    }
}

/// Asserts that an SDK call failed with this HTTP status and error code, and returns the error.
/// The panic message shows the error, which never carries a secret.
#[track_caller]
pub fn assert_api_error<T>(
    result: client_sdk::Result<T>,
    status: u16,
    code: &str,
) -> client_sdk::Error {
    let Err(err) = result else {
        panic!("expected HTTP {status} with code {code}, but the request succeeded");
    };
    assert_eq!(
        (err.status(), err.code()),
        (Some(status), Some(code)),
        "unexpected error: {err}"
    );
    err
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard base64 with padding of `bytes`, as the API writes byte strings.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Random bytes for canaries, drawn from the kernel so that every run uses new values.
pub fn random_bytes(len: usize) -> Vec<u8> {
    use std::io::Read as _;
    let mut bytes = vec![0u8; len];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh temporary folder for a daemon's data.
pub fn data_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("kms-e2e-")
        .tempdir()
        .expect("temp dir")
}

/// Runs `command` with `stdin` as input and returns its output.
///
/// A thread writes stdin while this one reads stdout and stderr, so that inputs and outputs
/// larger than a pipe buffer cannot block each other.
pub fn run_with_input(command: &mut Command, stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn command");
    let mut input = child.stdin.take().expect("stdin");
    std::thread::scope(|scope| {
        scope.spawn(move || {
            // A command that fails before it reads its input closes the pipe, which is not an
            // error of the test: its exit status and stderr tell what happened.
            match input.write_all(stdin) {
                Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
                    panic!("write stdin: {err}")
                }
                _ => {}
            }
        });
        child.wait_with_output().expect("wait for command")
    })
}
