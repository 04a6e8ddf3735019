//! Every alteration of a file is rejected with the error that names it.

use super::*;

/// Encrypts four segments at the small size: three whole ones and a last one of 7 bytes.
fn four_segments() -> (Vec<u8>, Vec<u8>, Vec<Vec<u8>>) {
    let plaintext = pattern(3 * SMALL_LEN + 7);
    let file = encrypt(&plaintext, SMALL);
    let (head, segments) = split(&file);
    assert_eq!(segments.len(), 4);
    (plaintext, head, segments)
}

#[test]
fn wrong_key_fails_commitment() {
    let file = encrypt(&pattern(100), SMALL);
    let err = decrypt_with(&file, &other_key(), &context()).unwrap_err();

    assert!(matches!(err, Error::CommitmentMismatch), "{err:?}");
}

#[test]
fn wrong_context_is_context_mismatch() {
    let file = encrypt(&pattern(100), SMALL);
    let mut changed = context();
    changed.insert("tenant".to_owned(), "clinic-8".to_owned());
    let mut extra = context();
    extra.insert("zone".to_owned(), "b".to_owned());
    let cases = [
        ("changed value", changed),
        ("extra entry", extra),
        ("empty", Context::new()),
    ];
    for (name, bad) in cases {
        let err = decrypt_with(&file, &key(), &bad).unwrap_err();
        assert!(matches!(err, Error::ContextMismatch), "{name}: {err:?}");
    }
}

/// Offset of the commitment: the header ends with two slot copies after it.
fn commitment_offset(file: &[u8]) -> usize {
    let header = read_header(&mut &file[..]).unwrap();
    header.encoded_len() - 2 * header.slot_area_len() as usize - COMMITMENT_LEN
}

#[test]
fn every_authenticated_header_byte_is_checked() {
    let file = encrypt(&pattern(100), SMALL);
    let commitment_end = commitment_offset(&file) + COMMITMENT_LEN;

    for offset in 0..commitment_end {
        let mut altered = file.clone();
        altered[offset] ^= 0x01;
        let result = decrypt(&altered);
        assert!(
            result.is_err(),
            "a flipped bit at offset {offset} went unnoticed"
        );
    }
}

#[test]
fn altered_commitment_fails() {
    let file = encrypt(&pattern(100), SMALL);
    let mut altered = file.clone();
    altered[commitment_offset(&file) + COMMITMENT_LEN - 1] ^= 0x80;

    let err = decrypt(&altered).unwrap_err();
    assert!(matches!(err, Error::CommitmentMismatch), "{err:?}");
}

#[test]
fn altered_slot_copy_is_damaged_not_used() {
    let file = encrypt(&pattern(100), SMALL);
    let first_copy = commitment_offset(&file) + COMMITMENT_LEN;
    // Checksum, generation, list length and a byte inside the first slot.
    for offset in [0, 31, 32, 39, 40, 43, 44, 60] {
        let mut altered = file.clone();
        altered[first_copy + offset] ^= 0x01;
        let err = decrypt(&altered).unwrap_err();
        assert!(
            matches!(err, Error::SlotCopiesDamaged),
            "offset {offset}: {err:?}"
        );
    }
}

#[test]
fn slot_copy_padding_is_not_checked() {
    let file = encrypt(&pattern(100), SMALL);
    let header = read_header(&mut file.as_slice()).unwrap();
    let padding = header.encoded_len() - header.slot_area_len() as usize - 1;
    let mut altered = file.clone();
    altered[padding] ^= 0x01;

    assert_eq!(
        read_header(&mut altered.as_slice()).unwrap().slots(),
        header.slots()
    );
    assert_eq!(decrypt(&altered).unwrap(), pattern(100));
}

#[test]
fn truncation_at_each_boundary_is_truncated() {
    let (_, head, segments) = four_segments();
    for kept in 0..segments.len() {
        let file = join(&head, &segments.iter().take(kept).collect::<Vec<_>>());
        let err = decrypt(&file).unwrap_err();
        assert!(
            matches!(err, Error::Truncated { complete_segments: n } if n == kept as u64),
            "{kept} segments kept: {err:?}"
        );
    }
}

