//! A private PostgreSQL server for end-to-end tests: a new cluster in a temporary folder,
//! reachable only through a Unix socket in that folder (`listen_addresses = ''`).
//!
//! The server binaries come from `/usr/lib/postgresql/<version>/bin`, the newest version
//! installed. PostgreSQL refuses to run as root, so when the tests run as root the server runs
//! as the `postgres` user through `runuser`, in a folder handed over to that user. Clients
//! (`psql`, `pg_dump`) run as the current user and connect as the database superuser
//! `postgres` with `trust` authentication, which is safe here because only the folder's owner
//! and root can reach the socket.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

/// Where Debian installs the server binaries, one folder per major version.
const INSTALL_ROOT: &str = "/usr/lib/postgresql";
/// The port only names the socket file (`.s.PGSQL.<port>`), which lives in a private folder,
/// so no other server can clash with it.
const PORT: &str = "5432";
/// Account that runs the server when the tests run as root; the Debian package creates it.
const SERVER_USER: &str = "postgres";
/// How long `pg_ctl` waits for the server to start or stop, in seconds.
const PG_CTL_TIMEOUT: &str = "60";

/// A running PostgreSQL server; dropping it stops the server and removes its folder.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    run_as: Option<&'static str>,
    // Dropped last, after the server has stopped.
    _dir: TempDir,
}

impl Postgres {
    /// Creates a cluster in a new temporary folder and starts a server on it.
    ///
    /// Panics with the way to install PostgreSQL when its binaries are missing, and with the
    /// server log when the server does not start.
    pub fn start() -> Postgres {
        let bin = server_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("kms-pg-")
            .tempdir()
            .expect("create a temporary folder for PostgreSQL");
        let socket = dir.path().join("socket");
        std::fs::create_dir(&socket).expect("create the socket folder");
        let run_as = nix::unistd::Uid::effective()
            .is_root()
            .then_some(SERVER_USER);
        if let Some(user) = run_as {
            hand_over(&[dir.path(), &socket], user);
        }
        let postgres = Postgres {
            bin,
            data: dir.path().join("data"),
            log: dir.path().join("server.log"),
            socket,
            run_as,
            _dir: dir,
        };
        postgres.init_cluster();
        postgres.start_server();
        postgres
    }

    /// A client program (`psql`, `pg_dump`, ...) of the server's version, pointed at the
    /// server as the superuser `postgres`.
    pub fn client(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command
            .env("PGHOST", &self.socket)
            .env("PGPORT", PORT)
            .env("PGUSER", "postgres")
            .env("PGCONNECT_TIMEOUT", "30")
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
            .env_remove("PGDATABASE")
            .env_remove("PGOPTIONS")
            .stdin(Stdio::null());
        command
    }

    /// Runs `sql` in `database` with psql, stopping at the first error, and returns what it
    /// printed in unaligned, tuples-only form.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let output = self
            .client("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                database,
            ])
            .args(["-c", sql])
            .output()
            .expect("run psql");
        checked("psql", &output);
        String::from_utf8(output.stdout).expect("psql printed UTF-8")
    }

    /// Creates an empty database.
    pub fn create_database(&self, name: &str) {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
    }

    /// Returns the server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn init_cluster(&self) {
        let output = self
            .server_command("initdb")
            .arg("-D")
            .arg(&self.data)
            .args(["--username=postgres", "--auth=trust", "--encoding=UTF8"])
            .args(["--locale=C", "--no-sync"])
            .output()
            .expect("run initdb");
        checked("initdb", &output);
    }

    fn start_server(&self) {
        // pg_ctl hands these options to the server through a shell, so '' is an empty value.
        let options = format!(
            "-k {} -p {PORT} -c listen_addresses='' -c fsync=off",
            self.socket.display()
        );
        let output = self
            .server_command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", PG_CTL_TIMEOUT, "-o", &options, "start"])
            .output()
            .expect("run pg_ctl start");
        if !output.status.success() {
            panic!(
                "PostgreSQL did not start: {}\nserver log:\n{}",
                String::from_utf8_lossy(&output.stderr),
                self.log()
            );
        }
    }

    /// Builds the command of a server program, run as [`SERVER_USER`] when the tests run as
    /// root.
    fn server_command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&path);
                command
            }
            None => Command::new(&path),
        };
        command.stdin(Stdio::null());
        command
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .server_command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "-t", PG_CTL_TIMEOUT, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Returns the `bin` folder of the newest PostgreSQL installed.
fn server_bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(INSTALL_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed: no {INSTALL_ROOT}/<version>/bin/initdb. Run \
             scripts/test.sh, which installs the postgresql and postgresql-client packages"
        ),
    }
}

/// Gives `paths` to `user`, so that a server running as that user can write in them.
fn hand_over(paths: &[&Path], user: &str) {
    let account = nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "the tests run as root, and PostgreSQL then runs as the user {user}, which does \
                 not exist: run scripts/test.sh, which installs the postgresql package that \
                 creates it"
            )
        });
    for path in paths {
        std::os::unix::fs::chown(path, Some(account.uid.as_raw()), Some(account.gid.as_raw()))
            .unwrap_or_else(|err| panic!("chown {} to {user}: {err}", path.display()));
    }
}

/// Panics with the program's stderr when it failed.
fn checked(program: impl AsRef<OsStr>, output: &Output) {
    assert!(
        output.status.success(),
        "{} failed with {}: {}",
        program.as_ref().to_string_lossy(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
