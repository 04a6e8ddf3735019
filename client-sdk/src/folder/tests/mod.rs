//! Tests of folder encryption: round trips, incremental runs, tampering and the manifest format.

mod incremental;
mod manifest;
mod roundtrip;
mod tamper;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;
use secrecy::SecretSlice;

use super::keys::FileId;
use super::manifest::{EntryKind, Manifest};
use super::store::Store;
use super::*;
use crate::cache::CachedDataKey;
use crate::stream::{FileKey, RecoveryIdentity, parse_identity_file, parse_recipient};

/// Segment size of the tests, so that `large.bin` spans several segments.
const SEGMENT: u32 = MIN_SEGMENT_SIZE;
const KEY_NAME: &str = "backups";
const KEY_ID: &str = "3f1e2d4c-5b6a-4789-8abc-def012345678";
/// A synthetic recovery identity and its recipient.
const IDENTITY: &str = "AGE-SECRET-KEY-1CRQU9S7YCHRV0JXFET9UENWWELGDR5KN6N2AD47CM8DDHHXAMM0S2L2P3P";
const RECIPIENT: &str = "age1mskv5v0gusammywl7lj8tn9rx3ltg7qs04dawedt5jhy5vxrt4zqpcu8z9";
/// Text in every file of the test tree, to look for in the encrypted folder.
const CANARY: &str = "SYNTHETIC-CANARY-0001";

/// A data key the fake generated: the key, the context and the key name.
type GeneratedKey = ([u8; 32], Context, String);

/// A [`DataKeySource`] that counts its calls and decrypts only its own blobs, with the context
/// they were made with, as `kmsd` would.
#[derive(Default)]
struct CountingSource {
    generated: AtomicUsize,
    decrypted: AtomicUsize,
    keys: Mutex<HashMap<Vec<u8>, GeneratedKey>>,
}

impl CountingSource {
    fn generated(&self) -> usize {
        self.generated.load(Ordering::SeqCst)
    }

    fn decrypted(&self) -> usize {
        self.decrypted.load(Ordering::SeqCst)
    }

    /// Returns the folder key of the encrypted folder at `root`, as `kmsd` would unwrap it.
    fn folder_key(&self, root: &Path) -> FileKey {
        let header = Store::new(root).read_manifest_header().unwrap();
        let blob = header.kms_slot().unwrap().blob().to_vec();
        let (key, _, _) = self.keys.lock().unwrap().get(&blob).cloned().unwrap();
        FileKey::from_slice(&key).unwrap()
    }
}

fn api_error(code: &str) -> crate::Error {
    crate::Error::Api {
        status: 400,
        code: code.to_owned(),
        message: format!("counting source: {code}"),
        request_id: None,
    }
}

impl DataKeySource for CountingSource {
    async fn new_data_key(
        &self,
        key_name: &str,
        context: &Context,
    ) -> crate::Result<CachedDataKey> {
        let serial = self.generated.fetch_add(1, Ordering::SeqCst);
        let mut key = [0; 32];
        getrandom::fill(&mut key).unwrap();
        let blob = format!("KMSB synthetic blob {serial}").into_bytes();
        let generated = (key, context.clone(), key_name.to_owned());
        self.keys.lock().unwrap().insert(blob.clone(), generated);
        Ok(CachedDataKey::new(
            key_name.to_owned(),
            KEY_ID.to_owned(),
            1,
            SecretSlice::from(key.to_vec()),
            blob,
        ))
    }

    async fn decrypt_data_key(
        &self,
        ciphertext: &[u8],
        context: &Context,
    ) -> crate::Result<CachedDataKey> {
        self.decrypted.fetch_add(1, Ordering::SeqCst);
        let found = self.keys.lock().unwrap().get(ciphertext).cloned();
        match found {
            Some((key, made_with, key_name)) if made_with == *context => Ok(CachedDataKey::new(
                key_name,
                KEY_ID.to_owned(),
                1,
                SecretSlice::from(key.to_vec()),
                ciphertext.to_vec(),
            )),
            Some(_) => Err(api_error("decryption_failed")),
            None => Err(api_error("invalid_ciphertext")),
        }
    }
}

fn context() -> Context {
    Context::from([("tenant".to_owned(), "clinic-7".to_owned())])
}

