//! Later runs into the same destination: what is encrypted again, what is kept and removed,
//! and how many `kmsd` calls each run makes.

use std::fs;

use super::super::blob::{Blobs, Snapshot};
use super::super::keys::BlobKeyRoot;
use super::super::manifest::Mtime;
use super::super::task::Progress;
use super::*;

#[tokio::test]
async fn rerun_generates_no_new_key() {
    let work = Workspace::new();
    build_tree(&work.src());
    let source = CountingSource::default();

    encrypt(&source, &work.src(), &work.enc()).await.unwrap();
    assert_eq!(source.generated(), 1);
    assert_eq!(source.decrypted(), 0);
    let blobs = blob_files(&work.enc());

    let report = encrypt(&source, &work.src(), &work.enc()).await.unwrap();
    assert_eq!(source.generated(), 1);
    assert_eq!(source.decrypted(), 1);
    let expected = FolderReport {
        files: 11,
        unchanged: 11,
        directories: 10,
        symlinks: 4,
        ..FolderReport::default()
    };
    assert_eq!(report, expected);
    assert_eq!(blob_files(&work.enc()), blobs);
}

#[tokio::test]
async fn only_changed_file_is_reencrypted() {
    let work = Workspace::new();
    build_tree(&work.src());
    let source = CountingSource::default();
    encrypt(&source, &work.src(), &work.enc()).await.unwrap();
    let old_id = blob_id(&source, &work.enc(), b"plain.txt");
    let others: Vec<_> = blob_files(&work.enc())
        .into_iter()
        .filter(|blob| !blob.ends_with(old_id.to_hex()))
        .collect();

    fs::write(work.src().join("plain.txt"), b"synthetic update").unwrap();
    let report = encrypt(&source, &work.src(), &work.enc()).await.unwrap();
    assert_eq!(report.encrypted, 1);
    assert_eq!(report.unchanged, 10);
    assert_eq!(report.removed, 0);
    assert_eq!(report.bytes, 16);
    assert_eq!(source.generated(), 1);

    let new_id = blob_id(&source, &work.enc(), b"plain.txt");
    assert_ne!(new_id, old_id);
    let store = Store::new(&work.enc());
    assert!(!store.blob_path(old_id).exists(), "the old blob stays");
    assert!(store.blob_path(new_id).is_file());
    let mut expected = others;
    expected.push(store.blob_path(new_id));
    expected.sort();
    assert_eq!(blob_files(&work.enc()), expected);

    decrypt_folder(&source, &work.enc(), &work.out(), &no_progress)
        .await
        .unwrap();
    assert_eq!(list_tree(&work.out()), list_tree(&work.src()));
}

