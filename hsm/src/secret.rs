//! The root key type.

use std::fmt;

use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox};

use crate::{Error, random};

/// Length of a root key in bytes (AES-256).
pub(crate) const ROOT_KEY_LEN: usize = 32;

/// A 256-bit root key.
///
/// The bytes live on the heap, so moving a `RootKey` never copies them, and they are zeroized
/// on drop. `Debug` prints `RootKey([REDACTED])`. The bytes are readable only inside this crate.
pub struct RootKey(SecretBox<[u8; ROOT_KEY_LEN]>);

impl RootKey {
    /// Generates a root key from the operating system's random number generator.
    pub fn generate() -> Result<RootKey, Error> {
        let mut key = RootKey::zeroed();
        random::fill(key.0.expose_secret_mut())?;
        Ok(key)
    }

    /// Returns an all-zero key for the caller to fill in place.
    pub(crate) fn zeroed() -> RootKey {
        RootKey(SecretBox::default())
    }

    /// Builds a key by copying `bytes`. The caller still owns `bytes` and must clear them.
    pub(crate) fn from_bytes(bytes: &[u8; ROOT_KEY_LEN]) -> RootKey {
        let mut key = RootKey::zeroed();
        key.0.expose_secret_mut().copy_from_slice(bytes);
        key
    }

    /// Returns the key bytes. Callers pass them straight to a cipher or to the share splitter.
    pub(crate) fn expose(&self) -> &[u8; ROOT_KEY_LEN] {
        self.0.expose_secret()
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootKey([REDACTED])")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Formats bytes as lowercase hex, for checking that text does not contain them.
    pub(crate) fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// Asserts that `text` contains neither the hex (either case) nor the decimal list form of
    /// `secret`.
    pub(crate) fn assert_no_secret(text: &str, secret: &[u8]) {
        let lower = hex(secret);
        let decimal = format!("{secret:?}");
        let decimal_prefix = decimal.get(..12).unwrap();

        assert!(!text.contains(&lower), "lowercase hex found in {text:?}");
        assert!(
            !text.contains(&lower.to_uppercase()),
            "uppercase hex found in {text:?}"
        );
        assert!(
            !text.contains(decimal_prefix),
            "decimal bytes found in {text:?}"
        );
    }

    #[test]
    fn generate_returns_distinct_keys() {
        let first = RootKey::generate().unwrap();
        let second = RootKey::generate().unwrap();

        assert_ne!(first.expose(), second.expose());
        assert_ne!(first.expose(), &[0u8; ROOT_KEY_LEN]);
    }

    #[test]
    fn from_bytes_copies_the_bytes() {
        let bytes = [7u8; ROOT_KEY_LEN];

        let key = RootKey::from_bytes(&bytes);

        assert_eq!(key.expose(), &bytes);
    }

    #[test]
    fn root_key_debug_is_redacted() {
        let key = RootKey::generate().unwrap();

        let debug = format!("{key:?}");

        assert_eq!(debug, "RootKey([REDACTED])");
        assert_no_secret(&debug, key.expose());
        assert_no_secret(&format!("{key:#?}"), key.expose());
    }
}
