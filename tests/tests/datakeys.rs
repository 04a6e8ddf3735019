//! Data keys, payload encryption and the ciphertext blob: round trips, contexts, tampering,
//! truncation, sizes and disabled keys.

use client_sdk::secrecy::ExposeSecret;
use client_sdk::{Client, Context, DataKey, DataKeySize};
use kms_tests::{Daemon, assert_api_error, base64, data_dir};
use serde_json::json;

/// Offsets of the blob fields, from the format documentation.
const KEY_ID: std::ops::Range<usize> = 6..22;
const KEY_VERSION: std::ops::Range<usize> = 22..26;
const HEADER_LEN: usize = 38;
const TAG_LEN: usize = 16;

fn context() -> Context {
    Context::from([
        ("app".to_owned(), "billing".to_owned()),
        ("tenant".to_owned(), "clinic-7".to_owned()),
    ])
}

async fn generate(root: &Client, size: DataKeySize, context: &Context) -> DataKey {
    root.generate_data_key("patient-records", size, context, true)
        .await
        .expect("generate data key")
}

#[tokio::test]
async fn datakey_round_trips_byte_for_byte() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (_init, root) = daemon.init_with_key("patient-records").await;
    let key = root.get_key("patient-records").await.expect("show key");

    let data_key = generate(&root, DataKeySize::Bytes32, &context()).await;
    assert_eq!(data_key.key_name, "patient-records");
    assert_eq!(data_key.key_id, key.id);
    assert_eq!(data_key.key_version, 1);
    let plaintext = data_key.plaintext.as_ref().expect("plaintext requested");
    assert_eq!(plaintext.expose_secret().len(), 32);

    // The blob is laid out as documented: magic, format, algorithm, key id, version.
    let blob = &data_key.ciphertext;
    assert_eq!(blob.len(), HEADER_LEN + 32 + TAG_LEN);
    assert_eq!(&blob[..6], b"KMSB\x01\x01");
    assert_eq!(kms_tests::hex(&blob[KEY_ID]), key.id.replace('-', ""));
    assert_eq!(&blob[KEY_VERSION], &[0, 0, 0, 1]);
    assert_eq!(base64(blob).len(), 116);

    let opened = root.decrypt(blob, &context()).await.expect("decrypt");
    assert_eq!(opened.key_name, "patient-records");
    assert_eq!(opened.key_id, key.id);
    assert_eq!(opened.key_version, 1);
    assert!(
        opened.plaintext.expose_secret() == plaintext.expose_secret(),
        "decrypt returned another data key"
    );

    // Two data keys are never equal, and neither are their nonces.
    let second = generate(&root, DataKeySize::Bytes32, &context()).await;
    let second_plaintext = second.plaintext.as_ref().expect("plaintext");
    assert!(second_plaintext.expose_secret() != plaintext.expose_secret());
    assert_ne!(&second.ciphertext[26..38], &blob[26..38]);
}

#[tokio::test]
async fn payload_round_trips_byte_for_byte() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (_init, root) = daemon.init_with_key("patient-records").await;

    let every_byte: Vec<u8> = (0..=255u8).collect();
    let cases: [(&str, Vec<u8>); 5] = [
        ("empty", Vec::new()),
        ("one byte", vec![0]),
        ("every byte value", every_byte),
        ("4095 bytes", vec![0xa5; 4095]),
        (
            "4096 bytes",
            (0..4096u32).map(|i| (i % 251) as u8).collect(),
        ),
    ];
    for (name, payload) in &cases {
        for ctx in [Context::new(), context()] {
            let sealed = root
                .encrypt("patient-records", payload, &ctx)
                .await
                .unwrap_or_else(|err| panic!("encrypt {name}: {err}"));
            assert_eq!(
                sealed.ciphertext.len(),
                HEADER_LEN + payload.len() + TAG_LEN,
                "{name}"
            );
            let opened = root
                .decrypt(&sealed.ciphertext, &ctx)
                .await
                .unwrap_or_else(|err| panic!("decrypt {name}: {err}"));
            assert!(
                opened.plaintext.expose_secret() == payload.as_slice(),
                "{name}: the payload did not round-trip"
            );
        }
    }
}

