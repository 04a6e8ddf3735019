//! `kmsd`, the key management daemon.
//!
//! The daemon holds a root of trust (a master key rebuilt from Shamir shares), a keyring key
//! wrapped by it, and named key-encryption keys wrapped by the keyring key. It serves data keys
//! and small-payload encryption over an HTTPS JSON API under `/v1`.
//!
//! # What is never logged
//!
//! No log line, error message, audit record or `Debug` output carries plaintext, ciphertext
//! bodies, key bytes, wrapped keys, shares, tokens or encryption-context values. Logs name keys,
//! versions, accessors, request ids, lengths and error codes instead. Types that hold secrets
//! write `Debug` by hand, and the end-to-end tests check captured logs for a canary plaintext.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod api;
pub mod audit;
pub mod auth;
pub mod blob;
pub mod config;
pub mod core;
pub mod error;
pub mod hardening;
pub mod keyring;
pub mod store;
pub mod tls;

use std::process::ExitCode;

use actix_web::{App, HttpServer, web};
use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::api::AppState;
use crate::audit::AuditLog;
use crate::config::{Cli, Command, LogFormat, Params, SealKind};
use crate::core::RootSetting;
use crate::error::{Error, error_chain};

/// Blocking-pool threads per HTTP worker; store calls are short, and with mlockall each
/// thread's stack stays resident.
const BLOCKING_THREADS_PER_WORKER: usize = 16;

/// Parses the command line, runs the daemon until SIGTERM or SIGINT, and seals on the way out.
pub fn main_entry() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.clone();
    let params = match Params::try_from(cli) {
        Ok(params) => params,
        Err(error) => {
            eprintln!("kmsd: {}", error_chain(&error));
            return ExitCode::from(2);
        }
    };
    if let Err(message) = init_logging(&params) {
        eprintln!("kmsd: {message}");
        return ExitCode::from(2);
    }
    let result = match command {
        None => run(params),
        Some(Command::MigrateSeal { to }) => migrate_seal(&params, to),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error_chain(&error), "kmsd stopped on an error");
            eprintln!("kmsd: {}", error_chain(&error));
            ExitCode::FAILURE
        }
    }
}

fn init_logging(params: &Params) -> Result<(), String> {
    let mut filter = EnvFilter::try_new(&params.log_level)
        .map_err(|e| format!("invalid log level {:?}: {e}", params.log_level))?;
    // cryptoki logs an error for each mechanism of a token that it has no name for. That is
    // noise, so it is off unless the filter names cryptoki.
    if !params.log_level.contains("cryptoki")
        && let Ok(directive) = "cryptoki::mechanism=off".parse()
    {
        filter = filter.add_directive(directive);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = match params.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| format!("cannot start logging: {e}"))
}

/// Runs the daemon with checked settings.
pub fn run(params: Params) -> Result<(), Error> {
    // Every file the daemon creates (database, WAL, TLS keys, audit log) is private to its user.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    hardening::harden(params.disable_mlock);
    std::fs::create_dir_all(&params.data_dir).map_err(|e| {
        Error::io(
            format!("cannot create data directory {}", params.data_dir.display()),
            e,
        )
    })?;

    warn_if_shared(&params.data_dir);
    let _lock = lock_data_dir(&params.data_dir)?;
    check_database_folder(&params.database_path)?;
    let store = store::Store::open_sqlite(&params.database_path)?;
    let root = match params.seal {
        SealKind::Shamir => RootSetting::Shamir,
        SealKind::Pkcs11 => RootSetting::Pkcs11(open_token(&params)?),
    };
    let core = core::Core::new(store, root)?;
    let audit = AuditLog::open(&params.audit_log, params.audit_fsync, params.audit_timeout)?;
    let (tls, ca_path) = tls::server_config(&params.tls)?;
    let state = web::Data::new(AppState { core, audit });

    let system = actix_web::rt::System::new();
    let server_state = state.clone();
    let start_state = state.clone();
    let result = system.block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(server_state.clone())
                .configure(api::configure)
        })
        .workers(params.workers)
        .worker_max_blocking_threads(BLOCKING_THREADS_PER_WORKER)
        .bind_rustls_0_23(params.listen, tls)
        .map_err(|e| Error::io(format!("cannot listen on {}", params.listen), e))?;
        let addrs = server.addrs();
        for addr in &addrs {
            println!(
                "kmsd {} listening on https://{addr}",
                env!("CARGO_PKG_VERSION")
            );
        }
        if let Some(ca) = &ca_path {
            println!(
                "CA certificate: {} (export KMS_CACERT={})",
                ca.display(),
                ca.display()
            );
        }
        let status = start_state.core.status();
        tracing::info!(
            addrs = ?addrs,
            database = %params.database_path.display(),
            audit_log = %params.audit_log.display(),
            initialized = status.initialized,
            sealed = status.sealed,
            root_of_trust = status.root_of_trust.unwrap_or("none"),
            "kmsd started"
        );
        server
            .run()
            .await
            .map_err(|e| Error::io("the HTTP server failed", e))
    });
    let status = state.core.seal();
    tracing::info!(
        initialized = status.initialized,
        "kmsd stopped; key material zeroized"
    );
    result
}

