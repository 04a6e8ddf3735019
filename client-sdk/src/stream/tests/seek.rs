//! The seekable decrypting reader.

use std::io::{Cursor, Seek, SeekFrom};

use super::*;

fn seekable(file: Vec<u8>) -> Result<SeekableDecryptingReader<Cursor<Vec<u8>>>> {
    SeekableDecryptingReader::open(Cursor::new(file), &key(), &context())
}

fn read_exactly(reader: &mut impl Read, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    reader.read_exact(&mut out).unwrap();
    out
}

#[test]
fn seek_reads_any_range() {
    let plaintext = pattern(5 * SMALL_LEN + 123);
    let mut reader = seekable(encrypt(&plaintext, SMALL)).unwrap();
    assert_eq!(reader.plaintext_len(), plaintext.len() as u64);

    // Starts, ends and ranges that cross boundaries, in no particular order.
    let ranges = [
        (0, 10),
        (SMALL_LEN - 3, 6),
        (4 * SMALL_LEN, SMALL_LEN + 123),
        (17, 3 * SMALL_LEN),
        (5 * SMALL_LEN + 122, 1),
        (2 * SMALL_LEN, SMALL_LEN),
        (0, plaintext.len()),
    ];
    for (start, len) in ranges {
        reader.seek(SeekFrom::Start(start as u64)).unwrap();
        let read = read_exactly(&mut reader, len);
        assert_eq!(read, plaintext[start..start + len], "{start}+{len}");
    }
}

#[test]
fn seek_from_end_and_current() {
    let plaintext = pattern(3 * SMALL_LEN + 7);
    let mut reader = seekable(encrypt(&plaintext, SMALL)).unwrap();

    assert_eq!(
        reader.seek(SeekFrom::End(-7)).unwrap(),
        3 * SMALL_LEN as u64
    );
    assert_eq!(read_exactly(&mut reader, 7), plaintext[3 * SMALL_LEN..]);
    assert_eq!(
        reader.seek(SeekFrom::Current(-10)).unwrap(),
        plaintext.len() as u64 - 10
    );
    assert_eq!(
        read_exactly(&mut reader, 10),
        plaintext[plaintext.len() - 10..]
    );
    assert_eq!(reader.stream_position().unwrap(), plaintext.len() as u64);

    let mut rest = Vec::new();
    assert_eq!(
        reader.read_to_end(&mut rest).unwrap(),
        0,
        "read at the end returns 0"
    );
    reader.seek(SeekFrom::End(100)).unwrap();
    assert_eq!(
        reader.read(&mut [0; 8]).unwrap(),
        0,
        "read past the end returns 0"
    );

    let err = reader
        .seek(SeekFrom::Current(-(plaintext.len() as i64) - 101))
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn seek_handles_boundary_sizes() {
    for len in [0, 1, SMALL_LEN - 1, SMALL_LEN, SMALL_LEN + 1] {
        let plaintext = pattern(len);
        let mut reader = seekable(encrypt(&plaintext, SMALL)).unwrap();
        assert_eq!(reader.plaintext_len(), len as u64, "{len}");

        reader
            .seek(SeekFrom::Start(len.saturating_sub(1) as u64))
            .unwrap();
        let mut tail = Vec::new();
        reader.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, plaintext[len.saturating_sub(1)..], "{len}");
    }
}

#[test]
fn seek_rejects_truncated_file_at_open() {
    let (head, segments) = split(&encrypt(&pattern(4 * SMALL_LEN), SMALL));
    for kept in 1..segments.len() {
        let file = join(&head, &segments.iter().take(kept).collect::<Vec<_>>());
        let err = seekable(file).unwrap_err();
        assert!(
            matches!(err, Error::Truncated { complete_segments: n } if n == kept as u64),
            "{kept} segments: {err:?}"
        );
    }

    let mut cut = join(&head, &segments.iter().collect::<Vec<_>>());
    cut.truncate(cut.len() - 5);
    let err = seekable(cut).unwrap_err();
    assert!(
        matches!(err, Error::SegmentAuthFailed { index: 3 }),
        "{err:?}"
    );
}

#[test]
fn seek_rejects_appended_data_at_open() {
    let mut file = encrypt(&pattern(2 * SMALL_LEN), SMALL);
    let (_, segments) = split(&file);
    file.extend_from_slice(&segments[1]);

    let err = seekable(file).unwrap_err();
    assert!(
        matches!(err, Error::SegmentAuthFailed { index: 2 }),
        "{err:?}"
    );
}

#[test]
fn seek_reports_damaged_segment_and_reads_others() {
    let plaintext = pattern(4 * SMALL_LEN + 9);
    let (head, mut segments) = split(&encrypt(&plaintext, SMALL));
    segments[2][5] ^= 1;
    let mut reader = seekable(join(&head, &segments.iter().collect::<Vec<_>>())).unwrap();

    reader
        .seek(SeekFrom::Start(2 * SMALL_LEN as u64 + 100))
        .unwrap();
    let err = Error::from_io(reader.read(&mut [0; 16]).unwrap_err());
    assert!(
        matches!(err, Error::SegmentAuthFailed { index: 2 }),
        "{err:?}"
    );

    reader.seek(SeekFrom::Start(3 * SMALL_LEN as u64)).unwrap();
    assert_eq!(
        read_exactly(&mut reader, SMALL_LEN),
        plaintext[3 * SMALL_LEN..4 * SMALL_LEN]
    );
    reader.seek(SeekFrom::Start(0)).unwrap();
    assert_eq!(
        read_exactly(&mut reader, 2 * SMALL_LEN),
        plaintext[..2 * SMALL_LEN]
    );
}

#[test]
fn seek_checks_context_and_key() {
    let file = encrypt(&pattern(100), SMALL);
    let err = SeekableDecryptingReader::open(Cursor::new(file.clone()), &other_key(), &context())
        .unwrap_err();
    assert!(matches!(err, Error::CommitmentMismatch), "{err:?}");

    let err =
        SeekableDecryptingReader::open(Cursor::new(file), &key(), &Context::new()).unwrap_err();
    assert!(matches!(err, Error::ContextMismatch), "{err:?}");
}

#[test]
fn seek_reads_file_at_offset_in_source() {
    let plaintext = pattern(2 * SMALL_LEN + 1);
    let mut source = b"preamble of a container format".to_vec();
    let start = source.len() as u64;
    source.extend_from_slice(&encrypt(&plaintext, SMALL));
    let mut cursor = Cursor::new(source);
    cursor.set_position(start);

    let mut reader = SeekableDecryptingReader::open(cursor, &key(), &context()).unwrap();
    reader.seek(SeekFrom::Start(SMALL_LEN as u64)).unwrap();

    assert_eq!(
        read_exactly(&mut reader, SMALL_LEN + 1),
        plaintext[SMALL_LEN..]
    );
}
