//! Large streams: 64 MiB always, and a size in GiB from `KMS_STREAM_TEST_GIB` when set.

use std::io;

use super::*;

/// Returns the bytes of [`pattern`] from `offset` on, without holding the whole stream.
struct PatternReader {
    position: u64,
    len: u64,
}

impl Read for PatternReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let count = out.len().min((self.len - self.position) as usize);
        for (i, byte) in out[..count].iter_mut().enumerate() {
            let index = self.position + i as u64;
            *byte = (index.wrapping_mul(31).wrapping_add(7)) as u8;
        }
        self.position += count as u64;
        Ok(count)
    }
}

/// Compares everything written with the pattern, without storing it.
struct PatternChecker {
    position: u64,
}

impl Write for PatternChecker {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        for (i, byte) in data.iter().enumerate() {
            let index = self.position + i as u64;
            let expected = (index.wrapping_mul(31).wrapping_add(7)) as u8;
            assert_eq!(*byte, expected, "plaintext differs at byte {index}");
        }
        self.position += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Encrypts `len` pattern bytes into `sink` and decrypts them back from `source`.
fn stream_round_trip(len: u64, path: &std::path::Path) {
    let sink = io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut writer =
        EncryptingWriter::new(sink, &key(), &context(), slots(), EncryptOptions::new()).unwrap();
    let copied = io::copy(&mut PatternReader { position: 0, len }, &mut writer).unwrap();
    writer
        .finish()
        .unwrap()
        .into_inner()
        .unwrap()
        .sync_all()
        .unwrap();
    assert_eq!(copied, len);

    let segments = len.div_ceil(u64::from(DEFAULT_SEGMENT_SIZE)).max(1);
    let file_len = std::fs::metadata(path).unwrap().len();
    let header = read_header(&mut std::fs::File::open(path).unwrap()).unwrap();
    assert_eq!(
        file_len,
        header.encoded_len() as u64 + len + segments * TAG_LEN as u64
    );

    let source = io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut reader = DecryptingReader::open(source, &key(), &context()).unwrap();
    let mut checker = PatternChecker { position: 0 };
    assert_eq!(io::copy(&mut reader, &mut checker).unwrap(), len);
}

#[test]
fn stream_of_64_mib_round_trips() {
    let folder = tempfile::tempdir().unwrap();
    stream_round_trip(64 << 20, &folder.path().join("large.kmsf"));
}

#[cfg(unix)]
#[test]
fn large_file_matches_streaming_output() {
    use super::super::parallel::{decrypt_file_with, encrypt_file_with};

    let folder = tempfile::tempdir().unwrap();
    let input = folder.path().join("plain");
    let parallel_path = folder.path().join("parallel.kmsf");
    let restored = folder.path().join("restored");
    let len = (64 << 20) + 5;
    let mut plain = io::BufWriter::new(std::fs::File::create(&input).unwrap());
    io::copy(&mut PatternReader { position: 0, len }, &mut plain).unwrap();
    plain.flush().unwrap();
    drop(plain);

    let fixed = || {
        Header::create_with(
            &key(),
            &context(),
            slots(),
            EncryptOptions::new(),
            [3; 32],
            [4; 7],
        )
        .unwrap()
    };
    let (header, cipher) = fixed();
    let mut writer = EncryptingWriter::with_header(Vec::new(), header, cipher).unwrap();
    io::copy(&mut PatternReader { position: 0, len }, &mut writer).unwrap();
    let streamed = writer.finish().unwrap();

    let (header, cipher) = fixed();
    encrypt_file_with(&input, &parallel_path, &header, &cipher, 4).unwrap();
    assert!(
        std::fs::read(&parallel_path).unwrap() == streamed,
        "parallel output differs"
    );

    decrypt_file_with(&parallel_path, &restored, &key(), &context(), 4).unwrap();
    let mut checker = PatternChecker { position: 0 };
    io::copy(&mut std::fs::File::open(&restored).unwrap(), &mut checker).unwrap();
    assert_eq!(checker.position, len);
}

/// Runs only when `KMS_STREAM_TEST_GIB` is set to a size in GiB. The test writes about that
/// much to the temporary folder (`TMPDIR`) and takes minutes in a debug build.
#[test]
fn stream_of_gibibytes_round_trips_when_asked() {
    let Some(gib) = std::env::var("KMS_STREAM_TEST_GIB").ok() else {
        return;
    };
    let gib: u64 = gib
        .parse()
        .expect("KMS_STREAM_TEST_GIB is a whole number of GiB");
    let folder = tempfile::tempdir().unwrap();
    stream_round_trip(gib << 30, &folder.path().join("huge.kmsf"));
}
