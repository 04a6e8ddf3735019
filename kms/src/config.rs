//! Settings: command-line flags and `KMS_*` environment variables over an optional TOML file
//! over defaults, checked once into [`Params`]. Nothing after start reads raw settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, Parser, Subcommand, ValueEnum};
use hsm::TokenSelector;
use secrecy::SecretString;
use serde::Deserialize;

use crate::error::Error;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Location of the root key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SealKind {
    /// Split into Shamir shares that admins submit to unseal.
    Shamir,
    /// A key object in a PKCS#11 token, which unseals the daemon at start.
    Pkcs11,
}

/// kmsd: a key management daemon that issues and rotates data keys over TLS.
///
/// Every flag can also be set by the environment variable shown, or in the TOML file given by
/// --config under the flag's name with underscores (data_dir = "/var/lib/kms"). Flags win over
/// environment variables, which win over the file.
#[derive(Debug, Parser)]
#[command(name = "kmsd", version)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "KMS_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Folder for the database, generated TLS material and the audit log, created with mode
    /// 0700 [default: ./kms-data].
    #[arg(long, env = "KMS_DATA_DIR", value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    /// Address and port to listen on; port 0 picks a free port [default: 127.0.0.1:8443].
    #[arg(long, env = "KMS_LISTEN", value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,

    /// SQLite database file [default: <data-dir>/kms.db].
    #[arg(long, env = "KMS_DATABASE_PATH", value_name = "FILE", global = true)]
    pub database_path: Option<PathBuf>,

    /// Root of trust: shamir (admins unseal with shares) or pkcs11 (a key object in a
    /// PKCS#11 token wraps the keyring, and the daemon unseals itself at start)
    /// [default: shamir].
    #[arg(long, env = "KMS_SEAL", value_enum)]
    pub seal: Option<SealKind>,

    /// PKCS#11 module, the token vendor's shared library, such as
    /// /usr/lib/softhsm/libsofthsm2.so.
    #[arg(long, env = "KMS_PKCS11_MODULE", value_name = "FILE", global = true)]
    pub pkcs11_module: Option<PathBuf>,

    /// Label of the token that contains the root key.
    #[arg(
        long,
        env = "KMS_PKCS11_TOKEN_LABEL",
        value_name = "LABEL",
        global = true
    )]
    pub pkcs11_token_label: Option<String>,

    /// Serial number of the token, in place of its label.
    #[arg(
        long,
        env = "KMS_PKCS11_TOKEN_SERIAL",
        value_name = "SERIAL",
        global = true
    )]
    pub pkcs11_token_serial: Option<String>,

    /// File whose first line is the token's user PIN. Without it the PIN comes from the
    /// environment variable KMS_PKCS11_PIN. There is no flag for the PIN itself, so that it
    /// never shows in the process list.
    #[arg(long, env = "KMS_PKCS11_PIN_FILE", value_name = "FILE", global = true)]
    pub pkcs11_pin_file: Option<PathBuf>,

    /// Label of the AES-256 key object that init creates in the token [default: kms-root].
    #[arg(
        long,
        env = "KMS_PKCS11_KEY_LABEL",
        value_name = "LABEL",
        global = true
    )]
    pub pkcs11_key_label: Option<String>,

    /// PEM certificate chain for the listener. Without it (and --tls-key), kmsd creates a
    /// private CA and a localhost certificate under <data-dir>/tls.
    #[arg(long, env = "KMS_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key matching --tls-cert.
    #[arg(long, env = "KMS_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Audit log file, one JSON record per request [default: <data-dir>/audit.log].
    #[arg(long, env = "KMS_AUDIT_LOG", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,

    /// How long a request waits for its audit record to be written before it is refused with
    /// 503, such as 500ms or 5s [default: 5s].
    #[arg(long, env = "KMS_AUDIT_TIMEOUT", value_name = "DURATION")]
    pub audit_timeout: Option<humantime::Duration>,

    /// Flush each batch of audit records to disk with fdatasync before answering
    /// [default: true].
    #[arg(long, env = "KMS_AUDIT_FSYNC", value_name = "BOOL", action = ArgAction::Set)]
    pub audit_fsync: Option<bool>,

    /// Log format [default: text].
    #[arg(long, env = "KMS_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Log filter in tracing's EnvFilter syntax, such as info or kms=debug [default: info].
    #[arg(long, env = "KMS_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,

    /// HTTP worker threads [default: the number of CPUs].
    #[arg(long, env = "KMS_WORKERS", value_name = "N")]
    pub workers: Option<usize>,

    /// Do not lock process memory with mlockall. Key material may then be swapped to disk.
    #[arg(long, env = "KMS_DISABLE_MLOCK", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
    pub disable_mlock: Option<bool>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Offline maintenance commands. Without one, kmsd runs the daemon.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Move the root of trust between Shamir shares and a PKCS#11 token, keeping every key.
    ///
    /// Stop the daemon first. Reads the threshold number of shares from standard input, one
    /// per line: the unseal shares to move to the token, which then become its recovery
    /// shares, or the recovery shares to move back, which then unseal. Needs the token
    /// settings (--pkcs11-module, the token, the PIN) in both directions.
    MigrateSeal {
        /// Root of trust to move to.
        #[arg(long, value_enum)]
        to: SealKind,
    },
}

