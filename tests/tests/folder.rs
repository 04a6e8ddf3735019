//! `kmsctl folder encrypt`, `decrypt` and `verify` against a real daemon: a tree with
//! symlinks, empty folders, odd names, empty files and modes restored exactly, names hidden,
//! incremental runs, tampering caught, and a restore with a recovery key and no daemon.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};

use common::{KEY, Setup, offline_kmsctl, plaintext, run_with_input};

/// What a restore must reproduce of one entry, read with lstat.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    File {
        mode: u32,
        mtime: i64,
        bytes: Vec<u8>,
    },
    Dir {
        mode: u32,
    },
    Link {
        target: PathBuf,
    },
}

/// Lists every entry below `root` by relative path, without following symlinks.
fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Entry> {
    let mut entries = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).expect("read folder") {
            let path = entry.expect("folder entry").path();
            let meta = fs::symlink_metadata(&path).expect("lstat");
            let relative = path.strip_prefix(root).expect("below root");
            let key = relative.as_os_str().as_bytes().to_vec();
            let mode = meta.permissions().mode() & 0o7777;
            let value = if meta.file_type().is_symlink() {
                Entry::Link {
                    target: fs::read_link(&path).expect("read link"),
                }
            } else if meta.is_dir() {
                pending.push(path.clone());
                Entry::Dir { mode }
            } else {
                Entry::File {
                    mode,
                    mtime: meta.mtime(),
                    bytes: fs::read(&path).expect("read file"),
                }
            };
            entries.insert(key, value);
        }
    }
    entries
}

/// Builds a tree with the cases that a restore gets wrong most easily.
fn build_tree(root: &Path) {
    fs::create_dir_all(root.join("records/2026")).expect("mkdir");
    fs::create_dir_all(root.join("empty folder")).expect("mkdir");
    fs::write(root.join("records/2026/lab-results.csv"), plaintext(70_000)).expect("write");
    fs::write(root.join("records/empty.txt"), b"").expect("write");
    fs::write(root.join("Überweisung – März.txt"), plaintext(10)).expect("write");
    fs::write(root.join("-leading dash\nand newline"), plaintext(3)).expect("write");
    let odd = std::ffi::OsStr::from_bytes(b"latin1-\xe9t\xe9.bin");
    fs::write(root.join(odd), plaintext(100)).expect("write");
    symlink("records/2026/lab-results.csv", root.join("latest.csv")).expect("symlink");
    symlink("records", root.join("records-link")).expect("symlink");
    symlink("missing-target", root.join("dangling")).expect("symlink");
    let modes = [
        ("records/2026/lab-results.csv", 0o640),
        ("records/empty.txt", 0o600),
        ("Überweisung – März.txt", 0o755),
    ];
    for (name, mode) in modes {
        fs::set_permissions(root.join(name), fs::Permissions::from_mode(mode)).expect("chmod");
    }
    fs::set_permissions(root.join("empty folder"), fs::Permissions::from_mode(0o700))
        .expect("chmod");
}

/// Every byte of every file below `root`, to search for names that must stay hidden.
fn all_bytes(root: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).expect("read folder") {
            let path = entry.expect("entry").path();
            bytes.extend_from_slice(path.as_os_str().as_bytes());
            if path.is_dir() {
                pending.push(path);
            } else {
                bytes.extend(fs::read(&path).expect("read"));
            }
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test]
async fn folder_round_trips_tree_exactly() {
    let setup = Setup::start().await;
    let source = setup.path("tree");
    let encrypted = setup.path("tree.enc");
    let restored = setup.path("restored");
    build_tree(&source);

    let args = ["--format", "json", "folder", "encrypt", "--key", KEY];
    let report = setup
        .kmsctl_paths(&args, &[&source, &encrypted], b"")
        .json();
    assert_eq!(report["files"], 5);
    assert_eq!(report["encrypted"], 5);
    assert_eq!(report["symlinks"], 3);

    let hidden = all_bytes(&encrypted);
    for name in [
        "lab-results",
        "records",
        "Überweisung",
        "empty folder",
        "latest",
    ] {
        assert!(
            !contains(&hidden, name.as_bytes()),
            "{name:?} appears in the encrypted folder"
        );
    }

    setup
        .kmsctl_paths(&["folder", "verify"], &[&encrypted], b"")
        .ok();
    setup
        .kmsctl_paths(&["folder", "decrypt"], &[&encrypted, &restored], b"")
        .ok();
    assert_eq!(snapshot(&restored), snapshot(&source));
}