#[tokio::test]
async fn encrypt_rejects_more_than_4096_bytes() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (_init, root) = daemon.init_with_key("patient-records").await;

    let err = assert_api_error(
        root.encrypt("patient-records", &[1u8; 4097], &context())
            .await,
        400,
        "invalid_request",
    );
    assert!(err.to_string().contains("plaintext"), "{err}");
    root.encrypt("patient-records", &[1u8; 4096], &context())
        .await
        .expect("4096 bytes are allowed");
}

#[tokio::test]
async fn decrypt_rejects_any_other_context() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (_init, root) = daemon.init_with_key("patient-records").await;
    let data_key = generate(&root, DataKeySize::Bytes32, &context()).await;
    let payload = root
        .encrypt("patient-records", b"payload", &context())
        .await
        .expect("encrypt");

    let mut wrong_value = context();
    wrong_value.insert("tenant".to_owned(), "clinic-8".to_owned());
    let mut missing_entry = context();
    missing_entry.remove("app");
    let mut extra_entry = context();
    extra_entry.insert("user".to_owned(), "dr-who".to_owned());
    let mut renamed_key = context();
    let value = renamed_key.remove("tenant").expect("tenant entry");
    renamed_key.insert("Tenant".to_owned(), value);
    let mut case_changed = context();
    case_changed.insert("tenant".to_owned(), "Clinic-7".to_owned());
    let cases = [
        ("no context", Context::new()),
        ("wrong value", wrong_value),
        ("missing entry", missing_entry),
        ("extra entry", extra_entry),
        ("renamed key", renamed_key),
        ("value in another case", case_changed),
    ];
    for blob in [&data_key.ciphertext, &payload.ciphertext] {
        for (name, ctx) in &cases {
            let result = root.decrypt(blob, ctx).await;
            let err = result
                .err()
                .unwrap_or_else(|| panic!("{name}: decrypt succeeded"));
            assert_eq!(err.code(), Some("decryption_failed"), "{name}: {err}");
            assert_eq!(err.status(), Some(400), "{name}: {err}");
        }
    }

    // A blob made without context opens only without context.
    let bare = generate(&root, DataKeySize::Bytes16, &Context::new()).await;
    assert_api_error(
        root.decrypt(&bare.ciphertext, &context()).await,
        400,
        "decryption_failed",
    );
    root.decrypt(&bare.ciphertext, &Context::new())
        .await
        .expect("decrypt without context");
}

/// Which error a change to the byte at `position` of a data-key blob must give: the header
/// fields are parsed before authentication, everything from the nonce on is authenticated.
fn expected_tamper_code(position: usize) -> &'static str {
    match position {
        0..6 => "invalid_ciphertext",
        6..22 => "key_not_found",
        22..26 => "key_version_not_found",
        _ => "decryption_failed",
    }
}