/// The TOML file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    database_path: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    audit_log: Option<PathBuf>,
    audit_timeout: Option<String>,
    audit_fsync: Option<bool>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    workers: Option<usize>,
    disable_mlock: Option<bool>,
    seal: Option<SealKind>,
    pkcs11_module: Option<PathBuf>,
    pkcs11_token_label: Option<String>,
    pkcs11_token_serial: Option<String>,
    pkcs11_pin_file: Option<PathBuf>,
    pkcs11_key_label: Option<String>,
}

/// How to reach the PKCS#11 token. `Debug` does not print the PIN.
#[derive(Debug, Clone)]
pub struct Pkcs11Params {
    pub module: PathBuf,
    pub token: TokenSelector,
    pub pin: SecretString,
    pub key_label: String,
}

impl Pkcs11Params {
    /// Returns the settings for opening the token.
    pub fn config(&self) -> hsm::Pkcs11Config {
        hsm::Pkcs11Config {
            module: self.module.clone(),
            token: self.token.clone(),
            pin: self.pin.clone(),
            key_label: self.key_label.clone(),
        }
    }
}

/// Where the listener's certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// Files given by the operator.
    Files { cert: PathBuf, key: PathBuf },
    /// A private CA and server certificate created in this folder on first start.
    Generated { dir: PathBuf },
}

/// Checked settings.
#[derive(Debug, Clone)]
pub struct Params {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub database_path: PathBuf,
    pub tls: TlsSource,
    pub audit_log: PathBuf,
    pub audit_timeout: Duration,
    pub audit_fsync: bool,
    pub log_format: LogFormat,
    pub log_level: String,
    pub workers: usize,
    pub disable_mlock: bool,
    pub seal: SealKind,
    /// The token settings, when a module is configured.
    pub pkcs11: Option<Pkcs11Params>,
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
const MAX_AUDIT_TIMEOUT: Duration = Duration::from_secs(600);

impl TryFrom<Cli> for Params {
    type Error = Error;

    fn try_from(cli: Cli) -> Result<Params, Error> {
        let file = match &cli.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let data_dir = cli
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("kms-data"));
        let listen = match cli.listen.or(file.listen) {
            Some(addr) => addr,
            None => DEFAULT_LISTEN.parse().map_err(|_| Error::Config {
                setting: "listen",
                reason: "the built-in default does not parse".to_owned(),
            })?,
        };
        let tls = match (cli.tls_cert.or(file.tls_cert), cli.tls_key.or(file.tls_key)) {
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            (None, None) => TlsSource::Generated {
                dir: data_dir.join("tls"),
            },
            _ => {
                return Err(Error::Config {
                    setting: "tls_cert",
                    reason: "tls_cert and tls_key must be given together".to_owned(),
                });
            }
        };
        let audit_timeout = match (cli.audit_timeout, file.audit_timeout) {
            (Some(d), _) => d.into(),
            (None, Some(text)) => humantime::parse_duration(&text).map_err(|e| Error::Config {
                setting: "audit_timeout",
                reason: format!("{text:?} is not a duration such as 5s ({e})"),
            })?,
            (None, None) => Duration::from_secs(5),
        };
        if audit_timeout.is_zero() || audit_timeout > MAX_AUDIT_TIMEOUT {
            return Err(Error::Config {
                setting: "audit_timeout (--audit-timeout, KMS_AUDIT_TIMEOUT)",
                reason: "must be more than 0 and at most 10m".to_owned(),
            });
        }
        let workers = cli.workers.or(file.workers).unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        });
        if !(1..=256).contains(&workers) {
            return Err(Error::Config {
                setting: "workers (--workers, KMS_WORKERS)",
                reason: format!("{workers} is not between 1 and 256"),
            });
        }
        let seal = cli.seal.or(file.seal).unwrap_or(SealKind::Shamir);
        let pkcs11 = match cli.pkcs11_module.or(file.pkcs11_module) {
            Some(module) => Some(Pkcs11Params {
                module,
                token: token_selector(
                    cli.pkcs11_token_label.or(file.pkcs11_token_label),
                    cli.pkcs11_token_serial.or(file.pkcs11_token_serial),
                )?,
                pin: read_pin(cli.pkcs11_pin_file.or(file.pkcs11_pin_file).as_deref())?,
                key_label: cli
                    .pkcs11_key_label
                    .or(file.pkcs11_key_label)
                    .unwrap_or_else(|| "kms-root".to_owned()),
            }),
            None if seal == SealKind::Pkcs11 => {
                return Err(Error::Config {
                    setting: "pkcs11_module (--pkcs11-module, KMS_PKCS11_MODULE)",
                    reason: "--seal pkcs11 needs the path of the token's PKCS#11 module".to_owned(),
                });
            }
            None => None,
        };
        Ok(Params {
            seal,
            pkcs11,
            database_path: cli
                .database_path
                .or(file.database_path)
                .unwrap_or_else(|| data_dir.join("kms.db")),
            audit_log: cli
                .audit_log
                .or(file.audit_log)
                .unwrap_or_else(|| data_dir.join("audit.log")),
            audit_timeout,
            audit_fsync: cli.audit_fsync.or(file.audit_fsync).unwrap_or(true),
            log_format: cli
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            log_level: cli
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".to_owned()),
            workers,
            disable_mlock: cli.disable_mlock.or(file.disable_mlock).unwrap_or(false),
            data_dir,
            listen,
            tls,
        })
    }
}

