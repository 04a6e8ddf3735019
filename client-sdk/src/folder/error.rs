//! The error type of folder encryption.

use std::io;
use std::path::{Path, PathBuf};

use crate::stream;

/// A `Result` whose error is the folder [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while encrypting, decrypting or verifying a folder.
///
/// No variant carries key bytes or file contents. Messages name paths: source paths on
/// encryption, and on decryption both the blob path and the original path of the entry that the
/// manifest lists. The original paths are hidden in the encrypted folder, so keep these messages
/// out of logs that people without access to the folder read. Variants with a cause leave it out
/// of their own message. Walk [`std::error::Error::source`] to print it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An option of [`FolderOptions`](super::FolderOptions) is out of range.
    #[error("invalid folder option {name}: {reason}")]
    InvalidOption {
        /// Name of the option.
        name: &'static str,
        /// Cause, and the allowed values.
        reason: String,
    },

    /// Source of an encryption that is not a folder.
    #[error("{} is not a folder: pass the folder to encrypt", path.display())]
    SourceNotFolder {
        /// Path as given.
        path: PathBuf,
    },

    /// One folder lies inside the other, so the output would end up in its own input.
    #[error(
        "{} and {} overlap: pass a destination outside the source folder, and a source outside \
         the destination",
        source_folder.display(),
        destination.display()
    )]
    FoldersOverlap {
        /// Folder that is read.
        source_folder: PathBuf,
        /// Folder that is written.
        destination: PathBuf,
    },

    /// Destination of an encryption that contains files that folder encryption did not write.
    #[error(
        "{} contains {}, which folder encryption did not write: pass an empty or absent folder, \
         or one that an earlier folder encryption wrote",
        path.display(),
        found.display()
    )]
    ForeignDestination {
        /// Destination folder.
        path: PathBuf,
        /// First unexpected entry.
        found: PathBuf,
    },

    /// Destination of a decryption that exists and is not an empty folder.
    #[error("{} is not an empty folder: decrypt into an empty or absent folder", path.display())]
    DestinationNotEmpty {
        /// Destination as given.
        path: PathBuf,
    },

    /// Another encryption into the same destination holds its lock.
    #[error(
        "{} is locked by another folder encryption: run again once it finishes",
        path.display()
    )]
    FolderBusy {
        /// Destination folder.
        path: PathBuf,
    },

    /// FIFO, socket or device in the source folder, which the format cannot store.
    #[error(
        "{} is a {kind}, which folder encryption cannot store: move it out of the folder",
        path.display()
    )]
    UnsupportedFileType {
        /// Path of the entry.
        path: PathBuf,
        /// `FIFO`, `socket`, `block device` or `character device`.
        kind: &'static str,
    },

    /// A path below the source folder is longer than the manifest allows.
    #[error(
        "{} is {len} bytes long below the source folder, above the limit of {max} bytes: \
         shorten its path",
        path.display()
    )]
    PathTooLong {
        /// Path of the entry.
        path: PathBuf,
        /// Length of the relative path in bytes.
        len: usize,
        /// Limit in bytes.
        max: usize,
    },

    /// A file changed while it was being encrypted, so its blob would not match the manifest.
    #[error(
        "{} changed while it was being encrypted: run again once nothing writes to it",
        path.display()
    )]
    InputChanged {
        /// Path of the source file.
        path: PathBuf,
    },

    /// Encrypted folder without a manifest.
    #[error(
        "no manifest at {}: pass a folder that folder encryption wrote",
        path.display()
    )]
    ManifestMissing {
        /// Expected path of the manifest.
        path: PathBuf,
    },

    /// Manifest file that failed to parse or to decrypt, for example after it was altered.
    #[error("cannot decrypt the manifest {}", path.display())]
    Manifest {
        /// Path of the manifest.
        path: PathBuf,
        /// File format error, which names the cause and the fix.
        #[source]
        source: Box<stream::Error>,
    },

    /// Manifest that decrypted but whose contents break the manifest format.
    #[error(
        "the manifest {} is malformed ({reason}): it was not written by this SDK; nothing was \
         written",
        path.display()
    )]
    MalformedManifest {
        /// Path of the manifest.
        path: PathBuf,
        /// Rule that the contents break.
        reason: &'static str,
    },

    /// Path in the manifest that would be written outside the destination, or through a
    /// symlink.
    #[error(
        "the manifest {} lists the unsafe path {entry:?} ({reason}): it was not written by this \
         SDK; nothing was written",
        path.display()
    )]
    UnsafeEntryPath {
        /// Path of the manifest.
        path: PathBuf,
        /// Listed path, with bytes that are not UTF-8 replaced.
        entry: String,
        /// Rule that the path breaks.
        reason: &'static str,
    },

    /// Manifest without a `kmsd` key slot, which only a recovery identity opens.
    #[error(
        "the manifest {} has no kmsd key slot: decrypt the folder with its recovery identity",
        path.display()
    )]
    NoKmsSlot {
        /// Path of the manifest.
        path: PathBuf,
    },

    /// An encryption into an existing encrypted folder passed another encryption context.
    #[error(
        "the encryption context differs from the one of the encrypted folder {}: pass the same \
         context, or encrypt into a new destination to change it",
        path.display()
    )]
    ContextChanged {
        /// Path of the existing manifest.
        path: PathBuf,
    },

    /// An encryption into an existing encrypted folder named another key.
    #[error(
        "the encrypted folder {} is under key {stored:?}, not {requested:?}: pass key {stored:?}, \
         or encrypt into a new destination to move the folder to {requested:?}",
        path.display()
    )]
    KeyNameChanged {
        /// Path of the existing manifest.
        path: PathBuf,
        /// Name of the key that wraps the folder key.
        stored: String,
        /// Name of the key in the options.
        requested: String,
    },

    /// `kmsd` did not return the folder key.
    #[error("kmsd cannot {action} the folder key")]
    Kms {
        /// `generate` or `decrypt`.
        action: &'static str,
        /// SDK error, which names the cause and the fix.
        #[source]
        source: Box<crate::Error>,
    },

    /// `kmsd` returned a data key of a length other than 32 bytes.
    #[error("kmsd returned a data key of {len} bytes, expected 32: check the key's data key size")]
    InvalidDataKey {
        /// Length of the returned key.
        len: usize,
    },

    /// None of the recovery identities opens the manifest.
    #[error("cannot unwrap the folder key of {} with the recovery identities", path.display())]
    Recovery {
        /// Path of the manifest.
        path: PathBuf,
        /// File format error, which names the recipients the folder was written for.
        #[source]
        source: Box<stream::Error>,
    },

    /// Options that the file format rejected, or a failure of the file format while encrypting.
    #[error("cannot encrypt {}", path.display())]
    Encrypt {
        /// Path of the file, or of the manifest.
        path: PathBuf,
        /// File format error.
        #[source]
        source: Box<stream::Error>,
    },

    /// A blob that the manifest lists does not exist.
    #[error(
        "blob {} of {} is missing: restore the encrypted folder from an intact copy",
        blob.display(),
        entry.display()
    )]
    BlobMissing {
        /// Path of the blob.
        blob: PathBuf,
        /// Path of the entry, relative to the folder.
        entry: PathBuf,
    },

    /// A blob was written for another entry: blobs were swapped or replaced.
    #[error(
        "blob {} does not belong to {}: blobs were swapped or replaced; restore the encrypted \
         folder from an intact copy",
        blob.display(),
        entry.display()
    )]
    BlobMismatch {
        /// Path of the blob.
        blob: PathBuf,
        /// Path of the entry, relative to the folder.
        entry: PathBuf,
    },

    /// A blob failed to parse or to decrypt.
    #[error("blob {} of {} failed to decrypt", blob.display(), entry.display())]
    Blob {
        /// Path of the blob.
        blob: PathBuf,
        /// Path of the entry, relative to the folder.
        entry: PathBuf,
        /// File format error, which names the cause and the fix.
        #[source]
        source: Box<stream::Error>,
    },

    /// A blob decrypted to another length than the manifest lists.
    #[error(
        "blob {} of {} contains {found} bytes, but the manifest lists {expected}: restore the \
         encrypted folder from an intact copy",
        blob.display(),
        entry.display()
    )]
    BlobSizeMismatch {
        /// Path of the blob.
        blob: PathBuf,
        /// Path of the entry, relative to the folder.
        entry: PathBuf,
        /// Size in the manifest.
        expected: u64,
        /// Plaintext bytes in the blob.
        found: u64,
    },

    /// A file system operation failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// Operation, such as `read` or `create`.
        action: &'static str,
        /// Path of the file or folder.
        path: PathBuf,
        /// I/O error.
        #[source]
        source: io::Error,
    },

    /// Unlisted blob that could not be removed after the new manifest was put in place.
    #[error(
        "the new manifest is in place, but the unlisted blob {} cannot be removed: run the \
         encryption again to retry",
        path.display()
    )]
    Cleanup {
        /// Path of the blob or temporary file.
        path: PathBuf,
        /// I/O error.
        #[source]
        source: io::Error,
    },

    /// Failure of the system random number generator.
    #[error("the system random number generator failed: check that /dev/urandom is readable")]
    Random,

    /// Operation dropped by the caller, or stopped by a runtime shutdown, before it finished.
    #[error("the operation was cancelled before it finished: run it again")]
    Cancelled,
}

impl Error {
    /// Wraps an I/O error with the action and the path.
    pub(super) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}
