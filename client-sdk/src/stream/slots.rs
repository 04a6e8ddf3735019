//! Key slots: the wrapped copies of the file key, and the two slot area copies that hold them.

use std::fmt;

use ring::digest;

use super::error::{Error, Result};
use super::recovery::RecoverySlot;
use crate::{Ciphertext, DataKey};

/// Slot type of a `kmsd` ciphertext blob.
pub(super) const SLOT_KMS: u8 = 1;
/// Slot type of an age-encrypted recovery copy.
pub(super) const SLOT_RECOVERY: u8 = 2;
/// Bytes of a slot area copy before its slot list: checksum, generation, list length.
pub(super) const COPY_HEAD_LEN: usize = 32 + 8 + 4;
/// Bytes of a slot before its body: type and length.
const SLOT_HEAD_LEN: usize = 1 + 4;
/// Maximum length of a key id or recipient, whose length is stored in one byte.
const MAX_LABEL_LEN: usize = 255;

/// One wrapped copy of the file key, stored in the header outside the key commitment.
///
/// Slots can be replaced with [`rewrap_file`](super::rewrap_file) without the file key and
/// without rewriting the segments. A slot that unwraps to any key other than the file key
/// fails the commitment check.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySlot {
    /// A `kmsd` ciphertext blob (type 1).
    Kms(KmsSlot),
    /// File key encrypted with age to an X25519 recovery recipient (type 2).
    Recovery(RecoverySlot),
    /// A slot of a type that this SDK does not know, kept as read so a rewrap can keep it.
    Other(OtherSlot),
}

impl KeySlot {
    /// Returns the type byte stored in the header.
    pub fn slot_type(&self) -> u8 {
        match self {
            KeySlot::Kms(_) => SLOT_KMS,
            KeySlot::Recovery(_) => SLOT_RECOVERY,
            KeySlot::Other(other) => other.slot_type,
        }
    }

    /// Returns a short name of the slot type: `kms`, `recovery` or `unknown`.
    pub fn kind(&self) -> &'static str {
        match self {
            KeySlot::Kms(_) => "kms",
            KeySlot::Recovery(_) => "recovery",
            KeySlot::Other(_) => "unknown",
        }
    }

    /// Encodes the slot body, the bytes after the type and the length.
    pub(super) fn encode_body(&self) -> Vec<u8> {
        match self {
            KeySlot::Kms(kms) => {
                let mut out = Vec::with_capacity(1 + kms.key_id.len() + 4 + kms.blob.len());
                put_label(&mut out, &kms.key_id);
                out.extend_from_slice(&kms.key_version.to_be_bytes());
                out.extend_from_slice(&kms.blob);
                out
            }
            KeySlot::Recovery(recovery) => {
                let age_file = recovery.age_file();
                let mut out = Vec::with_capacity(1 + recovery.recipient().len() + age_file.len());
                put_label(&mut out, recovery.recipient());
                out.extend_from_slice(age_file);
                out
            }
            KeySlot::Other(other) => other.body.clone(),
        }
    }

    /// Parses a slot body of the given type. Unknown types become [`KeySlot::Other`].
    pub(super) fn decode(slot_type: u8, body: &[u8]) -> Result<Self> {
        match slot_type {
            SLOT_KMS => {
                let (key_id, rest) =
                    take_label(body, "a kmsd slot has a key id of invalid length or UTF-8")?;
                let (version, blob) = rest
                    .split_first_chunk::<4>()
                    .ok_or(malformed("a kmsd slot ends before its key version"))?;
                let slot = KmsSlot::new(key_id, u32::from_be_bytes(*version), blob.to_vec());
                slot.map(KeySlot::Kms)
                    .map_err(|_| malformed("a kmsd slot has an empty key id or blob"))
            }
            SLOT_RECOVERY => {
                let (recipient, age_file) = take_label(
                    body,
                    "a recovery slot has a recipient of invalid length or UTF-8",
                )?;
                if age_file.is_empty() {
                    return Err(malformed("a recovery slot has no age file"));
                }
                let slot = RecoverySlot::from_parts(recipient, age_file.to_vec());
                Ok(KeySlot::Recovery(slot))
            }
            _ => Ok(KeySlot::Other(OtherSlot {
                slot_type,
                body: body.to_vec(),
            })),
        }
    }
}

