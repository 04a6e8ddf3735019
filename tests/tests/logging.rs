//! The daemon's own log at trace level: it must never carry plaintext, keys, tokens, shares,
//! ciphertexts or context values, in any encoding.

use std::time::Duration;

use client_sdk::secrecy::{ExposeSecret, SecretString};
use client_sdk::{Context, DataKeySize, Operation, PolicyRule};
use kms_tests::{Daemon, Options, assert_api_error, base64, data_dir, hex, random_bytes};
use serde_json::json;

/// Returns every form in which `bytes` could appear in a log line.
fn encodings(bytes: &[u8]) -> Vec<String> {
    let mut forms = vec![base64(bytes), hex(bytes), hex(bytes).to_uppercase()];
    if let Ok(text) = std::str::from_utf8(bytes) {
        forms.push(text.to_owned());
    }
    // Debug output of a byte slice, as a careless `?` field would print it.
    forms.push(format!("{bytes:?}"));
    forms
}

/// Runs every secret-bearing operation against a daemon started with `format` and trace
/// logging, then searches its log for each secret.
async fn assert_log_has_no_secrets(format: &str) {
    let dir = data_dir();
    let options = Options {
        args: vec!["--log-format".into(), format.into()],
        log_level: Some("trace".into()),
        ..Options::default()
    };
    let daemon = Daemon::start_with(dir.path(), &options);
    let mut secrets: Vec<(&str, String)> = Vec::new();

    let init = daemon.init(5, 3).await;
    let typo = init.shares[4]
        .expose_secret()
        .replacen("kms-share-v1-", "kms-share-v1-q", 1);
    let typo = SecretString::from(typo);
    assert_api_error(
        daemon.client(None).unseal(&typo).await,
        400,
        "invalid_share",
    );
    daemon.unseal(&init.shares[..3]).await;
    for share in init.shares.iter().chain([&typo]) {
        let text = share.expose_secret();
        secrets.push(("a share", text.to_owned()));
        secrets.push(("a share without dashes", text.replace('-', "")));
        secrets.push((
            "part of a share",
            text.get(30..60).expect("share length").to_owned(),
        ));
    }
    secrets.push(("the root token", init.root_token.expose_secret().to_owned()));

    let root = daemon.client(Some(&init.root_token));
    root.create_key("patient-records")
        .await
        .expect("create key");
    let policy = [PolicyRule {
        keys: vec!["patient-*".to_owned()],
        operations: vec![Operation::Generate, Operation::Decrypt],
    }];
    let token = root
        .create_token(&policy, Duration::from_secs(600), None)
        .await
        .expect("create token");
    secrets.push(("the narrow token", token.token.expose_secret().to_owned()));
    let limited = daemon.client(Some(&token.token));

    let canary = format!("canary-plaintext-{}", hex(&random_bytes(12)));
    let canary_value = format!("canary-context-{}", hex(&random_bytes(12)));
    let context = Context::from([("tenant".to_owned(), canary_value.clone())]);
    for form in encodings(canary.as_bytes()) {
        secrets.push(("the canary plaintext", form));
    }
    for form in encodings(canary_value.as_bytes()) {
        secrets.push(("the canary context value", form));
    }

    let data_key = limited
        .generate_data_key("patient-records", DataKeySize::Bytes32, &context, true)
        .await
        .expect("generate");
    let payload = root
        .encrypt("patient-records", canary.as_bytes(), &context)
        .await
        .expect("encrypt");
    let opened = limited
        .decrypt(&payload.ciphertext, &context)
        .await
        .expect("decrypt payload");
    assert!(opened.plaintext.expose_secret() == canary.as_bytes());
    limited
        .decrypt(&data_key.ciphertext, &context)
        .await
        .expect("decrypt data key");
    let rewrapped = root
        .rewrap(&payload.ciphertext, &context)
        .await
        .expect("rewrap");
    let wrong = Context::from([("tenant".to_owned(), format!("{canary_value}-wrong"))]);
    assert_api_error(
        limited.decrypt(&payload.ciphertext, &wrong).await,
        400,
        "decryption_failed",
    );
    let reply = daemon
        .http()
        .post(
            "/v1/keys/patient-records/encrypt",
            Some(init.root_token.expose_secret()),
            &json!({"plaintext": canary, "context": format!("tenant={canary_value}")}),
        )
        .await;
    reply.assert_error(400, "invalid_request");

    let data_key_bytes = data_key.plaintext.as_ref().expect("plaintext");
    for form in encodings(data_key_bytes.expose_secret()) {
        secrets.push(("the data key", form));
    }
    for blob in [
        &data_key.ciphertext,
        &payload.ciphertext,
        &rewrapped.ciphertext,
    ] {
        for form in encodings(blob) {
            secrets.push(("a ciphertext", form));
        }
    }

    root.seal().await.expect("seal");
    let log_path = daemon.log_path().to_owned();
    assert!(daemon.stop());
    let log = std::fs::read_to_string(log_path).expect("read daemon log");

    // The log was captured at trace level, so a clean result means something.
    assert!(
        log.lines().count() > 100,
        "the trace log has only {} lines",
        log.lines().count()
    );
    assert!(log.contains("TRACE") || log.contains(r#""level":"TRACE""#));
    assert!(log.contains("unsealed"));
    assert!(log.contains("key created"));

    let found: Vec<&str> = secrets
        .iter()
        .filter(|(_, secret)| log.contains(secret.as_str()))
        .map(|(what, _)| *what)
        .collect();
    assert!(
        found.is_empty(),
        "the {format} trace log contains {}",
        found.join(", ")
    );
}

#[tokio::test]
async fn text_trace_log_contains_no_secrets() {
    assert_log_has_no_secrets("text").await;
}

#[tokio::test]
async fn json_trace_log_contains_no_secrets() {
    assert_log_has_no_secrets("json").await;
}

#[tokio::test]
async fn info_log_records_lifecycle_with_ids() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (_init, root) = daemon.init_with_key("patient-records").await;
    root.rotate_key("patient-records").await.expect("rotate");
    let policy = [PolicyRule {
        keys: vec!["*".to_owned()],
        operations: vec![Operation::Describe],
    }];
    let token = root
        .create_token(&policy, Duration::from_secs(60), None)
        .await
        .expect("create token");
    root.revoke_token(&token.info.accessor)
        .await
        .expect("revoke");
    root.seal().await.expect("seal");
    let log_path = daemon.log_path().to_owned();
    assert!(daemon.stop());
    let log = std::fs::read_to_string(log_path).expect("read daemon log");

    let lines: Vec<&str> = log.lines().collect();
    let has = |words: &[&str]| {
        lines
            .iter()
            .any(|line| words.iter().all(|w| line.contains(w)))
    };
    assert!(has(&["kmsd started", "sealed=true"]), "no start line");
    assert!(
        has(&["initialized", "shares=5", "threshold=3"]),
        "no init line"
    );
    assert!(has(&["unsealed"]), "no unseal line");
    assert!(
        has(&["key created", "patient-records"]),
        "no key creation line"
    );
    assert!(
        has(&["key rotated", "patient-records", "key_version=2"]),
        "no rotation line"
    );
    assert!(
        has(&["token created", &token.info.accessor]),
        "no token creation line"
    );
    assert!(
        has(&["token revoked", &token.info.accessor]),
        "no revocation line"
    );
    assert!(has(&["sealed"]), "no seal line");
    assert!(has(&["kmsd stopped"]), "no stop line");
}
