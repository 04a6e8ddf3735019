//! The files of an encrypted folder: the manifest, the blobs, and their crash-safe updates.
//!
//! ```text
//! manifest                  the manifest, in the file format
//! blobs/3f/3f0c...e1        one blob per file version, named by its 32-hex-digit id
//! ```
//!
//! New files are written under names that start with `.` and end in `.tmp`, synced, and then
//! renamed, so a name without them always belongs to a complete file.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File, TryLockError};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;
use zeroize::Zeroizing;

use super::error::{Error, Result};
use super::keys::FileId;
use super::manifest::Manifest;
use crate::Context;
use crate::stream::{self, DecryptingReader, EncryptOptions, EncryptingWriter, FileKey, KeySlot};

/// Name of the manifest in the encrypted folder.
pub(super) const MANIFEST_NAME: &str = "manifest";
/// Name of the folder that contains the blobs.
pub(super) const BLOBS_NAME: &str = "blobs";
/// Hex digits of the id that name a blob's subfolder.
const FANOUT_DIGITS: usize = 2;
const TEMP_PREFIX: &str = ".";
const TEMP_SUFFIX: &str = ".tmp";
const MANIFEST_TEMP_PREFIX: &str = ".manifest.";

/// Paths inside one encrypted folder.
#[derive(Debug, Clone)]
pub(super) struct Store {
    root: PathBuf,
}

impl Store {
    pub(super) fn new(root: &Path) -> Self {
        Store {
            root: root.to_owned(),
        }
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    pub(super) fn manifest_path(&self) -> PathBuf {
        self.root.join(MANIFEST_NAME)
    }

    pub(super) fn blobs_path(&self) -> PathBuf {
        self.root.join(BLOBS_NAME)
    }

    /// Returns the subfolder of blob `id`: `blobs/` and the first two hex digits of the id.
    pub(super) fn blob_dir(&self, id: FileId) -> PathBuf {
        let hex = id.to_hex();
        self.blobs_path().join(&hex[..FANOUT_DIGITS])
    }

    pub(super) fn blob_path(&self, id: FileId) -> PathBuf {
        self.blob_dir(id).join(id.to_hex())
    }

    /// Checks that an encryption may write here, creating the folder when it is absent.
    ///
    /// Allowed are an empty folder and one that contains only what folder encryption writes,
    /// so that a mistyped destination never has its files mixed with blobs.
    pub(super) fn prepare_destination(&self) -> Result<()> {
        match fs::metadata(&self.root) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return fs::create_dir_all(&self.root)
                    .map_err(|err| Error::io("create the folder", &self.root, err));
            }
            Err(err) => return Err(Error::io("read the metadata of", &self.root, err)),
            Ok(metadata) if !metadata.is_dir() => {
                return Err(Error::ForeignDestination {
                    path: self.root.clone(),
                    found: self.root.clone(),
                });
            }
            Ok(_) => {}
        }
        for entry in read_dir(&self.root)? {
            let name = entry.file_name();
            let ours = name == MANIFEST_NAME || name == BLOBS_NAME || is_manifest_temp(&name);
            if !ours {
                return Err(Error::ForeignDestination {
                    path: self.root.clone(),
                    found: entry.path(),
                });
            }
        }
        Ok(())
    }

    /// Takes an exclusive advisory lock on the folder, held until the returned file is closed.
    pub(super) fn lock(&self) -> Result<File> {
        let folder =
            File::open(&self.root).map_err(|err| Error::io("open the folder", &self.root, err))?;
        match folder.try_lock() {
            Ok(()) => Ok(folder),
            Err(TryLockError::WouldBlock) => Err(Error::FolderBusy {
                path: self.root.clone(),
            }),
            Err(TryLockError::Error(err)) => Err(Error::io("lock", &self.root, err)),
        }
    }

    /// Reads the header of the manifest, which needs no key.
    pub(super) fn read_manifest_header(&self) -> Result<stream::Header> {
        let path = self.manifest_path();
        let mut file = open_manifest(&path)?;
        stream::read_header(&mut file).map_err(|source| Error::Manifest {
            path,
            source: Box::new(source),
        })
    }

    /// Decrypts and decodes the manifest with the folder key.
    ///
    /// NOTE: the whole manifest is held in memory, an estimated 100 bytes plus the path per entry.
    pub(super) fn read_manifest(&self, key: &FileKey) -> Result<Manifest> {
        let path = self.manifest_path();
        let mut file = open_manifest(&path)?;
        let manifest_error = |source| Error::Manifest {
            path: path.clone(),
            source: Box::new(source),
        };
        let header = stream::read_header(&mut file).map_err(manifest_error)?;
        let context = header.context().clone();
        let mut reader =
            DecryptingReader::new(file, header, key, &context).map_err(manifest_error)?;
        let mut plaintext = Zeroizing::new(Vec::new());
        reader
            .read_to_end(&mut plaintext)
            .map_err(|err| manifest_error(stream::Error::from_io(err)))?;
        Manifest::decode(&plaintext).map_err(|malformed| match malformed.unsafe_path {
            Some(entry) => Error::UnsafeEntryPath {
                path: path.clone(),
                entry: String::from_utf8_lossy(&entry).into_owned(),
                reason: malformed.reason,
            },
            None => Error::MalformedManifest {
                path: path.clone(),
                reason: malformed.reason,
            },
        })
    }

    /// Encrypts the manifest under the folder key and puts it in place atomically: a temporary
    /// file is written and synced, renamed over the old manifest, and the folder is synced.
    pub(super) fn write_manifest(
        &self,
        manifest: &Manifest,
        key: &FileKey,
        context: &Context,
        slots: Vec<KeySlot>,
        segment_size: u32,
    ) -> Result<()> {
        let path = self.manifest_path();
        let plaintext = manifest.encode();
        let temp = temp_file(&self.root, MANIFEST_TEMP_PREFIX, &path)?;
        let options = EncryptOptions::new().with_segment_size(segment_size);
        let encrypt_error = |source| Error::Encrypt {
            path: path.clone(),
            source: Box::new(source),
        };
        let mut writer = EncryptingWriter::new(temp.as_file(), key, context, slots, options)
            .map_err(encrypt_error)?;
        writer
            .write_all(&plaintext)
            .map_err(|err| encrypt_error(stream::Error::from_io(err)))?;
        writer.finish().map_err(encrypt_error)?;
        commit(temp, &path, Replace::Yes)?;
        sync_dir(&self.root)
    }

    /// Removes every blob that `listed` does not contain, and temporary files that a crash
    /// left behind. Names that folder encryption never writes are left alone.
    pub(super) fn remove_unlisted(&self, listed: &HashSet<FileId>) -> Result<()> {
        let cleanup = |path: PathBuf| {
            fs::remove_file(&path).map_err(|source| Error::Cleanup { path, source })
        };
        for entry in read_dir(&self.root)? {
            if is_manifest_temp(&entry.file_name()) {
                cleanup(entry.path())?;
            }
        }
        let blobs = self.blobs_path();
        if !blobs.is_dir() {
            return Ok(());
        }
        for subfolder in read_dir(&blobs)? {
            let prefix = subfolder.file_name();
            let is_fanout = prefix.len() == FANOUT_DIGITS && subfolder.path().is_dir();
            if !is_fanout {
                continue;
            }
            for blob in read_dir(&subfolder.path())? {
                let name = blob.file_name();
                let unlisted = name
                    .to_str()
                    .and_then(FileId::parse_hex)
                    .is_some_and(|id| !listed.contains(&id));
                if unlisted || is_temp(&name) {
                    cleanup(blob.path())?;
                }
            }
            // A subfolder that still contains blobs or foreign files stays.
            let _ = fs::remove_dir(subfolder.path());
        }
        Ok(())
    }
}

