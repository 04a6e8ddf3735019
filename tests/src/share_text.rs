//! An independent codec for the text form of unseal shares, so that tests can forge shares that
//! are well formed but carry other values.
//!
//! The format, as the `hsm` crate documents it: the prefix `kms-share-v1-`, then lowercase
//! RFC 4648 base32 without padding of 46 bytes, in groups of 6 characters joined by `-`. The 46
//! bytes are the share set id (8), the threshold (1), the index (1), the share value (32) and a
//! checksum (4): the first 4 bytes of SHA-256 over `kms-share-v1` followed by the 42 bytes
//! before it. This module is written from that description and shares no code with `hsm`.

use std::fmt;

use sha2::{Digest, Sha256};

const PREFIX: &str = "kms-share-v1-";
const CHECKSUM_DOMAIN: &[u8] = b"kms-share-v1";
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const PAYLOAD_LEN: usize = 42;
const SHARE_LEN: usize = PAYLOAD_LEN + 4;
const GROUP_LEN: usize = 6;

/// The fields of one share.
#[derive(Clone, PartialEq, Eq)]
pub struct ShareFields {
    /// Share set id, random per init.
    pub set_id: [u8; 8],
    /// Number of shares needed to unseal.
    pub threshold: u8,
    /// Index of this share, from 1.
    pub index: u8,
    /// Share value, which is secret.
    pub value: [u8; 32],
}

impl fmt::Debug for ShareFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareFields")
            .field("set_id", &self.set_id)
            .field("threshold", &self.threshold)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// Decodes share text and checks its checksum. Returns `None` for anything else.
pub fn decode(text: &str) -> Option<ShareFields> {
    let body = text.trim().strip_prefix(PREFIX)?;
    let digits: Vec<u8> = body.bytes().filter(|b| *b != b'-').collect();
    let bytes = base32_decode(&digits)?;
    let bytes: [u8; SHARE_LEN] = bytes.try_into().ok()?;
    let (payload, stored) = bytes.split_at(PAYLOAD_LEN);
    if checksum(payload) != stored {
        return None;
    }
    let mut set_id = [0u8; 8];
    set_id.copy_from_slice(&payload[..8]);
    let mut value = [0u8; 32];
    value.copy_from_slice(&payload[10..]);
    Some(ShareFields {
        set_id,
        threshold: payload[8],
        index: payload[9],
        value,
    })
}

/// Encodes the fields as share text with a correct checksum.
pub fn encode(fields: &ShareFields) -> String {
    let mut bytes = Vec::with_capacity(SHARE_LEN);
    bytes.extend_from_slice(&fields.set_id);
    bytes.push(fields.threshold);
    bytes.push(fields.index);
    bytes.extend_from_slice(&fields.value);
    let sum = checksum(&bytes);
    bytes.extend_from_slice(&sum);

    let digits = base32_encode(&bytes);
    let groups: Vec<&str> = digits
        .as_bytes()
        .chunks(GROUP_LEN)
        .map(|group| std::str::from_utf8(group).expect("base32 digits are ASCII"))
        .collect();
    format!("{PREFIX}{}", groups.join("-"))
}

fn checksum(payload: &[u8]) -> [u8; 4] {
    let digest = Sha256::new()
        .chain_update(CHECKSUM_DOMAIN)
        .chain_update(payload)
        .finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes lowercase or uppercase base32 digits. The leftover bits of the last digit must be
/// zero, as the format requires.
fn base32_decode(digits: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &digit in digits {
        let lower = digit.to_ascii_lowercase();
        let value = ALPHABET.iter().position(|&a| a == lower)?;
        buffer = (buffer << 5) | value as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    (buffer & ((1 << bits) - 1) == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector from the share format documentation in `hsm/src/share.rs`.
    const VECTOR: &str = "kms-share-v1-aerukz-4jvpg6-6aycaa-aqeaye-audaoc-ajbifq-ydiob4-ibceqt-\
                          cqkrmf-yydenb-wha5dy-p3j2rj-qy";

    fn vector_fields() -> ShareFields {
        let mut value = [0u8; 32];
        for (i, byte) in value.iter_mut().enumerate() {
            *byte = i as u8;
        }
        ShareFields {
            set_id: [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef],
            threshold: 3,
            index: 2,
            value,
        }
    }

    #[test]
    fn encode_matches_documented_vector() {
        assert_eq!(encode(&vector_fields()), VECTOR);
    }

    #[test]
    fn decode_reads_documented_vector() {
        assert_eq!(decode(VECTOR), Some(vector_fields()));
    }

    #[test]
    fn decode_rejects_changed_character() {
        let changed = VECTOR.replacen("aerukz", "aerukq", 1);
        assert_eq!(decode(&changed), None);
    }

    #[test]
    fn decode_accepts_uppercase() {
        assert_eq!(
            decode(&VECTOR.to_uppercase().replacen("KMS-SHARE-V1-", PREFIX, 1)),
            Some(vector_fields())
        );
    }
}
