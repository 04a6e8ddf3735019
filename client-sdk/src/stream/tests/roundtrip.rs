//! Round trips through the streaming writer and reader, and argument checks.

use std::io;

use super::*;

/// Named boundary sizes for a segment size: empty, one byte, around one segment, and long.
fn boundary_sizes(segment: usize) -> [usize; 6] {
    [0, 1, segment - 1, segment, segment + 1, 3 * segment + 7]
}

fn expected_len(plaintext_len: usize, segment: usize, header_len: usize) -> usize {
    let segments = plaintext_len.div_ceil(segment).max(1);
    header_len + plaintext_len + segments * TAG_LEN
}

#[test]
fn round_trip_small_segments_at_boundaries() {
    for len in boundary_sizes(SMALL_LEN) {
        let plaintext = pattern(len);
        let file = encrypt(&plaintext, SMALL);
        let header = read_header(&mut file.as_slice()).unwrap();

        assert_eq!(
            file.len(),
            expected_len(len, SMALL_LEN, header.encoded_len()),
            "{len}"
        );
        assert_eq!(decrypt(&file).unwrap(), plaintext, "{len} bytes");
    }
}

#[test]
fn round_trip_default_segments_at_boundaries() {
    let segment = DEFAULT_SEGMENT_SIZE as usize;
    for len in boundary_sizes(segment) {
        let plaintext = pattern(len);
        let file = encrypt(&plaintext, DEFAULT_SEGMENT_SIZE);
        let header = read_header(&mut file.as_slice()).unwrap();

        assert_eq!(
            file.len(),
            expected_len(len, segment, header.encoded_len()),
            "{len}"
        );
        assert_eq!(decrypt(&file).unwrap(), plaintext, "{len} bytes");
    }
}

#[test]
fn round_trip_largest_segment_size() {
    let plaintext = pattern(1000);
    let file = encrypt(&plaintext, MAX_SEGMENT_SIZE);

    assert_eq!(decrypt(&file).unwrap(), plaintext);
}

#[test]
fn writer_accepts_one_byte_writes() {
    let plaintext = pattern(2 * SMALL_LEN + 3);
    let mut writer =
        EncryptingWriter::new(Vec::new(), &key(), &context(), slots(), options(SMALL)).unwrap();
    for byte in &plaintext {
        writer.write_all(std::slice::from_ref(byte)).unwrap();
    }
    let file = writer.finish().unwrap();

    assert_eq!(decrypt(&file).unwrap(), plaintext);
}

#[test]
fn writer_accepts_one_large_write() {
    let plaintext = pattern(5 * SMALL_LEN + 11);
    let mut writer =
        EncryptingWriter::new(Vec::new(), &key(), &context(), slots(), options(SMALL)).unwrap();
    writer.write_all(&plaintext).unwrap();
    let file = writer.finish().unwrap();

    assert_eq!(decrypt(&file).unwrap(), plaintext);
}

#[test]
fn reader_returns_data_in_one_byte_reads() {
    let plaintext = pattern(2 * SMALL_LEN + 5);
    let file = encrypt(&plaintext, SMALL);
    let mut reader = DecryptingReader::open(file.as_slice(), &key(), &context()).unwrap();

    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while reader.read(&mut byte).unwrap() == 1 {
        out.push(byte[0]);
    }
    assert_eq!(out, plaintext);
    assert_eq!(
        reader.read(&mut byte).unwrap(),
        0,
        "reads after the end return 0"
    );
}

/// A reader that fails every other call with `Interrupted` and returns at most 700 bytes.
struct Interrupting<'a> {
    data: &'a [u8],
    interrupt: bool,
}

impl Read for Interrupting<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let count = out.len().min(700);
        self.data.read(&mut out[..count])
    }
}

#[test]
fn reader_retries_interrupted_reads() {
    let plaintext = pattern(3 * SMALL_LEN + 7);
    let file = encrypt(&plaintext, SMALL);
    let mut input = file.as_slice();
    let header = read_header(&mut input).unwrap();
    let inner = Interrupting {
        data: input,
        interrupt: false,
    };
    let mut reader = DecryptingReader::new(inner, header, &key(), &context()).unwrap();

    let mut out = Vec::new();
    reader.read_to_end(&mut out).unwrap();
    assert_eq!(out, plaintext);
}