/// Opens the PKCS#11 token of the settings.
fn open_token(params: &Params) -> Result<hsm::Pkcs11Root, Error> {
    let settings = params.pkcs11.as_ref().ok_or_else(|| Error::Config {
        setting: "pkcs11_module (--pkcs11-module, KMS_PKCS11_MODULE)",
        reason: "the token settings are missing: give --pkcs11-module, --pkcs11-token-label \
                 or --pkcs11-token-serial, and the PIN"
            .to_owned(),
    })?;
    Ok(hsm::Pkcs11Root::open(settings.config())?)
}

/// Runs `kmsd migrate-seal`: moves the root of trust of the stopped daemon's key store.
fn migrate_seal(params: &Params, to: SealKind) -> Result<(), Error> {
    if !params.database_path.exists() {
        return Err(Error::Config {
            setting: "database_path (--database-path, KMS_DATABASE_PATH)",
            reason: format!(
                "no key store at {}: give the --data-dir of the daemon to migrate",
                params.database_path.display()
            ),
        });
    }

    let _lock = lock_data_dir(&params.data_dir)?;
    let token = open_token(params)?;
    let store = store::Store::open_sqlite(&params.database_path)?;
    let config = store.seal_config()?.ok_or(Error::NotInitialized)?;
    let kind = match to {
        SealKind::Shamir => hsm::RootKind::Shamir,
        SealKind::Pkcs11 => hsm::RootKind::Pkcs11,
    };

    // Checked before any share is read, so that no admin types shares for nothing.
    if config.root_kind == kind.as_str() {
        return Err(Error::Config {
            setting: "to",
            reason: format!(
                "the root of trust is {} already, so there is nothing to migrate",
                kind.as_str()
            ),
        });
    }

    let shares = read_shares(usize::try_from(config.threshold).unwrap_or(0))?;
    core::migrate_root(&store, kind, &token, &shares)?;

    match to {
        SealKind::Pkcs11 => println!(
            "The root of trust is now the key object {:?} on token {:?}. Start kmsd with \
             --seal pkcs11; the shares are its recovery shares from now on.",
            token.key_label(),
            token.token_label()
        ),
        SealKind::Shamir => println!(
            "The root of trust is now Shamir shares: the recovery shares unseal the daemon. \
             Start kmsd without --seal pkcs11."
        ),
    }
    Ok(())
}

/// Reads `threshold` shares: without echo from a terminal, or one per line from a pipe.
fn read_shares(threshold: usize) -> Result<Vec<secrecy::SecretString>, Error> {
    use std::io::{BufRead, IsTerminal};
    let mut shares = Vec::with_capacity(threshold);
    if std::io::stdin().is_terminal() {
        for index in 1..=threshold {
            let text = rpassword::prompt_password(format!("Share {index} of {threshold}: "))
                .map_err(|e| Error::io("cannot read a share from the terminal", e))?;
            shares.push(secrecy::SecretString::from(text.trim().to_owned()));
        }
        return Ok(shares);
    }
    for line in std::io::stdin().lock().lines() {
        if shares.len() == threshold {
            break;
        }
        let line = zeroize::Zeroizing::new(
            line.map_err(|e| Error::io("cannot read shares from standard input", e))?,
        );
        let text = line.trim();
        if !text.is_empty() {
            shares.push(secrecy::SecretString::from(text.to_owned()));
        }
    }
    Ok(shares)
}

/// Takes an exclusive lock on `<data-dir>/kmsd.lock` for the life of the returned value, so
/// that two daemons, or a daemon and `kmsd migrate-seal`, never share a data directory.
fn lock_data_dir(data_dir: &std::path::Path) -> Result<nix::fcntl::Flock<std::fs::File>, Error> {
    let path = data_dir.join("kmsd.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("cannot open the lock file {}", path.display()), e))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        Error::Config {
            setting: "data_dir (--data-dir, KMS_DATA_DIR)",
            reason: format!(
                "{} is in use by another kmsd: stop it first, or give another --data-dir",
                data_dir.display()
            ),
        }
    })
}

/// Fails at once, naming the path, when the database's folder is missing; SQLite would only
/// report "unable to open database file" after the pool's connection timeout.
fn check_database_folder(path: &std::path::Path) -> Result<(), Error> {
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => return Ok(()),
    };
    if folder.is_dir() {
        return Ok(());
    }
    Err(Error::Config {
        setting: "database_path (--database-path, KMS_DATABASE_PATH)",
        reason: format!(
            "the folder {} of the database {} does not exist: create it, or give another path",
            folder.display(),
            path.display()
        ),
    })
}

/// Warns once when the data directory, made before kmsd with another mode, is open to other
/// users. The files inside are 0600 either way, but their names and sizes are visible.
fn warn_if_shared(data_dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(metadata) = std::fs::metadata(data_dir) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                data_dir = %data_dir.display(),
                mode = format!("{mode:o}"),
                "the data directory is open to other users: run chmod 700 on it"
            );
        }
    }
}
