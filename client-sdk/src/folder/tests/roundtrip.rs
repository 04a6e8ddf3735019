//! Round trips: the restored tree equals the source under lstat, and nothing leaks by name.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use super::*;

/// Bytes of the regular files of [`build_tree`].
fn tree_bytes() -> u64 {
    let canary = CANARY.len() as u64;
    [100, 40, 10, 1, 2, 33, 5, 7, 3 * SEGMENT as u64 + 7, 3]
        .iter()
        .map(|len| len + canary)
        .sum()
}

#[tokio::test]
async fn round_trip_restores_tree_exactly() {
    let work = Workspace::new();
    build_tree(&work.src());
    let before = list_tree(&work.src());
    let source = CountingSource::default();

    let report = encrypt(&source, &work.src(), &work.enc()).await.unwrap();
    let mut expected = FolderReport {
        files: 11,
        encrypted: 11,
        bytes: tree_bytes(),
        directories: 10,
        symlinks: 4,
        ..FolderReport::default()
    };
    assert_eq!(report, expected);
    assert_eq!(list_tree(&work.src()), before, "the source changed");

    let restored = decrypt_folder(&source, &work.enc(), &work.out(), &no_progress)
        .await
        .unwrap();
    expected.encrypted = 0;
    assert_eq!(restored, expected);
    let after = list_tree(&work.out());
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (path, listed) in &before {
        assert_eq!(&after[path], listed, "{:?}", String::from_utf8_lossy(path));
    }
}

#[tokio::test]
async fn encrypted_folder_hides_names_and_contents() {
    let work = Workspace::new();
    build_tree(&work.src());
    let source = CountingSource::default();
    encrypt(&source, &work.src(), &work.enc()).await.unwrap();

    let mut top: Vec<_> = fs::read_dir(work.enc())
        .unwrap()
        .map(|item| item.unwrap().file_name())
        .collect();
    top.sort();
    assert_eq!(top, ["blobs", "manifest"]);

    // Every name and every byte of the encrypted folder, in one haystack.
    let mut haystack = Vec::new();
    let blobs = blob_files(&work.enc());
    assert_eq!(blobs.len(), 11);
    for blob in &blobs {
        let name = blob.file_name().unwrap().to_str().unwrap();
        let subfolder = blob.parent().unwrap().file_name().unwrap();
        assert!(FileId::parse_hex(name).is_some(), "{name}");
        assert_eq!(subfolder.as_bytes(), &name.as_bytes()[..2]);
        haystack.extend_from_slice(name.as_bytes());
        haystack.extend_from_slice(&fs::read(blob).unwrap());
    }
    haystack.extend_from_slice(&fs::read(work.enc().join("manifest")).unwrap());
    for name in hidden_names() {
        let found = haystack.windows(name.len()).any(|window| window == name);
        assert!(
            !found,
            "{:?} shows in the encrypted folder",
            String::from_utf8_lossy(&name)
        );
    }
}

#[tokio::test]
async fn recovery_identity_decrypts_without_kms() {
    let work = Workspace::new();
    build_tree(&work.src());
    let before = list_tree(&work.src());
    let source = CountingSource::default();
    let options = options().with_recovery(recipient());
    encrypt_folder(&source, &work.src(), &work.enc(), &options, &no_progress)
        .await
        .unwrap();

    let report =
        decrypt_folder_with_identity(&[identity()], &work.enc(), &work.out(), &no_progress)
            .await
            .unwrap();
    assert_eq!(report.files, 11);
    assert_eq!(list_tree(&work.out()), before);
    assert_eq!(source.decrypted(), 0);
    assert_eq!(source.generated(), 1);

    // The kmsd slot still works next to the recovery slot.
    let again = work.path("again");
    decrypt_folder(&source, &work.enc(), &again, &no_progress)
        .await
        .unwrap();
    assert_eq!(list_tree(&again), before);
}

