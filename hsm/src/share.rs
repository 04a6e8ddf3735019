//! Shamir shares of the root key, and the text form that admins type to unseal.
//!
//! [`split`] cuts a [`RootKey`](crate::RootKey) into `N` shares so that any `T` of them
//! rebuild it and fewer reveal nothing about it (Shamir secret sharing over GF(256), one
//! polynomial per key byte).
//! Shares are numbered `1..=N`. [`UnsealProgress`] collects shares one at a time while the
//! service is sealed and combines them once `T` have arrived.
//!
//! # Share text
//!
//! A share is printed as the prefix `kms-share-v1-` followed by the RFC 4648 base32 encoding
//! (alphabet `a-z2-7`, lowercase, no `=` padding) of 46 bytes:
//!
//! | bytes | field |
//! | --- | --- |
//! | 8 | share set id, random per initialisation (16 hex digits in other messages) |
//! | 1 | threshold `T`, the number of shares needed (1 to 255) |
//! | 1 | index of this share (1 to 255) |
//! | 32 | share value |
//! | 4 | checksum: the first 4 bytes of SHA-256(`"kms-share-v1"` followed by the 42 bytes above) |
//!
//! The 46 bytes take 74 base32 characters, and the 2 unused bits of the last one are zero.
//! [`Share::encode`] separates the characters into groups of 6 with `-`, so that a share reads
//! `kms-share-v1-aaaaaa-bbbbbb-...-cc` (99 characters in all). [`Share::parse`] ignores case,
//! leading and trailing whitespace, and any ASCII whitespace or `-` after the prefix, so admins
//! may type the text in capitals or regroup it.
//!
//! A single mistyped character changes at most two bytes, which the checksum catches: the share
//! is rejected with [`ShareError::Checksum`] or another [`ShareError`], except with probability
//! about 2^-32, the chance that a 32-bit checksum matches by accident. The checksum detects
//! typing errors but does not authenticate the share. A share that is well formed but not from
//! the original split rebuilds a wrong root key, which the daemon detects when unwrapping the
//! keyring key fails.
//!
//! With a threshold of 1 every share value is a copy of the root key.
//!
//! ## Test vector
//!
//! Set id `0123456789abcdef`, threshold 3, index 2 and value bytes `00 01 02 ... 1f` give the
//! checksum `b4 ea 29 86` and encode as
//!
//! ```text
//! kms-share-v1-aerukz-4jvpg6-6aycaa-aqeaye-audaoc-ajbifq-ydiob4-ibceqt-cqkrmf-yydenb-wha5dy-p3j2rj-qy
//! ```

mod base32;
mod unseal;

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::Error;
use crate::random;
use crate::secret::ROOT_KEY_LEN;

pub use unseal::{UnsealProgress, split};

/// Prefix of share text, including the format version.
const PREFIX: &str = "kms-share-v1-";
/// Domain separation string hashed in front of the payload for the checksum.
const CHECKSUM_DOMAIN: &[u8] = b"kms-share-v1";

const SET_ID_LEN: usize = 8;
const CHECKSUM_LEN: usize = 4;
/// Set id, threshold, index and value.
const PAYLOAD_LEN: usize = SET_ID_LEN + 2 + ROOT_KEY_LEN;
/// Payload and checksum: the bytes behind the base32 text.
const SHARE_BYTES_LEN: usize = PAYLOAD_LEN + CHECKSUM_LEN;
/// Number of base32 characters between two `-` in encoded share text.
const GROUP_LEN: usize = 6;
const BASE32_LEN: usize = base32::encoded_len(SHARE_BYTES_LEN);
/// Length of the text [`Share::encode`] returns.
const ENCODED_LEN: usize = PREFIX.len() + BASE32_LEN + (BASE32_LEN - 1) / GROUP_LEN;

/// Identifier of one split of a root key, shared by all shares of that split.
///
/// It is random per initialisation, so shares from another service or another initialisation
/// are rejected before they are combined. It is not secret. `Display` and `FromStr` use 16 hex
/// digits (lowercase when displayed, either case when parsed).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareSetId(pub [u8; SET_ID_LEN]);