fn options() -> FolderOptions {
    FolderOptions::new(KEY_NAME, context()).with_segment_size(SEGMENT)
}

fn identity() -> RecoveryIdentity {
    parse_identity_file(IDENTITY).unwrap().remove(0)
}

fn recipient() -> stream::RecoveryRecipient {
    parse_recipient(RECIPIENT).unwrap()
}

fn no_progress(_bytes: u64) {}

/// A temporary folder with `src`, `enc` and `out` paths in it. Dropping it makes every folder
/// writable first, so that read-only folders of the test tree do not stop the cleanup when the
/// tests run as a user without the right to override modes.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn src(&self) -> PathBuf {
        self.path("src")
    }

    fn enc(&self) -> PathBuf {
        self.path("enc")
    }

    fn out(&self) -> PathBuf {
        self.path("out")
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        make_writable(self.dir.path());
    }
}

fn make_writable(path: &Path) {
    let Ok(metadata) = fs::symlink_metadata(path) else {
        return;
    };
    if metadata.is_dir() {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
        for item in fs::read_dir(path).into_iter().flatten().flatten() {
            make_writable(&item.path());
        }
    }
}

/// Sets the modification time of `path` itself, following no symlink.
fn set_mtime(path: &Path, secs: i64, nanos: i64) {
    let modified = TimeSpec::new(secs, nanos);
    utimensat(
        AT_FDCWD,
        path,
        &TimeSpec::UTIME_OMIT,
        &modified,
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Plaintext whose byte `i` is `(31 * i + 7) mod 256`, with the canary in front.
fn pattern(len: usize) -> Vec<u8> {
    let mut data = CANARY.as_bytes().to_vec();
    data.extend((0..len).map(|i| (i.wrapping_mul(31).wrapping_add(7)) as u8));
    data
}

/// Names of the test tree that must not show in the encrypted folder, as bytes.
fn hidden_names() -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = [
        "plain.txt",
        "run.sh",
        "dir with spaces",
        "leading-dash",
        "new\nline",
        "Ünïcödé",
        "日本語",
        "empty-dir",
        "readonly",
        "inside.txt",
        "does/not/exist",
        "secret-target",
        "link-to-file",
        "large.bin",
        ".hidden",
        CANARY,
    ]
    .iter()
    .map(|name| name.as_bytes().to_vec())
    .collect();
    names.push(b"raw-\xff\xfe-bytes".to_vec());
    names
}

/// Builds the test tree at `root`: files of several modes and sizes, odd and non-UTF-8 names,
/// empty files and folders, symlinks to a file, to a folder, dangling and absolute, and a
/// read-only folder. Every entry gets its own modification time.
fn build_tree(root: &Path) {
    fs::create_dir(root).unwrap();
    let files: [(&[u8], u32, usize); 11] = [
        (b"plain.txt", 0o640, 100),
        (b"empty", 0o600, 0),
        (b"bin/run.sh", 0o755, 40),
        (b"dir with spaces/file with spaces.txt", 0o644, 10),
        (b"-leading-dash", 0o600, 1),
        (b"new\nline", 0o600, 2),
        ("Ünïcödé/日本語.txt".as_bytes(), 0o640, 33),
        (b"raw-\xff\xfe-bytes", 0o600, 5),
        (b"readonly/inside.txt", 0o444, 7),
        (b"large.bin", 0o600, 3 * SEGMENT as usize + 7),
        (b".hidden", 0o600, 3),
    ];
    let dirs: [(&[u8], u32); 10] = [
        (b"bin", 0o755),
        (b"dir with spaces", 0o750),
        ("Ünïcödé".as_bytes(), 0o700),
        (b"empty-dir", 0o700),
        (b"nested", 0o755),
        (b"nested/a", 0o755),
        (b"nested/a/b", 0o711),
        (b"nested/a/b/c", 0o700),
        (b"sticky", 0o1770),
        (b"readonly", 0o555),
    ];
    let links: [(&[u8], &[u8]); 4] = [
        (b"link-to-file", b"plain.txt"),
        (b"bin/link-to-dir", "../Ünïcödé".as_bytes()),
        (b"dangling", b"does/not/exist"),
        (b"absolute-link", b"/nonexistent/secret-target"),
    ];

    for (path, _) in &dirs {
        fs::create_dir_all(root.join(OsStr::from_bytes(path))).unwrap();
    }
    for (path, mode, len) in &files {
        let full = root.join(OsStr::from_bytes(path));
        let contents = if *len == 0 { Vec::new() } else { pattern(*len) };
        fs::write(&full, contents).unwrap();
        set_mode(&full, *mode);
    }
    for (path, target) in &links {
        std::os::unix::fs::symlink(
            OsStr::from_bytes(target),
            root.join(OsStr::from_bytes(path)),
        )
        .unwrap();
    }

    // Times last, and folders after what they contain, deepest first.
    let mut stamp = 1_600_000_000;
    for (path, _, _) in &files {
        stamp += 1000;
        set_mtime(
            &root.join(OsStr::from_bytes(path)),
            stamp,
            stamp % 999_999_937,
        );
    }
    for (path, _) in &links {
        stamp += 1000;
        set_mtime(&root.join(OsStr::from_bytes(path)), stamp, 123_456_789);
    }
    for (path, mode) in dirs.iter().rev() {
        stamp += 1000;
        let full = root.join(OsStr::from_bytes(path));
        set_mode(&full, *mode);
        set_mtime(&full, stamp, 987_654_321);
    }
    set_mode(root, 0o750);
    set_mtime(root, 1_500_000_000, 1);
}

/// Compared state of one entry, read with lstat.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(Vec<u8>),
}

