//! Command-line arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use client_sdk::{DEFAULT_ADDR, DataKeySize, PolicyRule};

use crate::args::{ContextPair, parse_context_pair, parse_data_key_size, parse_policy, parse_ttl};

mod client_side;

pub use client_side::{
    BackupCommand, BackupDecryptArgs, BackupEncryptArgs, BackupInputArgs, BackupVerifyArgs,
    FieldBindingArgs, FieldCommand, FieldDecryptArgs, FieldEncryptArgs, FileCommand,
    FileDecryptArgs, FileEncryptArgs, FolderCommand, KeySourceArgs, RecoveryCommand, SealArgs,
};

/// Command-line client for kmsd, the envelope-encryption key management service.
///
/// Exit status: 0 on success, 1 when an operation fails, 2 on a usage error.
#[derive(Debug, Parser)]
#[command(name = "kmsctl", version)]
pub struct Cli {
    /// Daemon address, as https://host:port.
    #[arg(long, global = true, env = "KMS_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: String,

    /// Token for the request. Prefer the KMS_TOKEN environment variable, because command-line
    /// arguments show in `ps` to every user of the machine.
    #[arg(long, global = true, env = "KMS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// PEM file of the CA that signed the kmsd certificate. When given, only this CA is
    /// trusted; otherwise the system roots are.
    #[arg(long, global = true, env = "KMS_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    #[command(subcommand)]
    pub command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Text for people.
    Text,
    /// One JSON object for scripts.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Initialize, unseal, seal and check the daemon.
    #[command(subcommand)]
    Operator(OperatorCommand),

    /// Create, list, show, rotate, disable and enable keys.
    #[command(subcommand)]
    Key(KeyCommand),

    /// Generate and decrypt data keys.
    #[command(subcommand)]
    Datakey(DatakeyCommand),

    /// Encrypt at most 4096 bytes from a file or stdin, and print the ciphertext as base64.
    Encrypt(EncryptArgs),

    /// Decrypt a ciphertext and write the raw plaintext to stdout.
    Decrypt(BlobArgs),

    /// Re-encrypt a ciphertext under the latest version of its key, and print it as base64.
    Rewrap(BlobArgs),

    /// Create, look up and revoke tokens.
    #[command(subcommand)]
    Token(TokenCommand),

    /// Encrypt and decrypt files of any size under a new data key from kmsd, on every core.
    #[command(subcommand)]
    File(FileCommand),

    /// Encrypt a folder tree with its names hidden, update it incrementally, restore and
    /// verify it.
    #[command(subcommand)]
    Folder(FolderCommand),

    /// Encrypt, decrypt, verify, inspect and rewrap backup streams, such as pg_dump output.
    #[command(subcommand)]
    Backup(BackupCommand),

    /// Create offline recovery keys, which decrypt files and backups with no kmsd at all.
    #[command(subcommand)]
    Recovery(RecoveryCommand),

    /// Encrypt and decrypt single values, such as a database field, from scripts.
    #[command(subcommand)]
    Field(FieldCommand),
}

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Initialize the daemon and print the unseal shares and the root token, once.
    Init {
        /// Number of unseal shares to make (1 to 255).
        #[arg(long)]
        shares: u8,
        /// Number of shares needed to unseal (1 to the number of shares).
        #[arg(long)]
        threshold: u8,
        /// Allow a threshold of 1, so that any single share unseals the daemon.
        #[arg(long)]
        allow_single_share: bool,
    },

    /// Submit one unseal share, read without echo from the terminal or as one line from stdin.
    Unseal {
        /// Discard the shares submitted so far instead of submitting one.
        #[arg(long, conflicts_with = "share")]
        reset: bool,
        /// The share. Avoid this argument, because command-line arguments show in `ps` to
        /// every user of the machine; omit it to be prompted.
        share: Option<String>,
    },

    /// Seal the daemon, which zeroizes all key material in its memory (root token only).
    Seal,

    /// Mint a new root token from the threshold number of shares, read without echo from the
    /// terminal or one per line from stdin. Needs no token.
    GenerateRoot,

    /// Show whether the daemon is initialized and sealed, and the unseal progress.
    Status,

    /// Manage the root key object of a daemon whose root of trust is a PKCS#11 token.
    #[command(subcommand)]
    RootKey(RootKeyCommand),

    /// Make the daemon close its PKCS#11 sessions and log in to the token again, for example
    /// after HSM maintenance (root token only).
    HsmReconnect,
}