impl ShareSetId {
    /// Generates a random set id from the operating system's random number generator.
    pub fn generate() -> Result<ShareSetId, Error> {
        let mut bytes = [0u8; SET_ID_LEN];
        random::fill(&mut bytes)?;
        Ok(ShareSetId(bytes))
    }
}

impl fmt::Display for ShareSetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for ShareSetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShareSetId({self})")
    }
}

impl FromStr for ShareSetId {
    type Err = ShareError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 2 * SET_ID_LEN {
            return Err(ShareError::InvalidSetId {
                reason: "it does not have 16 characters",
            });
        }
        let mut bytes = [0u8; SET_ID_LEN];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            let &[high, low] = pair else {
                return Err(ShareError::InvalidSetId {
                    reason: "it does not have 16 characters",
                });
            };
            let (Some(high), Some(low)) = (hex_digit(high), hex_digit(low)) else {
                return Err(ShareError::InvalidSetId {
                    reason: "it contains a character that is not a hex digit",
                });
            };
            *byte = (high << 4) | low;
        }
        Ok(ShareSetId(bytes))
    }
}

fn hex_digit(character: u8) -> Option<u8> {
    char::from(character)
        .to_digit(16)
        .and_then(|digit| u8::try_from(digit).ok())
}

/// One Shamir share of a root key.
///
/// The value is secret: it lives on the heap, is zeroized on drop, and `Debug` shows only the
/// set id, index and threshold. [`Share::encode`] is the only way to read it outside the crate.
pub struct Share {
    set_id: ShareSetId,
    threshold: u8,
    index: u8,
    value: SecretBox<[u8; ROOT_KEY_LEN]>,
}

impl Share {
    /// Builds a share by copying `value`. The caller still owns `value` and must clear it.
    pub(crate) fn from_parts(
        set_id: ShareSetId,
        threshold: u8,
        index: u8,
        value: &[u8; ROOT_KEY_LEN],
    ) -> Share {
        let mut boxed = SecretBox::<[u8; ROOT_KEY_LEN]>::default();
        boxed.expose_secret_mut().copy_from_slice(value);
        Share {
            set_id,
            threshold,
            index,
            value: boxed,
        }
    }

    /// Returns the id of the split this share belongs to.
    pub fn set_id(&self) -> ShareSetId {
        self.set_id
    }

    /// Returns the share's index, from 1 to 255.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// Returns the number of shares needed to rebuild the root key.
    pub fn threshold(&self) -> u8 {
        self.threshold
    }

    /// Returns the share value, for combining.
    pub(crate) fn value(&self) -> &[u8; ROOT_KEY_LEN] {
        self.value.expose_secret()
    }

    /// Encodes the share as text for an admin to keep, in the format described in the module
    /// documentation.
    pub fn encode(&self) -> SecretString {
        let bytes = self.to_bytes();
        // The capacity covers the whole text, so pushing never reallocates and leaves an
        // unzeroized copy behind. The text is copied into the secret and then zeroized.
        let mut text = Zeroizing::new(String::with_capacity(ENCODED_LEN));
        text.push_str(PREFIX);
        base32::encode_into(bytes.as_slice(), GROUP_LEN, &mut text);
        SecretString::from(text.as_str())
    }

    /// Parses share text in the format described in the module documentation.
    ///
    /// Errors never contain the text or any part of it.
    pub fn parse(text: &str) -> Result<Share, ShareError> {
        let body = strip_prefix(text.trim_matches(|c: char| c.is_ascii_whitespace()))?;

        // Cleared on drop, whether parsing succeeds or not.
        let mut bytes = Zeroizing::new([0u8; SHARE_BYTES_LEN]);
        base32::decode_into(body, bytes.as_mut_slice()).map_err(|error| match error {
            base32::DecodeError::InvalidCharacter { offset } => ShareError::InvalidCharacter {
                position: character_position(text, body, offset),
            },
            base32::DecodeError::WrongLength { found, expected } => {
                ShareError::WrongLength { found, expected }
            }
            // Only a typo in the last character sets the padding bits.
            base32::DecodeError::NonCanonical => ShareError::Checksum,
        })?;
        Share::from_bytes(&bytes)
    }

