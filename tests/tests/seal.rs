//! Init, unseal, seal and restart of a real daemon.

use client_sdk::secrecy::{ExposeSecret, SecretString};
use client_sdk::{Context, DataKeySize};
use kms_tests::share_text::{self, ShareFields};
use kms_tests::{Daemon, assert_api_error, data_dir};
use serde_json::json;

fn context() -> Context {
    Context::from([("tenant".to_owned(), "clinic-7".to_owned())])
}

/// Returns `share` with one base32 character replaced by another valid one.
fn with_changed_character(share: &SecretString) -> SecretString {
    let mut text = share.expose_secret().as_bytes().to_vec();
    // Position 30 is inside the share value, well after the prefix and the set id.
    let position = 30;
    assert_ne!(text[position], b'-', "position {position} is a separator");
    text[position] = if text[position] == b'a' { b'b' } else { b'a' };
    SecretString::from(String::from_utf8(text).expect("share text is ASCII"))
}

#[tokio::test]
async fn init_returns_shares_and_token_once() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let client = daemon.client(None);

    let before = client.status().await.expect("status before init");
    assert!(!before.initialized);
    assert!(before.sealed);
    assert_eq!(before.threshold, None);
    assert_eq!(before.shares, None);
    assert_eq!(before.progress, 0);
    assert_eq!(before.root_of_trust, None);

    let init = daemon.init(5, 3).await;
    assert_eq!(init.shares.len(), 5);
    let mut texts: Vec<&str> = init.shares.iter().map(|s| s.expose_secret()).collect();
    assert!(texts.iter().all(|s| s.starts_with("kms-share-v1-")));
    let indexes: Vec<u8> = texts
        .iter()
        .map(|s| share_text::decode(s).expect("share decodes").index)
        .collect();
    assert_eq!(indexes, [1, 2, 3, 4, 5]);
    texts.sort_unstable();
    texts.dedup();
    assert_eq!(texts.len(), 5, "init returned two equal shares");
    assert!(init.root_token.expose_secret().starts_with("kmst_"));
    assert!(!init.root_accessor.is_empty());

    let after = client.status().await.expect("status after init");
    assert!(after.initialized);
    assert!(after.sealed);
    assert_eq!(after.threshold, Some(3));
    assert_eq!(after.shares, Some(5));
    assert_eq!(after.progress, 0);
    assert_eq!(after.root_of_trust.as_deref(), Some("shamir"));

    assert_api_error(client.init(5, 3, false).await, 409, "already_initialized");
    assert_api_error(client.init(1, 1, true).await, 409, "already_initialized");
}

#[tokio::test]
async fn too_few_shares_leave_daemon_sealed() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init(5, 3).await;
    let root = daemon.client(Some(&init.root_token));

    for (k, share) in init.shares[..2].iter().enumerate() {
        let status = daemon.client(None).unseal(share).await.expect("unseal");
        assert!(status.sealed);
        assert_eq!(status.progress, k as u32 + 1);
        assert_api_error(root.list_keys().await, 503, "sealed");
    }
    let status = daemon.client(None).status().await.expect("status");
    assert!(status.sealed);
    assert_eq!(status.progress, 2);

    let status = daemon.unseal(&init.shares[2..3]).await;
    assert!(!status.sealed);
    assert_eq!(status.progress, 0);
    assert_eq!(root.list_keys().await.expect("list keys").len(), 0);
}

#[tokio::test]
async fn unseal_rejects_one_changed_character() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init(5, 3).await;
    let client = daemon.client(None);
    daemon.unseal(&init.shares[..1]).await;

    let wrong = with_changed_character(&init.shares[1]);
    assert_api_error(client.unseal(&wrong).await, 400, "invalid_share");

    let status = client.status().await.expect("status");
    assert!(status.sealed);
    assert_eq!(status.progress, 1, "a rejected share changed the progress");
    let status = daemon.unseal(&init.shares[1..3]).await;
    assert!(!status.sealed);
}

#[tokio::test]
async fn unseal_rejects_malformed_share_text() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init(3, 2).await;
    let client = daemon.client(None);
    let share = init.shares[0].expose_secret();

    let cases = [
        "not a share".to_owned(),
        share.replacen("kms-share-v1-", "kms-share-v2-", 1),
        share[..share.len() - 3].to_owned(),
        format!("{share}aa"),
        share.replacen('-', "!", 5),
    ];
    for (i, case) in cases.iter().enumerate() {
        let result = client.unseal(&SecretString::from(case.as_str())).await;
        let err = result
            .err()
            .unwrap_or_else(|| panic!("malformed case {i} was accepted"));
        assert_eq!(err.code(), Some("invalid_share"), "case {i}: {err}");
        assert_eq!(err.status(), Some(400), "case {i}: {err}");
    }
    assert_eq!(client.status().await.expect("status").progress, 0);
}

