//! The ciphertext blob that data-key and payload operations return.
//!
//! Version 1 is laid out as follows (all integers big-endian):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `KMSB` |
//! | 4 | 1 | format version, `0x01` |
//! | 5 | 1 | algorithm, `0x01` = AES-256-GCM |
//! | 6 | 16 | key id (the UUID of the named key) |
//! | 22 | 4 | key version |
//! | 26 | 12 | nonce |
//! | 38 | n + 16 | ciphertext and GCM tag |
//!
//! The associated data is the 38-byte header followed by the encoded encryption context (see
//! [`encode_context`]), so a change to any header byte or to the context fails authentication.
//! `docs/ciphertext-blob.md` gives the same layout with test vectors.

use std::collections::BTreeMap;

use uuid::Uuid;

/// The four bytes every blob starts with.
pub const MAGIC: [u8; 4] = *b"KMSB";
/// The only format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Algorithm byte for AES-256-GCM with a 96-bit random nonce.
pub const ALG_AES_256_GCM: u8 = 1;
/// Length of the header, which is also the offset of the ciphertext.
pub const HEADER_LEN: usize = 38;
/// Length of the GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Length of the GCM tag.
pub const TAG_LEN: usize = 16;

/// Maximum number of entries in an encryption context.
pub const MAX_CONTEXT_ENTRIES: usize = 64;
/// Maximum length in bytes of a context key.
pub const MAX_CONTEXT_KEY_LEN: usize = 256;
/// Maximum length in bytes of a context value.
pub const MAX_CONTEXT_VALUE_LEN: usize = 1024;

/// The parsed header of a blob; the ciphertext stays in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Id of the key whose version sealed the blob.
    pub key_id: Uuid,
    /// Version of that key.
    pub key_version: u32,
    /// GCM nonce.
    pub nonce: [u8; NONCE_LEN],
}

/// Why a byte string is not a blob this build can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// Shorter than a header and a tag.
    #[error("ciphertext is {found} bytes, shorter than the minimum of {min}")]
    TooShort { found: usize, min: usize },
    /// The first four bytes are not `KMSB`.
    #[error("ciphertext does not start with the KMSB magic bytes: it is not a kmsd blob")]
    BadMagic,
    /// A format version this build does not know.
    #[error("ciphertext format version {0} is not supported: this build reads version 1")]
    UnsupportedVersion(u8),
    /// An algorithm byte this build does not know.
    #[error("ciphertext algorithm {0} is not supported: this build reads AES-256-GCM (1)")]
    UnsupportedAlgorithm(u8),
}

impl Header {
    /// Encodes the 38 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = FORMAT_VERSION;
        out[5] = ALG_AES_256_GCM;
        out[6..22].copy_from_slice(self.key_id.as_bytes());
        out[22..26].copy_from_slice(&self.key_version.to_be_bytes());
        out[26..38].copy_from_slice(&self.nonce);
        out
    }

    /// Parses the header of `blob` and returns it with the ciphertext that follows it.
    pub fn parse(blob: &[u8]) -> Result<(Header, &[u8]), BlobError> {
        let min = HEADER_LEN + TAG_LEN;
        let Some((head, body)) = blob.split_first_chunk::<HEADER_LEN>() else {
            return Err(BlobError::TooShort {
                found: blob.len(),
                min,
            });
        };
        if body.len() < TAG_LEN {
            return Err(BlobError::TooShort {
                found: blob.len(),
                min,
            });
        }
        if head[..4] != MAGIC {
            return Err(BlobError::BadMagic);
        }
        if head[4] != FORMAT_VERSION {
            return Err(BlobError::UnsupportedVersion(head[4]));
        }
        if head[5] != ALG_AES_256_GCM {
            return Err(BlobError::UnsupportedAlgorithm(head[5]));
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&head[6..22]);
        let mut version = [0u8; 4];
        version.copy_from_slice(&head[22..26]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&head[26..38]);
        let header = Header {
            key_id: Uuid::from_bytes(id),
            key_version: u32::from_be_bytes(version),
            nonce,
        };
        Ok((header, body))
    }
}