#[tokio::test]
async fn every_single_byte_tamper_is_rejected() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (_init, root) = daemon.init_with_key("patient-records").await;
    let data_key = generate(&root, DataKeySize::Bytes32, &context()).await;
    let blob = &data_key.ciphertext;
    assert_eq!(blob.len(), 86);

    let mut failures = Vec::new();
    for position in 0..blob.len() {
        for mask in [0x01u8, 0xff] {
            let mut tampered = blob.clone();
            tampered[position] ^= mask;
            let expected = expected_tamper_code(position);
            match root.decrypt(&tampered, &context()).await {
                Ok(_) => failures.push(format!("byte {position} ^ {mask:#04x}: decrypt succeeded")),
                Err(err) if err.code() == Some(expected) => {}
                Err(err) => failures.push(format!(
                    "byte {position} ^ {mask:#04x}: expected {expected}, got {err}"
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "tampered blobs:\n{}",
        failures.join("\n")
    );

    // The untouched blob still opens, so the errors above came from the changes.
    root.decrypt(blob, &context())
        .await
        .expect("decrypt original");
}

#[tokio::test]
async fn truncated_or_extended_blob_is_rejected() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (_init, root) = daemon.init_with_key("patient-records").await;
    let data_key = generate(&root, DataKeySize::Bytes32, &context()).await;
    let blob = &data_key.ciphertext;

    let mut failures = Vec::new();
    for len in 0..blob.len() {
        // Shorter than a header and a tag cannot be a blob; longer is cut inside the
        // authenticated part.
        let expected = if len < HEADER_LEN + TAG_LEN {
            ("invalid_ciphertext", 400)
        } else {
            ("decryption_failed", 400)
        };
        match root.decrypt(&blob[..len], &context()).await {
            Ok(_) => failures.push(format!("{len} bytes: decrypt succeeded")),
            Err(err) if (err.code(), err.status()) == (Some(expected.0), Some(expected.1)) => {}
            Err(err) => failures.push(format!("{len} bytes: expected {expected:?}, got {err}")),
        }
    }
    assert!(
        failures.is_empty(),
        "truncated blobs:\n{}",
        failures.join("\n")
    );

    let mut extended = blob.clone();
    extended.push(0);
    assert_api_error(
        root.decrypt(&extended, &context()).await,
        400,
        "decryption_failed",
    );
}

#[tokio::test]
async fn blob_moved_to_other_key_fails() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (_init, root) = daemon.init_with_key("patient-records").await;
    root.create_key("billing").await.expect("create second key");
    root.rotate_key("patient-records").await.expect("rotate");
    let billing = root
        .generate_data_key("billing", DataKeySize::Bytes32, &context(), true)
        .await
        .expect("generate under billing");
    let patient = generate(&root, DataKeySize::Bytes32, &context()).await;
    assert_eq!(patient.key_version, 2);

    // Moving a blob to another existing key or version fails authentication.
    let mut moved = billing.ciphertext.clone();
    moved[KEY_ID].copy_from_slice(&patient.ciphertext[KEY_ID]);
    assert_api_error(
        root.decrypt(&moved, &context()).await,
        400,
        "decryption_failed",
    );
    let mut older = patient.ciphertext.clone();
    older[KEY_VERSION].copy_from_slice(&[0, 0, 0, 1]);
    assert_api_error(
        root.decrypt(&older, &context()).await,
        400,
        "decryption_failed",
    );
    let mut newer = patient.ciphertext.clone();
    newer[KEY_VERSION].copy_from_slice(&[0, 0, 0, 3]);
    assert_api_error(
        root.decrypt(&newer, &context()).await,
        404,
        "key_version_not_found",
    );
}

#[tokio::test]
async fn disabled_key_rejects_use_until_enabled() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (_init, root) = daemon.init_with_key("patient-records").await;
    let data_key = generate(&root, DataKeySize::Bytes32, &context()).await;
    let plaintext = data_key.plaintext.as_ref().expect("plaintext");

    root.disable_key("patient-records").await.expect("disable");
    assert_api_error(
        root.generate_data_key("patient-records", DataKeySize::Bytes32, &context(), true)
            .await,
        409,
        "key_disabled",
    );
    assert_api_error(
        root.encrypt("patient-records", b"x", &context()).await,
        409,
        "key_disabled",
    );
    assert_api_error(
        root.decrypt(&data_key.ciphertext, &context()).await,
        409,
        "key_disabled",
    );
    assert_api_error(
        root.rewrap(&data_key.ciphertext, &context()).await,
        409,
        "key_disabled",
    );

    root.enable_key("patient-records").await.expect("enable");
    let opened = root
        .decrypt(&data_key.ciphertext, &context())
        .await
        .expect("decrypt after enable");
    assert!(opened.plaintext.expose_secret() == plaintext.expose_secret());
    generate(&root, DataKeySize::Bytes32, &context()).await;
}

#[tokio::test]
async fn datakey_sizes_give_exact_lengths() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (init, root) = daemon.init_with_key("patient-records").await;

    for (size, bytes) in [
        (DataKeySize::Bytes16, 16),
        (DataKeySize::Bytes24, 24),
        (DataKeySize::Bytes32, 32),
    ] {
        let data_key = generate(&root, size, &context()).await;
        let plaintext = data_key.plaintext.as_ref().expect("plaintext");
        assert_eq!(plaintext.expose_secret().len(), bytes);
        assert_eq!(data_key.ciphertext.len(), HEADER_LEN + bytes + TAG_LEN);
        let opened = root
            .decrypt(&data_key.ciphertext, &context())
            .await
            .expect("decrypt");
        assert_eq!(opened.plaintext.expose_secret().len(), bytes);
    }

    let http = daemon.http();
    let token = init.root_token.expose_secret();
    let path = "/v1/keys/patient-records/datakey";
    for bytes in [0, 1, 15, 20, 31, 33, 64] {
        let reply = http
            .post(path, Some(token), &json!({ "bytes": bytes }))
            .await;
        let message = reply.assert_error(400, "invalid_request");
        assert!(message.contains("bytes"), "{bytes}: {message}");
    }

    // Without `bytes` the data key has 32 bytes.
    let reply = http.post(path, Some(token), &json!({})).await;
    assert_eq!(reply.status, 200);
    let encoded = reply.body["plaintext"].as_str().expect("plaintext");
    assert_eq!(encoded.len(), 44, "32 bytes are 44 base64 characters");
}

