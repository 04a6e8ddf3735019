//! Every message that kmsctl prints on stderr: usage errors, operation errors with their
//! hints, and warnings. Kept in one place so that the wording stays consistent.

use std::error::Error as StdError;
use std::io;
use std::path::{Path, PathBuf};

use client_sdk::Error as SdkError;
use client_sdk::field::Error as FieldError;
use client_sdk::stream::Error as StreamError;
use rustls::CertificateError;

// Usage errors. clap prints them after "invalid value 'VALUE' for '--flag'", so they do not
// repeat the whole value.

pub fn context_without_equals() -> String {
    "missing '=': write the context pair as KEY=VALUE".to_owned()
}

pub fn context_empty_key() -> String {
    "empty key before '=': write the context pair as KEY=VALUE".to_owned()
}

pub fn context_duplicate_key(key: &str) -> String {
    format!("context key '{key}' is given more than once: give each --context key once")
}

pub fn policy_without_colon() -> String {
    "missing ':': write the rule as PATTERNS:OPERATIONS, such as 'patient-*:generate,decrypt'"
        .to_owned()
}

pub fn policy_empty_pattern() -> String {
    "empty key pattern: list one or more comma-separated patterns before ':'".to_owned()
}

pub fn policy_bad_operation(operation: &str) -> String {
    format!(
        "unknown operation '{operation}': expected generate, encrypt, decrypt, rewrap, describe \
         or manage"
    )
}

pub fn ttl_invalid(err: &humantime::DurationError) -> String {
    format!("{err}: write a duration such as 30m, 12h or 90d")
}

pub fn ttl_too_short() -> String {
    "shorter than 1 second: give a time to live of at least 1s".to_owned()
}

pub fn ttl_too_long() -> String {
    "longer than 365 days, the maximum (note that 1y means 365.25 days): use 365d or less"
        .to_owned()
}

pub fn data_key_size_invalid() -> String {
    "expected 16, 24 or 32".to_owned()
}

pub fn segment_size_invalid() -> String {
    "expected a number of bytes, optionally followed by KiB or MiB, such as 1MiB".to_owned()
}

pub fn segment_size_out_of_range(size: u32) -> String {
    format!("{size} bytes is out of range: give 4KiB (4096) to 16MiB (16777216)")
}

/// Formats the SDK's message, which shows a recipient back but never a secret identity.
pub fn recipient_invalid(err: &StreamError) -> String {
    format!("{err}; `kmsctl recovery keygen` prints one")
}

pub fn field_key_missing() -> String {
    "give --key NAME for a new data key, or --data-key BASE64 for a stored one".to_owned()
}

pub fn deterministic_needs_data_key() -> String {
    "--deterministic needs --data-key: values come out equal only under one data key, and \
     --key makes a new data key for every value; create a stored data key with `kmsctl \
     datakey generate NAME --no-plaintext` and pass its ciphertext with --data-key"
        .to_owned()
}

// Warnings.

pub const INIT_WARNING: &str = "\
WARNING: the unseal shares and the root token are shown only this once.
Store each share apart from the others (different people, different vaults), so that no
single place holds enough shares to unseal. Keep the root token offline and create
narrower tokens with `kmsctl token create` for daily work.";

pub const ROOT_TOKEN_WARNING: &str = "\
WARNING: this root token may do everything and is shown only this once. Keep it offline, and
revoke it with `kmsctl token revoke <accessor>` when the task that needed it is done.";

pub const TOKEN_WARNING: &str = "\
WARNING: the token is shown only this once. Hand it over through a secret store, and
pass it in KMS_TOKEN rather than on the command line.";

pub const SHARE_PROMPT: &str = "Unseal share (input is hidden): ";

// Operation errors (exit status 1).

