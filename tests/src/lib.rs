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

use tempfile::TempDir;

/// How long a daemon may take to print its listening address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Returns the path of a workspace binary next to the running test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> -> target/debug/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the end-to-end tests",
        path.display()
    );
    path
}

/// A running `kmsd`.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    data_dir: PathBuf,
    addr: String,
    ca: PathBuf,
    stderr: PathBuf,
}

/// Options for starting a daemon beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Log filter (`--log-level`); defaults to `info`.
    pub log_level: Option<String>,
}

impl Daemon {
    /// Starts a daemon in `data_dir` (created if needed) with default options.
    pub fn start(data_dir: &Path) -> Daemon {
        Daemon::start_with(data_dir, &Options::default())
    }

    /// Starts a daemon in `data_dir` with extra options, and waits until it listens.
    pub fn start_with(data_dir: &Path, options: &Options) -> Daemon {
        std::fs::create_dir_all(data_dir).expect("create data dir");
        let stderr = data_dir.join(format!("kmsd-{}.log", unique_suffix()));
        let stderr_file = std::fs::File::create(&stderr).expect("create stderr log");
        let mut child = Command::new(binary("kmsd"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--workers", "2"])
            .args(["--log-level", options.log_level.as_deref().unwrap_or("info")])
            .args(&options.args)
            .env_remove("KMS_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr_file)
            .spawn()
            .expect("start kmsd");
        let stdout = child.stdout.take().expect("kmsd stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
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

    /// The daemon's stderr log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The audit log lines so far, parsed.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.data_dir.join("audit.log")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).expect("audit line is JSON")).collect()
    }

    /// A `kmsctl` command pointed at this daemon, with no token set.
    pub fn kmsctl(&self) -> Command {
        let mut command = Command::new(binary("kmsctl"));
        command
            .env("KMS_ADDR", &self.addr)
            .env("KMS_CACERT", &self.ca)
            .env_remove("KMS_TOKEN")
            .stdin(Stdio::null());
        command
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited with 0.
    pub fn stop(mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }
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
    format!("{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A fresh temporary folder for a daemon's data.
pub fn data_dir() -> TempDir {
    tempfile::Builder::new().prefix("kms-e2e-").tempdir().expect("temp dir")
}

/// Runs a command with `stdin` as input and returns its output.
pub fn run_with_input(command: &mut Command, stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn command");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("wait for command")
}
