//! Tests of the file format: round trips, tampering, files, rewraps, recovery and vectors.

mod async_io;
#[cfg(unix)]
mod files;
mod inspect;
mod large;
mod recovery;
mod rewrap;
mod roundtrip;
mod seek;
mod tamper;
#[cfg(unix)]
mod vectors;

use std::io::{Read, Write};
use std::sync::OnceLock;

use super::*;
use crate::Context;

/// A small segment size, so that tests cross many segment boundaries with little data.
const SMALL: u32 = MIN_SEGMENT_SIZE;
const SMALL_LEN: usize = SMALL as usize;

/// Synthetic recovery identity of the vectors, whose recipient is [`RECIPIENT`].
const IDENTITY: &str = "AGE-SECRET-KEY-1CRQU9S7YCHRV0JXFET9UENWWELGDR5KN6N2AD47CM8DDHHXAMM0S2L2P3P";
const RECIPIENT: &str = "age1mskv5v0gusammywl7lj8tn9rx3ltg7qs04dawedt5jhy5vxrt4zqpcu8z9";
const KEY_ID: &str = "3f1e2d4c-5b6a-4789-8abc-def012345678";

fn key() -> FileKey {
    FileKey::from_slice(&[0x42; 32]).unwrap()
}

fn other_key() -> FileKey {
    FileKey::from_slice(&[0x43; 32]).unwrap()
}

fn context() -> Context {
    Context::from([
        ("app".to_owned(), "backup".to_owned()),
        ("tenant".to_owned(), "clinic-7".to_owned()),
    ])
}

fn options(segment_size: u32) -> EncryptOptions {
    EncryptOptions::new().with_segment_size(segment_size)
}

fn kms_slot(version: u32) -> KeySlot {
    let blob = format!("KMSB stand-in for a kmsd blob, version {version}");
    KeySlot::Kms(KmsSlot::new(KEY_ID, version, blob.into_bytes()).unwrap())
}

fn identity() -> RecoveryIdentity {
    parse_identity_file(IDENTITY).unwrap().remove(0)
}

fn recovery_slot_for(file_key: &FileKey) -> KeySlot {
    let recipient = parse_recipient(RECIPIENT).unwrap();
    KeySlot::Recovery(RecoverySlot::wrap(file_key, &recipient).unwrap())
}

/// Returns a `kmsd` slot and a recovery slot that opens with [`IDENTITY`]. age encryption is
/// randomized, so the recovery slot is made once and shared, which keeps `slots()` equal to
/// itself.
fn slots() -> Vec<KeySlot> {
    static RECOVERY: OnceLock<KeySlot> = OnceLock::new();
    let recovery = RECOVERY.get_or_init(|| recovery_slot_for(&key()));
    vec![kms_slot(3), recovery.clone()]
}

/// Plaintext whose byte `i` is `(31 * i + 7) mod 256`, so that moved bytes show.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31).wrapping_add(7)) as u8)
        .collect()
}

/// Encrypts `plaintext` with the streaming writer, in writes of 1000 bytes.
fn encrypt(plaintext: &[u8], segment_size: u32) -> Vec<u8> {
    let mut writer = EncryptingWriter::new(
        Vec::new(),
        &key(),
        &context(),
        slots(),
        options(segment_size),
    )
    .unwrap();
    for piece in plaintext.chunks(1000) {
        writer.write_all(piece).unwrap();
    }
    writer.finish().unwrap()
}

/// Decrypts `file` with the streaming reader.
fn decrypt_with(file: &[u8], key: &FileKey, context: &Context) -> Result<Vec<u8>> {
    let mut input = file;
    let header = read_header(&mut input)?;
    let mut reader = DecryptingReader::new(input, header, key, context)?;
    let mut plaintext = Vec::new();
    reader.read_to_end(&mut plaintext).map_err(Error::from_io)?;
    Ok(plaintext)
}

fn decrypt(file: &[u8]) -> Result<Vec<u8>> {
    decrypt_with(file, &key(), &context())
}

/// Splits an encrypted file into its header and its segments, from the header's segment size.
fn split(file: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let header = read_header(&mut &file[..]).unwrap();
    let (head, body) = file.split_at(header.encoded_len());
    let chunk_len = header.segment_size() as usize + TAG_LEN;
    let segments = body.chunks(chunk_len).map(<[u8]>::to_vec).collect();
    (head.to_vec(), segments)
}

fn join(head: &[u8], segments: &[&Vec<u8>]) -> Vec<u8> {
    let mut file = head.to_vec();
    for segment in segments {
        file.extend_from_slice(segment);
    }
    file
}