/// Prints the slot kind, key id or recipient, and lengths only, because a slot contains a
/// wrapped key.
impl fmt::Debug for KeySlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySlot::Kms(kms) => kms.fmt(f),
            KeySlot::Recovery(recovery) => recovery.fmt(f),
            KeySlot::Other(other) => other.fmt(f),
        }
    }
}

impl From<KmsSlot> for KeySlot {
    fn from(slot: KmsSlot) -> Self {
        KeySlot::Kms(slot)
    }
}

impl From<RecoverySlot> for KeySlot {
    fn from(slot: RecoverySlot) -> Self {
        KeySlot::Recovery(slot)
    }
}

/// A `kmsd` ciphertext blob of the file key, with the key id and version that wrapped it.
///
/// The blob names its key and version itself. The copies here let
/// [`inspect_file`](super::inspect_file) show them without parsing the blob. Unwrap the blob with
/// [`Client::decrypt`](crate::Client::decrypt) and the header's context, and replace it after
/// a key rotation with the result of [`Client::rewrap`](crate::Client::rewrap).
#[derive(Clone, PartialEq, Eq)]
pub struct KmsSlot {
    key_id: String,
    key_version: u32,
    blob: Vec<u8>,
}

impl KmsSlot {
    /// Builds a slot from a key id of 1 to 255 bytes, a key version and a non-empty blob.
    pub fn new(key_id: impl Into<String>, key_version: u32, blob: Vec<u8>) -> Result<Self> {
        let key_id = key_id.into();
        if key_id.is_empty() || key_id.len() > MAX_LABEL_LEN {
            return Err(Error::InvalidKeySlot {
                reason: format!(
                    "the key id has {} bytes, expected 1 to {MAX_LABEL_LEN}",
                    key_id.len()
                ),
            });
        }
        if blob.is_empty() {
            return Err(Error::InvalidKeySlot {
                reason: "the ciphertext blob is empty".to_owned(),
            });
        }
        Ok(KmsSlot {
            key_id,
            key_version,
            blob,
        })
    }

    /// Builds a slot from a data key that `kmsd` generated.
    pub fn from_data_key(data_key: &DataKey) -> Result<Self> {
        Self::new(
            data_key.key_id.clone(),
            data_key.key_version,
            data_key.ciphertext.clone(),
        )
    }

    /// Builds a slot from a blob that `kmsd` returned, such as the result of a rewrap.
    pub fn from_ciphertext(ciphertext: &Ciphertext) -> Result<Self> {
        Self::new(
            ciphertext.key_id.clone(),
            ciphertext.key_version,
            ciphertext.ciphertext.clone(),
        )
    }

    /// Returns the id of the key that wrapped the file key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Returns the version of that key.
    pub fn key_version(&self) -> u32 {
        self.key_version
    }

    /// Returns the ciphertext blob, to pass to `kmsd` for decryption or rewrap.
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }
}

impl fmt::Debug for KmsSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kms")
            .field("key_id", &self.key_id)
            .field("key_version", &self.key_version)
            .field("blob_len", &self.blob.len())
            .finish()
    }
}

/// A slot of a type that this SDK cannot use, kept byte for byte.
#[derive(Clone, PartialEq, Eq)]
pub struct OtherSlot {
    slot_type: u8,
    body: Vec<u8>,
}

impl OtherSlot {
    /// Returns the type byte.
    pub fn slot_type(&self) -> u8 {
        self.slot_type
    }

    /// Returns the body as stored.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

impl fmt::Debug for OtherSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Other")
            .field("slot_type", &self.slot_type)
            .field("len", &self.body.len())
            .finish()
    }
}

/// Encodes a slot list: per slot, the type, a u32 body length and the body.
pub(super) fn encode_slot_list(slots: &[KeySlot]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for slot in slots {
        let body = slot.encode_body();
        let len = u32::try_from(body.len()).map_err(|_| Error::HeaderTooLarge {
            limit: super::MAX_HEADER_LEN,
        })?;
        out.push(slot.slot_type());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&body);
    }
    Ok(out)
}

fn decode_slot_list(mut list: &[u8]) -> Result<Vec<KeySlot>> {
    let mut slots = Vec::new();
    while !list.is_empty() {
        let (head, rest) = list
            .split_first_chunk::<SLOT_HEAD_LEN>()
            .ok_or(malformed("a key slot ends inside its type and length"))?;
        let [slot_type, len @ ..] = *head;
        let len = u32::from_be_bytes(len) as usize;
        if len > rest.len() {
            return Err(malformed("a key slot is longer than its slot area"));
        }
        let (body, after) = rest.split_at(len);
        slots.push(KeySlot::decode(slot_type, body)?);
        list = after;
    }
    Ok(slots)
}