    /// Lays the share out as the bytes behind the text: payload then checksum.
    fn to_bytes(&self) -> Zeroizing<[u8; SHARE_BYTES_LEN]> {
        let mut bytes = Zeroizing::new([0u8; SHARE_BYTES_LEN]);
        let payload = self
            .set_id
            .0
            .iter()
            .copied()
            .chain([self.threshold, self.index])
            .chain(self.value.expose_secret().iter().copied());
        for (slot, byte) in bytes.iter_mut().zip(payload) {
            *slot = byte;
        }
        // SHARE_BYTES_LEN is PAYLOAD_LEN plus the checksum length, so this split cannot panic.
        let checksum = checksum(bytes.split_at(PAYLOAD_LEN).0);
        for (slot, byte) in bytes.iter_mut().skip(PAYLOAD_LEN).zip(checksum) {
            *slot = byte;
        }
        bytes
    }

    /// Checks the checksum and splits the bytes behind the text into fields.
    fn from_bytes(bytes: &[u8; SHARE_BYTES_LEN]) -> Result<Share, ShareError> {
        // The split points are constants that add up to SHARE_BYTES_LEN, so no split can panic.
        let (payload, stored_checksum) = bytes.split_at(PAYLOAD_LEN);
        let computed_checksum = checksum(payload);
        if !bool::from(stored_checksum.ct_eq(&computed_checksum)) {
            return Err(ShareError::Checksum);
        }

        let (set_id, rest) = payload.split_at(SET_ID_LEN);
        let (header, value) = rest.split_at(2);
        let (&[threshold, index], Ok(set_id), Ok(value)) = (
            header,
            <[u8; SET_ID_LEN]>::try_from(set_id),
            <&[u8; ROOT_KEY_LEN]>::try_from(value),
        ) else {
            return Err(ShareError::Malformed {
                reason: "its fields have the wrong lengths",
            });
        };
        if threshold == 0 {
            return Err(ShareError::Malformed {
                reason: "it states a threshold of 0",
            });
        }
        if index == 0 {
            return Err(ShareError::Malformed {
                reason: "it states an index of 0",
            });
        }
        Ok(Share::from_parts(
            ShareSetId(set_id),
            threshold,
            index,
            value,
        ))
    }
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Share")
            .field("set_id", &self.set_id)
            .field("index", &self.index)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

/// Removes the `kms-share-v1-` prefix in any case.
fn strip_prefix(text: &str) -> Result<&str, ShareError> {
    match (text.get(..PREFIX.len()), text.get(PREFIX.len()..)) {
        (Some(prefix), Some(body)) if prefix.eq_ignore_ascii_case(PREFIX) => Ok(body),
        _ => {
            let family = "kms-share-";
            let is_other_version = text
                .get(..family.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(family));
            Err(ShareError::Malformed {
                reason: if is_other_version {
                    "it uses a share format version other than v1"
                } else {
                    "it does not start with kms-share-v1-"
                },
            })
        }
    }
}

/// Converts a byte offset into `body`, a subslice of `text`, into a 1-based character position
/// in `text`, for error messages.
fn character_position(text: &str, body: &str, offset: usize) -> usize {
    let body_start = (body.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
    let end = body_start.saturating_add(offset);
    text.get(..end).map_or(end, |before| before.chars().count()) + 1
}

/// Computes the first 4 bytes of SHA-256 over the domain string and `payload`.
///
/// The hasher's buffer contains share bytes, which the `zeroize` feature of `sha2` clears on
/// drop.
fn checksum(payload: &[u8]) -> [u8; CHECKSUM_LEN] {
    let digest = Sha256::new()
        .chain_update(CHECKSUM_DOMAIN)
        .chain_update(payload)
        .finalize();
    let mut checksum = [0u8; CHECKSUM_LEN];
    for (slot, byte) in checksum.iter_mut().zip(digest.iter()) {
        *slot = *byte;
    }
    checksum
}

/// Errors in share text or in the order shares arrive while unsealing.
///
/// Messages are written for the admin who typed the share. They never contain the share text,
/// any part of it, or the share value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShareError {
    /// The text is not share text: a missing or unknown prefix, or impossible field values.
    #[error("share text is malformed: {reason}; copy the whole share, including its prefix")]
    Malformed {
        /// Description of the problem, without any of the text.
        reason: &'static str,
    },

    /// The text contains a character outside the base32 alphabet and the separators.
    #[error(
        "share text has an invalid character at position {position}; after the prefix, shares \
         contain only the letters a-z, the digits 2-7, dashes and spaces"
    )]
    InvalidCharacter {
        /// 1-based position of the character in the text as given, counted in characters.
        position: usize,
    },

    /// The text has too few or too many base32 characters after the prefix.
    #[error(
        "share text has {found} code characters after the prefix, expected {expected}; check \
         for missing or extra characters"
    )]
    WrongLength {
        /// Number of base32 characters found.
        found: usize,
        /// Number of base32 characters a share has.
        expected: usize,
    },

    /// The checksum does not match, which almost always means a typo.
    #[error("share checksum does not match, so the share text has a typo; retype it carefully")]
    Checksum,

    /// The share belongs to a different split of the root key. The message names only the
    /// share's own set, because the expected set id would let anyone forge well-formed shares
    /// that take up unseal progress.
    #[error(
        "share belongs to share set {found}, which is not the set of this service: provide a \
         share from this service's init"
    )]
    ForeignShare {
        /// Set id the service expects.
        expected: ShareSetId,
        /// Set id of the share.
        found: ShareSetId,
    },

    /// A share with the same index was already collected.
    #[error("share {index} was already provided; provide a share with a different index")]
    DuplicateShare {
        /// Index of the share.
        index: u8,
    },

    /// The share states a different threshold than its share set.
    #[error(
        "share states a threshold of {found}, but its share set needs {expected} shares; the \
         share was not produced by this service's split, so provide one that was"
    )]
    ThresholdMismatch {
        /// Threshold the service expects.
        expected: u8,
        /// Threshold stated by the share.
        found: u8,
    },

    /// The threshold was already reached, so no further share is needed.
    #[error(
        "all {threshold} shares needed are already collected; combine them, or reset the \
         unseal progress to start again"
    )]
    AlreadyComplete {
        /// Number of shares the share set needs.
        threshold: u8,
    },

    /// A share set id is not 16 hex digits.
    #[error("invalid share set id: {reason}; a share set id is 16 hex digits")]
    InvalidSetId {
        /// Description of the problem, without the text.
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::tests::{assert_no_secret, hex};

    const VECTOR_SET_ID: ShareSetId = ShareSetId([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
    const VECTOR_TEXT: &str = "kms-share-v1-aerukz-4jvpg6-6aycaa-aqeaye-audaoc-ajbifq-ydiob4-ibceqt-cqkrmf-yydenb-wha5dy-p3j2rj-qy";

    fn vector_value() -> [u8; ROOT_KEY_LEN] {
        std::array::from_fn(|i| i as u8)
    }

    fn vector_share() -> Share {
        Share::from_parts(VECTOR_SET_ID, 3, 2, &vector_value())
    }

    #[test]
    fn encode_matches_test_vector() {
        let text = vector_share().encode();

        assert_eq!(text.expose_secret(), VECTOR_TEXT);
        assert_eq!(text.expose_secret().len(), ENCODED_LEN);
    }

    #[test]
    fn parse_reads_test_vector() {
        let share = Share::parse(VECTOR_TEXT).unwrap();

        assert_eq!(share.set_id(), VECTOR_SET_ID);
        assert_eq!(share.threshold(), 3);
        assert_eq!(share.index(), 2);
        assert_eq!(share.value(), &vector_value());
    }

    #[test]
    fn checksum_covers_domain_and_payload() {
        let share = vector_share();
        let bytes = share.to_bytes();
        let mut hasher = Sha256::new();
        hasher.update(b"kms-share-v1");
        hasher.update(&bytes[..42]);
        let digest = hasher.finalize();

        assert_eq!(&bytes[42..], &digest[..4]);
        assert_eq!(&bytes[..8], &VECTOR_SET_ID.0);
        assert_eq!(bytes[8], 3);
        assert_eq!(bytes[9], 2);
        assert_eq!(&bytes[10..42], &vector_value());
    }

    #[test]
    fn parse_ignores_case_whitespace_and_grouping() {
        let compact: String = VECTOR_TEXT
            .strip_prefix(PREFIX)
            .unwrap()
            .chars()
            .filter(|c| *c != '-')
            .collect();
        let regrouped: Vec<String> = compact
            .as_bytes()
            .chunks(4)
            .map(|chunk| String::from_utf8(chunk.to_vec()).unwrap())
            .collect();
        let variants = [
            VECTOR_TEXT.to_uppercase(),
            format!("  {VECTOR_TEXT}\n"),
            format!("{PREFIX}{compact}"),
            format!("KMS-SHARE-V1-{}", regrouped.join(" ")),
            format!("{PREFIX}{}", regrouped.join("\t-")),
        ];

        for variant in variants {
            let share = Share::parse(&variant).unwrap();

            assert_eq!(share.value(), &vector_value(), "variant {variant:?}");
            assert_eq!(share.index(), 2, "variant {variant:?}");
        }
    }

    #[test]
    fn parse_rejects_every_single_character_substitution() {
        // Base32 symbols, separators and a few characters outside the alphabet.
        let replacements = "abcdefghijklmnopqrstuvwxyz234567-0189=_.";
        let original: Vec<char> = VECTOR_TEXT.chars().collect();
        let mut tried = 0;

        for position in 0..original.len() {
            for replacement in replacements.chars() {
                let current = original[position];
                if current.eq_ignore_ascii_case(&replacement) {
                    continue;
                }
                let mut typo = original.clone();
                typo[position] = replacement;
                let typo: String = typo.into_iter().collect();

                let result = Share::parse(&typo);

                assert!(
                    matches!(
                        result,
                        Err(ShareError::Checksum
                            | ShareError::Malformed { .. }
                            | ShareError::InvalidCharacter { .. }
                            | ShareError::WrongLength { .. })
                    ),
                    "replacing position {position} with {replacement:?} gave {result:?}"
                );
                tried += 1;
            }
        }

        assert!(tried > 3000, "only {tried} substitutions tried");
    }

    #[test]
    fn parse_reports_checksum_for_typo() {
        let mut typo: Vec<char> = VECTOR_TEXT.chars().collect();
        let position = PREFIX.len() + 3;
        typo[position] = if typo[position] == 'a' { 'b' } else { 'a' };
        let typo: String = typo.into_iter().collect();

        assert_eq!(Share::parse(&typo).unwrap_err(), ShareError::Checksum);
    }

    #[test]
    fn parse_rejects_missing_or_other_version_prefix() {
        let body = VECTOR_TEXT.strip_prefix(PREFIX).unwrap();

        let missing = Share::parse(body).unwrap_err();
        let other_version = Share::parse(&format!("kms-share-v2-{body}")).unwrap_err();
        let empty = Share::parse("").unwrap_err();

        assert_eq!(
            missing,
            ShareError::Malformed {
                reason: "it does not start with kms-share-v1-"
            }
        );
        assert_eq!(
            other_version,
            ShareError::Malformed {
                reason: "it uses a share format version other than v1"
            }
        );
        assert!(matches!(empty, ShareError::Malformed { .. }));
    }

    #[test]
    fn parse_rejects_truncated_and_extended_text() {
        let truncated = &VECTOR_TEXT[..VECTOR_TEXT.len() - 1];
        let extended = format!("{VECTOR_TEXT}a");

        assert_eq!(
            Share::parse(truncated).unwrap_err(),
            ShareError::WrongLength {
                found: 73,
                expected: 74
            }
        );
        assert_eq!(
            Share::parse(&extended).unwrap_err(),
            ShareError::WrongLength {
                found: 75,
                expected: 74
            }
        );
    }

    #[test]
    fn parse_reports_position_of_invalid_character() {
        let mut text: Vec<char> = format!(" {VECTOR_TEXT}").chars().collect();
        text[20] = '0';
        let text: String = text.into_iter().collect();

        let error = Share::parse(&text).unwrap_err();

        assert_eq!(error, ShareError::InvalidCharacter { position: 21 });
    }

    #[test]
    fn parse_rejects_zero_threshold_and_zero_index() {
        let zero_threshold = Share::from_parts(VECTOR_SET_ID, 0, 1, &vector_value()).encode();
        let zero_index = Share::from_parts(VECTOR_SET_ID, 1, 0, &vector_value()).encode();

        assert!(matches!(
            Share::parse(zero_threshold.expose_secret()),
            Err(ShareError::Malformed { .. })
        ));
        assert!(matches!(
            Share::parse(zero_index.expose_secret()),
            Err(ShareError::Malformed { .. })
        ));
    }

    #[test]
    fn share_errors_do_not_contain_share_text() {
        let body = VECTOR_TEXT.strip_prefix(PREFIX).unwrap();
        let inputs = [
            body.to_owned(),
            format!("{VECTOR_TEXT}a"),
            VECTOR_TEXT.replacen('a', "b", 1),
            VECTOR_TEXT.replacen('a', "0", 1),
        ];

        for input in inputs {
            let message = Share::parse(&input).unwrap_err().to_string();
            let compact = body.replace('-', "");

            assert!(!message.contains(body), "{message}");
            for group in compact.as_bytes().chunks(6) {
                let group = std::str::from_utf8(group).unwrap();
                assert!(group.len() < 6 || !message.contains(group), "{message}");
            }
        }
    }

    #[test]
    fn share_debug_hides_value() {
        let share = Share::parse(VECTOR_TEXT).unwrap();
        let value = *share.value();

        let debug = format!("{share:?}");

        assert_eq!(
            debug,
            "Share { set_id: ShareSetId(0123456789abcdef), index: 2, threshold: 3, .. }"
        );
        assert_no_secret(&debug, &value);
        assert!(!debug.contains(&hex(&value[..4])));
        assert!(!debug.contains(&VECTOR_TEXT[PREFIX.len()..]));
    }

    #[test]
    fn set_id_display_and_parse_round_trip() {
        let text = VECTOR_SET_ID.to_string();

        assert_eq!(text, "0123456789abcdef");
        assert_eq!(text.parse::<ShareSetId>().unwrap(), VECTOR_SET_ID);
        assert_eq!(
            "0123456789ABCDEF".parse::<ShareSetId>().unwrap(),
            VECTOR_SET_ID
        );
        assert_eq!(format!("{VECTOR_SET_ID:?}"), "ShareSetId(0123456789abcdef)");
    }

    #[test]
    fn set_id_parse_rejects_bad_text() {
        for text in [
            "",
            "0123456789abcde",
            "0123456789abcdef0",
            "0123456789abcdeg",
            "+123456789abcdef",
            "0123456789abcdé",
        ] {
            let result = text.parse::<ShareSetId>();

            assert!(
                matches!(result, Err(ShareError::InvalidSetId { .. })),
                "{text:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn set_id_generate_returns_distinct_ids() {
        let first = ShareSetId::generate().unwrap();
        let second = ShareSetId::generate().unwrap();

        assert_ne!(first, second);
    }
}
