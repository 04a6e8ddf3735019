//! The file header: encoding, parsing and the key commitment.

use std::fmt;
use std::io::{self, Read};

use super::error::{Error, Result};
use super::key::{FileKey, FileKeys, SegmentCipher, fill_random};
use super::recovery::RecoveryIdentity;
use super::slots::{COPY_HEAD_LEN, KeySlot, KmsSlot, encode_copy, encode_slot_list, select_copy};
use super::{
    ALGORITHM_AES_256_GCM_HKDF_SHA256, COMMITMENT_LEN, EncryptOptions, FORMAT_VERSION, MAGIC,
    MAX_CONTEXT_ENTRIES, MAX_CONTEXT_KEY_LEN, MAX_CONTEXT_VALUE_LEN, MAX_HEADER_LEN,
    MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, NONCE_PREFIX_LEN, SALT_LEN,
};
use crate::Context;

/// Bytes that give the header length: magic, version, algorithm, header length.
pub(super) const PREFIX_LEN: usize = 4 + 1 + 1 + 4;
/// Bytes before the context: the prefix, segment size, slot area length, salt, nonce prefix.
const FIXED_LEN: usize = PREFIX_LEN + 4 + 4 + SALT_LEN + NONCE_PREFIX_LEN;
/// Shortest valid header: an empty context and two empty slot copies.
const MIN_HEADER_LEN: usize = FIXED_LEN + 4 + COMMITMENT_LEN + 2 * COPY_HEAD_LEN;

/// Segment cipher of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// AES-256-GCM segments under a key derived with HKDF-SHA256 (id 1).
    Aes256GcmHkdfSha256,
}

impl Algorithm {
    /// Returns the id stored in the header.
    pub fn id(self) -> u8 {
        match self {
            Algorithm::Aes256GcmHkdfSha256 => ALGORITHM_AES_256_GCM_HKDF_SHA256,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Algorithm::Aes256GcmHkdfSha256 => f.write_str("AES-256-GCM, HKDF-SHA256"),
        }
    }
}

/// Parsed header of an encrypted file.
///
/// [`read_header`] returns it before the file key is known, so that the caller can unwrap a key
/// slot. [`DecryptingReader::new`](super::DecryptingReader::new) and the other readers then
/// check the context and the commitment. Everything here except the slots is authenticated
/// only once that check passes.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    segment_size: u32,
    slot_area_len: u32,
    salt: [u8; SALT_LEN],
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    context: Context,
    commitment: [u8; COMMITMENT_LEN],
    slots: Vec<KeySlot>,
    /// Generation of the slot copy in use, 1 for a new file.
    generation: u64,
    /// Index of the slot copy in use: 0 or 1.
    active_copy: usize,
    encoded_len: usize,
}

impl Header {
    /// Returns the format version, 1.
    pub fn version(&self) -> u8 {
        FORMAT_VERSION
    }

    /// Returns the segment cipher.
    pub fn algorithm(&self) -> Algorithm {
        Algorithm::Aes256GcmHkdfSha256
    }

    /// Returns the plaintext bytes per segment.
    pub fn segment_size(&self) -> u32 {
        self.segment_size
    }

    /// Returns the bytes reserved for each of the two key slot copies.
    pub fn slot_area_len(&self) -> u32 {
        self.slot_area_len
    }

    /// Returns the encryption context stored in the header.
    ///
    /// It is authenticated only once the commitment is checked with the file key. Pass it to
    /// `kmsd` to unwrap the [`KmsSlot`]: the daemon checks it against the blob.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Returns every key slot in header order, unknown types included.
    pub fn slots(&self) -> &[KeySlot] {
        &self.slots
    }

    /// Returns the first `kmsd` slot, if any.
    pub fn kms_slot(&self) -> Option<&KmsSlot> {
        self.slots.iter().find_map(|slot| match slot {
            KeySlot::Kms(kms) => Some(kms),
            _ => None,
        })
    }

    /// Returns the generation of the slot copy in use: 1 for a new file, one more after each
    /// rewrap.
    pub fn slot_generation(&self) -> u64 {
        self.generation
    }

    /// Returns the length of the header in bytes, which is the offset of the first segment.
    pub fn encoded_len(&self) -> usize {
        self.encoded_len
    }

    /// Checks that `key` is the file key of this header, in constant time.
    ///
    /// Use it to check a key unwrapped from a new slot before
    /// [`rewrap_file`](super::rewrap_file) writes that slot.
    pub fn check_key(&self, key: &FileKey) -> Result<()> {
        self.derive(key).map(|_| ())
    }