#[tokio::test]
async fn include_plaintext_false_omits_plaintext() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (init, root) = daemon.init_with_key("patient-records").await;

    let data_key = root
        .generate_data_key("patient-records", DataKeySize::Bytes24, &context(), false)
        .await
        .expect("generate without plaintext");
    assert!(data_key.plaintext.is_none());
    let opened = root
        .decrypt(&data_key.ciphertext, &context())
        .await
        .expect("decrypt");
    assert_eq!(opened.plaintext.expose_secret().len(), 24);

    let reply = daemon
        .http()
        .post(
            "/v1/keys/patient-records/datakey",
            Some(init.root_token.expose_secret()),
            &json!({"include_plaintext": false, "context": {"tenant": "clinic-7"}}),
        )
        .await;
    assert_eq!(reply.status, 200);
    let fields = reply.body.as_object().expect("JSON object");
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["ciphertext", "key_id", "key_name", "key_version"]);
}

#[tokio::test]
async fn context_limits_are_enforced() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (init, root) = daemon.init_with_key("patient-records").await;
    let http = daemon.http();
    let token = init.root_token.expose_secret();
    let path = "/v1/keys/patient-records/datakey";

    let entries = |n: usize| -> Context {
        (0..n)
            .map(|i| (format!("k{i:02}"), "v".to_owned()))
            .collect()
    };
    let at_limit = [
        ("64 entries", entries(64)),
        (
            "256-byte key",
            Context::from([("k".repeat(256), "v".to_owned())]),
        ),
        (
            "1024-byte value",
            Context::from([("k".to_owned(), "v".repeat(1024))]),
        ),
        (
            "empty value",
            Context::from([("k".to_owned(), String::new())]),
        ),
        (
            "non-ASCII",
            Context::from([("straße".to_owned(), "zürich".to_owned())]),
        ),
    ];
    for (name, ctx) in &at_limit {
        let data_key = root
            .generate_data_key("patient-records", DataKeySize::Bytes16, ctx, true)
            .await
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        root.decrypt(&data_key.ciphertext, ctx)
            .await
            .unwrap_or_else(|err| panic!("{name}: decrypt: {err}"));
    }

    let over_limit = [
        ("65 entries", entries(65)),
        (
            "257-byte key",
            Context::from([("k".repeat(257), "v".to_owned())]),
        ),
        (
            "1025-byte value",
            Context::from([("k".to_owned(), "v".repeat(1025))]),
        ),
        (
            "empty key",
            Context::from([(String::new(), "v".to_owned())]),
        ),
    ];
    for (name, ctx) in &over_limit {
        let reply = http
            .post(path, Some(token), &json!({ "context": ctx }))
            .await;
        assert_eq!(
            (reply.status, reply.code()),
            (400, Some("invalid_request")),
            "{name}"
        );
        assert!(
            reply.message().contains("context"),
            "{name}: {}",
            reply.message()
        );
    }
}

#[tokio::test]
async fn decrypt_rejects_foreign_blob_format() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (_init, root) = daemon.init_with_key("patient-records").await;
    let data_key = generate(&root, DataKeySize::Bytes32, &context()).await;

    let mut wrong_format = data_key.ciphertext.clone();
    wrong_format[4] = 2;
    let err = assert_api_error(
        root.decrypt(&wrong_format, &context()).await,
        400,
        "invalid_ciphertext",
    );
    assert!(err.to_string().contains("version 2"), "{err}");

    let mut wrong_algorithm = data_key.ciphertext.clone();
    wrong_algorithm[5] = 9;
    assert_api_error(
        root.decrypt(&wrong_algorithm, &context()).await,
        400,
        "invalid_ciphertext",
    );

    let random = kms_tests::random_bytes(86);
    assert_api_error(
        root.decrypt(&random, &context()).await,
        400,
        "invalid_ciphertext",
    );
}
