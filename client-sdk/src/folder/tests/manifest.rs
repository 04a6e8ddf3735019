//! The manifest encoding, its checks, and the file key derivation, against known-answer vectors
//! computed with Python's `struct`, `hmac` and `hashlib` rather than with this code.

use super::super::keys::{BLOB_ROOT_LEN, BlobKeyRoot, FileId};
use super::super::manifest::{Entry, EntryKind, FileMeta, Malformed, Manifest, Mtime};

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn root_key() -> BlobKeyRoot {
    let bytes: [u8; BLOB_ROOT_LEN] = std::array::from_fn(|i| i as u8);
    BlobKeyRoot::from_bytes(&bytes)
}

fn id() -> FileId {
    FileId::from_bytes(std::array::from_fn(|i| 0xa0 + i as u8))
}

fn entry(path: &[u8], mode: u32, secs: i64, nanos: u32, kind: EntryKind) -> Entry {
    Entry {
        path: path.to_vec(),
        mode,
        mtime: Mtime { secs, nanos },
        kind,
    }
}

/// Builds the example of docs/folder-format.md: a folder, a file in it, and a symlink to the
/// file.
fn example() -> Manifest {
    let file = FileMeta {
        size: 3,
        inode: 42,
        id: id(),
    };
    let target = b"d/f".to_vec();
    Manifest {
        blob_root: root_key(),
        root_mode: 0o755,
        root_mtime: Mtime {
            secs: 1_700_000_000,
            nanos: 5,
        },
        entries: vec![
            entry(b"d", 0o750, 1_700_000_001, 0, EntryKind::Dir),
            entry(
                b"d/f",
                0o640,
                1_700_000_002,
                123_456_789,
                EntryKind::File(file),
            ),
            entry(b"l", 0o777, -1, 500_000_000, EntryKind::Symlink { target }),
        ],
    }
}

const EXAMPLE_HEX: &str = "
    4b4d534d 01 01
    000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
    000001ed 000000006553f100 00000005
    0000000000000003
    01 00000001 64 000001e8 000000006553f101 00000000
    02 00000003 642f66 000001a0 000000006553f102 075bcd15
       0000000000000003 000000000000002a a0a1a2a3a4a5a6a7a8a9aaabacadaeaf
    03 00000001 6c 000001ff ffffffffffffffff 1dcd6500 00000003 642f66
";

#[test]
fn manifest_encodes_to_known_bytes() {
    let encoded = example().encode();
    assert_eq!(encoded.len(), 169);
    assert_eq!(*encoded, hex(EXAMPLE_HEX));
}

#[test]
fn manifest_decodes_what_it_encodes() {
    let decoded = Manifest::decode(&hex(EXAMPLE_HEX)).unwrap();
    let expected = example();
    assert_eq!(decoded.entries, expected.entries);
    assert_eq!(decoded.root_mode, expected.root_mode);
    assert_eq!(decoded.root_mtime, expected.root_mtime);
    assert_eq!(decoded.blob_root.expose(), expected.blob_root.expose());
}

#[test]
fn file_key_derivation_matches_known_answer() {
    // HKDF-SHA256(salt = empty, input = root, info = "kms-folder-v1 file" || id), 32 bytes.
    let derived = hex("16d35df1650cfe2ef8bfc5cf226736b06c46b45dc39692627e136351ffa23fd9");
    let key = root_key().file_key(&id());
    let expected = crate::stream::FileKey::from_slice(&derived).unwrap();
    // FileKey shows no bytes, so the keys are compared by what they encrypt.
    let context = crate::Context::new();
    let options = crate::stream::EncryptOptions::new();
    let mut writer =
        crate::stream::EncryptingWriter::new(Vec::new(), &key, &context, vec![], options).unwrap();
    std::io::Write::write_all(&mut writer, b"synthetic").unwrap();
    let file = writer.finish().unwrap();
    let reader = crate::stream::DecryptingReader::open(file.as_slice(), &expected, &context);
    assert!(
        reader.is_ok(),
        "the derived key differs from the known answer"
    );
}

#[test]
fn file_id_hex_round_trips() {
    assert_eq!(id().to_hex(), "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf");
    assert_eq!(FileId::parse_hex(&id().to_hex()), Some(id()));
    assert_eq!(FileId::parse_hex("A0A1A2A3A4A5A6A7A8A9AAABACADAEAF"), None);
    assert_eq!(FileId::parse_hex("a0a1"), None);
    assert_eq!(FileId::parse_hex("g0a1a2a3a4a5a6a7a8a9aaabacadaeaf"), None);
}

fn with_entries(entries: Vec<Entry>) -> Vec<u8> {
    let mut manifest = example();
    manifest.entries = entries;
    manifest.encode().to_vec()
}