#[derive(Debug, Subcommand)]
pub enum RootKeyCommand {
    /// Create a new root key object in the token and wrap the keyring with it; the previous
    /// object stays until `remove` (root token only).
    Rotate {
        /// Label of the new key object [default: kms-root-<unix seconds>-<8 random hex digits>].
        #[arg(long)]
        label: Option<String>,
    },
    /// Destroy a root key object that no longer wraps the keyring (root token only).
    Remove {
        /// Label of the key object, as `rotate` printed it.
        label: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key.
    Create(KeyName),
    /// List the keys that the token may describe.
    List,
    /// Show a key and its versions.
    Show(KeyName),
    /// Add a version to a key; new encryptions use it.
    Rotate(KeyName),
    /// Disable a key: every operation with it then fails.
    Disable(KeyName),
    /// Enable a disabled key.
    Enable(KeyName),
}

#[derive(Debug, Args)]
pub struct KeyName {
    /// Key name: letters, digits, '.', '_' and '-', starting with a letter or digit.
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum DatakeyCommand {
    /// Generate a data key and print it in plaintext and as a ciphertext, both base64.
    Generate {
        /// Name of the key that wraps the data key.
        name: String,
        /// Data key length in bytes: 16, 24 or 32.
        #[arg(long, default_value = "32", value_parser = parse_data_key_size)]
        bytes: DataKeySize,
        #[command(flatten)]
        context: ContextArgs,
        /// Print only the ciphertext, for storing a key to decrypt later.
        #[arg(long)]
        no_plaintext: bool,
    },

    /// Decrypt a data-key ciphertext and print the data key as base64.
    Decrypt {
        #[command(flatten)]
        context: ContextArgs,
        /// Ciphertext as base64, or - to read it from stdin.
        ciphertext: String,
    },
}

#[derive(Debug, Args)]
pub struct ContextArgs {
    /// Encryption context pair KEY=VALUE (repeatable); decryption needs the same pairs.
    #[arg(long = "context", value_name = "KEY=VALUE", value_parser = parse_context_pair)]
    pub pairs: Vec<ContextPair>,
}

#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// Name of the key to encrypt under.
    pub name: String,
    #[command(flatten)]
    pub context: ContextArgs,
    /// File to encrypt (at most 4096 bytes); stdin when omitted.
    #[arg(long = "in", value_name = "FILE")]
    pub input: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BlobArgs {
    #[command(flatten)]
    pub context: ContextArgs,
    /// Ciphertext as base64, or - to read it from stdin.
    #[arg(default_value = "-")]
    pub ciphertext: String,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once, with its accessor (root token only).
    Create {
        /// Policy rule PATTERNS:OPERATIONS (repeatable), such as 'patient-*:generate,decrypt'.
        /// Patterns and operations are comma-separated; a pattern ending in '*' matches a
        /// prefix. Operations: generate, encrypt, decrypt, rewrap, describe, manage.
        #[arg(long = "policy", value_name = "RULE", required = true, value_parser = parse_policy)]
        policy: Vec<PolicyRule>,
        /// Time to live, such as 30m, 12h or 90d; at most 365 days.
        #[arg(long, value_parser = parse_ttl)]
        ttl: Duration,
        /// Name shown in token lookups.
        #[arg(long)]
        display_name: Option<String>,
    },

    /// Show a token's policy and expiry; the caller's own token when ACCESSOR is omitted.
    Lookup {
        /// Accessor of the token to show (root token only, unless it is the caller's own).
        accessor: Option<String>,
    },

    /// Revoke a token by its accessor.
    Revoke {
        /// Accessor of the token to revoke.
        accessor: String,
    },
}