#[tokio::test]
async fn unseal_rejects_duplicate_share_keeps_progress() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init(5, 3).await;
    let client = daemon.client(None);

    daemon.unseal(&init.shares[..1]).await;
    assert_api_error(client.unseal(&init.shares[0]).await, 400, "duplicate_share");

    // The same share in capitals and regrouped is still the same index.
    let regrouped = init.shares[0]
        .expose_secret()
        .to_uppercase()
        .replace('-', " ");
    let regrouped = format!("kms-share-v1-{}", &regrouped["KMS SHARE V1 ".len()..]);
    let err = assert_api_error(
        client.unseal(&SecretString::from(regrouped)).await,
        400,
        "duplicate_share",
    );
    assert!(err.to_string().contains("share 1"), "{err}");

    let status = client.status().await.expect("status");
    assert!(status.sealed);
    assert_eq!(status.progress, 1);
    let status = daemon.unseal(&init.shares[3..5]).await;
    assert!(!status.sealed);
}

#[tokio::test]
async fn unseal_rejects_share_from_another_init() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let other_dir = data_dir();
    let other = Daemon::start(other_dir.path());
    let init = daemon.init(5, 3).await;
    let other_init = other.init(5, 3).await;
    let client = daemon.client(None);

    daemon.unseal(&init.shares[..1]).await;
    assert_api_error(
        client.unseal(&other_init.shares[1]).await,
        400,
        "foreign_share",
    );

    let status = client.status().await.expect("status");
    assert_eq!(status.progress, 1);
    let status = daemon.unseal(&init.shares[1..3]).await;
    assert!(!status.sealed);
}

#[tokio::test]
async fn unseal_before_init_fails_not_initialized() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let client = daemon.client(None);
    let forged = share_text::encode(&ShareFields {
        set_id: [7; 8],
        threshold: 2,
        index: 1,
        value: [9; 32],
    });

    assert_api_error(
        client.unseal(&SecretString::from(forged)).await,
        400,
        "not_initialized",
    );
    assert_api_error(client.unseal_reset().await, 400, "not_initialized");
}

/// A share whose value was changed but whose checksum was recomputed passes every check on its
/// own. The daemon can only notice when the combined root key fails to open the keyring.
#[tokio::test]
async fn altered_share_resets_unseal_progress() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init(5, 3).await;
    let client = daemon.client(None);

    let mut fields = share_text::decode(init.shares[0].expose_secret()).expect("share decodes");
    fields.value[5] ^= 0x01;
    let altered = SecretString::from(share_text::encode(&fields));

    let status = client
        .unseal(&altered)
        .await
        .expect("altered share is well formed");
    assert_eq!(status.progress, 1);
    let status = client.unseal(&init.shares[1]).await.expect("second share");
    assert_eq!(status.progress, 2);
    assert_api_error(client.unseal(&init.shares[2]).await, 400, "unseal_failed");

    let status = client.status().await.expect("status");
    assert!(status.sealed);
    assert_eq!(status.progress, 0, "a failed combination kept its progress");

    let status = daemon.unseal(&init.shares[..3]).await;
    assert!(!status.sealed);
}

#[tokio::test]
async fn init_rejects_threshold_out_of_range() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let client = daemon.client(None);

    for (shares, threshold) in [(5, 6), (5, 0), (0, 0), (0, 1), (1, 2)] {
        let result = client.init(shares, threshold, true).await;
        let err = result
            .err()
            .unwrap_or_else(|| panic!("init {shares}/{threshold} was accepted"));
        assert_eq!(
            err.code(),
            Some("invalid_request"),
            "{shares}/{threshold}: {err}"
        );
        assert_eq!(err.status(), Some(400), "{shares}/{threshold}: {err}");
    }

    // 256 shares do not fit in the SDK's u8, so send them raw.
    let http = daemon.http();
    let reply = http
        .post(
            "/v1/sys/init",
            None,
            &json!({"shares": 256, "threshold": 3}),
        )
        .await;
    let message = reply.assert_error(400, "invalid_request");
    assert!(message.contains("shares"), "{message}");

    let err = assert_api_error(client.init(3, 1, false).await, 400, "invalid_request");
    assert!(err.to_string().contains("allow_single_share"), "{err}");

    let status = client.status().await.expect("status");
    assert!(
        !status.initialized,
        "a rejected init initialized the daemon"
    );
}

