//! The manifest: every entry of the folder with its metadata, and its binary encoding.
//!
//! The encoded manifest is the plaintext of the encrypted file `manifest`. All integers are
//! big-endian. `docs/folder-format.md` gives every byte. Readers accept one canonical form:
//! entries in strictly ascending byte order of their paths, each parent listed as a folder
//! before its children, and no path that could leave the destination.

use std::collections::HashSet;

use zeroize::Zeroizing;

use super::keys::{BLOB_ROOT_LEN, BlobKeyRoot, FILE_ID_LEN, FileId};

/// First bytes of the plaintext of a manifest.
pub(super) const MAGIC: [u8; 4] = *b"KMSM";
/// Version of the manifest encoding.
pub(super) const VERSION: u8 = 1;
/// Blob layout 1: `blobs/<first two hex digits of the id>/<32 hex digits of the id>`.
pub(super) const LAYOUT_FANOUT: u8 = 1;
/// Longest path below the folder, in bytes: `PATH_MAX` (4096) less the terminating NUL.
pub(super) const MAX_PATH_LEN: usize = 4095;
/// Longest path component in bytes, `NAME_MAX` on Linux.
pub(super) const MAX_NAME_LEN: usize = 255;
/// Permission bits that the manifest stores: rwx for all three classes, setuid, setgid, sticky.
pub(super) const MODE_MASK: u32 = 0o7777;

const KIND_DIR: u8 = 1;
const KIND_FILE: u8 = 2;
const KIND_SYMLINK: u8 = 3;
/// Bytes before the entries: magic, version, layout, root key, root mode and mtime, count.
const PREAMBLE_LEN: usize = 4 + 1 + 1 + BLOB_ROOT_LEN + 4 + MTIME_LEN + 8;
const MTIME_LEN: usize = 8 + 4;
/// Shortest entry: kind, path length, a one-byte path, mode and mtime.
const MIN_ENTRY_LEN: usize = 1 + 4 + 1 + 4 + MTIME_LEN;
const NANOS_PER_SECOND: u32 = 1_000_000_000;

/// A modification time: seconds since the Unix epoch (negative before it) and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mtime {
    pub(super) secs: i64,
    /// Always below 10^9.
    pub(super) nanos: u32,
}

/// One file, folder or symlink below the root, with its path relative to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// Raw OS bytes of the relative path, components separated by `/`.
    pub(super) path: Vec<u8>,
    /// Permission bits, within [`MODE_MASK`].
    pub(super) mode: u32,
    pub(super) mtime: Mtime,
    pub(super) kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum EntryKind {
    Dir,
    File(FileMeta),
    Symlink {
        /// Raw OS bytes of the target, stored as read and never followed.
        target: Vec<u8>,
    },
}

/// Metadata of a regular file beyond the common fields: the change check and its blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileMeta {
    pub(super) size: u64,
    /// Inode number at encryption, compared by the next encryption to spot replaced files.
    pub(super) inode: u64,
    pub(super) id: FileId,
}

/// Decrypted manifest.
#[derive(Debug)]
pub(super) struct Manifest {
    pub(super) blob_root: BlobKeyRoot,
    /// Permission bits of the root folder.
    pub(super) root_mode: u32,
    pub(super) root_mtime: Mtime,
    /// Entries in strictly ascending byte order of their paths.
    pub(super) entries: Vec<Entry>,
}

/// Cause of a decoding failure.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Malformed {
    pub(super) reason: &'static str,
    /// Offending path, when the failure is a path that could leave the destination.
    pub(super) unsafe_path: Option<Vec<u8>>,
}

impl Manifest {
    /// Returns the regular files with their blob metadata.
    pub(super) fn files(&self) -> impl Iterator<Item = (&Entry, &FileMeta)> {
        self.entries.iter().filter_map(|entry| match &entry.kind {
            EntryKind::File(meta) => Some((entry, meta)),
            _ => None,
        })
    }