/// An operation error of kmsctl.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Sdk(#[from] SdkError),

    #[error("cannot read {input}")]
    ReadInput {
        input: String,
        #[source]
        source: io::Error,
    },

    #[error("{input} is longer than {max} bytes")]
    InputTooLong { input: String, max: usize },

    #[error("{input} is empty")]
    EmptyInput { input: String },

    #[error("the share is empty")]
    EmptyShare,

    #[error("{input} is not valid base64")]
    InvalidBase64 {
        input: String,
        #[source]
        source: base64::DecodeError,
    },

    #[error("cannot write to stdout")]
    WriteOutput(#[source] io::Error),

    #[error("cannot start the async runtime")]
    Runtime(#[source] io::Error),

    /// Boxed, because the format's error is several times larger than the other variants.
    #[error(transparent)]
    Stream(Box<StreamError>),

    #[error(transparent)]
    Field(#[from] FieldError),

    /// Boxed, because the folder error is several times larger than the other variants.
    #[error(transparent)]
    Folder(Box<client_sdk::folder::Error>),

    #[error("kmsd could not unwrap the file key of {input}")]
    KeySlotRejected {
        input: String,
        #[source]
        source: SdkError,
    },

    #[error("{input} is not a regular file")]
    NotAFile { input: String },

    #[error("{input} has no kmsd key slot")]
    NoKmsSlot { input: String },

    #[error("kmsd returned the data key without its plaintext")]
    MissingPlaintext,

    #[error("cannot read the identity file {}", path.display())]
    ReadIdentity {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("invalid identity file {}", path.display())]
    IdentityFile {
        path: PathBuf,
        #[source]
        source: Box<StreamError>,
    },

    #[error("{} already exists", path.display())]
    OutputExists { path: PathBuf },

    #[error("cannot write {}", path.display())]
    WriteFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("stdout is a terminal, and {what} is never written to a terminal")]
    StdoutIsTerminal { what: &'static str },

    #[error("the value is in compact form and references the stored data key {key_ref}")]
    CompactValue { key_ref: String },
}

impl From<client_sdk::folder::Error> for CliError {
    fn from(err: client_sdk::folder::Error) -> Self {
        CliError::Folder(Box::new(err))
    }
}

impl From<StreamError> for CliError {
    fn from(err: StreamError) -> Self {
        CliError::Stream(Box::new(err))
    }
}

/// Prints `error: ...` and, when there is a fix to suggest, `hint: ...` to stderr.
pub fn report(err: &CliError) {
    eprintln!("error: {}", describe(err));
    if let Some(hint) = hint(err) {
        eprintln!("hint: {hint}");
    }
}

/// Formats the error line: the message followed by its causes, each cause once.
fn describe(err: &CliError) -> String {
    if let CliError::Sdk(SdkError::MissingToken { request }) = err {
        // The SDK message names its builder method, which means nothing on the command line.
        return format!("{request} needs a token, and none is set");
    }
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(current) = cause {
        let part = current.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = current.source();
    }
    text
}

fn hint(err: &CliError) -> Option<String> {
    match err {
        CliError::Sdk(sdk) => sdk_hint(sdk),
        CliError::InputTooLong { .. } => Some(
            "encrypt larger data locally with a data key from `kmsctl datakey generate`".into(),
        ),
        CliError::EmptyInput { .. } | CliError::InvalidBase64 { .. } => {
            Some("pass the ciphertext exactly as kmsctl printed it".into())
        }
        CliError::EmptyShare => {
            Some("type one share at the prompt, or pipe it as one line on stdin".into())
        }
        CliError::ReadInput { .. } | CliError::WriteOutput(_) | CliError::Runtime(_) => None,
        CliError::Stream(stream) => stream_hint(stream),
        CliError::Field(field) => field_hint(field),
        CliError::Folder(_) => None,
        CliError::KeySlotRejected { source, .. } => key_slot_hint(source),
        CliError::NotAFile { .. } => Some(
            "`kmsctl file` works on regular files; stream pipes and devices through `kmsctl \
             backup encrypt` and `backup decrypt`"
                .into(),
        ),
        CliError::NoKmsSlot { .. } => {
            Some("decrypt it with --identity and the identity file of its recovery key".into())
        }
        CliError::MissingPlaintext => Some(
            "check that kmsctl and kmsd have the same version (kmsctl --version, operator status)"
                .into(),
        ),
        CliError::ReadIdentity { .. } => {
            Some("pass the identity file that `kmsctl recovery keygen` wrote".into())
        }
        CliError::OutputExists { .. } => {
            Some("choose another path, or move the existing file away first".into())
        }
        CliError::StdoutIsTerminal { .. } => {
            Some("redirect stdout to a file or a pipe, or pass -o FILE".into())
        }
        CliError::CompactValue { .. } => {
            Some("pass the ciphertext of that stored data key with --data-key, as base64".into())
        }
        CliError::IdentityFile { .. } | CliError::WriteFile { .. } => None,
    }
}

fn stream_hint(err: &StreamError) -> Option<String> {
    let hint = match err {
        StreamError::ContextMismatch => {
            "`kmsctl backup inspect -i FILE` shows the stored context; pass exactly those pairs, \
             or leave out --context"
        }
        StreamError::NoRecoverySlot | StreamError::NoMatchingIdentity { .. } => {
            "leave out --identity to unwrap the kmsd key slot instead"
        }
        StreamError::BadMagic { .. } | StreamError::TruncatedHeader => {
            "pass a file written by `kmsctl file encrypt` or `kmsctl backup encrypt`"
        }
        StreamError::SlotAreaFull { .. } => {
            "decrypt the file and encrypt it again, which reserves room for the new slots"
        }
        _ => return None,
    };
    Some(hint.to_owned())
}

fn field_hint(err: &FieldError) -> Option<String> {
    let hint = match err {
        FieldError::AuthenticationFailed { .. } => {
            "pass the --field and --record-id that were given at encryption"
        }
        FieldError::UnknownPrefix
        | FieldError::InvalidBase64
        | FieldError::Truncated { .. }
        | FieldError::UnknownForm { .. } => {
            "pass the value exactly as `kmsctl field encrypt` printed it"
        }
        _ => return None,
    };
    Some(hint.to_owned())
}

/// Returns the hint for a key slot that kmsd rejected. A rejection most often means a changed
/// header, so the API's usual hint about the --context pairs would mislead.
fn key_slot_hint(err: &SdkError) -> Option<String> {
    if err.code() == Some("decryption_failed") {
        return Some(
            "the stored context or the key slot was altered: decrypt with --identity if the file \
             has a recovery slot, or restore an intact copy"
                .into(),
        );
    }
    sdk_hint(err)
}

fn sdk_hint(err: &SdkError) -> Option<String> {
    let hint = match err {
        SdkError::Api {
            code, request_id, ..
        } => return api_hint(code, request_id.as_deref()),
        SdkError::UnexpectedStatus { .. } => {
            "check that --addr (KMS_ADDR) points at the kmsd HTTPS port"
        }
        SdkError::Transport { .. } | SdkError::Timeout { .. } => {
            "check --addr (KMS_ADDR) and that kmsd is running and reachable from this host"
        }
        SdkError::Tls { source, .. } => tls_hint(source),
        SdkError::CaFile { .. }
        | SdkError::CaFileEmpty { .. }
        | SdkError::CaCertificateRejected { .. } => {
            "set --cacert (KMS_CACERT) to the PEM file of the CA that signed the kmsd certificate"
        }
        SdkError::InvalidAddress { .. } => "set --addr (KMS_ADDR) to https://host:port",
        SdkError::MissingToken { .. } => {
            "set KMS_TOKEN to your token (--token works too, but shows in ps)"
        }
        SdkError::InvalidToken => {
            "set KMS_TOKEN to the token exactly as `operator init` or `token create` printed it"
        }
        SdkError::Decode { .. } => {
            "check that kmsctl and kmsd have the same version (kmsctl --version, operator status)"
        }
        _ => return None,
    };
    Some(hint.to_owned())
}

fn tls_hint(error: &rustls::Error) -> &'static str {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            "use a host name in --addr that the kmsd certificate names"
        }
        rustls::Error::InvalidCertificate(CertificateError::Expired)
        | rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            "the kmsd certificate has expired: renew it, and check this host's clock"
        }
        rustls::Error::InvalidCertificate(_) => {
            "set --cacert (KMS_CACERT) to the PEM file of the CA that signed the kmsd certificate"
        }
        _ => "check that --addr points at the kmsd HTTPS port, which accepts TLS 1.2 and 1.3",
    }
}

