//! File ids, the blob key root, and the per-file keys derived from them.

use std::fmt;

use ring::hkdf;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::error::{Error, Result};
use crate::Context;
use crate::stream::FileKey;

/// Length of a file id in bytes.
pub(super) const FILE_ID_LEN: usize = 16;
/// Length of the blob key root in bytes.
pub(super) const BLOB_ROOT_LEN: usize = 32;
/// HKDF info label of a file key, followed by the 16 bytes of the file id.
const FILE_KEY_LABEL: &[u8] = b"kms-folder-v1 file";
/// Key of the single encryption context entry of every blob, whose value is the file id in hex.
pub(super) const FILE_ID_CONTEXT_KEY: &str = "kms-folder-file-id";

/// Random id of one encrypted file version, which names its blob.
///
/// A changed file gets a new id, so an id is never used for two contents.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct FileId([u8; FILE_ID_LEN]);

impl FileId {
    /// Draws a new id from the system random number generator.
    pub(super) fn random() -> Result<Self> {
        let mut id = [0; FILE_ID_LEN];
        getrandom::fill(&mut id).map_err(|_| Error::Random)?;
        Ok(FileId(id))
    }

    pub(super) fn from_bytes(bytes: [u8; FILE_ID_LEN]) -> Self {
        FileId(bytes)
    }

    pub(super) fn as_bytes(&self) -> &[u8; FILE_ID_LEN] {
        &self.0
    }

    /// Returns the id as 32 lower-case hex digits, the name of its blob.
    pub(super) fn to_hex(self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// Parses 32 lower-case hex digits. Any other text is not a blob name.
    pub(super) fn parse_hex(text: &str) -> Option<Self> {
        if text.len() != 2 * FILE_ID_LEN {
            return None;
        }
        let mut id = [0; FILE_ID_LEN];
        for (byte, pair) in id.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Some(FileId(id))
    }
}

impl fmt::Debug for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileId({})", self.to_hex())
    }
}

fn hex_digit(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// 32-byte secret from which every file key of a folder is derived.
///
/// It is random, made at the first encryption, and stored only inside the encrypted manifest,
/// so the folder's data key protects it. Zeroized on drop, and `Debug` prints no bytes.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(super) struct BlobKeyRoot([u8; BLOB_ROOT_LEN]);

impl BlobKeyRoot {
    /// Draws a new root from the system random number generator.
    pub(super) fn generate() -> Result<Self> {
        let mut root = BlobKeyRoot([0; BLOB_ROOT_LEN]);
        getrandom::fill(&mut root.0).map_err(|_| Error::Random)?;
        Ok(root)
    }

    /// Copies a root from manifest bytes. The caller zeroizes its copy.
    pub(super) fn from_bytes(bytes: &[u8; BLOB_ROOT_LEN]) -> Self {
        BlobKeyRoot(*bytes)
    }

    /// Bytes of the root, for encoding the manifest only.
    pub(super) fn expose(&self) -> &[u8; BLOB_ROOT_LEN] {
        &self.0
    }

    /// Derives the key of the blob of file `id`:
    /// HKDF-SHA256 with an empty salt, the root as input and `"kms-folder-v1 file" || id` as
    /// info, 32 bytes long.
    pub(super) fn file_key(&self, id: &FileId) -> FileKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(&self.0);
        let info = [FILE_KEY_LABEL, id.as_bytes().as_slice()];
        let mut okm = Zeroizing::new([0; FileKey::LEN]);
        // Expand and fill fail only for outputs longer than 255 hash lengths. This one has 32
        // bytes, the length of HKDF_SHA256 as a key type.
        prk.expand(&info, hkdf::HKDF_SHA256)
            .and_then(|expanded| expanded.fill(okm.as_mut_slice()))
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        FileKey::from_slice(okm.as_slice()).expect("the derived key has the file key length")
    }
}

impl fmt::Debug for BlobKeyRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlobKeyRoot(<redacted>)")
    }
}

/// Returns the encryption context stored in the header of blob `id`.
///
/// Readers expect the id that the manifest lists, so a blob stored under another entry's name
/// fails with a context mismatch before any key is tried.
pub(super) fn blob_context(id: &FileId) -> Context {
    Context::from([(FILE_ID_CONTEXT_KEY.to_owned(), id.to_hex())])
}
