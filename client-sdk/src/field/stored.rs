//! [`StoredKey`]: a data key that the application stores once and compact values reference.

use std::fmt;

use super::Error;
use super::format::{KeyRef, MAX_WRAPPED_KEY_LEN};
use crate::Context;
use crate::cache::DataKeySource;

/// A data key as the application stores it for compact values: its key reference and its
/// ciphertext blob, neither of which is secret.
///
/// Make one with [`StoredKey::generate`], store both parts (for example in a `field_keys`
/// table keyed by the reference), and load it back with [`StoredKey::new`]. When the blob is
/// rewrapped under a newer version of its KMS key, the reference stays the same: store the new
/// blob under the old reference.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    key_ref: KeyRef,
    ciphertext: Vec<u8>,
}

impl StoredKey {
    /// Generates a new data key under key `key_name` with `context`, and returns what to store.
    ///
    /// The context becomes part of the blob: every later decryption of it needs the same one.
    pub async fn generate<S: DataKeySource>(
        source: &S,
        key_name: &str,
        context: &Context,
    ) -> Result<Self, Error> {
        let data_key = source.new_data_key(key_name, context).await?;
        let field_key = data_key.field_key()?;
        Ok(field_key.stored_key())
    }

    /// Creates a stored key from its parts, as read back from storage.
    ///
    /// Fails unless the blob has 1 to 65535 bytes. A reference that does not belong to the
    /// blob is found at first use, after the KMS has decrypted the blob, and then fails with
    /// [`Error::StoredKeyMismatch`].
    pub fn new(key_ref: KeyRef, ciphertext: Vec<u8>) -> Result<Self, Error> {
        if ciphertext.is_empty() || ciphertext.len() > MAX_WRAPPED_KEY_LEN {
            return Err(Error::InvalidWrappedKeyLength {
                len: ciphertext.len(),
            });
        }
        Ok(StoredKey::from_parts(key_ref, ciphertext))
    }

    /// Creates a stored key from parts whose lengths are already checked.
    pub(crate) fn from_parts(key_ref: KeyRef, ciphertext: Vec<u8>) -> Self {
        StoredKey {
            key_ref,
            ciphertext,
        }
    }

    /// Returns the key reference.
    pub fn key_ref(&self) -> KeyRef {
        self.key_ref
    }

    /// Returns the ciphertext blob of the data key.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("key_ref", &self.key_ref)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}