    /// Unwraps the file key from the first recovery slot that one of `identities` opens, and
    /// checks it against the commitment.
    ///
    /// Fails with [`Error::NoRecoverySlot`] when the header has none, and with
    /// [`Error::NoMatchingIdentity`] when no identity fits. A slot that is damaged or contains
    /// another key does not stop the search. Its error is returned if no other slot works.
    pub fn unwrap_recovery(&self, identities: &[RecoveryIdentity]) -> Result<FileKey> {
        let mut recipients = Vec::new();
        let mut first_error = None;
        let recovery_slots = self.slots.iter().filter_map(|slot| match slot {
            KeySlot::Recovery(recovery) => Some(recovery),
            _ => None,
        });
        for slot in recovery_slots {
            recipients.push(slot.recipient().to_owned());
            for identity in identities {
                let outcome = match slot.unwrap_key(identity) {
                    Ok(None) => continue,
                    Ok(Some(key)) => self.check_key(&key).map(|()| key),
                    Err(err) => Err(err),
                };
                match outcome {
                    Ok(key) => return Ok(key),
                    Err(err) => {
                        first_error.get_or_insert(err);
                    }
                }
            }
        }
        if let Some(err) = first_error {
            return Err(err);
        }
        if recipients.is_empty() {
            return Err(Error::NoRecoverySlot);
        }
        Err(Error::NoMatchingIdentity { recipients })
    }

    /// Builds the header of a new file with a random salt and nonce prefix.
    pub(crate) fn create(
        key: &FileKey,
        context: &Context,
        slots: Vec<KeySlot>,
        options: EncryptOptions,
    ) -> Result<(Self, SegmentCipher)> {
        let mut salt = [0; SALT_LEN];
        let mut nonce_prefix = [0; NONCE_PREFIX_LEN];
        fill_random(&mut salt)?;
        fill_random(&mut nonce_prefix)?;
        Self::create_with(key, context, slots, options, salt, nonce_prefix)
    }

    /// Builds the header of a new file from a given salt and nonce prefix. Only tests and the
    /// benchmarks pass fixed values. Everything else goes through [`Header::create`].
    pub(crate) fn create_with(
        key: &FileKey,
        context: &Context,
        slots: Vec<KeySlot>,
        options: EncryptOptions,
        salt: [u8; SALT_LEN],
        nonce_prefix: [u8; NONCE_PREFIX_LEN],
    ) -> Result<(Self, SegmentCipher)> {
        let segment_size = options.segment_size();
        check_segment_size(segment_size)?;
        validate_context(context)?;

        // The slot area grows to fit the initial slots. The header as a whole has a limit.
        let list = encode_slot_list(&slots)?;
        let area_len = (options.slot_area_len() as usize).max(COPY_HEAD_LEN + list.len());
        let too_large = Error::HeaderTooLarge {
            limit: MAX_HEADER_LEN,
        };
        let authenticated_len = FIXED_LEN + encoded_context_len(context);
        let encoded_len = area_len
            .checked_mul(2)
            .and_then(|areas| areas.checked_add(authenticated_len + COMMITMENT_LEN))
            .filter(|len| *len <= MAX_HEADER_LEN)
            .ok_or(too_large)?;
        let slot_area_len = u32::try_from(area_len).map_err(|_| Error::HeaderTooLarge {
            limit: MAX_HEADER_LEN,
        })?;

        let mut header = Header {
            segment_size,
            slot_area_len,
            salt,
            nonce_prefix,
            context: context.clone(),
            commitment: [0; COMMITMENT_LEN],
            slots,
            generation: 1,
            active_copy: 0,
            encoded_len,
        };
        let authenticated = header.encode_authenticated();
        let keys = FileKeys::derive(key, &salt, nonce_prefix, &authenticated);
        header.commitment = keys.commitment(&authenticated);
        Ok((header, keys.cipher))
    }

    /// Checks `context` against the stored one, then the commitment against `key`, and
    /// returns the segment cipher.
    pub(crate) fn open(&self, key: &FileKey, context: &Context) -> Result<SegmentCipher> {
        if *context != self.context {
            return Err(Error::ContextMismatch);
        }
        self.derive(key)
    }

    /// Derives the file's keys from `key` and checks the commitment.
    fn derive(&self, key: &FileKey) -> Result<SegmentCipher> {
        // Parsing accepts only the canonical encoding, so these are the stored bytes.
        let authenticated = self.encode_authenticated();
        let keys = FileKeys::derive(key, &self.salt, self.nonce_prefix, &authenticated);
        keys.verify_commitment(&authenticated, &self.commitment)?;
        Ok(keys.cipher)
    }

    /// Encodes the header of a new file. The first slot copy contains the slots at generation
    /// 1, and the second is zero, which readers treat as unused.
    pub(crate) fn encode_new(&self) -> Result<Vec<u8>> {
        let mut out = self.encode_authenticated();
        out.extend_from_slice(&self.commitment);
        let list = encode_slot_list(&self.slots)?;
        let area_len = self.slot_area_len as usize;
        out.extend_from_slice(&encode_copy(1, &list, area_len)?);
        out.resize(out.len() + area_len, 0);
        Ok(out)
    }

