//! The file key and the keys derived from it for one file.

use std::fmt;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, Tag, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hkdf, hmac};
use secrecy::{ExposeSecret, SecretSlice};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::error::{Error, Result};
use super::{COMMITMENT_LEN, NONCE_PREFIX_LEN, TAG_LEN};

/// HKDF info label of the segment key, followed by the SHA-256 of the authenticated header.
const SEGMENT_KEY_LABEL: &[u8] = b"kms-file-v1 segment";
/// HKDF info label of the commitment key, followed by the SHA-256 of the authenticated header.
const COMMIT_KEY_LABEL: &[u8] = b"kms-file-v1 commit";

/// 32-byte key of one encrypted file: a data key from `kmsd` or a random key.
///
/// The bytes are zeroized on drop and never printed: `Debug` shows `FileKey(<redacted>)`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct FileKey([u8; 32]);

impl FileKey {
    /// Length of a file key in bytes.
    pub const LEN: usize = 32;

    /// Generates a random file key from the system random number generator.
    pub fn generate() -> Result<Self> {
        let mut key = FileKey([0; Self::LEN]);
        fill_random(&mut key.0)?;
        Ok(key)
    }

    /// Copies a file key from 32 bytes, such as the plaintext of a data key.
    ///
    /// Fails with [`Error::InvalidKeyLength`] on any other length. The caller still owns
    /// `bytes` and should zeroize them.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let array: [u8; Self::LEN] = bytes
            .try_into()
            .map_err(|_| Error::InvalidKeyLength { len: bytes.len() })?;
        Ok(FileKey(array))
    }

    /// Bytes of the key, for the key derivation and for wrapping it in a recovery slot only.
    pub(super) fn expose(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

impl TryFrom<&SecretSlice<u8>> for FileKey {
    type Error = Error;

    /// Copies the plaintext of a data key, which must have 32 bytes.
    fn try_from(secret: &SecretSlice<u8>) -> Result<Self> {
        FileKey::from_slice(secret.expose_secret())
    }
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileKey(<redacted>)")
    }
}

/// AES-256-GCM key and nonce prefix that seal and open the segments of one file.
///
/// NOTE: ring does not zeroize its AES key schedule on drop, so the segment key stays in freed
/// memory until it is reused. The file key itself is zeroized.
pub(crate) struct SegmentCipher {
    key: LessSafeKey,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

impl fmt::Debug for SegmentCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentCipher").finish_non_exhaustive()
    }
}

impl SegmentCipher {
    /// Seals `plaintext` in place as segment `index` and returns the tag.
    pub(crate) fn seal(&self, index: u32, last: bool, plaintext: &mut [u8]) -> [u8; TAG_LEN] {
        let tag: Tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(index, last), Aad::empty(), plaintext)
            // ring fails only for inputs longer than AES-GCM allows (about 64 GiB), and a
            // segment has at most 16 MiB.
            .expect("a segment is far below the AES-GCM length limit");
        let mut out = [0; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Opens `chunk` (ciphertext followed by the tag) in place as segment `index` and returns
    /// the plaintext part. On failure ring zeroes `chunk`, so the ciphertext is gone.
    pub(crate) fn open<'a>(&self, index: u32, last: bool, chunk: &'a mut [u8]) -> Option<&'a [u8]> {
        self.key
            .open_in_place(self.nonce(index, last), Aad::empty(), chunk)
            .ok()
            .map(|plaintext| &*plaintext)
    }

    /// Builds the nonce: the 7-byte prefix, the index as u32 big-endian, then 1 for the last
    /// segment or 0 for any other.
    fn nonce(&self, index: u32, last: bool) -> Nonce {
        let mut nonce = [0; NONCE_LEN];
        nonce[..NONCE_PREFIX_LEN].copy_from_slice(&self.nonce_prefix);
        nonce[NONCE_PREFIX_LEN..NONCE_LEN - 1].copy_from_slice(&index.to_be_bytes());
        nonce[NONCE_LEN - 1] = u8::from(last);
        Nonce::assume_unique_for_key(nonce)
    }
}

/// Keys of one file, derived from the file key, the salt and the authenticated header.
pub(crate) struct FileKeys {
    pub(crate) cipher: SegmentCipher,
    commit_key: hmac::Key,
}

impl FileKeys {
    /// Derives both keys with HKDF-SHA256. `authenticated` is the header up to the commitment.
    pub(crate) fn derive(
        key: &FileKey,
        salt: &[u8],
        nonce_prefix: [u8; NONCE_PREFIX_LEN],
        authenticated: &[u8],
    ) -> Self {
        let header_hash = digest::digest(&digest::SHA256, authenticated);
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(key.expose());

        let segment_info = [SEGMENT_KEY_LABEL, header_hash.as_ref()];
        let commit_info = [COMMIT_KEY_LABEL, header_hash.as_ref()];
        // Expand fails only for outputs longer than 255 hash lengths. Both keys have 32 bytes.
        let segment_okm = prk
            .expand(&segment_info, &AES_256_GCM)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let commit_okm = prk
            .expand(&commit_info, hmac::HMAC_SHA256)
            .expect("32 bytes is a valid HKDF-SHA256 output length");

        FileKeys {
            cipher: SegmentCipher {
                key: LessSafeKey::new(UnboundKey::from(segment_okm)),
                nonce_prefix,
            },
            commit_key: hmac::Key::from(commit_okm),
        }
    }

    /// Computes the key commitment: HMAC-SHA256 of the authenticated header.
    pub(crate) fn commitment(&self, authenticated: &[u8]) -> [u8; COMMITMENT_LEN] {
        let tag = hmac::sign(&self.commit_key, authenticated);
        let mut out = [0; COMMITMENT_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Checks a stored commitment in constant time.
    pub(crate) fn verify_commitment(&self, authenticated: &[u8], stored: &[u8]) -> Result<()> {
        hmac::verify(&self.commit_key, authenticated, stored).map_err(|_| Error::CommitmentMismatch)
    }
}

/// Fills `out` from the system random number generator.
pub(crate) fn fill_random(out: &mut [u8]) -> Result<()> {
    SystemRandom::new().fill(out).map_err(|_| Error::Random)
}
