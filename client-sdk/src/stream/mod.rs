//! The KMS file format, version 1: segmented AES-256-GCM for files and streams of any size.
//!
//! A file is a header followed by segments. Every segment contains `segment_size` bytes of
//! plaintext (64 KiB by default) except the last, which contains 1 to `segment_size` bytes, or
//! 0 bytes when the whole plaintext is empty. Each segment is sealed on its own, so memory stays
//! bounded and [`encrypt_file`] and [`decrypt_file`] use every core. `docs/file-format.md`
//! specifies every byte and lists the test vectors.
//!
//! ```text
//! header (big-endian integers)
//!   magic "KMSF" (4) | version 1 (1) | algorithm 1 (1) | header length (u32)
//!   segment size (u32) | slot area length S (u32) | salt (32) | nonce prefix (7)
//!   encryption context (u32 count, then per entry in byte order of the keys:
//!                       u32 key length, key, u32 value length, value)
//!   commitment (32)                                 <- HMAC of every byte above
//!   key slot copy A (S) | key slot copy B (S)       <- not covered by the commitment
//! segments
//!   ciphertext (segment size, or less for the last) | GCM tag (16)
//! ```
//!
//! # What binds what
//!
//! With `A` the header bytes before the commitment and `K` the 32-byte file key, HKDF-SHA256
//! with salt `salt` and input `K` derives two 32-byte keys: the segment key with info
//! `"kms-file-v1 segment" || SHA-256(A)` and the commitment key with info
//! `"kms-file-v1 commit" || SHA-256(A)`. The commitment is HMAC-SHA256(commitment key, A).
//! A reader checks it in constant time before it opens any segment, so one file opens under
//! one key only. A change to any byte of `A` (version, algorithm, lengths, salt, nonce prefix,
//! context) is therefore caught before any plaintext exists.
//!
//! Segment `i` is sealed under the segment key with the nonce `prefix || i as u32 || last`,
//! where `last` is 1 for the last segment and 0 for the others, and no associated data. The
//! segment key depends on the salt and on `A`, so segments cannot move between files. The
//! index and the flag in the nonce catch reordering, duplication, truncation and appended
//! segments.
//!
//! The key slots ([`KeySlot`]) sit after the commitment, so they can be replaced without the
//! file key and without rewriting the body ([`rewrap_file`]). Nothing authenticates them: a
//! slot that unwraps to any key other than `K` fails the commitment, so a changed slot can
//! deny access but cannot make the file decrypt to other data. The header contains two copies of
//! the slot area, each with a generation number and a SHA-256 checksum. Readers use the valid
//! copy with the higher generation, and a rewrap writes only the other copy, so a crash leaves
//! the old slots or the new ones.
//!
//! Nothing here logs, and no error or `Debug` output contains key bytes or plaintext.

mod async_io;
mod error;
mod header;
mod inspect;
mod key;
mod layout;
#[cfg(unix)]
mod parallel;
mod reader;
mod recovery;
mod rewrap;
mod seek;
mod segment;
mod slots;
mod writer;

#[cfg(test)]
mod tests;

pub use async_io::{AsyncDecryptingReader, AsyncEncryptingWriter, read_header_async};
pub use error::{Error, Result};
pub use header::{Algorithm, Header, read_header};
pub use inspect::{FileInfo, inspect_file};
pub use key::FileKey;
#[cfg(unix)]
pub use parallel::{decrypt_file, encrypt_file};
pub use reader::DecryptingReader;
pub use recovery::{
    RecoveryIdentity, RecoveryRecipient, RecoverySlot, parse_identity_file, parse_recipient,
};
pub use rewrap::rewrap_file;
pub use seek::SeekableDecryptingReader;
pub use slots::{KeySlot, KmsSlot, OtherSlot};
pub use writer::EncryptingWriter;

/// Segment size, in plaintext bytes, that callers should use unless they have a reason not to.
pub const DEFAULT_SEGMENT_SIZE: u32 = 64 * 1024;
/// Smallest segment size that the format allows.
pub const MIN_SEGMENT_SIZE: u32 = 4 * 1024;
/// Largest segment size that the format allows.
pub const MAX_SEGMENT_SIZE: u32 = 16 * 1024 * 1024;
/// Bytes reserved for each of the two key slot copies unless the options request more.
///
/// One `kmsd` slot takes about 130 bytes and one recovery slot about 300, so this leaves room
/// for a rewrap that adds slots or carries longer key ids.
pub const DEFAULT_SLOT_AREA_LEN: u32 = 2048;
/// Largest header, both slot copies included, that writers produce and readers accept.
pub const MAX_HEADER_LEN: usize = 1024 * 1024;

const MAGIC: [u8; 4] = *b"KMSF";
const FORMAT_VERSION: u8 = 1;
const ALGORITHM_AES_256_GCM_HKDF_SHA256: u8 = 1;
const SALT_LEN: usize = 32;
const NONCE_PREFIX_LEN: usize = 7;
const COMMITMENT_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// Limits of the encryption context, the same as for `kmsd` ciphertext blobs.
const MAX_CONTEXT_ENTRIES: usize = 64;
const MAX_CONTEXT_KEY_LEN: usize = 256;
const MAX_CONTEXT_VALUE_LEN: usize = 1024;

/// Settings of a new file: the segment size and the room reserved for key slots.
///
/// ```
/// use client_sdk::stream::EncryptOptions;
///
/// let options = EncryptOptions::new().with_segment_size(1024 * 1024);
/// assert_eq!(options.segment_size(), 1024 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptOptions {
    segment_size: u32,
    slot_area_len: u32,
}

impl EncryptOptions {
    /// Returns the defaults: [`DEFAULT_SEGMENT_SIZE`] and [`DEFAULT_SLOT_AREA_LEN`].
    pub const fn new() -> Self {
        EncryptOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            slot_area_len: DEFAULT_SLOT_AREA_LEN,
        }
    }

    /// Sets the plaintext bytes per segment, from [`MIN_SEGMENT_SIZE`] to
    /// [`MAX_SEGMENT_SIZE`]. Writers reject other values with [`Error::InvalidSegmentSize`].
    pub const fn with_segment_size(mut self, bytes: u32) -> Self {
        self.segment_size = bytes;
        self
    }

    /// Sets the bytes reserved for each of the two key slot copies. Writers grow it to fit the
    /// initial slots. A later [`rewrap_file`] must fit in it.
    pub const fn with_slot_area_len(mut self, bytes: u32) -> Self {
        self.slot_area_len = bytes;
        self
    }

    /// Returns the plaintext bytes per segment.
    pub const fn segment_size(&self) -> u32 {
        self.segment_size
    }

    /// Returns the bytes reserved for each key slot copy.
    pub const fn slot_area_len(&self) -> u32 {
        self.slot_area_len
    }
}

impl Default for EncryptOptions {
    fn default() -> Self {
        Self::new()
    }
}
