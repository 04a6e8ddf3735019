//! Altered encrypted folders: every change is rejected by decryption and by verification, and
//! a rejected decryption leaves nothing behind.

use std::fs;
use std::io::Write;

use super::super::manifest::{Entry, Mtime};
use super::*;

/// An encrypted copy of the test tree and the source that has its key.
struct Encrypted {
    work: Workspace,
    source: CountingSource,
}

impl Encrypted {
    async fn new() -> Self {
        let work = Workspace::new();
        build_tree(&work.src());
        let source = CountingSource::default();
        encrypt(&source, &work.src(), &work.enc()).await.unwrap();
        Encrypted { work, source }
    }

    fn blob(&self, path: &[u8]) -> PathBuf {
        let id = blob_id(&self.source, &self.work.enc(), path);
        Store::new(&self.work.enc()).blob_path(id)
    }

    /// Checks that decryption into an absent folder and into an empty folder, and
    /// verification, all fail with an error that `check` accepts, and that nothing is left.
    async fn assert_rejected(&self, check: impl Fn(&Error) -> bool) {
        let absent = self.work.out();
        let error = decrypt_folder(&self.source, &self.work.enc(), &absent, &no_progress)
            .await
            .unwrap_err();
        assert!(check(&error), "decrypt: {error:?}");
        assert!(!absent.exists(), "decrypt left {}", absent.display());
        assert_no_plaintext(&error);

        let empty = self.work.path("empty-out");
        fs::create_dir(&empty).unwrap();
        let error = decrypt_folder(&self.source, &self.work.enc(), &empty, &no_progress)
            .await
            .unwrap_err();
        assert!(check(&error), "decrypt into an empty folder: {error:?}");
        assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
        fs::remove_dir(&empty).unwrap();

        let error = verify_folder(&self.source, &self.work.enc(), &no_progress)
            .await
            .unwrap_err();
        assert!(check(&error), "verify: {error:?}");
    }
}

/// Checks that no message in the error chain contains file contents.
fn assert_no_plaintext(error: &Error) {
    let mut cause: Option<&dyn std::error::Error> = Some(error);
    while let Some(current) = cause {
        let message = current.to_string();
        assert!(!message.contains(CANARY), "{message}");
        cause = current.source();
    }
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    let index = usize::try_from(offset).unwrap();
    bytes[index] ^= 0x01;
    fs::write(path, bytes).unwrap();
}

fn blob_error(error: &Error, expected: impl Fn(&stream::Error) -> bool) -> bool {
    matches!(error, Error::Blob { source, .. } if expected(source))
}

#[tokio::test]
async fn altered_blob_is_rejected() {
    let encrypted = Encrypted::new().await;
    let blob = encrypted.blob(b"large.bin");
    let header = stream::read_header(&mut fs::File::open(&blob).unwrap()).unwrap();
    // A byte inside segment 1, after segment 0 decrypted, so plaintext was written before.
    let offset = header.encoded_len() as u64 + u64::from(SEGMENT) + 16 + 100;
    flip_byte(&blob, offset);

    encrypted
        .assert_rejected(|error| {
            blob_error(error, |source| {
                matches!(source, stream::Error::SegmentAuthFailed { index: 1 })
            })
        })
        .await;
}

#[tokio::test]
async fn altered_blob_header_is_rejected() {
    let encrypted = Encrypted::new().await;
    let blob = encrypted.blob(b"plain.txt");
    // Byte 30 is in the salt, which the commitment covers.
    flip_byte(&blob, 30);
    encrypted
        .assert_rejected(|error| {
            blob_error(error, |source| {
                matches!(source, stream::Error::CommitmentMismatch)
            })
        })
        .await;
}

#[tokio::test]
async fn truncated_blob_is_rejected() {
    let encrypted = Encrypted::new().await;
    let blob = encrypted.blob(b"large.bin");
    let bytes = fs::read(&blob).unwrap();
    // The last segment contains the 7 bytes past three full segments and the canary, plus a tag.
    let last_chunk = 7 + CANARY.len() + 16;
    fs::write(&blob, &bytes[..bytes.len() - last_chunk]).unwrap();
    encrypted
        .assert_rejected(|error| {
            blob_error(error, |source| {
                matches!(
                    source,
                    stream::Error::Truncated {
                        complete_segments: 3
                    }
                )
            })
        })
        .await;
}

#[tokio::test]
async fn swapped_blobs_are_rejected() {
    let encrypted = Encrypted::new().await;
    let first = encrypted.blob(b"plain.txt");
    let second = encrypted.blob(b"bin/run.sh");
    let swap = first.with_extension("swap");
    fs::rename(&first, &swap).unwrap();
    fs::rename(&second, &first).unwrap();
    fs::rename(&swap, &second).unwrap();

    encrypted
        .assert_rejected(|error| matches!(error, Error::BlobMismatch { .. }))
        .await;
}

