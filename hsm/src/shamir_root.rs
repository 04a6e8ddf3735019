//! The root of trust whose key was rebuilt from Shamir shares.

use std::fmt;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use zeroize::Zeroizing;

use crate::{Error, Mechanism, RootKey, RootKind, RootOfTrust, WrappedKey, random};

/// Length of the random AES-GCM nonce that starts each wrapped blob.
const NONCE_LEN: usize = 12;
/// Length of the AES-GCM tag that ends each wrapped blob.
const TAG_LEN: usize = 16;

/// Root of trust backed by a root key held in process memory.
///
/// [`RootOfTrust::wrap`] produces [`Mechanism::Aes256Gcm`] blobs laid out as
/// `nonce (12 bytes) || ciphertext || tag (16 bytes)`, where the nonce is random for each call.
/// Random 96-bit nonces keep the chance of a repeat negligible as long as one root key wraps
/// far fewer than 2^32 blobs, which holds for keyring keys that are wrapped once per rotation.
pub struct ShamirRoot {
    key: RootKey,
}

impl ShamirRoot {
    /// Creates a root of trust that wraps with `key`.
    pub fn new(key: RootKey) -> Self {
        ShamirRoot { key }
    }

    /// Builds the cipher for one call. Its key schedule is zeroized when it is dropped.
    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.key.expose().into())
    }
}

impl fmt::Debug for ShamirRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShamirRoot")
            .field("mechanism", &Mechanism::Aes256Gcm)
            .finish_non_exhaustive()
    }
}

impl RootOfTrust for ShamirRoot {
    fn kind(&self) -> RootKind {
        RootKind::Shamir
    }

    fn wrap(&self, plaintext: &[u8], aad: &[u8]) -> Result<WrappedKey, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        random::fill(&mut nonce)?;