/// Selects the token by label or by serial number, which must be given alone.
fn token_selector(label: Option<String>, serial: Option<String>) -> Result<TokenSelector, Error> {
    match (label, serial) {
        (Some(label), None) => Ok(TokenSelector::Label(label)),
        (None, Some(serial)) => Ok(TokenSelector::Serial(serial)),
        (None, None) => Err(Error::Config {
            setting: "pkcs11_token_label (--pkcs11-token-label, KMS_PKCS11_TOKEN_LABEL)",
            reason: "name the token by label, or by serial number with --pkcs11-token-serial"
                .to_owned(),
        }),
        (Some(_), Some(_)) => Err(Error::Config {
            setting: "pkcs11_token_serial (--pkcs11-token-serial, KMS_PKCS11_TOKEN_SERIAL)",
            reason: "give the token's label or its serial number, not both".to_owned(),
        }),
    }
}

/// Reads the user PIN from the first line of `file`, or else from `KMS_PKCS11_PIN`.
fn read_pin(file: Option<&Path>) -> Result<SecretString, Error> {
    let text = match file {
        Some(path) => {
            zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                Error::io(format!("cannot read the PIN file {}", path.display()), e)
            })?)
        }
        None => match std::env::var("KMS_PKCS11_PIN") {
            Ok(pin) => zeroize::Zeroizing::new(pin),
            Err(_) => {
                return Err(Error::Config {
                    setting: "pkcs11_pin_file (--pkcs11-pin-file, KMS_PKCS11_PIN_FILE)",
                    reason: "the token's user PIN is missing: set KMS_PKCS11_PIN or give a PIN \
                             file"
                        .to_owned(),
                });
            }
        },
    };
    let pin = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r');
    if pin.is_empty() {
        return Err(Error::Config {
            setting: "pkcs11_pin_file (--pkcs11-pin-file, KMS_PKCS11_PIN_FILE)",
            reason: "the token's user PIN is empty".to_owned(),
        });
    }
    Ok(SecretString::from(pin.to_owned()))
}

fn read_file_config(path: &Path) -> Result<FileConfig, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read config file {}", path.display()), e))?;
    // The full message names the key, the line and the column.
    toml::from_str(&text).map_err(|e| Error::Config {
        setting: "config",
        reason: format!("{}: {}", path.display(), e.to_string().trim_end()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(args: &[&str]) -> Result<Params, Error> {
        let mut argv = vec!["kmsd"];
        argv.extend_from_slice(args);
        Params::try_from(Cli::try_parse_from(argv).unwrap())
    }

    #[test]
    fn defaults_are_safe() {
        let p = params(&[]).unwrap();
        assert_eq!(p.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(p.database_path, PathBuf::from("kms-data/kms.db"));
        assert!(matches!(p.tls, TlsSource::Generated { .. }));
        assert!(p.audit_fsync);
        assert!(!p.disable_mlock);
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kms.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\naudit_timeout = \"2s\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let p = params(&["--config", path]).unwrap();
        assert_eq!(p.listen.port(), 9000);
        assert_eq!(p.audit_timeout, Duration::from_secs(2));
        let p = params(&["--config", path, "--listen", "127.0.0.1:9001"]).unwrap();
        assert_eq!(p.listen.port(), 9001);
    }

    #[test]
    fn unknown_file_settings_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kms.toml");
        std::fs::write(&file, "listne = \"127.0.0.1:9000\"\n").unwrap();
        let err = params(&["--config", file.to_str().unwrap()]).unwrap_err();
        assert!(err.to_string().contains("listne"), "{err}");
    }

    #[test]
    fn zero_audit_timeout_is_rejected() {
        let err = params(&["--audit-timeout", "0s"]).unwrap_err();
        assert!(err.to_string().contains("audit_timeout"), "{err}");
    }
}
