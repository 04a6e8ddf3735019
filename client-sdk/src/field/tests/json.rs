//! Encryption of named fields of JSON documents.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::Context;
use crate::cache::fake::FakeSource;
use crate::cache::{CacheLimits, DataKeyCache};

const POINTERS: [&str; 6] = [
    "/ssn",
    "/age",
    "/contact/phone",
    "/flags",
    "/nothing",
    "/a~1b",
];

fn encryptor() -> FieldEncryptor<FakeSource> {
    let limits = CacheLimits::default().with_max_age(Duration::from_secs(3600));
    let cache = Arc::new(DataKeyCache::new(Arc::new(FakeSource::default()), limits).unwrap());
    let context = Context::from([("table".to_owned(), "patients".to_owned())]);
    FieldEncryptor::generated(cache, "patient-records", context)
}

async fn deterministic_encryptor() -> FieldEncryptor<FakeSource> {
    let generated = encryptor();
    let cache = Arc::clone(generated.cache());
    let context = generated.context().clone();
    let stored = StoredKey::generate(&**cache.source(), "patient-records", &context)
        .await
        .unwrap();
    FieldEncryptor::stored(cache, context, stored, Mode::Deterministic, Form::Compact)
}

fn document() -> Value {
    json!({
        "id": "8d3e5a",
        "ssn": "078-05-1120",
        "age": 64,
        "contact": {"phone": "+1 555 0100", "city": "Springfield"},
        "flags": [true, null, {"nested": 1.5}],
        "nothing": null,
        "a/b": "slash in a key",
    })
}

#[tokio::test]
async fn json_fields_round_trip_with_their_types() {
    let encryptor = encryptor();
    let mut doc = document();
    encryptor
        .encrypt_json(&mut doc, &POINTERS, Some(b"8d3e5a"))
        .await
        .unwrap();

    for pointer in POINTERS {
        let text = doc.pointer(pointer).and_then(Value::as_str).unwrap();
        assert!(text.starts_with("f1r."), "{pointer}: {text}");
    }
    assert_eq!(doc["id"], "8d3e5a");
    assert_eq!(doc["contact"]["city"], "Springfield");

    encryptor
        .decrypt_json(&mut doc, &POINTERS, Some(b"8d3e5a"))
        .await
        .unwrap();
    assert_eq!(doc, document());
}

#[tokio::test]
async fn absent_json_fields_are_skipped() {
    let encryptor = encryptor();
    let mut doc = json!({"ssn": "078-05-1120"});
    encryptor
        .encrypt_json(&mut doc, &["/ssn", "/missing", "/contact/phone"], None)
        .await
        .unwrap();

    assert_eq!(doc.as_object().unwrap().len(), 1);
    encryptor
        .decrypt_json(&mut doc, &["/ssn", "/missing", "/contact/phone"], None)
        .await
        .unwrap();
    assert_eq!(doc, json!({"ssn": "078-05-1120"}));
}

#[tokio::test]
async fn json_fields_bind_pointer_and_record() {
    let encryptor = encryptor();
    let mut doc = document();
    encryptor
        .encrypt_json(&mut doc, &["/ssn"], Some(b"8d3e5a"))
        .await
        .unwrap();
    let encrypted = doc.clone();

    let err = encryptor
        .decrypt_json(&mut doc, &["/ssn"], Some(b"8d3e5b"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::AuthenticationFailed { field, .. } if field == "/ssn"),
        "{err:?}"
    );
    assert_eq!(doc, encrypted, "a failed decryption changed the document");

    // The value moved to another field fails too.
    doc["age"] = doc["ssn"].clone();
    let err = encryptor
        .decrypt_json(&mut doc, &["/age"], Some(b"8d3e5a"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AuthenticationFailed { .. }), "{err:?}");
}

#[tokio::test]
async fn failed_field_leaves_document_unchanged() {
    let encryptor = encryptor();
    let mut doc = document();
    encryptor
        .encrypt_json(&mut doc, &["/ssn"], None)
        .await
        .unwrap();
    let encrypted = doc.clone();

    // "/ssn" would decrypt, but "/age" is a number, so nothing may change.
    let err = encryptor
        .decrypt_json(&mut doc, &["/ssn", "/age"], None)
        .await
        .unwrap_err();

    assert!(
        matches!(&err, Error::JsonFieldNotEncrypted { pointer, found: "number" } if pointer == "/age"),
        "{err:?}"
    );
    assert_eq!(doc, encrypted);
}

#[tokio::test]
async fn deterministic_json_fields_compare_equal() {
    let encryptor = deterministic_encryptor().await;
    let mut first = json!({"email": "ada@example.org"});
    let mut second = json!({"email": "ada@example.org", "other": 1});
    encryptor
        .encrypt_json(&mut first, &["/email"], None)
        .await
        .unwrap();
    encryptor
        .encrypt_json(&mut second, &["/email"], None)
        .await
        .unwrap();

    assert_eq!(first["email"], second["email"]);
    assert!(first["email"].as_str().unwrap().starts_with("f1d."));
}

#[tokio::test]
async fn invalid_pointers_are_rejected() {
    let encryptor = encryptor();
    let cases: [&[&str]; 6] = [
        &["ssn"],
        &[""],
        &["/a~2b"],
        &["/ssn", "/ssn"],
        &["/contact", "/contact/phone"],
        &["/contact/phone", "/contact"],
    ];
    for pointers in cases {
        let mut doc = document();
        let err = encryptor
            .encrypt_json(&mut doc, pointers, None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidJsonPointer { .. }),
            "{pointers:?}: {err:?}"
        );
        assert_eq!(doc, document(), "{pointers:?}");
    }
}

#[tokio::test]
async fn sibling_pointers_share_prefix() {
    let encryptor = encryptor();
    let mut doc = json!({"contact": "x", "contact_2": "y"});
    encryptor
        .encrypt_json(&mut doc, &["/contact", "/contact_2"], None)
        .await
        .unwrap();
    encryptor
        .decrypt_json(&mut doc, &["/contact", "/contact_2"], None)
        .await
        .unwrap();

    assert_eq!(doc, json!({"contact": "x", "contact_2": "y"}));
}

#[tokio::test]
async fn non_json_plaintext_is_rejected() {
    let encryptor = encryptor();
    let value = encryptor
        .encrypt(b"not json", &FieldAad::new("/ssn"))
        .await
        .unwrap();
    let mut doc = json!({ "ssn": value });
    let err = encryptor
        .decrypt_json(&mut doc, &["/ssn"], None)
        .await
        .unwrap_err();

    assert!(
        matches!(&err, Error::InvalidJson { pointer, .. } if pointer == "/ssn"),
        "{err:?}"
    );
    assert!(!err.to_string().contains("not json"), "{err}");
}
