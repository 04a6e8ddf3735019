//! Arguments of the commands that encrypt data on this machine under data keys from kmsd:
//! `file`, `folder`, `backup`, `recovery` and `field`.

use std::path::PathBuf;

use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Subcommand};

use super::ContextArgs;
use crate::args::{ContextPair, parse_context_pair, parse_segment_size};

#[derive(Debug, Subcommand)]
pub enum FileCommand {
    /// Encrypt INPUT into OUTPUT under a new data key from kmsd.
    ///
    /// OUTPUT appears only once it is complete, and replaces any file of that name.
    Encrypt(FileEncryptArgs),

    /// Decrypt INPUT into OUTPUT, with the kmsd key slot or a recovery identity.
    ///
    /// OUTPUT (mode 0600) appears only after every segment has been authenticated, and replaces
    /// any file of that name. A failed decrypt leaves nothing under that name.
    Decrypt(FileDecryptArgs),
}

#[derive(Debug, Args)]
pub struct FileEncryptArgs {
    #[command(flatten)]
    pub seal: SealArgs,
    /// File to encrypt.
    pub input: PathBuf,
    /// Encrypted file to write.
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct FileDecryptArgs {
    #[command(flatten)]
    pub key: KeySourceArgs,
    /// Encrypted file, from `kmsctl file encrypt` or `kmsctl backup encrypt`.
    pub input: PathBuf,
    /// Plaintext file to write.
    pub output: PathBuf,
}

/// Sealing settings of a new file or backup: kmsd key, context, recovery keys, segment size.
#[derive(Debug, Args)]
pub struct SealArgs {
    /// Name of the kmsd key that wraps the new data key.
    #[arg(long, value_name = "NAME")]
    pub key: String,
    #[command(flatten)]
    pub context: ContextArgs,
    /// Public key (age1...) of an offline recovery key from `kmsctl recovery keygen`
    /// (repeatable). Its identity file then decrypts the output with no kmsd.
    // Parsed by the command rather than by clap, because clap's error would show the value,
    // which may be a secret identity pasted by mistake.
    #[arg(long = "recovery-recipient", value_name = "RECIPIENT")]
    pub recovery_recipients: Vec<String>,
    /// Plaintext bytes per segment, from 4KiB to 16MiB; a plain number counts bytes.
    #[arg(long, value_name = "SIZE", default_value = "64KiB", value_parser = parse_segment_size)]
    pub segment_size: u32,
}

/// Source of the file key of an existing file: its kmsd slot, or a recovery identity.
#[derive(Debug, Args)]
pub struct KeySourceArgs {
    /// age identity file of a recovery key, from `kmsctl recovery keygen`. The file key then
    /// comes from the recovery slot and kmsd is not contacted, so KMS_ADDR, KMS_TOKEN and
    /// KMS_CACERT may be unset.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    #[command(flatten)]
    pub context: ExpectedContextArgs,
}

/// `--context` on commands that read an encrypted file, whose header stores the context.
#[derive(Debug, Args)]
pub struct ExpectedContextArgs {
    /// Expected encryption context pair KEY=VALUE (repeatable). When given, the file must
    /// carry exactly these pairs; when omitted, the context stored in the file is used.
    #[arg(long = "context", value_name = "KEY=VALUE", value_parser = parse_context_pair)]
    pub pairs: Vec<ContextPair>,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Encrypt stdin to stdout, or to -o FILE, under a new data key from kmsd.
    ///
    /// Memory stays at about one segment whatever the input size, so a dump can be piped
    /// straight through: `pg_dump db | kmsctl backup encrypt --key backups > db.sql.kmsf`.
    Encrypt(BackupEncryptArgs),

    /// Decrypt a backup from stdin, or -i FILE, to stdout, or -o FILE.
    ///
    /// On stdout, plaintext of the segments before a damaged one has already been written
    /// when the error is found, so check the exit status, or run `backup verify` first. With
    /// -o, the file (mode 0600) appears only when every segment has been authenticated.
    Decrypt(BackupDecryptArgs),

    /// Decrypt a backup and check every segment's tag, writing no plaintext.
    Verify(BackupVerifyArgs),

    /// Show the header of a backup or encrypted file: format version, algorithm, segment
    /// size, encryption context and key slots.
    ///
    /// Needs no key and no kmsd, and shows no secret. Nothing shown is authenticated until the
    /// file is decrypted or verified.
    Inspect(BackupInputArgs),