/// Encodes one slot area copy of `area_len` bytes: checksum, generation, list length, list
/// and zero padding.
pub(super) fn encode_copy(generation: u64, list: &[u8], area_len: usize) -> Result<Vec<u8>> {
    let needed = COPY_HEAD_LEN + list.len();
    if needed > area_len {
        return Err(Error::SlotAreaFull {
            needed,
            available: area_len,
        });
    }
    let list_len = u32::try_from(list.len()).map_err(|_| Error::SlotAreaFull {
        needed,
        available: area_len,
    })?;
    let mut copy = vec![0; area_len];
    copy[32..40].copy_from_slice(&generation.to_be_bytes());
    copy[40..44].copy_from_slice(&list_len.to_be_bytes());
    copy[COPY_HEAD_LEN..needed].copy_from_slice(list);
    let checksum = digest::digest(&digest::SHA256, &copy[32..needed]);
    copy[..32].copy_from_slice(checksum.as_ref());
    Ok(copy)
}

/// Slot area copy whose checksum matches.
#[derive(Debug)]
struct ValidCopy<'a> {
    generation: u64,
    list: &'a [u8],
}

/// Checks one copy. A copy is valid when its generation is not 0, its list fits, and its
/// checksum matches. Any other copy was never written or was cut short by a crash.
fn check_copy(copy: &[u8]) -> Option<ValidCopy<'_>> {
    let (checksum, rest) = copy.split_first_chunk::<32>()?;
    let (generation, rest) = rest.split_first_chunk::<8>()?;
    let (list_len, rest) = rest.split_first_chunk::<4>()?;
    let generation = u64::from_be_bytes(*generation);
    let list_len = u32::from_be_bytes(*list_len) as usize;
    if generation == 0 || list_len > rest.len() {
        return None;
    }
    let covered = &copy[32..COPY_HEAD_LEN + list_len];
    // An unkeyed checksum against torn writes, not a secret, so `!=` is fine here.
    if digest::digest(&digest::SHA256, covered).as_ref() != checksum {
        return None;
    }
    Some(ValidCopy {
        generation,
        list: &rest[..list_len],
    })
}

/// Slot area copy that a reader uses.
#[derive(Debug)]
pub(super) struct ActiveCopy {
    /// 0 for the first copy, 1 for the second.
    pub(super) index: usize,
    pub(super) generation: u64,
    pub(super) slots: Vec<KeySlot>,
}

/// Picks the valid copy with the higher generation, the first copy on a tie, and parses its
/// slots.
pub(super) fn select_copy(first: &[u8], second: &[u8]) -> Result<ActiveCopy> {
    let (index, valid) = match (check_copy(first), check_copy(second)) {
        (None, None) => return Err(Error::SlotCopiesDamaged),
        (Some(a), None) => (0, a),
        (None, Some(b)) => (1, b),
        (Some(a), Some(b)) if b.generation > a.generation => (1, b),
        (Some(a), Some(_)) => (0, a),
    };
    Ok(ActiveCopy {
        index,
        generation: valid.generation,
        slots: decode_slot_list(valid.list)?,
    })
}

fn put_label(out: &mut Vec<u8>, label: &str) {
    // Constructors limit labels to 255 bytes.
    out.push(u8::try_from(label.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(label.as_bytes());
}

/// Splits a one-byte length and that many bytes of UTF-8 from the start of `body`.
fn take_label<'a>(body: &'a [u8], what: &'static str) -> Result<(String, &'a [u8])> {
    let (len, rest) = body
        .split_first()
        .ok_or(malformed("a key slot body is empty"))?;
    let len = usize::from(*len);
    if len == 0 || len > rest.len() {
        return Err(Error::MalformedHeader { reason: what });
    }
    let (label, rest) = rest.split_at(len);
    let label = std::str::from_utf8(label).map_err(|_| Error::MalformedHeader { reason: what })?;
    Ok((label.to_owned(), rest))
}

fn malformed(reason: &'static str) -> Error {
    Error::MalformedHeader { reason }
}
