//! [`FieldKey`]: the subkeys derived from one data key, and the encryption of single values
//! under them.

use std::fmt;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use aes_siv::siv::Aes256Siv;
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use super::Error;
use super::format::{
    self, Decoded, FieldAad, Form, KEY_REF_LEN, KeyRef, MAX_WRAPPED_KEY_LEN, Mode, NONCE_LEN,
    TAG_LEN,
};
use super::stored::StoredKey;
use crate::DataKey;

/// Length of a data key usable for field encryption.
const DATA_KEY_LEN: usize = 32;
/// Length of an AES-SIV key: a CMAC key and a CTR key of 32 bytes each.
const SIV_KEY_LEN: usize = 64;

/// HKDF-SHA256 `info` of the AES-256-GCM key of randomized mode.
pub(crate) const GCM_KEY_INFO: &[u8] = b"kms-field-v1 aes-256-gcm";
/// HKDF-SHA256 `info` of the AES-SIV key of deterministic mode.
pub(crate) const SIV_KEY_INFO: &[u8] = b"kms-field-v1 aes-siv-cmac-512";
/// HKDF-SHA256 `info` of the key reference that compact values carry.
pub(crate) const KEY_REF_INFO: &[u8] = b"kms-field-v1 key reference";

/// A 32-byte data key made ready for field encryption: its AES-256-GCM and AES-SIV subkeys,
/// its key reference and its ciphertext blob.
///
/// Building one derives the subkeys with HKDF-SHA256, so build it once per data key and reuse
/// it. [`super::FieldEncryptor`] does so through the data-key cache. The subkeys and key
/// schedules are zeroized on drop. Debug shows only the key reference.
pub struct FieldKey {
    gcm: Aes256Gcm,
    siv_key: Zeroizing<[u8; SIV_KEY_LEN]>,
    key_ref: KeyRef,
    ciphertext: Vec<u8>,
}

impl FieldKey {
    /// Creates a field key from a plaintext data key and its ciphertext blob.
    ///
    /// Fails unless the key has 32 bytes and the blob 1 to 65535 bytes.
    pub fn new(plaintext: &SecretSlice<u8>, ciphertext: &[u8]) -> Result<Self, Error> {
        let exposed = plaintext.expose_secret();
        if exposed.len() != DATA_KEY_LEN {
            return Err(Error::InvalidKeyLength { len: exposed.len() });
        }
        if ciphertext.is_empty() || ciphertext.len() > MAX_WRAPPED_KEY_LEN {
            return Err(Error::InvalidWrappedKeyLength {
                len: ciphertext.len(),
            });
        }

        let hkdf = Hkdf::<Sha256>::new(None, exposed);
        let mut gcm_key = Zeroizing::new([0; DATA_KEY_LEN]);
        let mut siv_key = Zeroizing::new([0; SIV_KEY_LEN]);
        let mut key_ref = [0; KEY_REF_LEN];
        for (info, output) in [
            (GCM_KEY_INFO, gcm_key.as_mut_slice()),
            (SIV_KEY_INFO, siv_key.as_mut_slice()),
            (KEY_REF_INFO, key_ref.as_mut_slice()),
        ] {
            hkdf.expand(info, output)
                .expect("outputs of at most 64 bytes are within HKDF-SHA256's limit of 8160");
        }
        Ok(FieldKey {
            gcm: Aes256Gcm::new(&(*gcm_key).into()),
            siv_key,
            key_ref: KeyRef::from_bytes(key_ref),
            ciphertext: ciphertext.to_vec(),
        })
    }

    /// Creates a field key from a generated data key, which must include its plaintext.
    pub fn from_data_key(data_key: &DataKey) -> Result<Self, Error> {
        let plaintext = data_key.plaintext.as_ref().ok_or(Error::MissingPlaintext)?;
        FieldKey::new(plaintext, &data_key.ciphertext)
    }

    /// Returns the reference that compact values carry.
    pub fn key_ref(&self) -> KeyRef {
        self.key_ref
    }

    /// Returns the ciphertext blob of the data key, which self-contained values carry.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// Returns what the application stores once to decrypt compact values later: the key
    /// reference and the ciphertext blob.
    pub fn stored_key(&self) -> StoredKey {
        StoredKey::from_parts(self.key_ref, self.ciphertext.clone())
    }

    /// Encrypts one value.
    ///
    /// Fails with [`Error::InvalidFieldAad`] for an empty field name, and with
    /// [`Error::PlaintextTooLong`] beyond the AES-GCM limit of 2^36 - 32 bytes.
    pub fn encrypt(
        &self,
        mode: Mode,
        form: Form,
        plaintext: &[u8],
        aad: &FieldAad<'_>,
    ) -> Result<String, Error> {
        self.seal(mode, form, plaintext, aad, random_nonce)
    }