#[tokio::test]
async fn blob_with_forged_context_is_rejected() {
    // The blob of one entry, with its header context changed to name another entry's id, still
    // fails: the key derived for that id does not pass the commitment.
    let encrypted = Encrypted::new().await;
    let victim = encrypted.blob(b"plain.txt");
    let donor = encrypted.blob(b"bin/run.sh");
    let victim_id = victim.file_name().unwrap().to_str().unwrap().to_owned();
    let donor_id = donor.file_name().unwrap().to_str().unwrap().to_owned();
    let mut bytes = fs::read(&donor).unwrap();
    let at = bytes
        .windows(donor_id.len())
        .position(|window| window == donor_id.as_bytes())
        .unwrap();
    bytes[at..at + victim_id.len()].copy_from_slice(victim_id.as_bytes());
    fs::write(&victim, bytes).unwrap();

    encrypted
        .assert_rejected(|error| {
            blob_error(error, |source| {
                matches!(source, stream::Error::CommitmentMismatch)
            })
        })
        .await;
}

#[tokio::test]
async fn missing_blob_is_rejected() {
    let encrypted = Encrypted::new().await;
    let blob = encrypted.blob(b"dir with spaces/file with spaces.txt");
    fs::remove_file(&blob).unwrap();

    encrypted
        .assert_rejected(|error| match error {
            Error::BlobMissing {
                blob: missing,
                entry,
            } => *missing == blob && *entry == Path::new("dir with spaces/file with spaces.txt"),
            _ => false,
        })
        .await;
}

#[tokio::test]
async fn altered_manifest_is_rejected() {
    let encrypted = Encrypted::new().await;
    let manifest = encrypted.work.enc().join("manifest");
    let len = fs::metadata(&manifest).unwrap().len();
    flip_byte(&manifest, len - 20);

    encrypted
        .assert_rejected(|error| {
            matches!(error, Error::Manifest { source, .. }
                if matches!(**source, stream::Error::SegmentAuthFailed { index: 0 }))
        })
        .await;
}

#[tokio::test]
async fn missing_manifest_is_rejected() {
    let encrypted = Encrypted::new().await;
    fs::remove_file(encrypted.work.enc().join("manifest")).unwrap();
    encrypted
        .assert_rejected(|error| matches!(error, Error::ManifestMissing { .. }))
        .await;
}

/// Writes a manifest with an extra entry under the folder key, as only a holder of the key
/// could, to check that decryption still stays inside its destination.
fn forge_manifest(encrypted: &Encrypted, extra: Entry) {
    let enc = encrypted.work.enc();
    let key = encrypted.source.folder_key(&enc);
    let store = Store::new(&enc);
    let header = store.read_manifest_header().unwrap();
    let mut manifest = store.read_manifest(&key).unwrap();
    manifest.entries.push(extra);
    manifest.entries.sort_by(|a, b| a.path.cmp(&b.path));
    let slots = header.slots().to_vec();
    store
        .write_manifest(&manifest, &key, header.context(), slots, SEGMENT)
        .unwrap();
}

fn symlink_entry(path: &[u8], target: &[u8]) -> Entry {
    Entry {
        path: path.to_vec(),
        mode: 0o777,
        mtime: Mtime { secs: 0, nanos: 0 },
        kind: EntryKind::Symlink {
            target: target.to_vec(),
        },
    }
}

#[tokio::test]
async fn manifest_path_outside_destination_is_rejected() {
    for path in [&b"../escape"[..], b"/tmp/escape", b"bin/../../escape"] {
        let encrypted = Encrypted::new().await;
        forge_manifest(&encrypted, symlink_entry(path, b"target"));

        encrypted
            .assert_rejected(|error| match error {
                Error::UnsafeEntryPath { entry, .. } => entry.as_bytes() == path,
                _ => false,
            })
            .await;
        assert!(!encrypted.work.path("escape").exists());
    }
}

#[tokio::test]
async fn manifest_path_below_symlink_is_rejected() {
    // "link-to-dir" is a symlink in the tree. A file below it would be written through it.
    let encrypted = Encrypted::new().await;
    forge_manifest(
        &encrypted,
        symlink_entry(b"bin/link-to-dir/planted", b"target"),
    );
    encrypted
        .assert_rejected(|error| matches!(error, Error::UnsafeEntryPath { .. }))
        .await;
}

#[tokio::test]
async fn failed_decryption_removes_its_staging_folder() {
    let encrypted = Encrypted::new().await;
    let blob = encrypted.blob(b"readonly/inside.txt");
    let mut file = fs::OpenOptions::new().append(true).open(&blob).unwrap();
    file.write_all(b"appended").unwrap();
    drop(file);

    let empty = encrypted.work.out();
    fs::create_dir(&empty).unwrap();
    let error = decrypt_folder(
        &encrypted.source,
        &encrypted.work.enc(),
        &empty,
        &no_progress,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, Error::Blob { .. }), "{error:?}");
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
}