#[tokio::test]
async fn single_share_init_works_with_flag() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init(3, 1).await;
    assert_eq!(init.shares.len(), 3);

    let status = daemon.unseal(&init.shares[2..3]).await;
    assert!(!status.sealed);
    assert_eq!(status.threshold, Some(1));
}

#[tokio::test]
async fn unseal_reset_discards_progress() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init(5, 3).await;
    let client = daemon.client(None);

    daemon.unseal(&init.shares[..2]).await;
    let status = client.unseal_reset().await.expect("reset");
    assert!(status.sealed);
    assert_eq!(status.progress, 0);

    // Had the reset kept the two shares, the third would unseal.
    let status = daemon.unseal(&init.shares[2..3]).await;
    assert!(status.sealed);
    assert_eq!(status.progress, 1);

    // After a reset the same shares count again.
    let status = daemon.unseal(&init.shares[..2]).await;
    assert!(!status.sealed);
}

#[tokio::test]
async fn unseal_needs_share_or_reset() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init(3, 2).await;
    let http = daemon.http();
    let share = init.shares[0].expose_secret();

    let bodies = [
        json!({}),
        json!({"reset": false}),
        json!({"share": share, "reset": true}),
    ];
    for body in &bodies {
        let reply = http.post("/v1/sys/unseal", None, body).await;
        reply.assert_error(400, "invalid_request");
    }
    let status = daemon.client(None).status().await.expect("status");
    assert_eq!(status.progress, 0);
}

#[tokio::test]
async fn restart_seals_and_old_blobs_decrypt() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (init, root) = daemon.init_with_key("patient-records").await;

    let v1_key = root
        .generate_data_key("patient-records", DataKeySize::Bytes32, &context(), true)
        .await
        .expect("generate under version 1");
    let payload = b"chart 4711: allergic to penicillin".to_vec();
    let v1_payload = root
        .encrypt("patient-records", &payload, &context())
        .await
        .expect("encrypt under version 1");
    root.rotate_key("patient-records").await.expect("rotate");
    let v2_key = root
        .generate_data_key("patient-records", DataKeySize::Bytes24, &context(), true)
        .await
        .expect("generate under version 2");
    assert_eq!((v1_key.key_version, v2_key.key_version), (1, 2));

    assert!(daemon.stop(), "kmsd did not exit with status 0 on SIGTERM");

    let daemon = Daemon::start(dir.path());
    let anonymous = daemon.client(None);
    let status = anonymous.status().await.expect("status after restart");
    assert!(status.initialized);
    assert!(status.sealed);
    assert_eq!(status.progress, 0);
    let root = daemon.client(Some(&init.root_token));
    assert_api_error(
        root.decrypt(&v1_key.ciphertext, &context()).await,
        503,
        "sealed",
    );

    // Another subset of the same shares unseals the restarted daemon.
    let status = daemon.unseal(&init.shares[2..5]).await;
    assert!(!status.sealed);

    let key = root.get_key("patient-records").await.expect("show key");
    assert_eq!(key.latest_version, 2);
    let opened = root
        .decrypt(&v1_key.ciphertext, &context())
        .await
        .expect("decrypt version 1 data key");
    assert_eq!(opened.key_version, 1);
    assert!(
        opened.plaintext.expose_secret()
            == v1_key
                .plaintext
                .as_ref()
                .expect("plaintext")
                .expose_secret(),
        "the version 1 data key changed across the restart"
    );
    let opened = root
        .decrypt(&v2_key.ciphertext, &context())
        .await
        .expect("decrypt version 2 data key");
    assert_eq!(opened.key_version, 2);
    assert_eq!(opened.plaintext.expose_secret().len(), 24);
    assert!(
        opened.plaintext.expose_secret()
            == v2_key
                .plaintext
                .as_ref()
                .expect("plaintext")
                .expose_secret(),
        "the version 2 data key changed across the restart"
    );
    let opened = root
        .decrypt(&v1_payload.ciphertext, &context())
        .await
        .expect("decrypt version 1 payload");
    assert!(
        opened.plaintext.expose_secret() == payload.as_slice(),
        "the payload changed across the restart"
    );

    let rewrapped = root
        .rewrap(&v1_payload.ciphertext, &context())
        .await
        .expect("rewrap version 1 payload");
    assert_eq!(rewrapped.key_version, 2);
    let opened = root
        .decrypt(&rewrapped.ciphertext, &context())
        .await
        .expect("decrypt rewrapped payload");
    assert_eq!(opened.key_version, 2);
    assert!(
        opened.plaintext.expose_secret() == payload.as_slice(),
        "rewrap changed the payload"
    );
}

