//! Decrypting an encrypted folder into a new tree, and checking one without writing plaintext.
//!
//! A decryption restores everything into a staging folder inside the destination, named
//! `.kms-folder-restore-*.partial`, and moves the top-level entries out of it only after every
//! blob has decrypted. A failed decryption removes the staging folder, so nothing that looks
//! complete is left behind. A crash can leave the staging folder, whose name marks it as
//! incomplete.

use std::ffi::OsStr;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

use super::FolderReport;
use super::blob::Blobs;
use super::error::{Error, Result};
use super::manifest::{Entry, EntryKind, FileMeta, Manifest, Mtime};
use super::scan::absolute;
use super::store::{Store, check_overlap, sync_dir};
use super::task::{Progress, for_each_parallel};
use crate::stream::{self, FileKey, RecoveryIdentity};

const STAGING_PREFIX: &str = ".kms-folder-restore-";
const STAGING_SUFFIX: &str = ".partial";
/// Mode of folders while they are filled: only the owner may enter, list and write them.
const FILLING_DIR_MODE: u32 = 0o700;
/// Mode of files while they are written.
const FILLING_FILE_MODE: u32 = 0o600;

/// An encrypted folder whose manifest header has been read, and the checked destination.
#[derive(Debug)]
pub(super) struct Opened {
    store: Store,
    header: stream::Header,
}

impl Opened {
    pub(super) fn header(&self) -> &stream::Header {
        &self.header
    }

    pub(super) fn manifest_path(&self) -> PathBuf {
        self.store.manifest_path()
    }
}

/// Reads the manifest header of the encrypted folder `source` and, for a decryption, checks
/// that `destination` is absent or an empty folder outside `source`.
pub(super) fn open(source: &Path, destination: Option<&Path>) -> Result<Opened> {
    let store = Store::new(source);
    let header = store.read_manifest_header()?;
    if let Some(destination) = destination {
        check_overlap(source, destination)?;
        check_empty(destination)?;
    }
    Ok(Opened { store, header })
}

/// Unwraps the folder key from a recovery slot of the manifest. No `kmsd` is involved.
pub(super) fn unwrap_recovery(opened: &Opened, identities: &[RecoveryIdentity]) -> Result<FileKey> {
    opened
        .header
        .unwrap_recovery(identities)
        .map_err(|source| Error::Recovery {
            path: opened.manifest_path(),
            source: Box::new(source),
        })
}

/// Checks every blob against the manifest and returns the counts.
pub(super) fn verify(opened: Opened, key: &FileKey, progress: &Progress) -> Result<FolderReport> {
    let manifest = opened.store.read_manifest(key)?;
    let blobs = Blobs {
        store: &opened.store,
        root: &manifest.blob_root,
    };
    let files: Vec<(&Entry, &FileMeta)> = manifest.files().collect();
    for_each_parallel(&files, |(entry, meta), buffer| {
        blobs.decrypt(&entry.path, meta, None, buffer, progress)
    })?;
    Ok(count(&manifest))
}

/// Decrypts the folder into `destination`, which [`open`] has checked.
pub(super) fn decrypt(
    opened: Opened,
    destination: &Path,
    key: &FileKey,
    progress: &Progress,
) -> Result<FolderReport> {
    let manifest = opened.store.read_manifest(key)?;
    let created = !destination.exists();
    if created {
        fs::create_dir_all(destination)
            .map_err(|err| Error::io("create the folder", destination, err))?;
    }
    let staging = tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .suffix(STAGING_SUFFIX)
        .tempdir_in(destination)
        .map_err(|err| Error::io("create a staging folder in", destination, err))?
        .keep();

    let blobs = Blobs {
        store: &opened.store,
        root: &manifest.blob_root,
    };
    let restored = fill(&staging, &manifest, blobs, progress)
        .and_then(|()| finish(&staging, destination, &manifest));
    if let Err(err) = restored {
        remove_tree(&staging);
        if created {
            let _ = fs::remove_dir(destination);
        }
        return Err(err);
    }
    Ok(count(&manifest))
}

/// Creates every entry in the staging folder and sets the metadata of all but the top-level
/// folders, which [`finish`] sets after it moves them.
fn fill(staging: &Path, manifest: &Manifest, blobs: Blobs<'_>, progress: &Progress) -> Result<()> {
    // Folders first, in manifest order, which lists each parent before its children.
    let mut builder = DirBuilder::new();
    builder.mode(FILLING_DIR_MODE);
    for entry in &manifest.entries {
        if entry.kind == EntryKind::Dir {
            let path = absolute(staging, &entry.path);
            builder
                .create(&path)
                .map_err(|err| Error::io("create the folder", &path, err))?;
        }
    }

    let files: Vec<(&Entry, &FileMeta)> = manifest.files().collect();
    for_each_parallel(&files, |(entry, meta), buffer| {
        restore_file(staging, entry, meta, blobs, buffer, progress)
    })?;

    for entry in &manifest.entries {
        if let EntryKind::Symlink { target } = &entry.kind {
            let path = absolute(staging, &entry.path);
            std::os::unix::fs::symlink(OsStr::from_bytes(target), &path)
                .map_err(|err| Error::io("create the symlink", &path, err))?;
            set_mtime(&path, entry.mtime)?;
        }
    }

    // Children before parents, because creating a child changes its parent's mtime and a
    // read-only parent would reject it.
    for entry in manifest.entries.iter().rev() {
        if entry.kind == EntryKind::Dir && entry.path.contains(&b'/') {
            seal_dir(&absolute(staging, &entry.path), entry)?;
        }
    }
    Ok(())
}