#[test]
fn header_returns_metadata_and_slots() {
    let written = slots();
    let mut writer = EncryptingWriter::new(
        Vec::new(),
        &key(),
        &context(),
        written.clone(),
        options(SMALL),
    )
    .unwrap();
    writer.write_all(b"x").unwrap();
    let file = writer.finish().unwrap();
    let header = read_header(&mut file.as_slice()).unwrap();

    assert_eq!(header.version(), 1);
    assert_eq!(header.algorithm(), Algorithm::Aes256GcmHkdfSha256);
    assert_eq!(header.algorithm().id(), 1);
    assert_eq!(header.segment_size(), SMALL);
    assert_eq!(header.slot_area_len(), DEFAULT_SLOT_AREA_LEN);
    assert_eq!(header.slot_generation(), 1);
    assert_eq!(header.context(), &context());
    assert_eq!(header.slots(), written.as_slice());
    let kms = header.kms_slot().unwrap();
    assert_eq!(kms.key_id(), KEY_ID);
    assert_eq!(kms.key_version(), 3);
    assert_eq!(kms.blob(), b"KMSB stand-in for a kmsd blob, version 3");
    let kinds: Vec<&str> = header.slots().iter().map(KeySlot::kind).collect();
    assert_eq!(kinds, ["kms", "recovery"]);
}

#[test]
fn header_length_counts_both_copies() {
    let file = encrypt(b"x", SMALL);
    let header = read_header(&mut file.as_slice()).unwrap();
    let context_len = 4 + (4 + 3 + 4 + 6) + (4 + 6 + 4 + 8);

    assert_eq!(header.encoded_len(), 57 + context_len + 32 + 2 * 2048);
    assert_eq!(file.len(), header.encoded_len() + 1 + TAG_LEN);
}

#[test]
fn slot_area_grows_to_fit_initial_slots() {
    let many: Vec<KeySlot> = (0..20).map(kms_slot).collect();
    let small_area = EncryptOptions::new()
        .with_segment_size(SMALL)
        .with_slot_area_len(64);
    let writer =
        EncryptingWriter::new(Vec::new(), &key(), &context(), many.clone(), small_area).unwrap();
    let file = writer.finish().unwrap();
    let header = read_header(&mut file.as_slice()).unwrap();

    let list_len: usize = many.iter().map(|slot| 5 + slot.encode_body().len()).sum();
    assert_eq!(header.slot_area_len() as usize, 44 + list_len);
    assert_eq!(header.slots(), many.as_slice());
    assert_eq!(decrypt(&file).unwrap(), b"");
}

#[test]
fn writer_output_header_matches_parsed_header() {
    let writer =
        EncryptingWriter::new(Vec::new(), &key(), &context(), slots(), options(SMALL)).unwrap();
    let written = writer.header().clone();
    let file = writer.finish().unwrap();

    assert_eq!(read_header(&mut file.as_slice()).unwrap(), written);
}

#[test]
fn same_plaintext_encrypts_differently_each_time() {
    let plaintext = pattern(100);
    let first = encrypt(&plaintext, SMALL);
    let second = encrypt(&plaintext, SMALL);

    assert_ne!(first, second, "salt and nonce prefix are random per file");
}

#[test]
fn writer_rejects_segment_size_out_of_range() {
    for size in [0, MIN_SEGMENT_SIZE - 1, MAX_SEGMENT_SIZE + 1, u32::MAX] {
        let err = EncryptingWriter::new(Vec::new(), &key(), &context(), slots(), options(size))
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidSegmentSize { size: found } if found == size),
            "{size}: {err:?}"
        );
    }
}