/// Lists every endpoint that touches keys, with a body that would be valid when unsealed.
fn key_requests(blob: &str) -> Vec<(reqwest::Method, &'static str, Option<serde_json::Value>)> {
    use reqwest::Method;
    vec![
        (Method::POST, "/v1/keys", Some(json!({"name": "fresh"}))),
        (Method::GET, "/v1/keys", None),
        (Method::GET, "/v1/keys/patient-records", None),
        (Method::POST, "/v1/keys/patient-records/rotate", None),
        (Method::POST, "/v1/keys/patient-records/disable", None),
        (Method::POST, "/v1/keys/patient-records/enable", None),
        (
            Method::POST,
            "/v1/keys/patient-records/datakey",
            Some(json!({})),
        ),
        (
            Method::POST,
            "/v1/keys/patient-records/encrypt",
            Some(json!({"plaintext": "aGVsbG8="})),
        ),
        (
            Method::POST,
            "/v1/decrypt",
            Some(json!({"ciphertext": blob})),
        ),
        (
            Method::POST,
            "/v1/rewrap",
            Some(json!({"ciphertext": blob})),
        ),
    ]
}

async fn assert_every_key_endpoint_sealed(daemon: &Daemon, token: &SecretString, blob: &str) {
    let http = daemon.http();
    for (method, path, body) in key_requests(blob) {
        let body = body.map(|b| ("application/json", serde_json::to_vec(&b).expect("JSON")));
        let reply = http
            .send(method.clone(), path, Some(token.expose_secret()), body)
            .await;
        assert_eq!(
            (reply.status, reply.code()),
            (503, Some("sealed")),
            "{method} {path}: {}",
            reply.message()
        );
    }
}

#[tokio::test]
async fn sealed_daemon_rejects_every_key_endpoint() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init(5, 3).await;

    // Before the first unseal no blob exists, so send a well-formed header with a zero tag.
    let mut fake = b"KMSB\x01\x01".to_vec();
    fake.resize(38 + 16 + 32, 0);
    assert_every_key_endpoint_sealed(&daemon, &init.root_token, &kms_tests::base64(&fake)).await;

    daemon.unseal(&init.shares[..3]).await;
    let root = daemon.client(Some(&init.root_token));
    root.create_key("patient-records")
        .await
        .expect("create key");
    let data_key = root
        .generate_data_key("patient-records", DataKeySize::Bytes32, &context(), false)
        .await
        .expect("generate");

    let status = root.seal().await.expect("seal");
    assert!(status.sealed);
    assert!(status.initialized);
    assert_eq!(status.progress, 0);
    let blob = kms_tests::base64(&data_key.ciphertext);
    assert_every_key_endpoint_sealed(&daemon, &init.root_token, &blob).await;

    // Status still responds, and the same shares unseal again with the keys intact.
    let status = daemon.unseal(&init.shares[1..4]).await;
    assert!(!status.sealed);
    let opened = root
        .decrypt(&data_key.ciphertext, &context())
        .await
        .expect("decrypt after seal and unseal");
    assert_eq!(opened.plaintext.expose_secret().len(), 32);
}

#[tokio::test]
async fn seal_discards_unseal_progress() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init_unsealed().await;
    let root = daemon.client(Some(&init.root_token));

    root.seal().await.expect("seal");
    daemon.unseal(&init.shares[..2]).await;
    let status = root.seal().await.expect("seal while sealed");
    assert!(status.sealed);
    assert_eq!(status.progress, 0);
}

#[tokio::test]
async fn sigint_stops_daemon_cleanly() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    daemon.init_unsealed().await;
    assert!(
        daemon.stop_with("INT"),
        "kmsd did not exit with status 0 on SIGINT"
    );
}

#[tokio::test]
async fn generate_root_needs_this_init_shares() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init_unsealed().await;
    let other_dir = data_dir();
    let other = Daemon::start(other_dir.path());
    let foreign = other.init(5, 3).await;
    let client = daemon.client(None);

    assert_api_error(
        client.generate_root(&init.shares[..2]).await,
        400,
        "invalid_request",
    );
    let mixed = [
        init.shares[0].clone(),
        init.shares[1].clone(),
        foreign.shares[2].clone(),
    ];
    let err = client
        .generate_root(&mixed)
        .await
        .expect_err("foreign share");
    assert_eq!(err.status(), Some(400), "{err}");

    let generated = client
        .generate_root(&init.shares[2..5])
        .await
        .expect("generate root from the last three shares");
    assert_ne!(
        generated.root_token.expose_secret(),
        init.root_token.expose_secret()
    );
    let root = daemon.client(Some(&generated.root_token));
    root.create_key("patient-records")
        .await
        .expect("the new root token manages keys");
    let lookup = root.lookup_self().await.expect("lookup self");
    assert_eq!(lookup.accessor, generated.root_token_accessor);
}
