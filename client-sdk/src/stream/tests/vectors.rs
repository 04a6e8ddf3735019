//! Known-answer vectors from `tests/vectors/file`, written by an independent generator.

use std::collections::HashMap;
use std::fs;
use std::io::Cursor;
use std::path::PathBuf;

use super::super::parallel::{decrypt_file_with, encrypt_file_with};
use super::*;

fn vector_folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/file")
}

/// One vector file: `name: value` lines.
struct Vector {
    name: String,
    fields: HashMap<String, String>,
}

impl Vector {
    fn text(&self, field: &str) -> &str {
        self.fields
            .get(field)
            .unwrap_or_else(|| panic!("{}: no field {field}", self.name))
    }

    fn optional(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    fn bytes(&self, field: &str) -> Vec<u8> {
        decode_hex(self.text(field))
    }

    fn number<T: std::str::FromStr>(&self, field: &str) -> T {
        self.text(field)
            .parse()
            .unwrap_or_else(|_| panic!("{}: {field} is not a number", self.name))
    }

    fn key(&self, field: &str) -> FileKey {
        FileKey::from_slice(&self.bytes(field)).unwrap()
    }

    fn context(&self, field: &str) -> Context {
        serde_json::from_str(self.text(field)).unwrap()
    }

    fn slots(&self) -> Vec<KeySlot> {
        self.text("slots")
            .split_whitespace()
            .filter(|entry| *entry != "-")
            .map(|entry| {
                let (slot_type, body) = entry.split_once(':').unwrap();
                KeySlot::decode(slot_type.parse().unwrap(), &decode_hex(body)).unwrap()
            })
            .collect()
    }

    fn options(&self) -> EncryptOptions {
        EncryptOptions::new()
            .with_segment_size(self.number("segment_size"))
            .with_slot_area_len(self.number("slot_area_len"))
    }

    fn array<const N: usize>(&self, field: &str) -> [u8; N] {
        self.bytes(field).try_into().unwrap()
    }

    /// Builds the header and cipher that the generator used, from the fixed salt and prefix.
    fn fixed_header(&self) -> (Header, key::SegmentCipher) {
        Header::create_with(
            &self.key("file_key"),
            &self.context("context"),
            self.slots(),
            self.options(),
            self.array("salt"),
            self.array("nonce_prefix"),
        )
        .unwrap()
    }
}

fn decode_hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn load_vectors() -> Vec<Vector> {
    let mut vectors = Vec::new();
    for entry in fs::read_dir(vector_folder()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "txt") {
            continue;
        }
        let fields = fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter_map(|line| line.split_once(": "))
            .map(|(name, value)| (name.to_owned(), value.trim().to_owned()))
            .collect();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        vectors.push(Vector { name, fields });
    }
    vectors.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(vectors.len() >= 50, "found only {} vectors", vectors.len());
    vectors
}

/// Writes an error the way the `expect` lines do.
fn outcome(err: &Error) -> String {
    match err {
        Error::BadMagic { .. } => "bad_magic".into(),
        Error::UnsupportedVersion { version } => format!("unsupported_version {version}"),
        Error::UnsupportedAlgorithm { algorithm } => format!("unsupported_algorithm {algorithm}"),
        Error::InvalidSegmentSize { size } => format!("invalid_segment_size {size}"),
        Error::MalformedHeader { .. } => "malformed_header".into(),
        Error::HeaderTooLarge { .. } => "header_too_large".into(),
        Error::TruncatedHeader => "truncated_header".into(),
        Error::SlotCopiesDamaged => "slot_copies_damaged".into(),
        Error::ContextMismatch => "context_mismatch".into(),
        Error::CommitmentMismatch => "commitment_mismatch".into(),
        Error::SegmentAuthFailed { index } => format!("segment_auth_failed {index}"),
        Error::Truncated { complete_segments } => format!("truncated {complete_segments}"),
        Error::TrailingData { last_segment } => format!("trailing_data {last_segment}"),
        other => format!("unexpected error: {other:?}"),
    }
}

fn streaming_outcome(vector: &Vector) -> Result<(Header, Vec<u8>), String> {
    let file = vector.bytes("file");
    let mut input = file.as_slice();
    let header = read_header(&mut input).map_err(|err| outcome(&err))?;
    let key = vector.key("decrypt_key");
    let context = vector.context("decrypt_context");
    let mut reader = DecryptingReader::new(input, header.clone(), &key, &context)
        .map_err(|err| outcome(&err))?;
    let mut plaintext = Vec::new();
    reader
        .read_to_end(&mut plaintext)
        .map_err(|err| outcome(&Error::from_io(err)))?;
    Ok((header, plaintext))
}

#[test]
fn vectors_decrypt_to_expected_outcome() {
    for vector in load_vectors() {
        let expect = vector.text("expect");
        match streaming_outcome(&vector) {
            Ok((header, plaintext)) => {
                let name = &vector.name;
                assert_eq!(expect, "ok", "{name}");
                assert_eq!(plaintext, vector.bytes("plaintext"), "{name}");
                assert_eq!(header.slots(), vector.slots().as_slice(), "{name}");
                let generation: u64 = vector.number("slot_generation");
                assert_eq!(header.slot_generation(), generation, "{name}");
                assert_eq!(header.context(), &vector.context("context"), "{name}");
                let segment_size: u32 = vector.number("segment_size");
                assert_eq!(header.segment_size(), segment_size, "{name}");
            }
            Err(found) => assert_eq!(found, expect, "{}", vector.name),
        }
    }
}

