//! Encryption of named fields inside a JSON document.

use serde_json::Value;
use zeroize::Zeroizing;

use super::format::FieldAad;
use super::{Error, FieldEncryptor, Result};
use crate::cache::DataKeySource;

impl<S: DataKeySource> FieldEncryptor<S> {
    /// Replaces each field of `document` that a JSON pointer (RFC 6901, such as `/patient/ssn`)
    /// names with the encryption of its JSON text, as a string.
    ///
    /// Any JSON value can be encrypted, and [`FieldEncryptor::decrypt_json`] restores it with
    /// its type. Each value is bound to its pointer as the field name, and to `record_id` when
    /// given. Absent fields are skipped. When any field fails, `document` is left unchanged.
    ///
    /// NOTE: the original values are dropped without being zeroized, because `serde_json`
    /// gives no way to wipe the strings it owns.
    pub async fn encrypt_json(
        &self,
        document: &mut Value,
        pointers: &[&str],
        record_id: Option<&[u8]>,
    ) -> Result<()> {
        check_pointers(pointers)?;
        let mut replacements = Vec::with_capacity(pointers.len());
        for &pointer in pointers {
            let Some(value) = document.pointer(pointer) else {
                continue;
            };
            let plaintext = to_json(pointer, value)?;
            let text = self.encrypt(&plaintext, &bind(pointer, record_id)).await?;
            replacements.push((pointer, Value::String(text)));
        }
        replace(document, replacements);
        Ok(())
    }

    /// Replaces each field of `document` that a JSON pointer names, which must contain a value
    /// written by [`FieldEncryptor::encrypt_json`], with the decrypted JSON value.
    ///
    /// `pointers` and `record_id` must be those given to encrypt. Absent fields are skipped. A
    /// field that is not a string fails with [`Error::JsonFieldNotEncrypted`]. When any field
    /// fails, `document` is left unchanged.
    pub async fn decrypt_json(
        &self,
        document: &mut Value,
        pointers: &[&str],
        record_id: Option<&[u8]>,
    ) -> Result<()> {
        check_pointers(pointers)?;
        let mut replacements = Vec::with_capacity(pointers.len());
        for &pointer in pointers {
            let text = match document.pointer(pointer) {
                None => continue,
                Some(Value::String(text)) => text,
                Some(other) => {
                    return Err(Error::JsonFieldNotEncrypted {
                        pointer: pointer.to_owned(),
                        found: json_type(other),
                    });
                }
            };
            let plaintext = self.decrypt(text, &bind(pointer, record_id)).await?;
            let value =
                serde_json::from_slice(&plaintext).map_err(|source| Error::InvalidJson {
                    pointer: pointer.to_owned(),
                    source,
                })?;
            replacements.push((pointer, value));
        }
        replace(document, replacements);
        Ok(())
    }
}

fn bind<'a>(pointer: &'a str, record_id: Option<&'a [u8]>) -> FieldAad<'a> {
    let aad = FieldAad::new(pointer);
    match record_id {
        Some(id) => aad.with_record_id(id),
        None => aad,
    }
}

/// Writes every replacement. Each pointer was found before, and the pointers do not overlap,
/// so every one is still found.
fn replace(document: &mut Value, replacements: Vec<(&str, Value)>) {
    for (pointer, value) in replacements {
        if let Some(slot) = document.pointer_mut(pointer) {
            *slot = value;
        }
    }
}

/// Checks that every pointer names a field below the root, uses only the escapes `~0` and
/// `~1`, and neither repeats nor contains another, so that replacing one cannot move another.
fn check_pointers(pointers: &[&str]) -> Result<()> {
    let invalid = |pointer: &str, reason| {
        Err(Error::InvalidJsonPointer {
            pointer: pointer.to_owned(),
            reason,
        })
    };
    for (index, &pointer) in pointers.iter().enumerate() {
        if !pointer.starts_with('/') {
            return invalid(
                pointer,
                "must start with '/' and name a field below the root",
            );
        }
        let mut escapes = pointer.split('~').skip(1);
        if escapes.any(|after| !after.starts_with(['0', '1'])) {
            return invalid(pointer, "'~' must be followed by '0' or '1'");
        }
        for &other in &pointers[..index] {
            if other == pointer {
                return invalid(pointer, "is listed twice");
            }
            if contains(other, pointer) || contains(pointer, other) {
                return invalid(pointer, "overlaps another pointer in the list");
            }
        }
    }
    Ok(())
}

/// Returns whether the field that `outer` names contains the one that `inner` names.
fn contains(outer: &str, inner: &str) -> bool {
    inner
        .strip_prefix(outer)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Serializes a value into a buffer of exact size that is zeroized on drop, so that no
/// reallocation leaves a copy of the plaintext behind.
fn to_json(pointer: &str, value: &Value) -> Result<Zeroizing<Vec<u8>>> {
    let failed = |source| Error::InvalidJson {
        pointer: pointer.to_owned(),
        source,
    };
    crate::client::to_zeroizing_json(value).map_err(failed)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
