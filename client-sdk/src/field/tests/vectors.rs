//! Known-answer vectors from `tests/vectors/field`, written by an independent generator.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;

use super::*;

fn vector_folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/field")
}

/// One vector file: `name: value` lines.
struct Vector {
    name: String,
    fields: HashMap<String, String>,
}

impl Vector {
    fn text(&self, field: &str) -> &str {
        self.fields
            .get(field)
            .unwrap_or_else(|| panic!("{}: no field {field}", self.name))
    }

    /// Returns the decryption override of a field, or the encryption value.
    fn text_for_decrypt(&self, field: &str) -> &str {
        self.fields
            .get(&format!("decrypt_{field}"))
            .map_or_else(|| self.text(field), String::as_str)
    }

    fn bytes(&self, field: &str) -> Vec<u8> {
        decode_hex(self.text(field))
    }

    fn mode(&self) -> Mode {
        match self.text("mode") {
            "randomized" => Mode::Randomized,
            "deterministic" => Mode::Deterministic,
            other => panic!("{}: unknown mode {other}", self.name),
        }
    }

    fn form(&self) -> Form {
        match self.text("form") {
            "compact" => Form::Compact,
            "self-contained" => Form::SelfContained,
            other => panic!("{}: unknown form {other}", self.name),
        }
    }

    fn key(&self, data_key: &str) -> FieldKey {
        let plaintext = SecretSlice::from(decode_hex(data_key));
        FieldKey::new(&plaintext, &self.bytes("wrapped_key")).unwrap()
    }
}

/// Parses a record id: `-` for none, else hex (possibly empty).
fn record_id(text: &str) -> Option<Vec<u8>> {
    (text != "-").then(|| decode_hex(text))
}

fn decode_hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length in {text:?}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn load_vectors() -> Vec<Vector> {
    let mut vectors = Vec::new();
    for entry in fs::read_dir(vector_folder()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "txt") {
            continue;
        }
        // Values never contain ':', and an empty value may have lost its trailing space.
        let fields = fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.to_owned(), value.trim().to_owned()))
            .collect();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        vectors.push(Vector { name, fields });
    }
    vectors.sort_by(|a, b| a.name.cmp(&b.name));
    vectors
}

/// Names an error as the vectors do.
fn error_name(err: &Error) -> &'static str {
    match err {
        Error::UnknownPrefix => "unknown_prefix",
        Error::UnsupportedVersion { .. } => "unsupported_version",
        Error::InvalidBase64 => "invalid_base64",
        Error::Truncated { .. } => "truncated",
        Error::UnknownForm { .. } => "unknown_form",
        Error::InvalidWrappedKeyLength { .. } => "invalid_wrapped_key_length",
        Error::WrongKeyReference { .. } => "wrong_key_reference",
        Error::AuthenticationFailed { .. } => "authentication_failed",
        _ => "other",
    }
}

/// Decrypts the vector's value with its decryption inputs.
fn decrypt(vector: &Vector) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let key = vector.key(vector.text_for_decrypt("data_key"));
    let record_id = record_id(vector.text_for_decrypt("record_id"));
    let mut aad = FieldAad::new(vector.text_for_decrypt("field"));
    if let Some(id) = &record_id {
        aad = aad.with_record_id(id);
    }
    key.decrypt(vector.text("value"), &aad)
}

/// Encrypts the vector's plaintext again with its encryption inputs and nonce.
fn reencrypt(vector: &Vector) -> String {
    let key = vector.key(vector.text("data_key"));
    let record_id = record_id(vector.text("record_id"));
    let mut aad = FieldAad::new(vector.text("field"));
    if let Some(id) = &record_id {
        aad = aad.with_record_id(id);
    }
    let plaintext = vector.bytes("plaintext");
    match vector.mode() {
        Mode::Randomized => {
            let nonce = vector.bytes("nonce").try_into().unwrap();
            key.encrypt_with_nonce(vector.mode(), vector.form(), &plaintext, &aad, nonce)
        }
        _ => key.encrypt(vector.mode(), vector.form(), &plaintext, &aad),
    }
    .unwrap()
}

#[test]
fn vectors_match_byte_for_byte() {
    let vectors = load_vectors();
    let mut ok = 0;
    let mut failing = 0;
    for vector in &vectors {
        let key = vector.key(vector.text("data_key"));
        assert_eq!(
            key.key_ref().to_string(),
            vector.text("key_ref"),
            "{}: key reference",
            vector.name
        );

        let expect = vector.text("expect");
        match decrypt(vector) {
            Ok(plaintext) => {
                assert_eq!(
                    expect, "ok",
                    "{}: decrypted, expected {expect}",
                    vector.name
                );
                assert_eq!(*plaintext, vector.bytes("plaintext"), "{}", vector.name);
                assert_eq!(reencrypt(vector), vector.text("value"), "{}", vector.name);
                ok += 1;
            }
            Err(err) => {
                assert_eq!(error_name(&err), expect, "{}: {err:?}", vector.name);
                failing += 1;
            }
        }
    }

    assert!(
        ok >= 19,
        "only {ok} ok vectors in {}",
        vector_folder().display()
    );
    assert!(failing >= 33, "only {failing} negative vectors");
}

#[test]
fn vector_doc_example_matches() {
    let vectors = load_vectors();
    let example = vectors
        .iter()
        .find(|vector| vector.name == "ok_randomized_compact_doc_example")
        .unwrap();

    assert_eq!(example.text("key_ref"), "b9d677e78cacdfe9");
    assert_eq!(
        example.text("value"),
        "f1r.AbnWd-eMrN_psLGys7S1tre4ubq7fm0kAUTqVPa1UNaMysAsS7dMEaGBzX_iz5xZjX11gGoePGq-7UY"
    );
}
