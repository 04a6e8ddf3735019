//! Encryption of single values, such as database columns and JSON fields, into short text.
//!
//! A value encrypts to a string such as `f1r.AQ3x…`: a prefix naming the format version (1) and
//! the mode, then unpadded URL-safe base64 of the payload. Two modes:
//!
//! - randomized (`f1r.`): AES-256-GCM with a random 96-bit nonce. Equal plaintexts give
//!   different values. Use it unless a column needs equality lookups.
//! - deterministic (`f1d.`): AES-SIV (RFC 5297) with a 512-bit key. Equal plaintexts with the
//!   same field name and record id give equal values under one data key, so a column can be
//!   searched by equality. This reveals which values are equal, how often each occurs, and
//!   their lengths. It does not reveal their order.
//!
//! Both keys, and the 8-byte key reference, are derived from one 32-byte data key with
//! HKDF-SHA256. Two forms:
//!
//! - compact: the value carries the key reference of a data key that the application stores
//!   once ([`StoredKey`]). 37 bytes of overhead in randomized mode and 25 in deterministic
//!   mode, before base64. With the prefix, the text is never longer than unpadded base64 of
//!   the plaintext plus 40 bytes.
//! - self-contained: the value carries the data key's ciphertext blob (86 bytes from `kmsd`),
//!   so it decrypts with KMS access alone. 117 and 105 bytes of overhead.
//!
//! Every value is bound to a field name and an optional record id ([`FieldAad`]). Decryption
//! with another field name or record id fails. `docs/field-encryption.md` specifies every byte.
//!
//! [`FieldEncryptor`] is the entry point for services: it takes data keys from a
//! [`DataKeyCache`](crate::cache::DataKeyCache) and also encrypts fields of JSON documents.
//! [`FieldKey`] encrypts without a cache or a runtime, under a data key that the caller has.
//!
//! ```no_run
//! # async fn example(client: client_sdk::Client) -> Result<(), client_sdk::field::Error> {
//! use std::sync::Arc;
//!
//! use client_sdk::Context;
//! use client_sdk::cache::{CacheLimits, DataKeyCache};
//! use client_sdk::field::{FieldAad, FieldEncryptor, Form, Mode, StoredKey};
//!
//! let cache = Arc::new(DataKeyCache::new(Arc::new(client), CacheLimits::default())?);
//! let context = Context::from([("table".to_owned(), "patients".to_owned())]);
//!
//! // Free text: a fresh data key per cache period, carried in each value.
//! let notes = FieldEncryptor::generated(Arc::clone(&cache), "patient-records", context.clone());
//! let aad = FieldAad::new("patients.notes").with_record_id("8d3e5a");
//! let value = notes.encrypt(b"allergic to penicillin", &aad).await?;
//! assert_eq!(&notes.decrypt(&value, &aad).await?[..], b"allergic to penicillin");
//!
//! // A column searched by equality: one stored data key, compact deterministic values.
//! // A service generates the key once and keeps both of its parts in its database.
//! let stored = StoredKey::generate(&**cache.source(), "patient-records", &context).await?;
//! let emails = FieldEncryptor::stored(cache, context, stored, Mode::Deterministic, Form::Compact);
//! let aad = FieldAad::new("patients.email");
//! let first = emails.encrypt(b"ada@example.org", &aad).await?;
//! let second = emails.encrypt(b"ada@example.org", &aad).await?;
//! assert_eq!(first, second);
//! # Ok(())
//! # }
//! ```

mod cipher;
mod encryptor;
mod error;
mod format;
mod json;
mod stored;

pub use cipher::FieldKey;
pub use encryptor::FieldEncryptor;
pub use error::Error;
pub use format::{FieldAad, Form, KeyRef, Mode, ValueInfo, inspect};
pub use stored::StoredKey;

/// A `Result` whose error is the field [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