#[tokio::test]
async fn identity_is_rejected_without_recovery_slot() {
    let work = Workspace::new();
    build_tree(&work.src());
    let source = CountingSource::default();
    encrypt(&source, &work.src(), &work.enc()).await.unwrap();

    let error = decrypt_folder_with_identity(&[identity()], &work.enc(), &work.out(), &no_progress)
        .await
        .unwrap_err();
    let Error::Recovery { source, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(
        matches!(**source, stream::Error::NoRecoverySlot),
        "{source:?}"
    );
    assert!(!work.out().exists());
}

#[tokio::test]
async fn wrong_identity_is_rejected() {
    let work = Workspace::new();
    build_tree(&work.src());
    let source = CountingSource::default();
    let options = options().with_recovery(recipient());
    encrypt_folder(&source, &work.src(), &work.enc(), &options, &no_progress)
        .await
        .unwrap();

    let other = RecoveryIdentity::generate();
    let error = decrypt_folder_with_identity(&[other], &work.enc(), &work.out(), &no_progress)
        .await
        .unwrap_err();
    let Error::Recovery { source, .. } = &error else {
        panic!("{error:?}");
    };
    let recipients = vec![RECIPIENT.to_owned()];
    let stream::Error::NoMatchingIdentity { recipients: found } = &**source else {
        panic!("{source:?}");
    };
    assert_eq!(*found, recipients);
    assert!(!work.out().exists());
}

#[tokio::test]
async fn decrypt_fills_existing_empty_folder() {
    let work = Workspace::new();
    build_tree(&work.src());
    let before = list_tree(&work.src());
    let source = CountingSource::default();
    encrypt(&source, &work.src(), &work.enc()).await.unwrap();

    fs::create_dir(work.out()).unwrap();
    set_mode(&work.out(), 0o700);
    decrypt_folder(&source, &work.enc(), &work.out(), &no_progress)
        .await
        .unwrap();
    assert_eq!(list_tree(&work.out()), before);
}

#[tokio::test]
async fn decrypt_rejects_non_empty_destination() {
    let work = Workspace::new();
    build_tree(&work.src());
    let source = CountingSource::default();
    encrypt(&source, &work.src(), &work.enc()).await.unwrap();

    fs::create_dir(work.out()).unwrap();
    fs::write(work.out().join("keep.txt"), b"kept").unwrap();
    let error = decrypt_folder(&source, &work.enc(), &work.out(), &no_progress)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::DestinationNotEmpty { .. }),
        "{error:?}"
    );
    let names: Vec<_> = fs::read_dir(work.out()).unwrap().collect();
    assert_eq!(names.len(), 1);
    assert_eq!(fs::read(work.out().join("keep.txt")).unwrap(), b"kept");
    assert_eq!(
        source.decrypted(),
        0,
        "the destination is checked before kmsd is called"
    );
}

#[tokio::test]
async fn empty_folder_round_trips() {
    let work = Workspace::new();
    fs::create_dir(work.src()).unwrap();
    set_mode(&work.src(), 0o711);
    set_mtime(&work.src(), 1_234_567_890, 42);
    let before = list_tree(&work.src());
    let source = CountingSource::default();

    let report = encrypt(&source, &work.src(), &work.enc()).await.unwrap();
    assert_eq!(report, FolderReport::default());
    verify_folder(&source, &work.enc(), &no_progress)
        .await
        .unwrap();
    decrypt_folder(&source, &work.enc(), &work.out(), &no_progress)
        .await
        .unwrap();
    assert_eq!(list_tree(&work.out()), before);
}

#[tokio::test]
async fn progress_adds_up_to_bytes() {
    let work = Workspace::new();
    build_tree(&work.src());
    let source = CountingSource::default();

    let encrypted = ProgressSum::default();
    let report = encrypt_folder(&source, &work.src(), &work.enc(), &options(), &|bytes| {
        encrypted.add(bytes)
    })
    .await
    .unwrap();
    assert_eq!(encrypted.total(), tree_bytes());
    assert_eq!(report.bytes, tree_bytes());

    let verified = ProgressSum::default();
    let report = verify_folder(&source, &work.enc(), &|bytes| verified.add(bytes))
        .await
        .unwrap();
    assert_eq!(verified.total(), tree_bytes());
    assert_eq!(report.bytes, tree_bytes());

    let decrypted = ProgressSum::default();
    decrypt_folder(&source, &work.enc(), &work.out(), &|bytes| {
        decrypted.add(bytes)
    })
    .await
    .unwrap();
    assert_eq!(decrypted.total(), tree_bytes());
}

#[tokio::test]
async fn verify_accepts_intact_folder() {
    let work = Workspace::new();
    build_tree(&work.src());
    let source = CountingSource::default();
    encrypt(&source, &work.src(), &work.enc()).await.unwrap();
    let before = list_tree(&work.enc());

    let report = verify_folder(&source, &work.enc(), &no_progress)
        .await
        .unwrap();
    assert_eq!(report.files, 11);
    assert_eq!(report.directories, 10);
    assert_eq!(report.symlinks, 4);
    assert_eq!(report.bytes, tree_bytes());
    assert_eq!(list_tree(&work.enc()), before);
    assert_eq!(source.decrypted(), 1);
}