/// A named change to a source file.
type Change = (&'static str, fn(&Path));

#[tokio::test]
async fn each_metadata_change_triggers_encryption() {
    let changes: [Change; 4] = [
        ("mode", |file| set_mode(file, 0o604)),
        ("mtime", |file| set_mtime(file, 1_600_000_001, 0)),
        ("size", |file| {
            let mut data = fs::read(file).unwrap();
            data.push(b'!');
            fs::write(file, data).unwrap();
        }),
        ("inode", |file| {
            // A copy renamed over the file keeps size, mode and mtime but not the inode.
            let copy = file.with_extension("copy");
            fs::copy(file, &copy).unwrap();
            let metadata = fs::metadata(file).unwrap();
            set_mtime(&copy, metadata.mtime(), metadata.mtime_nsec());
            fs::rename(&copy, file).unwrap();
        }),
    ];
    for (change, apply) in changes {
        let work = Workspace::new();
        build_tree(&work.src());
        let source = CountingSource::default();
        encrypt(&source, &work.src(), &work.enc()).await.unwrap();

        apply(&work.src().join("plain.txt"));
        let report = encrypt(&source, &work.src(), &work.enc()).await.unwrap();
        assert_eq!(report.encrypted, 1, "{change}");
        assert_eq!(report.unchanged, 10, "{change}");
        decrypt_folder(&source, &work.enc(), &work.out(), &no_progress)
            .await
            .unwrap();
        assert_eq!(list_tree(&work.out()), list_tree(&work.src()), "{change}");
    }
}

#[tokio::test]
async fn removed_file_blob_is_deleted() {
    let work = Workspace::new();
    build_tree(&work.src());
    let source = CountingSource::default();
    encrypt(&source, &work.src(), &work.enc()).await.unwrap();
    let removed = blob_id(&source, &work.enc(), b"bin/run.sh");

    fs::remove_file(work.src().join("bin/run.sh")).unwrap();
    let report = encrypt(&source, &work.src(), &work.enc()).await.unwrap();
    assert_eq!(report.files, 10);
    assert_eq!(report.removed, 1);
    assert_eq!(report.unchanged, 10);
    assert_eq!(report.encrypted, 0);
    assert!(!Store::new(&work.enc()).blob_path(removed).exists());
    assert_eq!(blob_files(&work.enc()).len(), 10);

    decrypt_folder(&source, &work.enc(), &work.out(), &no_progress)
        .await
        .unwrap();
    assert_eq!(list_tree(&work.out()), list_tree(&work.src()));
}

#[tokio::test]
async fn file_replaced_by_folder_round_trips() {
    let work = Workspace::new();
    build_tree(&work.src());
    let source = CountingSource::default();
    encrypt(&source, &work.src(), &work.enc()).await.unwrap();

    fs::remove_file(work.src().join("empty")).unwrap();
    fs::create_dir(work.src().join("empty")).unwrap();
    let report = encrypt(&source, &work.src(), &work.enc()).await.unwrap();
    assert_eq!(report.removed, 1);
    assert_eq!(report.directories, 11);
    assert!(lists_dir(&manifest_of(&source, &work.enc()), b"empty"));
    decrypt_folder(&source, &work.enc(), &work.out(), &no_progress)
        .await
        .unwrap();
    assert_eq!(list_tree(&work.out()), list_tree(&work.src()));
}

#[tokio::test]
async fn missing_blob_is_encrypted_again() {
    let work = Workspace::new();
    build_tree(&work.src());
    let source = CountingSource::default();
    encrypt(&source, &work.src(), &work.enc()).await.unwrap();
    let lost = blob_id(&source, &work.enc(), b"large.bin");
    fs::remove_file(Store::new(&work.enc()).blob_path(lost)).unwrap();

    let report = encrypt(&source, &work.src(), &work.enc()).await.unwrap();
    assert_eq!(report.encrypted, 1);
    verify_folder(&source, &work.enc(), &no_progress)
        .await
        .unwrap();
}

#[tokio::test]
async fn leftovers_of_a_crash_are_removed() {
    let work = Workspace::new();
    build_tree(&work.src());
    let source = CountingSource::default();
    encrypt(&source, &work.src(), &work.enc()).await.unwrap();
    let blobs = blob_files(&work.enc());

    // What a crash leaves: a half-written blob, a complete blob that no manifest lists, and a
    // half-written manifest.
    let subfolder = work.enc().join("blobs").join("ab");
    fs::create_dir_all(&subfolder).unwrap();
    let temp_blob = subfolder.join(".abcdef.tmp");
    let orphan = subfolder.join("ab".repeat(16));
    let temp_manifest = work.enc().join(".manifest.xyz.tmp");
    for leftover in [&temp_blob, &orphan, &temp_manifest] {
        fs::write(leftover, b"synthetic leftover").unwrap();
    }

    encrypt(&source, &work.src(), &work.enc()).await.unwrap();
    assert!(!temp_blob.exists());
    assert!(!orphan.exists());
    assert!(!temp_manifest.exists());
    assert_eq!(blob_files(&work.enc()), blobs);
}

#[tokio::test]
async fn changed_context_is_rejected() {
    let work = Workspace::new();
    build_tree(&work.src());
    let source = CountingSource::default();
    encrypt(&source, &work.src(), &work.enc()).await.unwrap();
    let manifest = fs::read(work.enc().join("manifest")).unwrap();

    let other = FolderOptions::new(KEY_NAME, Context::new()).with_segment_size(SEGMENT);
    let error = encrypt_folder(&source, &work.src(), &work.enc(), &other, &no_progress)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::ContextChanged { .. }), "{error:?}");
    assert_eq!(source.decrypted(), 0);
    assert_eq!(fs::read(work.enc().join("manifest")).unwrap(), manifest);
}