/// Kind and contents, permission bits, mtime seconds and nanoseconds.
type Listed = (Node, u32, i64, i64);

/// Lists the tree at `root` with lstat, the root itself under the empty path.
fn list_tree(root: &Path) -> BTreeMap<Vec<u8>, Listed> {
    let mut listing = BTreeMap::new();
    list_into(root, Vec::new(), &mut listing);
    listing
}

fn list_into(path: &Path, relative: Vec<u8>, listing: &mut BTreeMap<Vec<u8>, Listed>) {
    let metadata = fs::symlink_metadata(path).unwrap();
    let node = if metadata.is_dir() {
        Node::Dir
    } else if metadata.is_symlink() {
        Node::Symlink(fs::read_link(path).unwrap().as_os_str().as_bytes().to_vec())
    } else {
        Node::File(fs::read(path).unwrap())
    };
    let listed = (
        node.clone(),
        metadata.mode() & 0o7777,
        metadata.mtime(),
        metadata.mtime_nsec(),
    );
    listing.insert(relative.clone(), listed);
    if node == Node::Dir {
        for item in fs::read_dir(path).unwrap() {
            let item = item.unwrap();
            let mut child = relative.clone();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(item.file_name().as_bytes());
            list_into(&item.path(), child, listing);
        }
    }
}

/// Encrypts `src` into `enc` with the test options.
async fn encrypt(source: &CountingSource, src: &Path, enc: &Path) -> Result<FolderReport> {
    encrypt_folder(source, src, enc, &options(), &no_progress).await
}

/// Decrypts the encrypted folder with the fake's key.
fn manifest_of(source: &CountingSource, enc: &Path) -> Manifest {
    Store::new(enc)
        .read_manifest(&source.folder_key(enc))
        .unwrap()
}

/// Returns the id of the blob of file `path`.
fn blob_id(source: &CountingSource, enc: &Path, path: &[u8]) -> FileId {
    let manifest = manifest_of(source, enc);
    manifest
        .files()
        .find(|(entry, _)| entry.path == path)
        .map(|(_, meta)| meta.id)
        .unwrap()
}

/// Lists every blob file below `enc/blobs`.
fn blob_files(enc: &Path) -> Vec<PathBuf> {
    let mut blobs = Vec::new();
    for subfolder in fs::read_dir(enc.join("blobs")).unwrap() {
        for blob in fs::read_dir(subfolder.unwrap().path()).unwrap() {
            blobs.push(blob.unwrap().path());
        }
    }
    blobs.sort();
    blobs
}

/// Counts the progress reports, to compare their sum with the report.
#[derive(Default)]
struct ProgressSum(AtomicU64);

impl ProgressSum {
    fn add(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::SeqCst);
    }

    fn total(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Returns whether the manifest lists a folder at `path`.
fn lists_dir(manifest: &Manifest, path: &[u8]) -> bool {
    manifest
        .entries
        .iter()
        .any(|entry| entry.path == path && entry.kind == EntryKind::Dir)
}
