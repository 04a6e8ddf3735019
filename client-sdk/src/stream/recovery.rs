//! Recovery slots: the file key encrypted with age to an offline X25519 recipient.
//!
//! A recovery slot lets the owner of the age identity (`AGE-SECRET-KEY-1...`) decrypt a file
//! with no `kmsd` at all, years later. The slot body is a complete binary age file whose
//! plaintext is the 32 raw bytes of the file key, so the standard `age` tool can open an
//! extracted slot on its own.

use std::fmt;
use std::str::FromStr;

use secrecy::SecretString;
use zeroize::Zeroizing;

use super::error::{Error, Result};
use super::key::FileKey;

/// An age X25519 recipient (`age1...`), the public half of a recovery key.
///
/// This is `age::x25519::Recipient`, re-exported so that callers need no direct `age`
/// dependency. Parse one with [`parse_recipient`].
pub use age::x25519::Recipient as RecoveryRecipient;

/// An age X25519 identity (`AGE-SECRET-KEY-1...`), the secret half of a recovery key.
///
/// Read identity files with [`parse_identity_file`]. `Debug` shows the matching recipient
/// only.
#[derive(Clone)]
pub struct RecoveryIdentity(age::x25519::Identity);

impl RecoveryIdentity {
    /// Generates a new identity from the system random number generator.
    pub fn generate() -> Self {
        RecoveryIdentity(age::x25519::Identity::generate())
    }

    /// Returns the recipient (public key) that files for this identity are encrypted to.
    pub fn recipient(&self) -> RecoveryRecipient {
        self.0.to_public()
    }

    /// Returns the `AGE-SECRET-KEY-1...` string, for writing an identity file.
    pub fn to_secret_string(&self) -> SecretString {
        self.0.to_string()
    }
}

impl fmt::Debug for RecoveryIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryIdentity")
            .field("recipient", &self.recipient().to_string())
            .finish()
    }
}

/// Maximum length of a recipient string shown back in an error message.
const MAX_SHOWN_RECIPIENT: usize = 100;
/// Start of an age X25519 identity, which an error must never show back.
const SECRET_KEY_PREFIX: &str = "AGE-SECRET-KEY-";

/// File key encrypted with age to one X25519 recipient (slot type 2).
#[derive(Clone, PartialEq, Eq)]
pub struct RecoverySlot {
    recipient: String,
    age_file: Vec<u8>,
}

impl RecoverySlot {
    /// Encrypts `key` with age to `recipient`.
    ///
    /// The result records the recipient string, so that [`inspect_file`](super::inspect_file)
    /// can show which recovery key a file needs.
    pub fn wrap(key: &FileKey, recipient: &RecoveryRecipient) -> Result<Self> {
        let age_file = age::encrypt(recipient, key.expose()).map_err(Error::RecoveryWrap)?;
        Ok(RecoverySlot {
            recipient: recipient.to_string(),
            age_file,
        })
    }

    /// Builds a slot from parsed header bytes.
    pub(super) fn from_parts(recipient: String, age_file: Vec<u8>) -> Self {
        RecoverySlot {
            recipient,
            age_file,
        }
    }

    /// Returns the `age1...` recipient recorded by the writer. It is a label, not checked
    /// against the age file.
    pub fn recipient(&self) -> &str {
        &self.recipient
    }

    /// Returns the binary age file that contains the file key. `age --decrypt -i IDENTITY_FILE`
    /// turns it into the 32 raw key bytes.
    pub fn age_file(&self) -> &[u8] {
        &self.age_file
    }

    /// Decrypts the file key with `identity`.
    ///
    /// Returns `Ok(None)` when the slot was written for another recipient, and
    /// [`Error::RecoverySlotDamaged`] when age rejects the slot or it contains no 32-byte key.
    /// The key is not checked against the header here;
    /// [`Header::unwrap_recovery`](super::Header::unwrap_recovery) does that.
    pub fn unwrap_key(&self, identity: &RecoveryIdentity) -> Result<Option<FileKey>> {
        let plaintext = match age::decrypt(&identity.0, &self.age_file) {
            Ok(plaintext) => Zeroizing::new(plaintext),
            Err(age::DecryptError::NoMatchingKeys) => return Ok(None),
            Err(err) => return Err(self.damaged(describe(&err))),
        };
        FileKey::from_slice(&plaintext)
            .map(Some)
            .map_err(|_| self.damaged("the age file does not hold a 32-byte key"))
    }

    fn damaged(&self, reason: &'static str) -> Error {
        Error::RecoverySlotDamaged {
            recipient: self.recipient.clone(),
            reason,
        }
    }
}

/// Prints the recipient and the length of the age file only.
impl fmt::Debug for RecoverySlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recovery")
            .field("recipient", &self.recipient)
            .field("age_file_len", &self.age_file.len())
            .finish()
    }
}

/// Names an age decryption failure without age's localised messages.
fn describe(err: &age::DecryptError) -> &'static str {
    match err {
        age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => "invalid age header",
        age::DecryptError::InvalidMac => "the age header MAC does not match",
        age::DecryptError::DecryptionFailed => "the age payload failed authentication",
        age::DecryptError::KeyDecryptionFailed => "the age stanza failed to decrypt",
        _ => "age rejected the file",
    }
}

/// Parses an `age1...` recipient string.
///
/// The error shows the string back, unless it looks like a secret identity.
pub fn parse_recipient(text: &str) -> Result<RecoveryRecipient> {
    let text = text.trim();
    let looks_secret = text
        .get(..SECRET_KEY_PREFIX.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(SECRET_KEY_PREFIX));
    if looks_secret {
        return Err(Error::InvalidRecipient {
            recipient: format!("{SECRET_KEY_PREFIX}<redacted>"),
            reason: "this is a secret identity, not a recipient; pass its public `age1...` key",
        });
    }
    RecoveryRecipient::from_str(text).map_err(|reason| Error::InvalidRecipient {
        recipient: text.chars().take(MAX_SHOWN_RECIPIENT).collect(),
        reason,
    })
}

/// Parses an age identity file: one `AGE-SECRET-KEY-1...` per line, with blank lines and
/// `#` comments allowed, as `age-keygen` writes it.
///
/// Errors name the line number only, never its text.
pub fn parse_identity_file(text: &str) -> Result<Vec<RecoveryIdentity>> {
    let mut identities = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let identity = age::x25519::Identity::from_str(line)
            .map_err(|_| Error::InvalidIdentity { line: number + 1 })?;
        identities.push(RecoveryIdentity(identity));
    }
    if identities.is_empty() {
        return Err(Error::NoIdentities);
    }
    Ok(identities)
}