fn file(path: &[u8], id_byte: u8) -> Entry {
    let meta = FileMeta {
        size: 1,
        inode: 1,
        id: FileId::from_bytes([id_byte; 16]),
    };
    entry(path, 0o600, 0, 0, EntryKind::File(meta))
}

fn dir(path: &[u8]) -> Entry {
    entry(path, 0o700, 0, 0, EntryKind::Dir)
}

fn link(path: &[u8], target: &[u8]) -> Entry {
    let target = target.to_vec();
    entry(path, 0o777, 0, 0, EntryKind::Symlink { target })
}

#[test]
fn manifest_rejects_escaping_paths() {
    let cases: Vec<(&str, Vec<Entry>, &[u8])> = vec![
        (
            "parent component",
            vec![file(b"../escape", 1)],
            b"../escape",
        ),
        (
            "parent component inside",
            vec![dir(b"a"), file(b"a/../../escape", 1)],
            b"a/../../escape",
        ),
        ("absolute", vec![file(b"/etc/passwd", 1)], b"/etc/passwd"),
        ("current component", vec![file(b"./f", 1)], b"./f"),
        (
            "empty component",
            vec![dir(b"a"), file(b"a//f", 1)],
            b"a//f",
        ),
        ("trailing slash", vec![dir(b"a/")], b"a/"),
        ("empty path", vec![file(b"", 1)], b""),
        ("NUL byte", vec![file(b"f\0g", 1)], b"f\0g"),
        (
            "below a symlink",
            vec![link(b"a", b"/etc"), file(b"a/passwd", 1)],
            b"a/passwd",
        ),
        ("below a file", vec![file(b"a", 1), file(b"a/b", 2)], b"a/b"),
        ("parent not listed", vec![file(b"a/b", 1)], b"a/b"),
        ("long component", vec![file(&[b'n'; 256], 1)], &[b'n'; 256]),
    ];
    for (case, entries, path) in cases {
        let error = Manifest::decode(&with_entries(entries)).unwrap_err();
        assert_eq!(
            error.unsafe_path.as_deref(),
            Some(path),
            "{case}: {error:?}"
        );
    }
}

#[test]
fn manifest_rejects_malformed_entries() {
    let mut bad_mode = vec![file(b"f", 1)];
    bad_mode[0].mode = 0o10000;
    let mut bad_nanos = vec![file(b"f", 1)];
    bad_nanos[0].mtime.nanos = 1_000_000_000;
    let cases: Vec<(&str, Vec<Entry>, &str)> = vec![
        (
            "unsorted",
            vec![file(b"b", 1), file(b"a", 2)],
            "entries are not in strictly ascending path order",
        ),
        (
            "duplicate path",
            vec![file(b"a", 1), file(b"a", 2)],
            "entries are not in strictly ascending path order",
        ),
        (
            "shared id",
            vec![file(b"a", 1), file(b"b", 1)],
            "two files share one file id",
        ),
        ("mode", bad_mode, "a mode has bits outside 0o7777"),
        (
            "nanoseconds",
            bad_nanos,
            "a modification time has 10^9 nanoseconds or more",
        ),
        (
            "empty target",
            vec![link(b"l", b"")],
            "a symlink target is empty, longer than 4095 bytes or contains a NUL byte",
        ),
    ];
    for (case, entries, reason) in cases {
        let error = Manifest::decode(&with_entries(entries)).unwrap_err();
        let expected = Malformed {
            reason,
            unsafe_path: None,
        };
        assert_eq!(error, expected, "{case}");
    }
}

#[test]
fn manifest_rejects_malformed_framing() {
    let good = hex(EXAMPLE_HEX);
    let reason = |bytes: &[u8]| Manifest::decode(bytes).unwrap_err().reason;

    let mut magic = good.clone();
    magic[0] = b'X';
    assert_eq!(reason(&magic), "the plaintext does not start with KMSM");

    let mut version = good.clone();
    version[4] = 2;
    assert_eq!(
        reason(&version),
        "unsupported manifest version, a newer SDK may read it"
    );

    let mut layout = good.clone();
    layout[5] = 2;
    assert_eq!(
        reason(&layout),
        "unknown blob layout, a newer SDK may read it"
    );

    let mut count = good.clone();
    count[57] = 0x10;
    assert_eq!(
        reason(&count),
        "the entry count exceeds what the manifest length can contain"
    );

    let mut kind = good.clone();
    kind[62] = 9;
    assert_eq!(reason(&kind), "an entry has an unknown kind");

    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(reason(&trailing), "bytes follow the last entry");

    for len in [0, 10, 65, good.len() - 1] {
        assert!(Manifest::decode(&good[..len]).is_err(), "cut at {len}");
    }
}
