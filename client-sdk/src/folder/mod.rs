//! Encryption of whole folders, with names and tree shape hidden and incremental updates.
//!
//! [`encrypt_folder`] turns a folder into an encrypted folder that contains only an encrypted
//! manifest and one blob per file, named by random ids:
//!
//! ```text
//! manifest                  every path, size, mode, mtime and symlink target, in the file format
//! blobs/3f/3f0c...e1        the contents of one file, in the file format
//! ```
//!
//! One `kmsd` call per run, not per file. The first run generates one data key, the folder
//! key, which encrypts the manifest. The manifest header carries the key's `kmsd` slot and,
//! with [`FolderOptions::recovery`], a recovery slot, so that [`decrypt_folder_with_identity`]
//! needs no `kmsd`. The manifest also contains a random 32-byte blob key root. Each blob's key
//! is derived from that root with HKDF-SHA256 and the blob's random 16-byte file id, and the
//! blob's encryption context contains the id, so a blob opens only under the name the manifest
//! lists.
//!
//! A later run into the same destination decrypts the old manifest with one `kmsd` decrypt
//! call and encrypts only the files whose size, modification time, mode or inode changed. It
//! writes new blobs first, then the new manifest atomically, then removes the blobs no longer
//! listed, so a crash leaves the old state or the new one.
//!
//! [`decrypt_folder`] restores contents, modes and modification times of files, folders and
//! symlinks (which are never followed), empty folders and empty files, into a destination that
//! must be absent or empty. [`verify_folder`] checks every tag and writes nothing.
//!
//! The number of files and the size of each (within a fixed overhead) are not hidden, nor is the
//! encryption context, which the manifest header stores in the clear. `docs/folder-format.md`
//! specifies every byte.
//!
//! ```no_run
//! # async fn example(client: client_sdk::Client) -> Result<(), client_sdk::folder::Error> {
//! use std::path::Path;
//!
//! use client_sdk::Context;
//! use client_sdk::folder::{self, FolderOptions};
//!
//! let context = Context::from([("tenant".to_owned(), "clinic-7".to_owned())]);
//! let options = FolderOptions::new("backups", context);
//! let report = folder::encrypt_folder(
//!     &client,
//!     Path::new("/srv/scans"),
//!     Path::new("/mnt/offsite/scans"),
//!     &options,
//!     &|_bytes| {},
//! )
//! .await?;
//! println!("{} files, {} encrypted again", report.files, report.encrypted);
//! folder::verify_folder(&client, Path::new("/mnt/offsite/scans"), &|_bytes| {}).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Only Unix is supported: paths are raw bytes and modes are Unix permission bits. Owners,
//! extended attributes and ACLs are not stored, and hard links are restored as separate files.

mod blob;
mod encrypt;
mod error;
mod keys;
mod manifest;
mod restore;
mod scan;
mod store;
mod task;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use error::{Error, Result};

use self::task::run_blocking;
use crate::Context;
use crate::cache::DataKeySource;
use crate::stream::{self, DEFAULT_SEGMENT_SIZE, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE};

/// Settings of [`encrypt_folder`].
///
/// On a later run into an existing encrypted folder, `key_name` and `context` must be the ones
/// of the first run ([`Error::KeyNameChanged`], [`Error::ContextChanged`] otherwise).
#[derive(Debug, Clone)]
pub struct FolderOptions {
    /// Name of the `kmsd` key that wraps the folder key.
    pub key_name: String,
    /// Encryption context bound to the folder key. The manifest header stores it in the clear,
    /// and decryption passes it back to `kmsd`.
    pub context: Context,
    /// Recipient of a recovery slot in the manifest header, so that the folder can be
    /// decrypted with the matching identity and no `kmsd`. When `None` on a later run, the
    /// recovery slots of the previous manifest are kept.
    pub recovery: Option<stream::RecoveryRecipient>,
    /// Plaintext bytes per segment of the manifest and of new blobs, from
    /// [`MIN_SEGMENT_SIZE`] to [`MAX_SEGMENT_SIZE`], or `None` for [`DEFAULT_SEGMENT_SIZE`].
    pub segment_size: Option<u32>,
}

impl FolderOptions {
    /// Returns options for key `key_name` and `context`, with no recovery slot and the default
    /// segment size.
    pub fn new(key_name: impl Into<String>, context: Context) -> Self {
        FolderOptions {
            key_name: key_name.into(),
            context,
            recovery: None,
            segment_size: None,
        }
    }

    /// Sets the recipient of the recovery slot.
    pub fn with_recovery(mut self, recipient: stream::RecoveryRecipient) -> Self {
        self.recovery = Some(recipient);
        self
    }

    /// Sets the plaintext bytes per segment.
    pub fn with_segment_size(mut self, bytes: u32) -> Self {
        self.segment_size = Some(bytes);
        self
    }

    fn effective_segment_size(&self) -> u32 {
        self.segment_size.unwrap_or(DEFAULT_SEGMENT_SIZE)
    }

    fn validate(&self) -> Result<()> {
        if self.key_name.is_empty() {
            return Err(Error::InvalidOption {
                name: "key_name",
                reason: "the key name is empty; pass the name of a kmsd key".to_owned(),
            });
        }
        let size = self.effective_segment_size();
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&size) {
            return Err(Error::InvalidOption {
                name: "segment_size",
                reason: format!(
                    "{size} bytes, expected {MIN_SEGMENT_SIZE} to {MAX_SEGMENT_SIZE} bytes"
                ),
            });
        }
        Ok(())
    }
}

