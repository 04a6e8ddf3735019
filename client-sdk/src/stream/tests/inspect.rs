//! Reading file metadata without a key.

use std::fs;

use super::*;

#[test]
fn inspect_needs_no_key() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("backup.kmsf");
    let plaintext_len = 3 * SMALL_LEN + 7;
    fs::write(&path, encrypt(&pattern(plaintext_len), SMALL)).unwrap();

    let info = inspect_file(&path).unwrap();

    assert_eq!(info.header.version(), 1);
    assert_eq!(
        info.header.algorithm().to_string(),
        "AES-256-GCM, HKDF-SHA256"
    );
    assert_eq!(info.header.segment_size(), SMALL);
    assert_eq!(info.header.context(), &context());
    assert_eq!(info.header.slots(), slots().as_slice());
    assert_eq!(info.encrypted_len, fs::metadata(&path).unwrap().len());
    assert_eq!(info.segments, Some(4));
    assert_eq!(info.plaintext_len, Some(plaintext_len as u64));
}

#[test]
fn inspect_truncated_file_omits_lengths() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("cut.kmsf");
    let file = encrypt(&pattern(SMALL_LEN + 1), SMALL);
    let header_len = read_header(&mut file.as_slice()).unwrap().encoded_len();

    for (kept, segments) in [
        (header_len, None),
        (header_len + 10, None),
        (header_len + 16, Some(1)),
    ] {
        fs::write(&path, &file[..kept]).unwrap();
        let info = inspect_file(&path).unwrap();
        assert_eq!(info.segments, segments, "{kept} bytes");
        assert_eq!(info.plaintext_len, segments.map(|_| 0), "{kept} bytes");
    }

    fs::write(&path, &file[..header_len - 1]).unwrap();
    let err = inspect_file(&path).unwrap_err();
    assert!(matches!(err, Error::TruncatedHeader), "{err:?}");
}
