//! Tests of field encryption: the cipher and format, the encryptor with its cache, JSON fields
//! and the known-answer vectors.

use secrecy::SecretSlice;

use super::*;

mod cipher;
mod encryptor;
mod json;
mod vectors;

/// Every combination of mode and form.
const MODES_AND_FORMS: [(Mode, Form); 4] = [
    (Mode::Randomized, Form::Compact),
    (Mode::Randomized, Form::SelfContained),
    (Mode::Deterministic, Form::Compact),
    (Mode::Deterministic, Form::SelfContained),
];

/// Returns a synthetic 86-byte blob, the length of a kmsd blob of a 32-byte data key.
fn blob(fill: u8) -> Vec<u8> {
    let mut blob = vec![fill; 86];
    blob[..4].copy_from_slice(b"KMSB");
    blob
}

/// Returns a field key whose data key is 32 bytes of `fill`.
fn field_key(fill: u8) -> FieldKey {
    FieldKey::new(&SecretSlice::from(vec![fill; 32]), &blob(fill)).unwrap()
}

/// Decodes the payload of a value, for tests that look at or change its bytes.
fn payload(value: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&value[4..])
        .unwrap()
}

/// Encodes a payload after the prefix of `value`.
fn with_payload(value: &str, payload: &[u8]) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload);
    format!("{}{encoded}", &value[..4])
}