/// Counts of one run.
///
/// Folders and symlinks are counted in `directories` and `symlinks`, not in `files`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FolderReport {
    /// Regular files in the folder.
    pub files: u64,
    /// Files whose contents this run encrypted into a new blob: new and changed files.
    pub encrypted: u64,
    /// Files whose blob this run kept from the previous run.
    pub unchanged: u64,
    /// Files of the previous run that are gone, whose blobs this run removed.
    pub removed: u64,
    /// Plaintext bytes encrypted, decrypted or verified.
    pub bytes: u64,
    /// Folders below the root, empty ones included.
    pub directories: u64,
    /// Symlinks.
    pub symlinks: u64,
}

/// Encrypts the folder `src` into the encrypted folder `dst`, or updates `dst` when an earlier
/// run wrote it.
///
/// `dst` must be absent, empty, or an encrypted folder ([`Error::ForeignDestination`]
/// otherwise), and neither folder may contain the other. A first run makes one
/// `new_data_key` call. A later run makes one `decrypt_data_key` call and encrypts only new and
/// changed files. The destination is locked against other runs meanwhile
/// ([`Error::FolderBusy`]). `progress` is called with the number of plaintext bytes encrypted
/// since its previous call. The calls add up to [`FolderReport::bytes`].
///
/// Symlinks are stored with their targets and never followed. FIFOs, sockets and devices are
/// rejected with [`Error::UnsupportedFileType`]. A file that changes while it is read fails the
/// run with [`Error::InputChanged`] and leaves the previous manifest in place.
pub async fn encrypt_folder<S: DataKeySource>(
    source: &S,
    src: &Path,
    dst: &Path,
    options: &FolderOptions,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<FolderReport> {
    options.validate()?;
    let (src, dst) = (src.to_owned(), dst.to_owned());
    let prepared = run_blocking(progress, move |_| encrypt::prepare(&src, &dst)).await?;
    let folder_key = match prepared.previous_header() {
        Some(header) => {
            let manifest = prepared.manifest_path();
            encrypt::existing_key(source, header, options, &manifest).await?
        }
        None => encrypt::new_key(source, options, &prepared.manifest_path()).await?,
    };
    let options = options.clone();
    run_blocking(progress, move |progress| {
        encrypt::run(prepared, folder_key, &options, progress)
    })
    .await
}

/// Decrypts the encrypted folder `src` into `dst`, unwrapping the folder key with one
/// `decrypt_data_key` call.
///
/// `dst` must be absent or an empty folder ([`Error::DestinationNotEmpty`]). Every entry is
/// restored into a staging folder inside `dst` and moved into place only after every blob has
/// decrypted, so a failure leaves `dst` as it was. `progress` is called with the number of
/// plaintext bytes decrypted since its previous call.
pub async fn decrypt_folder<S: DataKeySource>(
    source: &S,
    src: &Path,
    dst: &Path,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<FolderReport> {
    let (src, dst) = (src.to_owned(), dst.to_owned());
    let destination = dst.clone();
    let opened = run_blocking(progress, move |_| restore::open(&src, Some(&destination))).await?;
    let key = kms_key(source, &opened).await?;
    run_blocking(progress, move |progress| {
        restore::decrypt(opened, &dst, &key, progress)
    })
    .await
}

/// Decrypts the encrypted folder `src` into `dst` with a recovery identity, without `kmsd`.
///
/// The folder must have been encrypted with [`FolderOptions::recovery`] set to the recipient
/// of one of `identities` ([`Error::Recovery`] otherwise). Everything else is as for
/// [`decrypt_folder`].
pub async fn decrypt_folder_with_identity(
    identities: &[stream::RecoveryIdentity],
    src: &Path,
    dst: &Path,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<FolderReport> {
    let (src, dst) = (src.to_owned(), dst.to_owned());
    let identities = identities.to_vec();
    run_blocking(progress, move |progress| {
        let opened = restore::open(&src, Some(&dst))?;
        let key = restore::unwrap_recovery(&opened, &identities)?;
        restore::decrypt(opened, &dst, &key, progress)
    })
    .await
}

/// Checks every blob of the encrypted folder `src` against its manifest without writing any
/// plaintext, unwrapping the folder key with one `decrypt_data_key` call.
///
/// It detects what [`decrypt_folder`] would reject: an altered manifest or blob, a missing,
/// swapped or truncated blob. Blobs that the manifest does not list are not reported. The next
/// [`encrypt_folder`] run removes them. `progress` is called with the number of plaintext bytes
/// checked since its previous call.
pub async fn verify_folder<S: DataKeySource>(
    source: &S,
    src: &Path,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<FolderReport> {
    let src = src.to_owned();
    let opened = run_blocking(progress, move |_| restore::open(&src, None)).await?;
    let key = kms_key(source, &opened).await?;
    run_blocking(progress, move |progress| {
        restore::verify(opened, &key, progress)
    })
    .await
}

/// Unwraps the folder key from the `kmsd` slot of the manifest, with the stored context.
async fn kms_key<S: DataKeySource>(
    source: &S,
    opened: &restore::Opened,
) -> Result<stream::FileKey> {
    let header = opened.header();
    let slot = header.kms_slot().ok_or_else(|| Error::NoKmsSlot {
        path: opened.manifest_path(),
    })?;
    let data_key = source
        .decrypt_data_key(slot.blob(), header.context())
        .await
        .map_err(|source| Error::Kms {
            action: "decrypt",
            source: Box::new(source),
        })?;
    encrypt::file_key(&data_key)
}
