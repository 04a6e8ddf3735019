//! Errors of field encryption.

use super::KeyRef;

/// Everything that can go wrong while encrypting or decrypting a field value.
///
/// No variant carries a plaintext, a key or the text of the value, because a column may hold
/// unencrypted legacy rows whose text would otherwise end up in a log. Field names, JSON
/// pointers and key references are not secret and do appear.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Value that does not start with a prefix of a known format version and mode.
    #[error(
        "value is not an encrypted field value: expected it to start with \"f1r.\" or \"f1d.\""
    )]
    UnknownPrefix,

    /// Value that starts with the prefix of another format version.
    #[error(
        "value has field format version {version}, but this SDK reads only version 1: \
         upgrade the SDK"
    )]
    UnsupportedVersion {
        /// Version number from the prefix.
        version: u16,
    },

    /// Text after the prefix that is not canonical unpadded URL-safe base64.
    #[error(
        "value is not valid: the text after the prefix must be unpadded URL-safe base64 \
         (A-Z, a-z, 0-9, '-' and '_')"
    )]
    InvalidBase64,

    /// Decoded value shorter than its layout needs.
    #[error("value is truncated: {len} bytes after decoding, at least {min} expected")]
    Truncated {
        /// Decoded length.
        len: usize,
        /// Minimum length for the value's mode and form.
        min: usize,
    },

    /// Form byte that is neither compact (1) nor self-contained (2).
    #[error("value has unknown form byte {byte:#04x}: expected 0x01 or 0x02")]
    UnknownForm {
        /// Form byte as found.
        byte: u8,
    },

    /// A wrapped data key is empty or longer than the 2-byte length field of a self-contained
    /// value allows.
    #[error("wrapped data key has {len} bytes: expected 1 to 65535")]
    InvalidWrappedKeyLength {
        /// Length of the wrapped data key.
        len: usize,
    },

    /// A key reference in text form is not 16 hex digits.
    #[error("invalid key reference of {len} characters: expected 16 hex digits")]
    InvalidKeyRef {
        /// Length of the text in characters.
        len: usize,
    },

    /// A compact value references another data key than the one given to decrypt it.
    #[error(
        "value references data key {found}, but the key given to decrypt it is {expected}: \
         decrypt it with the stored data key whose reference is {found}"
    )]
    WrongKeyReference {
        /// Reference of the key given to decrypt.
        expected: KeyRef,
        /// Reference in the value.
        found: KeyRef,
    },

    /// A compact value references a data key that the encryptor does not have.
    #[error(
        "value references data key {key_ref}, which this FieldEncryptor does not hold: load \
         the stored data key with that reference and add it with with_previous_key"
    )]
    UnknownKeyReference {
        /// Reference in the value.
        key_ref: KeyRef,
    },

    /// A stored data key's blob decrypted to a data key with another reference than the one
    /// stored with it.
    #[error(
        "stored data key {declared} decrypts to data key {actual}: the stored reference and \
         ciphertext do not belong together, check the row they were read from"
    )]
    StoredKeyMismatch {
        /// Reference stored with the blob.
        declared: KeyRef,
        /// Reference derived from the decrypted data key.
        actual: KeyRef,
    },

    /// Authentication tag that did not match.
    #[error(
        "value failed authentication for field {field:?} ({}): it was modified, or it was \
         encrypted for another field name, record id or data key",
        if *with_record_id { "with a record id" } else { "without a record id" }
    )]
    AuthenticationFailed {
        /// Field name given to decrypt.
        field: String,
        /// Whether a record id was given to decrypt.
        with_record_id: bool,
    },

    /// Field name or record id that cannot be encoded, for example an empty field name.
    #[error("invalid field binding: {reason}")]
    InvalidFieldAad {
        /// Reason the binding was rejected.
        reason: &'static str,
    },

    /// Data key without the 32 bytes of an AES-256 key.
    #[error("data key has {len} bytes, but field encryption needs a 32-byte key")]
    InvalidKeyLength {
        /// Length of the data key.
        len: usize,
    },

    /// A [`crate::DataKey`] without its plaintext.
    #[error("data key has no plaintext: generate it with include_plaintext set to true")]
    MissingPlaintext,

    /// Plaintext too long for the cipher (AES-GCM takes at most 2^36 - 32 bytes).
    #[error("plaintext of {len} bytes is too long to encrypt as one field value")]
    PlaintextTooLong {
        /// Plaintext length.
        len: usize,
    },

    /// Lookup values were requested from an encryptor that does not encrypt deterministically.
    #[error(
        "lookup values need a stored data key in deterministic mode: build the FieldEncryptor \
         with FieldEncryptor::stored and Mode::Deterministic"
    )]
    NotDeterministic,

    /// Encryption was requested from a decrypt-only encryptor.
    #[error(
        "this FieldEncryptor only decrypts: build it with FieldEncryptor::generated or \
         FieldEncryptor::stored to encrypt"
    )]
    DecryptOnly,

    /// A JSON pointer is not valid, or two pointers overlap.
    #[error("invalid JSON pointer {pointer:?}: {reason}")]
    InvalidJsonPointer {
        /// Pointer as given.
        pointer: String,
        /// Reason the pointer was rejected.
        reason: &'static str,
    },

    /// A JSON field to decrypt is not a string, so it cannot be an encrypted value.
    #[error("JSON field {pointer} is a {found}, but an encrypted field is a string")]
    JsonFieldNotEncrypted {
        /// Pointer of the field.
        pointer: String,
        /// JSON type found: `null`, `boolean`, `number`, `array` or `object`.
        found: &'static str,
    },

    /// A decrypted JSON field is not valid JSON, or a JSON field failed to serialize.
    #[error("JSON field {pointer} is not valid JSON")]
    InvalidJson {
        /// Pointer of the field.
        pointer: String,
        /// Parse or serialize error, which gives a line and column but not the text.
        #[source]
        source: serde_json::Error,
    },

    /// Failure of the operating system's random number generator.
    #[error("cannot draw a random nonce")]
    Random(#[source] getrandom::Error),

    /// A KMS call for the field's data key failed.
    #[error("KMS call for the field's data key failed")]
    Kms(#[from] crate::Error),
}