    /// Encodes the manifest into a buffer of the exact length, so that no reallocation leaves
    /// a copy of the root key or of the paths behind.
    pub(super) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let len = PREAMBLE_LEN + self.entries.iter().map(encoded_entry_len).sum::<usize>();
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(LAYOUT_FANOUT);
        out.extend_from_slice(self.blob_root.expose());
        out.extend_from_slice(&self.root_mode.to_be_bytes());
        put_mtime(&mut out, self.root_mtime);
        out.extend_from_slice(&(self.entries.len() as u64).to_be_bytes());
        for entry in &self.entries {
            encode_entry(entry, &mut out);
        }
        debug_assert_eq!(out.len(), len);
        out
    }

    /// Decodes and checks a manifest.
    pub(super) fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut input = Cursor { bytes, pos: 0 };
        if input.array::<4>()? != MAGIC {
            return Err(malformed("the plaintext does not start with KMSM"));
        }
        if input.u8()? != VERSION {
            return Err(malformed(
                "unsupported manifest version, a newer SDK may read it",
            ));
        }
        if input.u8()? != LAYOUT_FANOUT {
            return Err(malformed("unknown blob layout, a newer SDK may read it"));
        }
        let root_bytes = Zeroizing::new(input.array::<BLOB_ROOT_LEN>()?);
        let blob_root = BlobKeyRoot::from_bytes(&root_bytes);
        let root_mode = input.mode()?;
        let root_mtime = input.mtime()?;
        let count = input.u64()?;
        if count > (input.remaining() / MIN_ENTRY_LEN) as u64 {
            return Err(malformed(
                "the entry count exceeds what the manifest length can contain",
            ));
        }

        let mut checker = Checker::default();
        // The bound above keeps the capacity below the manifest length.
        let mut entries = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let entry = input.entry()?;
            checker.check(&entry)?;
            entries.push(entry);
        }
        if input.remaining() != 0 {
            return Err(malformed("bytes follow the last entry"));
        }
        Ok(Manifest {
            blob_root,
            root_mode,
            root_mtime,
            entries,
        })
    }
}

/// Checks the order of entries, their parents and the uniqueness of file ids.
#[derive(Default)]
struct Checker {
    previous: Option<Vec<u8>>,
    dirs: HashSet<Vec<u8>>,
    ids: HashSet<FileId>,
}

impl Checker {
    fn check(&mut self, entry: &Entry) -> Result<(), Malformed> {
        check_path(&entry.path).map_err(|reason| unsafe_path(reason, &entry.path))?;
        if self
            .previous
            .as_ref()
            .is_some_and(|previous| previous.as_slice() >= entry.path.as_slice())
        {
            return Err(malformed(
                "entries are not in strictly ascending path order",
            ));
        }
        // A parent that is not a listed folder could be a symlink, and writing below it would
        // follow the link out of the destination.
        let parent = parent_of(&entry.path);
        if !parent.is_empty() && !self.dirs.contains(parent) {
            return Err(unsafe_path(
                "its parent is not a folder listed before it",
                &entry.path,
            ));
        }
        match &entry.kind {
            EntryKind::Dir => {
                self.dirs.insert(entry.path.clone());
            }
            EntryKind::File(meta) => {
                if !self.ids.insert(meta.id) {
                    return Err(malformed("two files share one file id"));
                }
            }
            EntryKind::Symlink { target } => check_target(target)?,
        }
        self.previous = Some(entry.path.clone());
        Ok(())
    }
}