#[test]
fn writer_rejects_invalid_context() {
    let many = (0..=64)
        .map(|i| (format!("k{i:02}"), String::new()))
        .collect::<Context>();
    let cases = [
        (
            "empty key",
            Context::from([(String::new(), "v".to_owned())]),
        ),
        (
            "long key",
            Context::from([("k".repeat(257), "v".to_owned())]),
        ),
        (
            "long value",
            Context::from([("k".to_owned(), "v".repeat(1025))]),
        ),
        ("65 entries", many),
    ];
    for (name, bad) in cases {
        let err =
            EncryptingWriter::new(Vec::new(), &key(), &bad, slots(), options(SMALL)).unwrap_err();
        assert!(
            matches!(err, Error::InvalidContext { .. }),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn writer_accepts_context_at_limits() {
    let mut at_limit = (0..63)
        .map(|i| (format!("k{i:02}"), String::new()))
        .collect::<Context>();
    at_limit.insert("k".repeat(256), "v".repeat(1024));
    let mut writer =
        EncryptingWriter::new(Vec::new(), &key(), &at_limit, vec![], options(SMALL)).unwrap();
    writer.write_all(b"data").unwrap();
    let file = writer.finish().unwrap();

    assert_eq!(decrypt_with(&file, &key(), &at_limit).unwrap(), b"data");
}

#[test]
fn writer_rejects_slots_beyond_header_limit() {
    let huge = KmsSlot::new(KEY_ID, 1, vec![7; MAX_HEADER_LEN / 2]).unwrap();
    let slots = vec![KeySlot::Kms(huge)];
    let err =
        EncryptingWriter::new(Vec::new(), &key(), &context(), slots, options(SMALL)).unwrap_err();

    assert!(matches!(err, Error::HeaderTooLarge { .. }), "{err:?}");
}

#[test]
fn writer_rejects_slot_area_beyond_header_limit() {
    let area = EncryptOptions::new().with_slot_area_len(u32::MAX);
    let err = EncryptingWriter::new(Vec::new(), &key(), &context(), vec![], area).unwrap_err();

    assert!(matches!(err, Error::HeaderTooLarge { .. }), "{err:?}");
}

#[test]
fn kms_slot_rejects_invalid_fields() {
    let cases = [
        ("empty key id", KmsSlot::new("", 1, b"blob".to_vec())),
        (
            "long key id",
            KmsSlot::new("k".repeat(256), 1, b"blob".to_vec()),
        ),
        ("empty blob", KmsSlot::new(KEY_ID, 1, Vec::new())),
    ];
    for (name, result) in cases {
        let err = result.unwrap_err();
        assert!(
            matches!(err, Error::InvalidKeySlot { .. }),
            "{name}: {err:?}"
        );
    }
    assert!(KmsSlot::new("k".repeat(255), u32::MAX, vec![1]).is_ok());
}

#[test]
fn file_key_rejects_wrong_length() {
    for len in [0, 16, 31, 33, 64] {
        let err = FileKey::from_slice(&vec![1; len]).unwrap_err();
        assert!(matches!(err, Error::InvalidKeyLength { len: found } if found == len));
    }
}

#[test]
fn file_key_converts_from_secret_slice() {
    let secret = secrecy::SecretSlice::from(vec![0x42; 32]);
    let converted = FileKey::try_from(&secret).unwrap();
    let file = encrypt(b"data", SMALL);

    assert_eq!(
        decrypt_with(&file, &converted, &context()).unwrap(),
        b"data"
    );
}

#[test]
fn debug_hides_key_and_slots() {
    let key_debug = format!("{:?}", key());
    assert_eq!(key_debug, "FileKey(<redacted>)");

    let file = encrypt(b"canary plaintext", SMALL);
    let reader = DecryptingReader::open(file.as_slice(), &key(), &context()).unwrap();
    let reader_debug = format!("{reader:?}");
    assert!(!reader_debug.contains("stand-in"), "{reader_debug}");
    assert!(!reader_debug.contains("age-encryption"), "{reader_debug}");
    assert!(!reader_debug.contains("canary"), "{reader_debug}");
    let expected_kms = format!("Kms {{ key_id: \"{KEY_ID}\", key_version: 3, blob_len: 40 }}");
    assert!(reader_debug.contains(&expected_kms), "{reader_debug}");
    assert!(reader_debug.contains(RECIPIENT), "{reader_debug}");

    let writer =
        EncryptingWriter::new(Vec::new(), &key(), &context(), slots(), options(SMALL)).unwrap();
    let writer_debug = format!("{writer:?}");
    assert!(!writer_debug.contains("stand-in"), "{writer_debug}");
}