#[test]
fn vectors_decrypt_in_parallel() {
    let folder = tempfile::tempdir().unwrap();
    let input = folder.path().join("vector.kmsf");
    let output = folder.path().join("vector.out");
    for vector in load_vectors() {
        fs::write(&input, vector.bytes("file")).unwrap();
        let key = vector.key("decrypt_key");
        let context = vector.context("decrypt_context");
        let expect = vector.text("expect");

        match decrypt_file_with(&input, &output, &key, &context, 3) {
            Ok(_) => {
                assert_eq!(expect, "ok", "{}", vector.name);
                let plaintext = fs::read(&output).unwrap();
                assert_eq!(plaintext, vector.bytes("plaintext"), "{}", vector.name);
                fs::remove_file(&output).unwrap();
            }
            Err(err) => {
                assert_eq!(outcome(&err), expect, "{}", vector.name);
                assert!(!output.exists(), "{}: output left behind", vector.name);
            }
        }
    }
}

/// Checks every vector through the seekable reader, which must reject every bad vector and read
/// every good one. It opens the last segment first, so it can name a later segment than the
/// streaming reader does.
#[test]
fn vectors_read_through_seekable_reader() {
    for vector in load_vectors() {
        let key = vector.key("decrypt_key");
        let context = vector.context("decrypt_context");
        let source = Cursor::new(vector.bytes("file"));
        let result = SeekableDecryptingReader::open(source, &key, &context).and_then(|mut r| {
            let mut plaintext = Vec::new();
            r.read_to_end(&mut plaintext).map_err(Error::from_io)?;
            Ok(plaintext)
        });
        match (vector.text("expect"), result) {
            ("ok", Ok(plaintext)) => {
                assert_eq!(plaintext, vector.bytes("plaintext"), "{}", vector.name)
            }
            ("ok", Err(err)) => panic!("{}: {err:?}", vector.name),
            (_, Ok(_)) => panic!("{}: a bad vector decrypted", vector.name),
            (_, Err(_)) => {}
        }
    }
}

#[test]
fn recovery_identity_opens_vectors() {
    let identities = parse_identity_file(IDENTITY).unwrap();
    let mut opened = 0;
    for vector in load_vectors() {
        let Some(text) = vector.optional("recovery_identity") else {
            continue;
        };
        assert_eq!(text, IDENTITY, "{}", vector.name);
        let file = vector.bytes("file");
        let header = read_header(&mut file.as_slice()).unwrap();

        let key = header.unwrap_recovery(&identities).unwrap();
        let plaintext = decrypt_with(&file, &key, &vector.context("context")).unwrap();
        assert_eq!(plaintext, vector.bytes("plaintext"), "{}", vector.name);
        opened += 1;
    }
    assert!(
        opened >= 8,
        "only {opened} vectors carry a recovery identity"
    );
}

#[test]
fn writers_reproduce_vectors_byte_for_byte() {
    let folder = tempfile::tempdir().unwrap();
    let plain_path = folder.path().join("plain");
    let encrypted_path = folder.path().join("plain.kmsf");
    let reproduced: Vec<Vector> = load_vectors()
        .into_iter()
        .filter(|v| v.text("reproduce") == "yes")
        .collect();
    assert!(
        reproduced.len() >= 10,
        "found only {} vectors",
        reproduced.len()
    );

    for vector in reproduced {
        let plaintext = vector.bytes("plaintext");
        let expected = vector.bytes("file");

        let (header, cipher) = vector.fixed_header();
        let mut writer = EncryptingWriter::with_header(Vec::new(), header, cipher).unwrap();
        // Writes of an odd size cross segment boundaries at varying offsets.
        for piece in plaintext.chunks(777) {
            writer.write_all(piece).unwrap();
        }
        assert_eq!(
            writer.finish().unwrap(),
            expected,
            "{}: streaming writer",
            vector.name
        );

        fs::write(&plain_path, &plaintext).unwrap();
        let (header, cipher) = vector.fixed_header();
        encrypt_file_with(&plain_path, &encrypted_path, &header, &cipher, 3).unwrap();
        let parallel = fs::read(&encrypted_path).unwrap();
        assert_eq!(parallel, expected, "{}: parallel encryption", vector.name);
    }
}

#[test]
fn rewrap_reproduces_vectors_byte_for_byte() {
    let vectors = load_vectors();
    let by_name: HashMap<&str, &Vector> = vectors.iter().map(|v| (v.name.as_str(), v)).collect();
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("rewrapped.kmsf");
    let mut checked = 0;
    for vector in &vectors {
        let Some(original) = vector.optional("rewrap_of") else {
            continue;
        };
        fs::write(&path, by_name[original].bytes("file")).unwrap();

        let header = rewrap_file(&path, vector.slots()).unwrap();

        assert_eq!(
            fs::read(&path).unwrap(),
            vector.bytes("file"),
            "{}",
            vector.name
        );
        assert_eq!(header.slots(), vector.slots().as_slice(), "{}", vector.name);
        checked += 1;
    }
    assert_eq!(checked, 1);
}