/// Checks that a relative path stays below the folder: not empty, not absolute, no empty, `.`
/// or `..` component, no NUL byte, and within the length limits.
pub(super) fn check_path(path: &[u8]) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("the path is empty");
    }
    if path.len() > MAX_PATH_LEN {
        return Err("the path is longer than 4095 bytes");
    }
    if path.first() == Some(&b'/') {
        return Err("the path is absolute");
    }
    if path.contains(&0) {
        return Err("the path contains a NUL byte");
    }
    for component in path.split(|byte| *byte == b'/') {
        match component {
            b"" => return Err("the path has an empty component"),
            b"." => return Err("the path has a `.` component"),
            b".." => return Err("the path has a `..` component"),
            _ if component.len() > MAX_NAME_LEN => {
                return Err("a path component is longer than 255 bytes");
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_target(target: &[u8]) -> Result<(), Malformed> {
    if target.is_empty() || target.len() > MAX_PATH_LEN || target.contains(&0) {
        return Err(malformed(
            "a symlink target is empty, longer than 4095 bytes or contains a NUL byte",
        ));
    }
    Ok(())
}

/// Returns the path up to its last `/`, or nothing for a top-level entry.
pub(super) fn parent_of(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|byte| *byte == b'/') {
        Some(slash) => &path[..slash],
        None => &[],
    }
}

fn encoded_entry_len(entry: &Entry) -> usize {
    let specific = match &entry.kind {
        EntryKind::Dir => 0,
        EntryKind::File(_) => 8 + 8 + FILE_ID_LEN,
        EntryKind::Symlink { target } => 4 + target.len(),
    };
    1 + 4 + entry.path.len() + 4 + MTIME_LEN + specific
}

fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    let kind = match entry.kind {
        EntryKind::Dir => KIND_DIR,
        EntryKind::File(_) => KIND_FILE,
        EntryKind::Symlink { .. } => KIND_SYMLINK,
    };
    out.push(kind);
    put_bytes(out, &entry.path);
    out.extend_from_slice(&entry.mode.to_be_bytes());
    put_mtime(out, entry.mtime);
    match &entry.kind {
        EntryKind::Dir => {}
        EntryKind::File(meta) => {
            out.extend_from_slice(&meta.size.to_be_bytes());
            out.extend_from_slice(&meta.inode.to_be_bytes());
            out.extend_from_slice(meta.id.as_bytes());
        }
        EntryKind::Symlink { target } => put_bytes(out, target),
    }
}

/// Appends a u32 length and the bytes. Paths and targets are checked against
/// [`MAX_PATH_LEN`] before they reach a manifest, far below `u32::MAX`.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_mtime(out: &mut Vec<u8>, mtime: Mtime) {
    out.extend_from_slice(&mtime.secs.to_be_bytes());
    out.extend_from_slice(&mtime.nanos.to_be_bytes());
}

fn malformed(reason: &'static str) -> Malformed {
    Malformed {
        reason,
        unsafe_path: None,
    }
}

fn unsafe_path(reason: &'static str, path: &[u8]) -> Malformed {
    Malformed {
        reason,
        unsafe_path: Some(path.to_vec()),
    }
}

/// Reads the fields of a manifest in order.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, len: usize) -> Result<&[u8], Malformed> {
        if len > self.remaining() {
            return Err(malformed("the manifest ends inside an entry"));
        }
        let out = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        self.array::<1>().map(|[byte]| byte)
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        self.array().map(u64::from_be_bytes)
    }

    fn mode(&mut self) -> Result<u32, Malformed> {
        let mode = self.u32()?;
        if mode & !MODE_MASK != 0 {
            return Err(malformed("a mode has bits outside 0o7777"));
        }
        Ok(mode)
    }

    fn mtime(&mut self) -> Result<Mtime, Malformed> {
        let secs = i64::from_be_bytes(self.array()?);
        let nanos = self.u32()?;
        if nanos >= NANOS_PER_SECOND {
            return Err(malformed(
                "a modification time has 10^9 nanoseconds or more",
            ));
        }
        Ok(Mtime { secs, nanos })
    }

    /// Reads a u32 length and that many bytes, at most [`MAX_PATH_LEN`].
    fn path_bytes(&mut self) -> Result<Vec<u8>, Malformed> {
        let len = self.u32()? as usize;
        if len > MAX_PATH_LEN {
            return Err(malformed(
                "a path or symlink target is longer than 4095 bytes",
            ));
        }
        self.take(len).map(<[u8]>::to_vec)
    }

    fn entry(&mut self) -> Result<Entry, Malformed> {
        let kind = self.u8()?;
        let path = self.path_bytes()?;
        let mode = self.mode()?;
        let mtime = self.mtime()?;
        let kind = match kind {
            KIND_DIR => EntryKind::Dir,
            KIND_FILE => EntryKind::File(FileMeta {
                size: self.u64()?,
                inode: self.u64()?,
                id: FileId::from_bytes(self.array()?),
            }),
            KIND_SYMLINK => EntryKind::Symlink {
                target: self.path_bytes()?,
            },
            _ => return Err(malformed("an entry has an unknown kind")),
        };
        Ok(Entry {
            path,
            mode,
            mtime,
            kind,
        })
    }
}
