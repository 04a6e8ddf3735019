//! Walking the source folder, without following symlinks.

use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::manifest::{MAX_PATH_LEN, MODE_MASK, Mtime};

/// Source folder as found: its root and every entry below it.
#[derive(Debug)]
pub(super) struct Scan {
    pub(super) root_mode: u32,
    pub(super) root_mtime: Mtime,
    /// Entries in strictly ascending byte order of their paths, as the manifest lists them.
    pub(super) entries: Vec<Scanned>,
}

/// One entry of the source folder.
#[derive(Debug)]
pub(super) struct Scanned {
    /// Raw OS bytes of the path relative to the root, components separated by `/`.
    pub(super) path: Vec<u8>,
    pub(super) mode: u32,
    pub(super) mtime: Mtime,
    pub(super) kind: ScannedKind,
}

#[derive(Debug)]
pub(super) enum ScannedKind {
    Dir,
    File { size: u64, inode: u64 },
    Symlink { target: Vec<u8> },
}

/// Lists everything below `root`. Symlinks are recorded with their targets and not followed;
/// FIFOs, sockets and devices are rejected.
pub(super) fn scan(root: &Path) -> Result<Scan> {
    let metadata =
        fs::metadata(root).map_err(|err| Error::io("read the metadata of", root, err))?;
    if !metadata.is_dir() {
        return Err(Error::SourceNotFolder {
            path: root.to_owned(),
        });
    }
    let mut entries = Vec::new();
    let mut pending: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(folder) = pending.pop() {
        let folder_path = absolute(root, &folder);
        let listing =
            fs::read_dir(&folder_path).map_err(|err| Error::io("list", &folder_path, err))?;
        for item in listing {
            let item = item.map_err(|err| Error::io("list", &folder_path, err))?;
            let scanned = scan_entry(&folder, &item.file_name(), &item.path())?;
            if matches!(scanned.kind, ScannedKind::Dir) {
                pending.push(scanned.path.clone());
            }
            entries.push(scanned);
        }
    }
    entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(Scan {
        root_mode: metadata.mode() & MODE_MASK,
        root_mtime: mtime_of(&metadata),
        entries,
    })
}

fn scan_entry(folder: &[u8], name: &OsStr, full_path: &Path) -> Result<Scanned> {
    let mut path = folder.to_vec();
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name.as_bytes());
    if path.len() > MAX_PATH_LEN {
        return Err(Error::PathTooLong {
            path: full_path.to_owned(),
            len: path.len(),
            max: MAX_PATH_LEN,
        });
    }
    let metadata = fs::symlink_metadata(full_path)
        .map_err(|err| Error::io("read the metadata of", full_path, err))?;
    Ok(Scanned {
        path,
        mode: metadata.mode() & MODE_MASK,
        mtime: mtime_of(&metadata),
        kind: classify(&metadata, full_path)?,
    })
}

fn classify(metadata: &Metadata, path: &Path) -> Result<ScannedKind> {
    let file_type = metadata.file_type();
    if file_type.is_dir() {
        return Ok(ScannedKind::Dir);
    }
    if file_type.is_file() {
        return Ok(ScannedKind::File {
            size: metadata.len(),
            inode: metadata.ino(),
        });
    }
    if file_type.is_symlink() {
        let target = fs::read_link(path).map_err(|err| Error::io("read the symlink", path, err))?;
        return Ok(ScannedKind::Symlink {
            target: target.into_os_string().into_vec(),
        });
    }
    let kind = if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_block_device() {
        "block device"
    } else {
        "character device"
    };
    Err(Error::UnsupportedFileType {
        path: path.to_owned(),
        kind,
    })
}

/// Returns the modification time of `metadata`.
pub(super) fn mtime_of(metadata: &Metadata) -> Mtime {
    Mtime {
        secs: metadata.mtime(),
        // The kernel keeps nanoseconds in 0..10^9.
        nanos: u32::try_from(metadata.mtime_nsec()).unwrap_or(0),
    }
}

/// Joins a relative path of the manifest to a folder.
pub(super) fn absolute(root: &Path, relative: &[u8]) -> PathBuf {
    if relative.is_empty() {
        root.to_owned()
    } else {
        root.join(OsStr::from_bytes(relative))
    }
}
