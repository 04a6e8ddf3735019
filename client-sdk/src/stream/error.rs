//! The error type of the file format.

use std::io;
use std::path::PathBuf;

/// A `Result` whose error is the file format's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while writing or reading an encrypted file or stream.
///
/// No variant carries key bytes or plaintext, so every message is safe to log. Variants that wrap
/// an I/O error leave it out of their own message. Walk [`std::error::Error::source`] to print
/// it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input that does not start with the magic bytes `KMSF`.
    #[error(
        "not a KMS encrypted file: expected the magic bytes 4b4d5346 (\"KMSF\"), found {}; \
         check that the input is the encrypted file",
        hex(found)
    )]
    BadMagic {
        /// First four bytes of the input.
        found: [u8; 4],
    },

    /// Format version that this SDK cannot read.
    #[error(
        "unsupported file format version {version} (this SDK reads version 1): \
         decrypt the file with a newer SDK"
    )]
    UnsupportedVersion {
        /// Version byte found in the header.
        version: u8,
    },

    /// Algorithm id that this SDK cannot read.
    #[error(
        "unsupported algorithm id {algorithm} (this SDK reads 1, AES-256-GCM with HKDF-SHA256): \
         decrypt the file with a newer SDK"
    )]
    UnsupportedAlgorithm {
        /// Algorithm byte found in the header.
        algorithm: u8,
    },

    /// A segment size given to the writer, or found in a header, is out of range.
    #[error(
        "invalid segment size {size} bytes: expected {} to {} bytes",
        super::MIN_SEGMENT_SIZE,
        super::MAX_SEGMENT_SIZE
    )]
    InvalidSegmentSize {
        /// Segment size in plaintext bytes.
        size: u32,
    },

    /// An encryption context breaks the limits of the context encoding.
    #[error("invalid encryption context: {reason}")]
    InvalidContext {
        /// Cause, by entry count or length. It never contains a key or value.
        reason: String,
    },

    /// A file key does not have 32 bytes.
    #[error("invalid file key length {len} bytes: expected a 32-byte data key")]
    InvalidKeyLength {
        /// Length of the given key.
        len: usize,
    },

    /// Header longer than [`MAX_HEADER_LEN`](super::MAX_HEADER_LEN).
    #[error(
        "the header exceeds the limit of {limit} bytes: when writing, pass fewer or smaller key \
         slots; when reading, the input is damaged or was not written by this SDK"
    )]
    HeaderTooLarge {
        /// Limit in bytes.
        limit: usize,
    },

    /// Header that cannot be parsed.
    #[error("malformed header: {reason}; the input is damaged or was not written by this SDK")]
    MalformedHeader {
        /// Field that failed to parse.
        reason: &'static str,
    },

    /// Neither copy of the key slot area has a valid checksum.
    #[error(
        "both copies of the key slot area are damaged: the file cannot be unwrapped from its \
         header; restore it from an intact copy"
    )]
    SlotCopiesDamaged,

    /// A key slot given to a writer or to a rewrap is invalid.
    #[error("invalid key slot: {reason}")]
    InvalidKeySlot {
        /// Cause, by field and length. It never contains the slot bytes.
        reason: String,
    },

    /// New key slots do not fit in the slot area that the file reserved.
    #[error(
        "the new key slots need {needed} bytes but the file reserves {available} bytes for \
         them: pass fewer slots, or decrypt the file and encrypt it again with a larger slot \
         area"
    )]
    SlotAreaFull {
        /// Bytes that the slot copy needs.
        needed: usize,
        /// Bytes that the file reserves for each slot copy.
        available: usize,
    },

    /// Input that ends inside the header.
    #[error(
        "the input ends inside the file header: the file was truncated or is not a KMS \
         encrypted file"
    )]
    TruncatedHeader,

    /// Encryption context passed to the reader that differs from the one in the header.
    #[error(
        "the encryption context differs from the one stored in the file header: pass the \
         context the file was written with (the header lists it), or the header was altered"
    )]
    ContextMismatch,

    /// Key commitment in the header that does not match the file key.
    #[error(
        "wrong file key, or the header was altered: unwrap a key slot of this file, and check \
         that the file is the one the key belongs to"
    )]
    CommitmentMismatch,

    /// A segment failed authentication.
    #[error(
        "segment {index} failed authentication: the file was altered, damaged, cut inside a \
         segment or has bytes appended; restore it from an intact copy"
    )]
    SegmentAuthFailed {
        /// Zero-based index of the segment.
        index: u32,
    },

    /// Input that ends before the last segment.
    #[error(
        "the file is truncated: it ends after {complete_segments} complete segments without \
         a last segment; restore it from an intact copy"
    )]
    Truncated {
        /// Number of complete segments before the end of the input.
        complete_segments: u64,
    },

    /// Input that continues after its last segment.
    #[error(
        "the file continues after its last segment {last_segment}: bytes were appended to it; \
         restore it from an intact copy"
    )]
    TrailingData {
        /// Zero-based index of the last segment.
        last_segment: u32,
    },

    /// Plaintext that needs more than 2^32 segments.
    #[error("the data needs more than 2^32 segments: encrypt it with a larger segment size")]
    TooManySegments,

    /// An earlier error ended this writer or reader.
    #[error(
        "an earlier error ended this stream: discard the output written or read so far and \
         start again"
    )]
    StreamFailed,

    /// A recovery recipient string is not an age X25519 recipient.
    #[error("invalid recovery recipient {recipient:?}: {reason}; expected an `age1...` string")]
    InvalidRecipient {
        /// String given, which is a public key.
        recipient: String,
        /// Reason the age parser gave.
        reason: &'static str,
    },

    /// A line of an identity file is not an age X25519 identity.
    #[error(
        "line {line} of the identity file is not an age X25519 identity: expected \
         `AGE-SECRET-KEY-1...`, a comment starting with `#`, or a blank line"
    )]
    InvalidIdentity {
        /// One-based line number. The line itself is left out because it may contain a key.
        line: usize,
    },

    /// An identity file contains no identity.
    #[error(
        "the identity file contains no `AGE-SECRET-KEY-1...` line: pass the recovery identity file"
    )]
    NoIdentities,

    /// Header without a recovery slot.
    #[error("the file has no recovery slot: unwrap its kmsd slot instead")]
    NoRecoverySlot,

    /// None of the identities opens a recovery slot of the file.
    #[error(
        "none of the identities opens a recovery slot of this file; it was written for {}",
        recipients.join(", ")
    )]
    NoMatchingIdentity {
        /// Recipients named by the recovery slots, which are public keys.
        recipients: Vec<String>,
    },

    /// age could not wrap the file key for a recovery recipient.
    #[error("cannot wrap the file key for the recovery recipient")]
    RecoveryWrap(#[source] age::EncryptError),

    /// A recovery slot is not a valid age file holding a 32-byte key.
    #[error(
        "the recovery slot for {recipient} is damaged ({reason}): use another slot or an intact \
         copy of the file"
    )]
    RecoverySlotDamaged {
        /// Recipient named by the slot.
        recipient: String,
        /// Failure that age or the length check reported.
        reason: &'static str,
    },

    /// Another process holds the lock that a rewrap takes on the file.
    #[error("{} is locked by another rewrap: run again once it finishes", path.display())]
    FileBusy {
        /// Path of the encrypted file.
        path: PathBuf,
    },

    /// Failure of the system random number generator.
    #[error("the system random number generator failed: check that /dev/urandom is readable")]
    Random,

    /// An input file changed size while it was being encrypted or decrypted.
    #[error(
        "{} changed size during the operation: run it again once nothing writes to it",
        path.display()
    )]
    InputChanged {
        /// Path of the input file.
        path: PathBuf,
    },

    /// A file operation failed.
    #[error("cannot {action} {}", path.display())]
    File {
        /// Operation that failed, such as `open` or `write to`.
        action: &'static str,
        /// Path of the file.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// Reading from or writing to the underlying stream failed.
    #[error("I/O error on the underlying stream")]
    Io(#[source] io::Error),
}

impl Error {
    /// Extracts the format error from an `io::Error` returned by the `Read` or `Write`
    /// implementation of a [`DecryptingReader`](super::DecryptingReader) or an
    /// [`EncryptingWriter`](super::EncryptingWriter). Any other I/O error becomes
    /// [`Error::Io`].
    pub fn from_io(err: io::Error) -> Self {
        match err.downcast::<Error>() {
            Ok(ours) => ours,
            Err(other) => Error::Io(other),
        }
    }

    /// Wraps an I/O error from a file operation with the path and the action.
    pub(crate) fn file(action: &'static str, path: &std::path::Path, source: io::Error) -> Self {
        Error::File {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

impl From<Error> for io::Error {
    /// Turns a format error into an `io::Error` for the `Read` and `Write` traits. An
    /// [`Error::Io`] gives back its own error, so the caller sees the original kind.
    fn from(err: Error) -> Self {
        match err {
            Error::Io(inner) => inner,
            Error::Truncated { .. } | Error::TruncatedHeader => {
                io::Error::new(io::ErrorKind::UnexpectedEof, err)
            }
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