#[test]
fn truncation_inside_a_segment_fails() {
    let (_, head, segments) = four_segments();
    for index in 0..segments.len() {
        let complete = join(&head, &segments.iter().take(index).collect::<Vec<_>>());
        let len = segments[index].len();
        for cut in [1, TAG_LEN - 1, TAG_LEN, 20, 100, len - 1]
            .into_iter()
            .filter(|c| *c < len)
        {
            let mut file = complete.clone();
            file.extend_from_slice(&segments[index][..cut]);
            let err = decrypt(&file).unwrap_err();
            let ok = if cut < TAG_LEN {
                matches!(err, Error::Truncated { complete_segments: n } if n == index as u64)
            } else {
                matches!(err, Error::SegmentAuthFailed { index: i } if i as usize == index)
            };
            assert!(ok, "segment {index} cut to {cut} bytes: {err:?}");
        }
    }
}

#[test]
fn reordered_segments_fail() {
    let (_, head, s) = four_segments();
    let err = decrypt(&join(&head, &[&s[0], &s[2], &s[1], &s[3]])).unwrap_err();

    assert!(
        matches!(err, Error::SegmentAuthFailed { index: 1 }),
        "{err:?}"
    );
}

#[test]
fn duplicated_segment_fails() {
    let (_, head, s) = four_segments();
    let err = decrypt(&join(&head, &[&s[0], &s[1], &s[1], &s[2], &s[3]])).unwrap_err();

    assert!(
        matches!(err, Error::SegmentAuthFailed { index: 2 }),
        "{err:?}"
    );
}

#[test]
fn segment_from_another_file_fails() {
    let (plaintext, head, s) = four_segments();
    // Same key, context and plaintext, but another salt and so another segment key.
    let (_, other) = split(&encrypt(&plaintext, SMALL));
    let err = decrypt(&join(&head, &[&s[0], &other[1], &s[2], &s[3]])).unwrap_err();

    assert!(
        matches!(err, Error::SegmentAuthFailed { index: 1 }),
        "{err:?}"
    );
}

#[test]
fn altered_ciphertext_or_tag_fails() {
    let (_, head, s) = four_segments();
    for index in 0..s.len() {
        for offset in [0, s[index].len() - TAG_LEN, s[index].len() - 1] {
            let mut altered = s.clone();
            altered[index][offset] ^= 0x01;
            let err = decrypt(&join(&head, &altered.iter().collect::<Vec<_>>())).unwrap_err();
            assert!(
                matches!(err, Error::SegmentAuthFailed { index: i } if i as usize == index),
                "segment {index} byte {offset}: {err:?}"
            );
        }
    }
}

#[test]
fn dropped_writer_leaves_truncated_output() {
    let mut out = Vec::new();
    let mut writer =
        EncryptingWriter::new(&mut out, &key(), &context(), slots(), options(SMALL)).unwrap();
    writer.write_all(&pattern(2 * SMALL_LEN + 10)).unwrap();
    drop(writer);

    let err = decrypt(&out).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                complete_segments: 2
            }
        ),
        "{err:?}"
    );
}

#[test]
fn writer_dropped_at_boundary_truncates() {
    let mut out = Vec::new();
    let mut writer =
        EncryptingWriter::new(&mut out, &key(), &context(), slots(), options(SMALL)).unwrap();
    writer.write_all(&pattern(2 * SMALL_LEN)).unwrap();
    drop(writer);

    let err = decrypt(&out).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                complete_segments: 1
            }
        ),
        "{err:?}"
    );
}

#[test]
fn data_after_last_segment_is_trailing() {
    let file = encrypt(&pattern(2 * SMALL_LEN), SMALL);
    for extra in [&b"x"[..], &[0; TAG_LEN], &vec![7; SMALL_LEN + TAG_LEN + 3]] {
        let mut appended = file.clone();
        appended.extend_from_slice(extra);
        let err = decrypt(&appended).unwrap_err();
        assert!(
            matches!(err, Error::TrailingData { last_segment: 1 }),
            "{} extra bytes: {err:?}",
            extra.len()
        );
    }
}

#[test]
fn repeated_last_segment_is_trailing() {
    let file = encrypt(&pattern(2 * SMALL_LEN), SMALL);
    let (head, s) = split(&file);
    let err = decrypt(&join(&head, &[&s[0], &s[1], &s[1]])).unwrap_err();

    assert!(
        matches!(err, Error::TrailingData { last_segment: 1 }),
        "{err:?}"
    );
}