fn api_hint(code: &str, request_id: Option<&str>) -> Option<String> {
    let hint = match code {
        "sealed" => "run `kmsctl operator unseal` once per share; `operator status` shows progress",
        "not_initialized" => "initialize the daemon first with `kmsctl operator init`",
        "unauthenticated" => "set KMS_TOKEN to a valid token; an admin can issue a new one",
        "permission_denied" => {
            "`kmsctl token lookup` shows your policy; ask an admin for a token that allows this"
        }
        "key_not_found" => "`kmsctl key list` shows the keys that your token may describe",
        "key_disabled" => "an admin can enable the key with `kmsctl key enable NAME`",
        "key_exists" => "choose another name; `kmsctl key show NAME` shows the existing key",
        "decryption_failed" => "pass the same --context pairs that were given at encryption",
        "invalid_ciphertext" => "pass the ciphertext exactly as kmsctl printed it",
        "invalid_share" => "check the share for typos; it starts with kms-share-",
        "foreign_share" => "this share belongs to another initialization of the daemon",
        "duplicate_share" => "submit a different share; `kmsctl operator status` shows progress",
        "unseal_failed" => {
            "progress was reset: submit the threshold number of shares from the same init again"
        }
        "token_not_found" => "check the accessor; `kmsctl token lookup` shows your own",
        "audit_unavailable" => "the daemon could not write its audit log; retry later",
        "internal" => {
            return Some(match request_id {
                Some(id) => format!("the kmsd log has the cause under request id {id}"),
                None => "the kmsd log has the cause".to_owned(),
            });
        }
        _ => return None,
    };
    Some(hint.to_owned())
}

/// Describes where input came from, for error messages.
pub fn input_name(path: Option<&Path>) -> String {
    match path {
        Some(path) => format!("file {}", path.display()),
        None => "stdin".to_owned(),
    }
}

#[cfg(test)]
mod tests;