#[tokio::test]
async fn encrypt_rejects_overlapping_folders() {
    let work = Workspace::new();
    build_tree(&work.src());
    let source = CountingSource::default();

    let inside = work.src().join("empty-dir").join("enc");
    let error = encrypt(&source, &work.src(), &inside).await.unwrap_err();
    assert!(matches!(error, Error::FoldersOverlap { .. }), "{error:?}");
    assert!(!inside.exists());

    let error = encrypt(&source, &work.src(), &work.src())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::FoldersOverlap { .. }), "{error:?}");
    assert_eq!(source.generated(), 0);
}

#[tokio::test]
async fn encrypt_rejects_fifo() {
    let work = Workspace::new();
    build_tree(&work.src());
    let fifo = work.src().join("bin").join("pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let source = CountingSource::default();

    let error = encrypt(&source, &work.src(), &work.enc())
        .await
        .unwrap_err();
    match error {
        Error::UnsupportedFileType { path, kind } => {
            assert_eq!(path, fifo);
            assert_eq!(kind, "FIFO");
        }
        other => panic!("{other:?}"),
    }
    assert!(!work.enc().join("manifest").exists());
}

#[tokio::test]
async fn encrypt_rejects_foreign_destination() {
    let work = Workspace::new();
    build_tree(&work.src());
    fs::create_dir(work.enc()).unwrap();
    fs::write(work.enc().join("notes.txt"), b"synthetic notes").unwrap();
    let source = CountingSource::default();

    let error = encrypt(&source, &work.src(), &work.enc())
        .await
        .unwrap_err();
    match error {
        Error::ForeignDestination { found, .. } => assert_eq!(found, work.enc().join("notes.txt")),
        other => panic!("{other:?}"),
    }
    assert_eq!(source.generated(), 0);
    assert_eq!(fs::read_dir(work.enc()).unwrap().count(), 1);
}

#[tokio::test]
async fn encrypt_rejects_invalid_options() {
    let work = Workspace::new();
    build_tree(&work.src());
    let source = CountingSource::default();

    let small = options().with_segment_size(1024);
    let error = encrypt_folder(&source, &work.src(), &work.enc(), &small, &no_progress)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::InvalidOption {
                name: "segment_size",
                ..
            }
        ),
        "{error:?}"
    );
    let unnamed = FolderOptions::new("", context());
    let error = encrypt_folder(&source, &work.src(), &work.enc(), &unnamed, &no_progress)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::InvalidOption {
                name: "key_name",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!work.enc().exists());
}

#[tokio::test]
async fn restored_root_keeps_its_mode_and_mtime() {
    let work = Workspace::new();
    build_tree(&work.src());
    let source = CountingSource::default();
    encrypt(&source, &work.src(), &work.enc()).await.unwrap();
    decrypt_folder(&source, &work.enc(), &work.out(), &no_progress)
        .await
        .unwrap();

    let metadata = fs::symlink_metadata(work.out()).unwrap();
    assert_eq!(metadata.mode() & 0o7777, 0o750);
    assert_eq!(metadata.mtime(), 1_500_000_000);
    assert_eq!(metadata.mtime_nsec(), 1);
}

#[tokio::test]
async fn blob_size_has_fixed_overhead() {
    let work = Workspace::new();
    build_tree(&work.src());
    let source = CountingSource::default();
    encrypt(&source, &work.src(), &work.enc()).await.unwrap();
    let store = Store::new(&work.enc());

    // 239 header bytes, then the plaintext and a 16-byte tag per segment.
    let canary = CANARY.len() as u64;
    let cases: [(&[u8], u64, u64); 3] = [
        (b"empty", 0, 1),
        (b"plain.txt", 100 + canary, 1),
        (b"large.bin", 3 * u64::from(SEGMENT) + 7 + canary, 4),
    ];
    for (path, plaintext, segments) in cases {
        let blob = store.blob_path(blob_id(&source, &work.enc(), path));
        let len = fs::metadata(&blob).unwrap().len();
        assert_eq!(
            len,
            239 + plaintext + 16 * segments,
            "{}",
            String::from_utf8_lossy(path)
        );
    }
}
