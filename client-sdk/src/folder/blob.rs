//! One file's blob: encrypting a source file into it, and decrypting or checking it.
//!
//! A blob is a file in the file format with no key slots. Its key is derived from the blob key
//! root and its file id, and its encryption context contains the id, so a blob opens only under
//! the name that the manifest lists for it.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::keys::{BlobKeyRoot, FileId, blob_context};
use super::manifest::{FileMeta, Mtime};
use super::scan::mtime_of;
use super::store::{Replace, Store, commit, temp_blob};
use super::task::Progress;
use crate::stream::{self, DecryptingReader, EncryptOptions, EncryptingWriter};

/// Metadata of a source file at scan time, which the file must still match after it is read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Snapshot {
    pub(super) size: u64,
    pub(super) inode: u64,
    pub(super) mtime: Mtime,
}

/// Blobs of one encrypted folder and the root their keys derive from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Blobs<'a> {
    pub(super) store: &'a Store,
    pub(super) root: &'a BlobKeyRoot,
}

impl Blobs<'_> {
    /// Encrypts the file at `source` into the blob of `id`.
    ///
    /// The blob is written to a temporary file in its subfolder, synced, and renamed to its id
    /// without replacing anything. The file must match `snapshot` when it is opened and after it is
    /// read ([`Error::InputChanged`] otherwise), so the manifest describes what the blob contains.
    pub(super) fn encrypt(
        &self,
        id: FileId,
        source: &Path,
        snapshot: Snapshot,
        options: EncryptOptions,
        buffer: &mut [u8],
        progress: &Progress,
    ) -> Result<()> {
        let mut file = open_source(source)?;
        check_unchanged(&file, source, snapshot)?;
        let folder = self.store.blob_dir(id);
        fs::create_dir_all(&folder).map_err(|err| Error::io("create the folder", &folder, err))?;
        let target = self.store.blob_path(id);
        let temp = temp_blob(&folder, &target)?;

        let encrypt_error = |source_error| Error::Encrypt {
            path: source.to_owned(),
            source: Box::new(source_error),
        };
        let key = self.root.file_key(&id);
        let context = blob_context(&id);
        let mut writer = EncryptingWriter::new(temp.as_file(), &key, &context, Vec::new(), options)
            .map_err(encrypt_error)?;
        let mut total = 0;
        loop {
            let count = read_some(&mut file, buffer, source)?;
            if count == 0 {
                break;
            }
            writer
                .write_all(&buffer[..count])
                .map_err(|err| encrypt_error(stream::Error::from_io(err)))?;
            total += count as u64;
            progress.advance(count as u64)?;
        }
        writer.finish().map_err(encrypt_error)?;

        // A file that grew or shrank while it was read would not match the size in the manifest.
        if total != snapshot.size {
            return Err(Error::InputChanged {
                path: source.to_owned(),
            });
        }
        check_unchanged(&file, source, snapshot)?;
        commit(temp, &target, Replace::No)
    }

    /// Decrypts the blob of the file `entry` and writes its plaintext to `output` when given,
    /// checking that it contains exactly the size the manifest lists.
    ///
    /// Without `output` this only checks every tag, and plaintext never leaves `buffer`.
    pub(super) fn decrypt(
        &self,
        entry: &[u8],
        meta: &FileMeta,
        mut output: Option<(&File, &Path)>,
        buffer: &mut [u8],
        progress: &Progress,
    ) -> Result<()> {
        let blob = self.store.blob_path(meta.id);
        let entry = PathBuf::from(OsStr::from_bytes(entry));
        let mut file = match File::open(&blob) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(Error::BlobMissing { blob, entry });
            }
            Err(err) => return Err(Error::io("open", &blob, err)),
        };
        let blob_error = |source| Error::Blob {
            blob: blob.clone(),
            entry: entry.clone(),
            source: Box::new(source),
        };

        // The context check comes first so that a blob moved from another entry gets its own
        // error rather than a commitment mismatch.
        let header = stream::read_header(&mut file).map_err(blob_error)?;
        let context = blob_context(&meta.id);
        if *header.context() != context {
            return Err(Error::BlobMismatch { blob, entry });
        }
        let key = self.root.file_key(&meta.id);
        let mut reader = DecryptingReader::new(file, header, &key, &context).map_err(blob_error)?;
        let mut total = 0;
        loop {
            let count = reader
                .read(buffer)
                .map_err(|err| blob_error(stream::Error::from_io(err)))?;
            if count == 0 {
                break;
            }
            if let Some((file, path)) = output.as_mut() {
                file.write_all(&buffer[..count])
                    .map_err(|err| Error::io("write", path, err))?;
            }
            total += count as u64;
            progress.advance(count as u64)?;
        }
        if total != meta.size {
            return Err(Error::BlobSizeMismatch {
                blob,
                entry,
                expected: meta.size,
                found: total,
            });
        }
        Ok(())
    }
}

/// Opens a source file without following a symlink that replaced it since the scan, and
/// without blocking on a FIFO that did.
fn open_source(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| {
            if err.raw_os_error() == Some(nix::libc::ELOOP) {
                Error::InputChanged {
                    path: path.to_owned(),
                }
            } else {
                Error::io("open", path, err)
            }
        })
}

fn check_unchanged(file: &File, path: &Path, snapshot: Snapshot) -> Result<()> {
    let metadata = file
        .metadata()
        .map_err(|err| Error::io("read the metadata of", path, err))?;
    let unchanged = metadata.is_file()
        && metadata.ino() == snapshot.inode
        && metadata.len() == snapshot.size
        && mtime_of(&metadata) == snapshot.mtime;
    if unchanged {
        Ok(())
    } else {
        Err(Error::InputChanged {
            path: path.to_owned(),
        })
    }
}

fn read_some(file: &mut File, buffer: &mut [u8], path: &Path) -> Result<usize> {
    loop {
        match file.read(buffer) {
            Ok(count) => return Ok(count),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(Error::io("read", path, err)),
        }
    }
}