    /// Rewrap the kmsd key slot of an encrypted file under the latest version of its key.
    ///
    /// kmsd re-encrypts the wrapped data key without revealing it, and the slot is replaced
    /// in place; the segments are not rewritten. Run it after `kmsctl key rotate`.
    Rewrap {
        /// Encrypted file, from `kmsctl backup encrypt -o` or `kmsctl file encrypt`.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct BackupEncryptArgs {
    #[command(flatten)]
    pub seal: SealArgs,
    /// File to write instead of stdout; it appears only once it is complete.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BackupDecryptArgs {
    #[command(flatten)]
    pub key: KeySourceArgs,
    /// Encrypted backup to read instead of stdin.
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// File to write instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BackupVerifyArgs {
    #[command(flatten)]
    pub key: KeySourceArgs,
    /// Encrypted backup to read instead of stdin.
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BackupInputArgs {
    /// Encrypted backup to read instead of stdin. Only a file shows the lengths.
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum RecoveryCommand {
    /// Create an age X25519 recovery key and print its public key (age1...).
    ///
    /// Pass the public key to `--recovery-recipient` when encrypting. Keep the identity file
    /// offline: it decrypts every file encrypted to it, with no kmsd and no audit record.
    Keygen {
        /// Identity file to create, with mode 0600; an existing file is never replaced. When
        /// omitted, the identity is written to stdout, which must not be a terminal.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum FieldCommand {
    /// Encrypt one value and print it as text (f1r.... or f1d....) that carries its wrapped
    /// data key, so that `field decrypt` needs only kmsd.
    Encrypt(FieldEncryptArgs),

    /// Decrypt one value and write the raw plaintext to stdout.
    Decrypt(FieldDecryptArgs),
}

#[derive(Debug, Args)]
pub struct FieldEncryptArgs {
    /// Name of the kmsd key that wraps a new data key for this value.
    #[arg(long, value_name = "NAME", required_unless_present = "data_key")]
    pub key: Option<String>,
    /// Ciphertext of a stored data key, as base64 from `kmsctl datakey generate NAME
    /// --no-plaintext`, to encrypt under instead of a new data key.
    #[arg(long, value_name = "BASE64", conflicts_with = "key")]
    pub data_key: Option<String>,
    #[command(flatten)]
    pub context: ContextArgs,
    #[command(flatten)]
    pub binding: FieldBindingArgs,
    /// Encrypt deterministically with AES-SIV: equal plaintexts under the same --data-key,
    /// --field and --record-id give equal values, which allows equality lookups and reveals
    /// which values are equal. Needs --data-key.
    #[arg(long)]
    pub deterministic: bool,
    /// Value to encrypt; omit it, or pass -, to read the value byte for byte from stdin.
    /// Prefer stdin for sensitive values, because command-line arguments show in `ps`.
    pub value: Option<String>,
}

#[derive(Debug, Args)]
pub struct FieldDecryptArgs {
    #[command(flatten)]
    pub context: ContextArgs,
    #[command(flatten)]
    pub binding: FieldBindingArgs,
    /// Ciphertext of the stored data key, as base64, for a compact value written by a
    /// service; values from `kmsctl field encrypt` carry their own.
    #[arg(long, value_name = "BASE64")]
    pub data_key: Option<String>,
    /// Encrypted value; omit it, or pass -, to read it from stdin.
    pub value: Option<String>,
}

/// Binding of a field value besides its data key.
#[derive(Debug, Args)]
pub struct FieldBindingArgs {
    /// Field name that the value is bound to, such as patients.email; decryption needs the
    /// same name.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "value",
        value_parser = NonEmptyStringValueParser::new()
    )]
    pub field: String,
    /// Record id that the value is bound to, such as a primary key; decryption needs the same
    /// id.
    #[arg(long, value_name = "ID")]
    pub record_id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum FolderCommand {
    /// Encrypt the folder SOURCE into DESTINATION under one new data key from kmsd.
    ///
    /// DESTINATION contains an encrypted manifest and blobs named by random ids, so file names and
    /// the tree's shape stay hidden. Run it again over a changed SOURCE with the same
    /// DESTINATION to re-encrypt only the files that changed.
    Encrypt(FolderEncryptArgs),

    /// Restore the encrypted folder SOURCE into DESTINATION, which must be empty or absent:
    /// contents, modes, modification times, symlinks and empty folders.
    Decrypt(FolderDecryptArgs),

    /// Check every tag of the encrypted folder SOURCE without writing any plaintext.
    Verify(FolderVerifyArgs),
}

#[derive(Debug, Args)]
pub struct FolderEncryptArgs {
    /// Name of the kmsd key that wraps the folder's data key.
    #[arg(long, value_name = "NAME")]
    pub key: String,
    #[command(flatten)]
    pub context: ContextArgs,
    /// Public key (age1...) of an offline recovery key from `kmsctl recovery keygen`. Its
    /// identity file then restores the folder with no kmsd.
    // Parsed by the command rather than by clap, so that a pasted identity is never echoed.
    #[arg(long = "recovery-recipient", value_name = "RECIPIENT")]
    pub recovery_recipient: Option<String>,
    /// Folder to encrypt.
    pub source: PathBuf,
    /// Encrypted folder to create or update.
    pub destination: PathBuf,
}

#[derive(Debug, Args)]
pub struct FolderDecryptArgs {
    /// age identity file of the folder's recovery key. kmsd is then not contacted, so
    /// KMS_ADDR, KMS_TOKEN and KMS_CACERT may be unset.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Encrypted folder, from `kmsctl folder encrypt`.
    pub source: PathBuf,
    /// Folder to restore into; it must be empty or absent.
    pub destination: PathBuf,
}

#[derive(Debug, Args)]
pub struct FolderVerifyArgs {
    /// Encrypted folder, from `kmsctl folder encrypt`.
    pub source: PathBuf,
}