    /// Decrypts a value of either mode and form.
    ///
    /// A compact value must carry this key's reference, else the result is
    /// [`Error::WrongKeyReference`]. `aad` must match the one given to encrypt, else the result
    /// is [`Error::AuthenticationFailed`].
    pub fn decrypt(&self, value: &str, aad: &FieldAad<'_>) -> Result<Zeroizing<Vec<u8>>, Error> {
        aad.validate()?;
        self.open(&format::decode(value)?, aad)
    }

    /// Encrypts with a given nonce, for the known-answer vectors. Never reuse a nonce.
    #[cfg(test)]
    pub(crate) fn encrypt_with_nonce(
        &self,
        mode: Mode,
        form: Form,
        plaintext: &[u8],
        aad: &FieldAad<'_>,
        nonce: [u8; NONCE_LEN],
    ) -> Result<String, Error> {
        self.seal(mode, form, plaintext, aad, || Ok(nonce))
    }

    fn seal(
        &self,
        mode: Mode,
        form: Form,
        plaintext: &[u8],
        aad: &FieldAad<'_>,
        nonce: impl FnOnce() -> Result<[u8; NONCE_LEN], Error>,
    ) -> Result<String, Error> {
        aad.validate()?;
        let header_len = format::header_len(form, self.ciphertext.len());
        // Exact size, so that no reallocation leaves a stray copy of the plaintext behind.
        let mut payload = Vec::with_capacity(header_len + mode.body_overhead() + plaintext.len());
        format::push_header(&mut payload, form, self.key_ref, &self.ciphertext);
        let associated = format::associated_data(mode, &payload, aad);

        match mode {
            Mode::Randomized => {
                let nonce = nonce()?;
                payload.extend_from_slice(&nonce);
                let start = payload.len();
                payload.extend_from_slice(plaintext);
                let sealed = self.gcm.encrypt_inout_detached(
                    &Nonce::from(nonce),
                    &associated,
                    (&mut payload[start..]).into(),
                );
                match sealed {
                    Ok(tag) => payload.extend_from_slice(&tag),
                    Err(_) => {
                        // The buffer still contains the plaintext.
                        payload.zeroize();
                        return Err(Error::PlaintextTooLong {
                            len: plaintext.len(),
                        });
                    }
                }
            }
            Mode::Deterministic => {
                let iv_start = payload.len();
                payload.extend_from_slice(&[0; TAG_LEN]);
                payload.extend_from_slice(plaintext);
                let (head, message) = payload.split_at_mut(iv_start + TAG_LEN);
                let iv = self
                    .siv()
                    .encrypt_inout_detached([associated.as_slice()], message.into())
                    .expect("one associated-data component is within AES-SIV's limit of 126");
                head[iv_start..].copy_from_slice(&iv);
            }
        }
        Ok(format::encode(mode, &payload))
    }

    /// Checks the key reference of a decoded value, then authenticates and decrypts it.
    pub(crate) fn open(
        &self,
        decoded: &Decoded,
        aad: &FieldAad<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        if let Some(found) = decoded.key_ref()
            && found != self.key_ref
        {
            return Err(Error::WrongKeyReference {
                expected: self.key_ref,
                found,
            });
        }
        let mode = decoded.mode();
        let associated = format::associated_data(mode, decoded.header(), aad);
        let failed = || Error::AuthenticationFailed {
            field: aad.field().to_owned(),
            with_record_id: aad.record_id().is_some(),
        };

        let body = decoded.body();
        match mode {
            Mode::Randomized => {
                let (nonce, rest) = body.split_at(NONCE_LEN);
                let (sealed, tag) = rest.split_at(rest.len() - TAG_LEN);
                let nonce = Nonce::try_from(nonce).map_err(|_| failed())?;
                let tag = Tag::try_from(tag).map_err(|_| failed())?;
                let mut buffer = Zeroizing::new(sealed.to_vec());
                self.gcm
                    .decrypt_inout_detached(&nonce, &associated, buffer.as_mut_slice().into(), &tag)
                    .map_err(|_| failed())?;
                Ok(buffer)
            }
            Mode::Deterministic => {
                let (iv, sealed) = body.split_at(TAG_LEN);
                let iv = aes_siv::Tag::try_from(iv).map_err(|_| failed())?;
                let mut buffer = Zeroizing::new(sealed.to_vec());
                self.siv()
                    .decrypt_inout_detached(
                        [associated.as_slice()],
                        buffer.as_mut_slice().into(),
                        &iv,
                    )
                    .map_err(|_| failed())?;
                Ok(buffer)
            }
        }
    }

    /// Builds the AES-SIV cipher. aes-siv encrypts through `&mut self`, so one is built per
    /// value instead of being shared behind a lock. That costs two AES key expansions.
    fn siv(&self) -> Aes256Siv {
        Aes256Siv::new(&(*self.siv_key).into())
    }
}

impl fmt::Debug for FieldKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FieldKey")
            .field("key_ref", &self.key_ref)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// Draws a nonce from the operating system.
fn random_nonce() -> Result<[u8; NONCE_LEN], Error> {
    let mut nonce = [0; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(Error::Random)?;
    Ok(nonce)
}