/// Rejects a source and a destination of which one contains the other, because the output
/// would then be read as input, or the input overwritten.
///
/// Both paths are compared after resolving symlinks. A path that does not exist yet is
/// resolved through its deepest existing ancestor.
pub(super) fn check_overlap(source: &Path, destination: &Path) -> Result<()> {
    let source_real = resolve(source)?;
    let destination_real = resolve(destination)?;
    if source_real.starts_with(&destination_real) || destination_real.starts_with(&source_real) {
        return Err(Error::FoldersOverlap {
            source_folder: source.to_owned(),
            destination: destination.to_owned(),
        });
    }
    Ok(())
}

fn resolve(path: &Path) -> Result<PathBuf> {
    let absolute =
        std::path::absolute(path).map_err(|err| Error::io("resolve the path", path, err))?;
    let mut missing = Vec::new();
    let mut existing = absolute.as_path();
    loop {
        match existing.canonicalize() {
            Ok(mut real) => {
                real.extend(missing.iter().rev());
                return Ok(real);
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let (Some(name), Some(parent)) = (existing.file_name(), existing.parent()) else {
                    return Ok(absolute);
                };
                missing.push(name);
                existing = parent;
            }
            Err(err) => return Err(Error::io("resolve the path", existing, err)),
        }
    }
}

/// Creates a temporary file in `folder` for the eventual file `target`.
pub(super) fn temp_file(folder: &Path, prefix: &str, target: &Path) -> Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(prefix)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(folder)
        .map_err(|err| Error::io("create a temporary file for", target, err))
}

/// Creates a temporary file for a blob in its subfolder.
pub(super) fn temp_blob(folder: &Path, target: &Path) -> Result<NamedTempFile> {
    temp_file(folder, TEMP_PREFIX, target)
}

/// Whether a rename may replace an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replace {
    Yes,
    No,
}

/// Syncs a temporary file and renames it to `target`.
pub(super) fn commit(temp: NamedTempFile, target: &Path, replace: Replace) -> Result<()> {
    temp.as_file()
        .sync_all()
        .map_err(|err| Error::io("sync", target, err))?;
    let persisted = match replace {
        Replace::Yes => temp.persist(target),
        Replace::No => temp.persist_noclobber(target),
    };
    persisted
        .map(drop)
        .map_err(|err| Error::io("rename the temporary file to", target, err.error))
}

/// Syncs a folder, so that the renames and creations inside it survive a crash.
pub(super) fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|folder| folder.sync_all())
        .map_err(|err| Error::io("sync the folder", path, err))
}

fn open_manifest(path: &Path) -> Result<BufReader<File>> {
    match File::open(path) {
        Ok(file) => Ok(BufReader::new(file)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Err(Error::ManifestMissing {
            path: path.to_owned(),
        }),
        Err(err) => Err(Error::io("open", path, err)),
    }
}

fn read_dir(path: &Path) -> Result<Vec<fs::DirEntry>> {
    fs::read_dir(path)
        .and_then(Iterator::collect)
        .map_err(|err| Error::io("list", path, err))
}

fn is_temp(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    bytes.starts_with(TEMP_PREFIX.as_bytes()) && bytes.ends_with(TEMP_SUFFIX.as_bytes())
}

fn is_manifest_temp(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    bytes.starts_with(MANIFEST_TEMP_PREFIX.as_bytes()) && bytes.ends_with(TEMP_SUFFIX.as_bytes())
}
