//! Whole-file encryption and decryption across threads, checked against the streaming code.

use std::fs;
use std::path::Path;

use super::parallel::{decrypt_file_with, encrypt_file_with};
use super::*;

fn header_and_cipher() -> (Header, key::SegmentCipher) {
    Header::create(&key(), &context(), slots(), options(SMALL)).unwrap()
}

/// Lists the folder, to check that no temporary file is left behind.
fn names_in(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn parallel_encryption_decrypts_with_streaming_reader() {
    let folder = tempfile::tempdir().unwrap();
    let input = folder.path().join("plain");
    let output = folder.path().join("plain.kmsf");
    for len in [
        0,
        1,
        SMALL_LEN,
        SMALL_LEN + 1,
        3 * SMALL_LEN + 7,
        40 * SMALL_LEN + 3,
    ] {
        let plaintext = pattern(len);
        fs::write(&input, &plaintext).unwrap();
        for threads in [1, 2, 3, 64] {
            let (header, cipher) = header_and_cipher();
            encrypt_file_with(&input, &output, &header, &cipher, threads).unwrap();

            let file = fs::read(&output).unwrap();
            assert_eq!(
                decrypt(&file).unwrap(),
                plaintext,
                "{len} bytes, {threads} threads"
            );
        }
    }
}

#[test]
fn streaming_encryption_decrypts_in_parallel() {
    let folder = tempfile::tempdir().unwrap();
    let input = folder.path().join("data.kmsf");
    let output = folder.path().join("data");
    for len in [
        0,
        1,
        SMALL_LEN - 1,
        SMALL_LEN,
        3 * SMALL_LEN + 7,
        40 * SMALL_LEN + 3,
    ] {
        let plaintext = pattern(len);
        fs::write(&input, encrypt(&plaintext, SMALL)).unwrap();
        for threads in [1, 2, 3, 64] {
            let header = decrypt_file_with(&input, &output, &key(), &context(), threads).unwrap();

            assert_eq!(header.segment_size(), SMALL);
            assert_eq!(
                fs::read(&output).unwrap(),
                plaintext,
                "{len} bytes, {threads} threads"
            );
        }
    }
}

#[test]
fn parallel_matches_streaming_encryption() {
    let folder = tempfile::tempdir().unwrap();
    let input = folder.path().join("plain");
    let output = folder.path().join("plain.kmsf");
    let plaintext = pattern(9 * SMALL_LEN + 100);
    fs::write(&input, &plaintext).unwrap();
    let salt = [5; SALT_LEN];
    let prefix = [6; NONCE_PREFIX_LEN];
    let slots = slots();
    let fixed = || {
        Header::create_with(
            &key(),
            &context(),
            slots.clone(),
            options(SMALL),
            salt,
            prefix,
        )
        .unwrap()
    };

    let (header, cipher) = fixed();
    let mut writer = EncryptingWriter::with_header(Vec::new(), header, cipher).unwrap();
    writer.write_all(&plaintext).unwrap();
    let streamed = writer.finish().unwrap();
    for threads in [1, 2, 4, 7] {
        let (header, cipher) = fixed();
        encrypt_file_with(&input, &output, &header, &cipher, threads).unwrap();
        assert_eq!(fs::read(&output).unwrap(), streamed, "{threads} threads");
    }
}

#[test]
fn file_functions_round_trip_default_size() {
    let folder = tempfile::tempdir().unwrap();
    let input = folder.path().join("export.tar");
    let encrypted = folder.path().join("export.tar.kmsf");
    let restored = folder.path().join("restored.tar");
    let plaintext = pattern(5 * DEFAULT_SEGMENT_SIZE as usize + 12345);
    fs::write(&input, &plaintext).unwrap();

    let written = encrypt_file(
        &input,
        &encrypted,
        &key(),
        &context(),
        slots(),
        EncryptOptions::new(),
    )
    .unwrap();
    let read = decrypt_file(&encrypted, &restored, &key(), &context()).unwrap();

    assert_eq!(read, written);
    assert_eq!(fs::read(&restored).unwrap(), plaintext);
    let names = names_in(folder.path());
    assert_eq!(names, ["export.tar", "export.tar.kmsf", "restored.tar"]);
}

#[test]
fn truncated_file_leaves_no_output() {
    let folder = tempfile::tempdir().unwrap();
    let input = folder.path().join("data.kmsf");
    let output = folder.path().join("data");
    let file = encrypt(&pattern(6 * SMALL_LEN + 1), SMALL);
    let (head, segments) = split(&file);

    for kept in 0..segments.len() {
        let mut truncated = head.clone();
        segments[..kept]
            .iter()
            .for_each(|s| truncated.extend_from_slice(s));
        fs::write(&input, &truncated).unwrap();
        for threads in [1, 3] {
            let err = decrypt_file_with(&input, &output, &key(), &context(), threads).unwrap_err();

            assert!(
                matches!(err, Error::Truncated { complete_segments: n } if n == kept as u64),
                "{kept} segments kept, {threads} threads: {err:?}"
            );
            assert!(!output.exists(), "output exists after a failed decrypt");
            assert_eq!(
                names_in(folder.path()),
                ["data.kmsf"],
                "a temporary file is left"
            );
        }
    }
}

#[test]
fn failed_decrypt_keeps_existing_output() {
    let folder = tempfile::tempdir().unwrap();
    let input = folder.path().join("data.kmsf");
    let output = folder.path().join("data");
    fs::write(&input, encrypt(&pattern(100), SMALL)).unwrap();
    fs::write(&output, b"earlier restore").unwrap();

    let err = decrypt_file(&input, &output, &other_key(), &context()).unwrap_err();
    assert!(matches!(err, Error::CommitmentMismatch), "{err:?}");
    assert_eq!(fs::read(&output).unwrap(), b"earlier restore");

    let (head, mut segments) = split(&encrypt(&pattern(5 * SMALL_LEN), SMALL));
    segments[4][3] ^= 1;
    fs::write(&input, join(&head, &segments.iter().collect::<Vec<_>>())).unwrap();
    let err = decrypt_file(&input, &output, &key(), &context()).unwrap_err();
    assert!(
        matches!(err, Error::SegmentAuthFailed { index: 4 }),
        "{err:?}"
    );
    assert_eq!(fs::read(&output).unwrap(), b"earlier restore");
    assert_eq!(
        names_in(folder.path()),
        ["data", "data.kmsf"],
        "a temporary file is left"
    );
}

#[test]
fn wrong_context_leaves_no_output() {
    let folder = tempfile::tempdir().unwrap();
    let input = folder.path().join("data.kmsf");
    let output = folder.path().join("data");
    fs::write(&input, encrypt(&pattern(100), SMALL)).unwrap();

    let err = decrypt_file(&input, &output, &key(), &Context::new()).unwrap_err();

    assert!(matches!(err, Error::ContextMismatch), "{err:?}");
    assert_eq!(names_in(folder.path()), ["data.kmsf"]);
}

#[test]
fn parallel_decrypt_reports_lowest_failing_segment() {
    let folder = tempfile::tempdir().unwrap();
    let input = folder.path().join("data.kmsf");
    let output = folder.path().join("data");
    let file = encrypt(&pattern(20 * SMALL_LEN), SMALL);
    let (head, mut segments) = split(&file);
    segments[5][0] ^= 1;
    segments[17][0] ^= 1;
    let mut altered = head.clone();
    segments.iter().for_each(|s| altered.extend_from_slice(s));
    fs::write(&input, &altered).unwrap();

    for threads in [1, 2, 3, 8] {
        let err = decrypt_file_with(&input, &output, &key(), &context(), threads).unwrap_err();
        assert!(
            matches!(err, Error::SegmentAuthFailed { index: 5 }),
            "{threads}: {err:?}"
        );
        assert!(!output.exists());
    }
}

#[test]
fn missing_input_names_the_path() {
    let folder = tempfile::tempdir().unwrap();
    let missing = folder.path().join("missing");
    let err = decrypt_file(&missing, &folder.path().join("out"), &key(), &context()).unwrap_err();

    assert!(matches!(err, Error::File { action: "open", .. }), "{err:?}");
    assert!(err.to_string().contains("missing"), "{err}");
}