#[tokio::test]
async fn folder_second_run_encrypts_only_changes() {
    let setup = Setup::start().await;
    let source = setup.path("tree");
    let encrypted = setup.path("tree.enc");
    build_tree(&source);
    let args = ["--format", "json", "folder", "encrypt", "--key", KEY];
    setup
        .kmsctl_paths(&args, &[&source, &encrypted], b"")
        .json();

    fs::write(source.join("records/empty.txt"), b"no longer empty").expect("write");
    fs::remove_file(source.join("Überweisung – März.txt")).expect("remove");
    let report = setup
        .kmsctl_paths(&args, &[&source, &encrypted], b"")
        .json();
    assert_eq!(report["files"], 4);
    assert_eq!(report["encrypted"], 1);
    assert_eq!(report["unchanged"], 3);
    assert_eq!(report["removed"], 1);

    let restored = setup.path("restored");
    setup
        .kmsctl_paths(&["folder", "decrypt"], &[&encrypted, &restored], b"")
        .ok();
    assert_eq!(snapshot(&restored), snapshot(&source));
}

#[tokio::test]
async fn folder_tampered_blob_is_rejected() {
    let setup = Setup::start().await;
    let source = setup.path("tree");
    let encrypted = setup.path("tree.enc");
    build_tree(&source);
    setup
        .kmsctl_paths(
            &["folder", "encrypt", "--key", KEY],
            &[&source, &encrypted],
            b"",
        )
        .ok();

    // The largest blob contains the 70 000-byte file. Flip one byte in its body.
    let mut blobs: Vec<PathBuf> = Vec::new();
    let mut pending = vec![encrypted.join("blobs")];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).expect("read blobs") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                blobs.push(path);
            }
        }
    }
    let largest = blobs
        .iter()
        .max_by_key(|path| fs::metadata(path).expect("stat").len())
        .expect("at least one blob");
    let mut bytes = fs::read(largest).expect("read blob");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(largest, &bytes).expect("write blob");

    let run = setup.kmsctl_paths(&["folder", "verify"], &[&encrypted], b"");
    assert_eq!(run.status, 1, "{}", run.stderr);
    let restored = setup.path("restored");
    let run = setup.kmsctl_paths(&["folder", "decrypt"], &[&encrypted, &restored], b"");
    assert_eq!(run.status, 1, "{}", run.stderr);
    let left: Vec<_> = fs::read_dir(&restored)
        .map(|entries| entries.collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "a failed restore left {} entries",
        left.len()
    );
}

#[tokio::test]
async fn folder_recovery_key_restores_without_daemon() {
    let setup = Setup::start().await;
    let source = setup.path("tree");
    let encrypted = setup.path("tree.enc");
    let identity = setup.path("recovery.txt");
    build_tree(&source);
    let recipient = setup.recovery_keygen(&identity);
    let args = [
        "folder",
        "encrypt",
        "--key",
        KEY,
        "--recovery-recipient",
        &recipient,
    ];
    setup.kmsctl_paths(&args, &[&source, &encrypted], b"").ok();

    let Setup { daemon, work, .. } = setup;
    assert!(daemon.stop(), "kmsd did not stop cleanly");
    let restored = work.path().join("restored");
    let mut command = offline_kmsctl();
    command
        .args(["folder", "decrypt", "--identity"])
        .arg(&identity)
        .arg(&encrypted)
        .arg(&restored);
    let output = run_with_input(&mut command, b"");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(snapshot(&restored), snapshot(&source));
}