    /// Encodes everything before the commitment.
    pub(crate) fn encode_authenticated(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_LEN + encoded_context_len(&self.context));
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.push(ALGORITHM_AES_256_GCM_HKDF_SHA256);
        put_len(&mut out, self.encoded_len);
        out.extend_from_slice(&self.segment_size.to_be_bytes());
        out.extend_from_slice(&self.slot_area_len.to_be_bytes());
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.nonce_prefix);
        encode_context(&self.context, &mut out);
        out
    }

    /// Returns the offsets of the two slot copies from the start of the file.
    pub(crate) fn copy_offsets(&self) -> [usize; 2] {
        let first = self.encoded_len - 2 * self.slot_area_len as usize;
        [first, first + self.slot_area_len as usize]
    }

    /// Returns which copy is in use: 0 or 1.
    pub(crate) fn active_copy(&self) -> usize {
        self.active_copy
    }

    /// Returns this header with `slots` in the other copy at the next generation.
    pub(crate) fn with_slots(&self, slots: Vec<KeySlot>) -> Result<Self> {
        let generation = self
            .generation
            .checked_add(1)
            .ok_or(Error::MalformedHeader {
                reason: "the slot generation is at its maximum",
            })?;
        Ok(Header {
            slots,
            generation,
            active_copy: 1 - self.active_copy,
            ..self.clone()
        })
    }

    /// Encodes the slot copy that this header uses.
    pub(crate) fn encode_active_copy(&self) -> Result<Vec<u8>> {
        let list = encode_slot_list(&self.slots)?;
        encode_copy(self.generation, &list, self.slot_area_len as usize)
    }

    /// Parses a whole header. `bytes` must be exactly as long as its header length field.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self> {
        let mut fields = Fields { bytes, pos: 0 };
        let prefix: [u8; PREFIX_LEN] = fields.array()?;
        let encoded_len = check_prefix(&prefix)?;
        if encoded_len != bytes.len() {
            return Err(malformed(
                "the header length does not match the header bytes",
            ));
        }
        let segment_size = u32::from_be_bytes(fields.array()?);
        check_segment_size(segment_size)?;
        let slot_area_len = u32::from_be_bytes(fields.array()?);
        if (slot_area_len as usize) < COPY_HEAD_LEN {
            return Err(malformed(
                "the slot area is shorter than a slot copy header",
            ));
        }
        let salt = fields.array()?;
        let nonce_prefix = fields.array()?;
        let context = fields.context()?;
        let commitment = fields.array()?;

        let area_len = slot_area_len as usize;
        if bytes.len() - fields.pos != 2 * area_len {
            return Err(malformed(
                "the header length does not match two slot copies",
            ));
        }
        let (first, second) = bytes[fields.pos..].split_at(area_len);
        let active = select_copy(first, second)?;
        Ok(Header {
            segment_size,
            slot_area_len,
            salt,
            nonce_prefix,
            context,
            commitment,
            slots: active.slots,
            generation: active.generation,
            active_copy: active.index,
            encoded_len,
        })
    }
}

/// Prints the public fields. The salt, nonce prefix and commitment are left out as noise.
impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Header")
            .field("segment_size", &self.segment_size)
            .field("context", &self.context)
            .field("slots", &self.slots)
            .field("slot_generation", &self.generation)
            .field("encoded_len", &self.encoded_len)
            .finish_non_exhaustive()
    }
}

/// Checks the magic, version and algorithm in the first bytes of a header and returns the
/// header length.
pub(super) fn check_prefix(prefix: &[u8; PREFIX_LEN]) -> Result<usize> {
    let [m0, m1, m2, m3, version, algorithm, len @ ..] = *prefix;
    let magic = [m0, m1, m2, m3];
    if magic != MAGIC {
        return Err(Error::BadMagic { found: magic });
    }
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion { version });
    }
    if algorithm != ALGORITHM_AES_256_GCM_HKDF_SHA256 {
        return Err(Error::UnsupportedAlgorithm { algorithm });
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_HEADER_LEN {
        return Err(Error::HeaderTooLarge {
            limit: MAX_HEADER_LEN,
        });
    }
    if len < MIN_HEADER_LEN {
        return Err(malformed("the header length is below the minimum"));
    }
    Ok(len)
}