#[test]
fn data_after_short_segment_fails() {
    let (_, head, s) = four_segments();
    let mut appended = join(&head, &s.iter().collect::<Vec<_>>());
    appended.extend_from_slice(b"appended");
    let err = decrypt(&appended).unwrap_err();

    assert!(
        matches!(err, Error::SegmentAuthFailed { index: 3 }),
        "{err:?}"
    );
}

/// Seals segments with chosen last flags, as a faulty writer holding the key could.
fn sealed_with_flags(plaintext: &[u8], flags: &[bool]) -> Vec<u8> {
    let (header, cipher) = Header::create(&key(), &context(), slots(), options(SMALL)).unwrap();
    let mut file = header.encode_new().unwrap();
    for (index, (piece, last)) in plaintext.chunks(SMALL_LEN).zip(flags).enumerate() {
        let mut buffer = piece.to_vec();
        let tag = cipher.seal(index as u32, *last, &mut buffer);
        file.extend_from_slice(&buffer);
        file.extend_from_slice(&tag);
    }
    file
}

#[test]
fn extra_last_segment_is_trailing_data() {
    let file = sealed_with_flags(&pattern(3 * SMALL_LEN), &[false, true, true]);
    let err = decrypt(&file).unwrap_err();

    assert!(
        matches!(err, Error::TrailingData { last_segment: 1 }),
        "{err:?}"
    );
}

#[test]
fn missing_last_flag_fails() {
    let short_last = sealed_with_flags(&pattern(2 * SMALL_LEN + 9), &[false, false, false]);
    let err = decrypt(&short_last).unwrap_err();
    assert!(
        matches!(err, Error::SegmentAuthFailed { index: 2 }),
        "{err:?}"
    );

    let full_last = sealed_with_flags(&pattern(2 * SMALL_LEN), &[false, false]);
    let err = decrypt(&full_last).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                complete_segments: 2
            }
        ),
        "{err:?}"
    );
}

#[test]
fn reader_releases_only_verified_segments() {
    let (plaintext, head, s) = four_segments();
    let mut altered = s.clone();
    altered[1][10] ^= 0x01;
    let file = join(&head, &altered.iter().collect::<Vec<_>>());
    let mut reader = DecryptingReader::open(file.as_slice(), &key(), &context()).unwrap();

    let mut out = Vec::new();
    let mut buffer = [0u8; 1000];
    let err = loop {
        match reader.read(&mut buffer) {
            Ok(count) => out.extend_from_slice(&buffer[..count]),
            Err(err) => break Error::from_io(err),
        }
    };
    assert!(
        matches!(err, Error::SegmentAuthFailed { index: 1 }),
        "{err:?}"
    );
    assert_eq!(out, plaintext[..SMALL_LEN], "only segment 0 was returned");
}

#[test]
fn reader_fails_again_after_an_error() {
    let (_, head, s) = four_segments();
    let file = join(&head, &[&s[1]]);
    let mut reader = DecryptingReader::open(file.as_slice(), &key(), &context()).unwrap();
    let mut buffer = [0u8; 16];

    let first = Error::from_io(reader.read(&mut buffer).unwrap_err());
    let second = Error::from_io(reader.read(&mut buffer).unwrap_err());
    assert!(
        matches!(first, Error::SegmentAuthFailed { index: 0 }),
        "{first:?}"
    );
    assert!(matches!(second, Error::StreamFailed), "{second:?}");
}

#[test]
fn read_header_rejects_other_input() {
    let cases: [(&str, &[u8]); 3] = [
        ("empty", b""),
        ("short", b"KMS"),
        ("not ours", b"PK\x03\x04 a zip file, say"),
    ];
    for (name, input) in cases {
        let err = read_header(&mut &input[..]).unwrap_err();
        let ok = match name {
            "not ours" => matches!(err, Error::BadMagic { found } if &found == b"PK\x03\x04"),
            _ => matches!(err, Error::TruncatedHeader),
        };
        assert!(ok, "{name}: {err:?}");
    }
}

#[test]
fn error_converts_through_io_error() {
    let io_err = std::io::Error::from(Error::SegmentAuthFailed { index: 4 });
    assert_eq!(io_err.kind(), std::io::ErrorKind::InvalidData);
    assert!(matches!(
        Error::from_io(io_err),
        Error::SegmentAuthFailed { index: 4 }
    ));

    let plain = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
    assert!(
        matches!(Error::from_io(plain), Error::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    );
}