        // The buffer contains the plaintext until it is encrypted in place, so it is zeroized if
        // encryption fails. The capacity covers the tag, so no reallocation leaves a copy.
        let mut buffer = Zeroizing::new(Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN));
        buffer.extend_from_slice(&nonce);
        buffer.extend_from_slice(plaintext);

        let (_, body) = buffer.split_at_mut(NONCE_LEN);
        let tag = self
            .cipher()
            .encrypt_inout_detached(&Nonce::from(nonce), aad, body.into())
            .map_err(|_| Error::WrapFailed {
                plaintext_len: plaintext.len(),
                aad_len: aad.len(),
            })?;
        buffer.extend_from_slice(&tag);

        Ok(WrappedKey {
            mechanism: Mechanism::Aes256Gcm,
            key_label: None,
            bytes: std::mem::take(&mut *buffer),
        })
    }

    fn unwrap(&self, wrapped: &WrappedKey, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        // An exhaustive match, so that a new mechanism has to be handled here.
        match wrapped.mechanism {
            Mechanism::Aes256Gcm => {}
            Mechanism::Pkcs11AesGcm | Mechanism::Pkcs11AesKeyWrapPad => {
                return Err(Error::MechanismMismatch {
                    mechanism: wrapped.mechanism,
                    root: RootKind::Shamir,
                });
            }
        }

        let (nonce, rest) = wrapped
            .bytes
            .split_at_checked(NONCE_LEN)
            .ok_or(Error::UnwrapFailed)?;
        let ciphertext_len = rest.len().checked_sub(TAG_LEN).ok_or(Error::UnwrapFailed)?;
        let (ciphertext, tag) = rest.split_at(ciphertext_len);
        let nonce = Nonce::try_from(nonce).map_err(|_| Error::UnwrapFailed)?;
        let tag = Tag::try_from(tag).map_err(|_| Error::UnwrapFailed)?;

        // Decrypt in a zeroizing buffer. AES-GCM checks the tag before writing any plaintext.
        let mut plaintext = Zeroizing::new(ciphertext.to_vec());
        self.cipher()
            .decrypt_inout_detached(&nonce, aad, plaintext.as_mut_slice().into(), &tag)
            .map_err(|_| Error::UnwrapFailed)?;
        Ok(plaintext)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::secret::tests::assert_no_secret;

    const KEYRING_KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const AAD: &[u8] = b"keyring:v1";

    fn root() -> ShamirRoot {
        ShamirRoot::new(RootKey::generate().unwrap())
    }

    #[test]
    fn wrap_then_unwrap_returns_plaintext() {
        let root = root();

        let wrapped = root.wrap(KEYRING_KEY, AAD).unwrap();
        let unwrapped = root.unwrap(&wrapped, AAD).unwrap();

        assert_eq!(wrapped.mechanism, Mechanism::Aes256Gcm);
        assert_eq!(wrapped.bytes.len(), NONCE_LEN + KEYRING_KEY.len() + TAG_LEN);
        assert_eq!(unwrapped.as_slice(), KEYRING_KEY);
    }

    #[test]
    fn wrap_then_unwrap_handles_empty_input() {
        let root = root();

        let wrapped = root.wrap(b"", b"").unwrap();
        let unwrapped = root.unwrap(&wrapped, b"").unwrap();

        assert_eq!(wrapped.bytes.len(), NONCE_LEN + TAG_LEN);
        assert!(unwrapped.is_empty());
    }

    #[test]
    fn wrap_uses_a_fresh_nonce_each_call() {
        let root = root();

        let first = root.wrap(KEYRING_KEY, AAD).unwrap();
        let second = root.wrap(KEYRING_KEY, AAD).unwrap();

        assert_ne!(first.bytes.get(..NONCE_LEN), second.bytes.get(..NONCE_LEN));
        assert_ne!(first.bytes, second.bytes);
    }

    #[test]
    fn wrap_output_does_not_contain_plaintext() {
        let wrapped = root().wrap(KEYRING_KEY, AAD).unwrap();

        let found = wrapped
            .bytes
            .windows(KEYRING_KEY.len())
            .any(|window| window == KEYRING_KEY);

        assert!(!found);
    }

    #[test]
    fn unwrap_rejects_wrong_aad() {
        let root = root();
        let wrapped = root.wrap(KEYRING_KEY, AAD).unwrap();

        let result = root.unwrap(&wrapped, b"keyring:v2");

        assert!(matches!(result, Err(Error::UnwrapFailed)));
    }

    #[test]
    fn unwrap_rejects_wrong_root_key() {
        let wrapped = root().wrap(KEYRING_KEY, AAD).unwrap();

        let result = root().unwrap(&wrapped, AAD);

        assert!(matches!(result, Err(Error::UnwrapFailed)));
    }

    #[test]
    fn unwrap_rejects_each_tampered_byte() {
        let root = root();
        let wrapped = root.wrap(KEYRING_KEY, AAD).unwrap();

        for position in 0..wrapped.bytes.len() {
            let mut tampered = wrapped.clone();
            tampered.bytes[position] ^= 0x01;

            let result = root.unwrap(&tampered, AAD);

            assert!(
                matches!(result, Err(Error::UnwrapFailed)),
                "flipping a bit of byte {position} was not detected"
            );
        }
    }

    #[test]
    fn unwrap_rejects_truncated_and_extended_blobs() {
        let root = root();
        let wrapped = root.wrap(KEYRING_KEY, AAD).unwrap();

        for len in 0..wrapped.bytes.len() {
            let mut truncated = wrapped.clone();
            truncated.bytes.truncate(len);

            let result = root.unwrap(&truncated, AAD);

            assert!(
                matches!(result, Err(Error::UnwrapFailed)),
                "truncation to {len} bytes was not detected"
            );
        }

        let mut extended = wrapped.clone();
        extended.bytes.push(0);
        assert!(matches!(
            root.unwrap(&extended, AAD),
            Err(Error::UnwrapFailed)
        ));
    }

    #[test]
    fn unwrap_rejects_pkcs11_mechanism() {
        let root = root();
        let mut wrapped = root.wrap(KEYRING_KEY, AAD).unwrap();
        wrapped.mechanism = Mechanism::Pkcs11AesGcm;

        let result = root.unwrap(&wrapped, AAD);

        assert!(matches!(
            result,
            Err(Error::MechanismMismatch {
                mechanism: Mechanism::Pkcs11AesGcm,
                root: RootKind::Shamir
            })
        ));
    }

    #[test]
    fn shamir_root_works_as_shared_trait_object() {
        let root: Arc<dyn RootOfTrust> = Arc::new(root());

        let wrapped = root.wrap(KEYRING_KEY, AAD).unwrap();
        let unwrapped = root.unwrap(&wrapped, AAD).unwrap();

        assert_eq!(root.kind(), RootKind::Shamir);
        assert_eq!(unwrapped.as_slice(), KEYRING_KEY);
    }

    #[test]
    fn shamir_root_debug_has_no_key_bytes() {
        let key = RootKey::generate().unwrap();
        let key_bytes = *key.expose();
        let root = ShamirRoot::new(key);

        let debug = format!("{root:?}");

        assert_eq!(debug, "ShamirRoot { mechanism: Aes256Gcm, .. }");
        assert_no_secret(&debug, &key_bytes);
        assert_no_secret(&format!("{root:#?}"), &key_bytes);
    }
}