/// Encodes an encryption context as associated data.
///
/// The encoding is a 4-byte entry count, then for each entry in byte order of the keys a 4-byte
/// key length, the key, a 4-byte value length and the value. An empty context encodes as four
/// zero bytes. Lengths are bounded by the request validation, so they fit in `u32`.
pub fn encode_context(context: &BTreeMap<String, String>) -> Vec<u8> {
    let size: usize = context.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&len_u32(context.len()));
    for (key, value) in context {
        out.extend_from_slice(&len_u32(key.len()));
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&len_u32(value.len()));
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn len_u32(len: usize) -> [u8; 4] {
    // Context sizes are capped far below u32::MAX before they reach this point.
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

/// Builds the associated data for a blob: header bytes then the encoded context.
pub fn associated_data(header: &[u8; HEADER_LEN], context: &BTreeMap<String, String>) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(&encode_context(context));
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_header() -> Header {
        Header {
            key_id: Uuid::from_bytes([0x11; 16]),
            key_version: 7,
            nonce: [0x22; NONCE_LEN],
        }
    }

    #[test]
    fn header_round_trips() {
        let header = sample_header();
        let mut blob = header.encode().to_vec();
        blob.extend_from_slice(&[0u8; TAG_LEN]);
        let (parsed, body) = Header::parse(&blob).unwrap();
        assert_eq!(parsed, header);
        assert_eq!(body.len(), TAG_LEN);
    }

    #[test]
    fn header_encoding_is_exact() {
        let expected = "4b4d5342\
                        01\
                        01\
                        11111111111111111111111111111111\
                        00000007\
                        222222222222222222222222";
        let hex: String = sample_header()
            .encode()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn parse_rejects_short_input() {
        let err = Header::parse(&[0u8; HEADER_LEN + TAG_LEN - 1]).unwrap_err();
        assert_eq!(err, BlobError::TooShort { found: 53, min: 54 });
    }

    #[test]
    fn parse_rejects_wrong_magic_version_and_algorithm() {
        let mut blob = sample_header().encode().to_vec();
        blob.extend_from_slice(&[0u8; TAG_LEN]);

        let mut bad = blob.clone();
        bad[0] = b'X';
        assert_eq!(Header::parse(&bad).unwrap_err(), BlobError::BadMagic);

        let mut bad = blob.clone();
        bad[4] = 2;
        assert_eq!(
            Header::parse(&bad).unwrap_err(),
            BlobError::UnsupportedVersion(2)
        );

        let mut bad = blob;
        bad[5] = 9;
        assert_eq!(
            Header::parse(&bad).unwrap_err(),
            BlobError::UnsupportedAlgorithm(9)
        );
    }

    #[test]
    fn context_encoding_is_sorted_and_length_prefixed() {
        let mut context = BTreeMap::new();
        context.insert("tenant".to_owned(), "clinic-7".to_owned());
        context.insert("app".to_owned(), "x".to_owned());
        let encoded = encode_context(&context);
        let mut expected = vec![0, 0, 0, 2];
        expected.extend_from_slice(&[0, 0, 0, 3]);
        expected.extend_from_slice(b"app");
        expected.extend_from_slice(&[0, 0, 0, 1]);
        expected.extend_from_slice(b"x");
        expected.extend_from_slice(&[0, 0, 0, 6]);
        expected.extend_from_slice(b"tenant");
        expected.extend_from_slice(&[0, 0, 0, 8]);
        expected.extend_from_slice(b"clinic-7");
        assert_eq!(encoded, expected);
    }

    #[test]
    fn empty_context_encodes_as_zero_count() {
        assert_eq!(encode_context(&BTreeMap::new()), vec![0, 0, 0, 0]);
    }
}