/// Writes one file with its contents, mode and modification time.
fn restore_file(
    staging: &Path,
    entry: &Entry,
    meta: &FileMeta,
    blobs: Blobs<'_>,
    buffer: &mut [u8],
    progress: &Progress,
) -> Result<()> {
    let path = absolute(staging, &entry.path);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILLING_FILE_MODE)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|err| Error::io("create", &path, err))?;
    blobs.decrypt(&entry.path, meta, Some((&file, &path)), buffer, progress)?;
    file.set_permissions(Permissions::from_mode(entry.mode))
        .map_err(|err| Error::io("set the mode of", &path, err))?;
    file.sync_all()
        .map_err(|err| Error::io("sync", &path, err))?;
    drop(file);
    set_mtime(&path, entry.mtime)
}

/// Moves the top-level entries from the staging folder into the destination, then sets the
/// metadata of the top-level folders and of the destination itself.
///
/// A folder moves to another parent only while it is writable, because the move rewrites its
/// `..` entry, so the top-level folders get their modes after the move.
fn finish(staging: &Path, destination: &Path, manifest: &Manifest) -> Result<()> {
    let top_level = || {
        manifest
            .entries
            .iter()
            .filter(|entry| !entry.path.contains(&b'/'))
    };
    for entry in top_level() {
        let from = absolute(staging, &entry.path);
        let to = absolute(destination, &entry.path);
        // The destination was empty. Something created there since must not be replaced.
        if fs::symlink_metadata(&to).is_ok() {
            return Err(Error::DestinationNotEmpty {
                path: destination.to_owned(),
            });
        }
        fs::rename(&from, &to).map_err(|err| Error::io("move the restored entry to", &to, err))?;
    }
    for entry in top_level() {
        if entry.kind == EntryKind::Dir {
            seal_dir(&absolute(destination, &entry.path), entry)?;
        }
    }
    fs::remove_dir(staging).map_err(|err| Error::io("remove the staging folder", staging, err))?;
    sync_dir(destination)?;
    fs::set_permissions(destination, Permissions::from_mode(manifest.root_mode))
        .map_err(|err| Error::io("set the mode of", destination, err))?;
    set_mtime(destination, manifest.root_mtime)
}

/// Syncs a restored folder, then sets its mode and modification time.
fn seal_dir(path: &Path, entry: &Entry) -> Result<()> {
    sync_dir(path)?;
    fs::set_permissions(path, Permissions::from_mode(entry.mode))
        .map_err(|err| Error::io("set the mode of", path, err))?;
    set_mtime(path, entry.mtime)
}

/// Sets the modification time of `path` itself, not of a symlink's target, and leaves the
/// access time as it is.
fn set_mtime(path: &Path, mtime: Mtime) -> Result<()> {
    let modified = TimeSpec::new(mtime.secs, i64::from(mtime.nanos));
    utimensat(
        AT_FDCWD,
        path,
        &TimeSpec::UTIME_OMIT,
        &modified,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|errno| Error::io("set the modification time of", path, io::Error::from(errno)))
}

/// Fails unless `path` is absent or an empty folder. A symlink to an empty folder is followed.
fn check_empty(path: &Path) -> Result<()> {
    let not_empty = || Error::DestinationNotEmpty {
        path: path.to_owned(),
    };
    match fs::metadata(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(Error::io("read the metadata of", path, err)),
        Ok(metadata) if !metadata.is_dir() => Err(not_empty()),
        Ok(_) => {
            let mut listing = fs::read_dir(path).map_err(|err| Error::io("list", path, err))?;
            match listing.next() {
                None => Ok(()),
                Some(_) => Err(not_empty()),
            }
        }
    }
}

/// Removes a partly restored tree, making its folders writable first. Failures are ignored:
/// what is left sits in a folder whose name ends in `.partial`.
fn remove_tree(path: &Path) {
    let Ok(metadata) = fs::symlink_metadata(path) else {
        return;
    };
    if !metadata.is_dir() {
        let _ = fs::remove_file(path);
        return;
    }
    let _ = fs::set_permissions(path, Permissions::from_mode(FILLING_DIR_MODE));
    if let Ok(listing) = fs::read_dir(path) {
        for item in listing.flatten() {
            remove_tree(&item.path());
        }
    }
    let _ = fs::remove_dir(path);
}

fn count(manifest: &Manifest) -> FolderReport {
    let mut report = FolderReport::default();
    for entry in &manifest.entries {
        match &entry.kind {
            EntryKind::Dir => report.directories += 1,
            EntryKind::Symlink { .. } => report.symlinks += 1,
            EntryKind::File(meta) => {
                report.files += 1;
                report.bytes += meta.size;
            }
        }
    }
    report
}