#[tokio::test]
async fn changed_key_name_is_rejected() {
    let work = Workspace::new();
    build_tree(&work.src());
    let source = CountingSource::default();
    encrypt(&source, &work.src(), &work.enc()).await.unwrap();

    let other = FolderOptions::new("other-key", context()).with_segment_size(SEGMENT);
    let error = encrypt_folder(&source, &work.src(), &work.enc(), &other, &no_progress)
        .await
        .unwrap_err();
    match error {
        Error::KeyNameChanged {
            stored, requested, ..
        } => {
            assert_eq!(stored, KEY_NAME);
            assert_eq!(requested, "other-key");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(source.generated(), 1);
}

#[tokio::test]
async fn rerun_keeps_recovery_slot() {
    let work = Workspace::new();
    build_tree(&work.src());
    let source = CountingSource::default();
    let with_recovery = options().with_recovery(recipient());
    encrypt_folder(
        &source,
        &work.src(),
        &work.enc(),
        &with_recovery,
        &no_progress,
    )
    .await
    .unwrap();

    fs::write(work.src().join("plain.txt"), b"synthetic update").unwrap();
    encrypt(&source, &work.src(), &work.enc()).await.unwrap();
    decrypt_folder_with_identity(&[identity()], &work.enc(), &work.out(), &no_progress)
        .await
        .unwrap();
    assert_eq!(list_tree(&work.out()), list_tree(&work.src()));
}

#[tokio::test]
async fn concurrent_run_is_rejected_while_locked() {
    let work = Workspace::new();
    build_tree(&work.src());
    let source = CountingSource::default();
    encrypt(&source, &work.src(), &work.enc()).await.unwrap();

    let lock = Store::new(&work.enc()).lock().unwrap();
    let error = encrypt(&source, &work.src(), &work.enc())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::FolderBusy { .. }), "{error:?}");
    drop(lock);
    encrypt(&source, &work.src(), &work.enc()).await.unwrap();
}

#[test]
fn file_changed_after_scan_is_rejected() {
    let work = Workspace::new();
    build_tree(&work.src());
    let file = work.src().join("plain.txt");
    let metadata = fs::symlink_metadata(&file).unwrap();
    let snapshot = Snapshot {
        size: metadata.len(),
        inode: metadata.ino(),
        mtime: Mtime {
            secs: metadata.mtime(),
            nanos: u32::try_from(metadata.mtime_nsec()).unwrap(),
        },
    };
    fs::write(&file, b"synthetic text written after the scan").unwrap();

    fs::create_dir(work.enc()).unwrap();
    let store = Store::new(&work.enc());
    let root = BlobKeyRoot::generate().unwrap();
    let blobs = Blobs {
        store: &store,
        root: &root,
    };
    let id = FileId::random().unwrap();
    let (sender, _receiver) = tokio::sync::mpsc::unbounded_channel();
    let progress = Progress::new(sender);
    let mut buffer = vec![0; 4096];
    let options = stream::EncryptOptions::new();
    let error = blobs
        .encrypt(id, &file, snapshot, options, &mut buffer, &progress)
        .unwrap_err();
    match error {
        Error::InputChanged { path } => assert_eq!(path, file),
        other => panic!("{other:?}"),
    }
    assert!(
        !store.blobs_path().exists(),
        "the change is caught before a blob is started"
    );
}