/// Reads and parses the header at the start of `reader`, leaving `reader` at the first segment.
///
/// This needs no key: it returns the key slots and the stored encryption context, so the
/// caller can unwrap a slot and then build a [`DecryptingReader`](super::DecryptingReader). It
/// reads exactly the header bytes, in three reads.
pub fn read_header<R: Read>(reader: &mut R) -> Result<Header> {
    let mut prefix = [0; PREFIX_LEN];
    // The magic comes first on its own, so a short input of another kind fails with
    // `BadMagic` rather than `TruncatedHeader`.
    read_exact(reader, &mut prefix[..4])?;
    if prefix[..4] != MAGIC {
        return Err(Error::BadMagic {
            found: [prefix[0], prefix[1], prefix[2], prefix[3]],
        });
    }
    read_exact(reader, &mut prefix[4..])?;
    let len = check_prefix(&prefix)?;
    let mut bytes = vec![0; len];
    bytes[..PREFIX_LEN].copy_from_slice(&prefix);
    read_exact(reader, &mut bytes[PREFIX_LEN..])?;
    Header::parse(&bytes)
}

fn read_exact<R: Read>(reader: &mut R, out: &mut [u8]) -> Result<()> {
    reader.read_exact(out).map_err(|err| match err.kind() {
        io::ErrorKind::UnexpectedEof => Error::TruncatedHeader,
        _ => Error::Io(err),
    })
}

/// Reads header fields from a byte slice that contains the whole header.
struct Fields<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Fields<'_> {
    fn take(&mut self, len: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(malformed("a field runs past the header length"))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn context(&mut self) -> Result<Context> {
        let count = self.u32()?;
        if count as usize > MAX_CONTEXT_ENTRIES {
            return Err(too_many_entries(count as usize));
        }
        let mut context = Context::new();
        let mut previous: Option<String> = None;
        for _ in 0..count {
            let key = self.string(MAX_CONTEXT_KEY_LEN, "key")?;
            let value = self.string(MAX_CONTEXT_VALUE_LEN, "value")?;
            if key.is_empty() {
                return Err(invalid_context("a key is empty".to_owned()));
            }
            // The encoding is canonical: keys in strictly ascending byte order.
            if previous
                .as_ref()
                .is_some_and(|prev| prev.as_bytes() >= key.as_bytes())
            {
                return Err(malformed("context keys are not in ascending byte order"));
            }
            previous = Some(key.clone());
            context.insert(key, value);
        }
        Ok(context)
    }

    /// Reads a u32 length and that many bytes of UTF-8.
    fn string(&mut self, max: usize, what: &'static str) -> Result<String> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(invalid_context(format!(
                "a context {what} has {len} bytes, above {max}"
            )));
        }
        String::from_utf8(self.take(len)?.to_vec())
            .map_err(|_| malformed("a context key or value is not UTF-8"))
    }
}

/// Encodes a context as the ciphertext blob does: a u32 count, then per entry in byte order of
/// the keys a u32 key length, the key, a u32 value length and the value.
fn encode_context(context: &Context, out: &mut Vec<u8>) {
    put_len(out, context.len());
    // `BTreeMap<String, _>` iterates in byte order of the keys, because `str` orders by bytes.
    for (key, value) in context {
        put_len(out, key.len());
        out.extend_from_slice(key.as_bytes());
        put_len(out, value.len());
        out.extend_from_slice(value.as_bytes());
    }
}

fn encoded_context_len(context: &Context) -> usize {
    4 + context
        .iter()
        .map(|(key, value)| 8 + key.len() + value.len())
        .sum::<usize>()
}

/// Appends a length as u32 big-endian. Every caller has checked it against a limit far below
/// `u32::MAX` first: the header limit or the context limits.
fn put_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
}

pub(crate) fn check_segment_size(size: u32) -> Result<()> {
    if (MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&size) {
        Ok(())
    } else {
        Err(Error::InvalidSegmentSize { size })
    }
}

/// Checks a context against the limits of the ciphertext blob: at most 64 entries, keys of 1 to
/// 256 bytes, values of at most 1024 bytes.
fn validate_context(context: &Context) -> Result<()> {
    if context.len() > MAX_CONTEXT_ENTRIES {
        return Err(too_many_entries(context.len()));
    }
    for (key, value) in context {
        if key.is_empty() {
            return Err(invalid_context("a key is empty".to_owned()));
        }
        if key.len() > MAX_CONTEXT_KEY_LEN {
            return Err(invalid_context(format!(
                "a context key has {} bytes, above {MAX_CONTEXT_KEY_LEN}",
                key.len()
            )));
        }
        if value.len() > MAX_CONTEXT_VALUE_LEN {
            return Err(invalid_context(format!(
                "a context value has {} bytes, above {MAX_CONTEXT_VALUE_LEN}",
                value.len()
            )));
        }
    }
    Ok(())
}

fn too_many_entries(count: usize) -> Error {
    invalid_context(format!("{count} entries, above {MAX_CONTEXT_ENTRIES}"))
}

fn invalid_context(reason: String) -> Error {
    Error::InvalidContext { reason }
}

fn malformed(reason: &'static str) -> Error {
    Error::MalformedHeader { reason }
}
