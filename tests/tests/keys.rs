//! Key management: create, list, show, rotate, disable, enable, and rewrap across versions.

use client_sdk::secrecy::ExposeSecret;
use client_sdk::{Context, DataKeySize, KeyState};
use kms_tests::{Daemon, assert_api_error, data_dir};
use serde_json::json;

fn context() -> Context {
    Context::from([("tenant".to_owned(), "clinic-7".to_owned())])
}

#[tokio::test]
async fn create_key_returns_version_one() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init_unsealed().await;

    let reply = daemon
        .http()
        .post(
            "/v1/keys",
            Some(init.root_token.expose_secret()),
            &json!({"name": "patient-records"}),
        )
        .await;
    assert_eq!(reply.status, 201);
    let key = &reply.body;
    assert_eq!(key["name"], "patient-records");
    assert_eq!(key["state"], "enabled");
    assert_eq!(key["latest_version"], 1);
    assert_eq!(key["versions"].as_array().map(Vec::len), Some(1));
    assert_eq!(key["versions"][0]["version"], 1);
    assert_eq!(key["versions"][0]["state"], "enabled");
    let id = key["id"].as_str().expect("key id");
    assert_eq!(id.len(), 36, "key id {id} is not a UUID");

    let root = daemon.client(Some(&init.root_token));
    let shown = root.get_key("patient-records").await.expect("show key");
    assert_eq!(shown.id, id);
    assert_eq!(shown.state, KeyState::Enabled);
    assert_eq!(shown.latest_version, 1);
}

#[tokio::test]
async fn create_existing_key_fails_key_exists() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init_unsealed().await;
    let root = daemon.client(Some(&init.root_token));

    let first = root.create_key("billing").await.expect("create key");
    assert_api_error(root.create_key("billing").await, 409, "key_exists");
    let shown = root.get_key("billing").await.expect("show key");
    assert_eq!(shown.id, first.id, "a rejected create replaced the key");
}

#[tokio::test]
async fn create_key_rejects_invalid_names() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init_unsealed().await;
    let root = daemon.client(Some(&init.root_token));

    let too_long = "a".repeat(129);
    for name in [
        "-leading-dash",
        ".hidden",
        "has space",
        "slash/name",
        "émoji",
        &too_long,
        "",
    ] {
        let reply = daemon
            .http()
            .post(
                "/v1/keys",
                Some(init.root_token.expose_secret()),
                &json!({"name": name}),
            )
            .await;
        let message = reply.assert_error(400, "invalid_request");
        assert!(message.contains("name"), "{name:?}: {message}");
    }

    let longest = "a".repeat(128);
    root.create_key(&longest).await.expect("128-character name");
    root.create_key("A.b_c-9")
        .await
        .expect("name with every allowed symbol");
    let names: Vec<String> = root
        .list_keys()
        .await
        .expect("list keys")
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, ["A.b_c-9".to_owned(), longest]);
}

#[tokio::test]
async fn unknown_key_is_not_found() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init_unsealed().await;
    let root = daemon.client(Some(&init.root_token));

    assert_api_error(root.get_key("missing").await, 404, "key_not_found");
    assert_api_error(root.rotate_key("missing").await, 404, "key_not_found");
    assert_api_error(root.disable_key("missing").await, 404, "key_not_found");
    assert_api_error(root.enable_key("missing").await, 404, "key_not_found");
    assert_api_error(
        root.generate_data_key("missing", DataKeySize::Bytes32, &context(), true)
            .await,
        404,
        "key_not_found",
    );
    assert_api_error(
        root.encrypt("missing", b"x", &context()).await,
        404,
        "key_not_found",
    );
}

#[tokio::test]
async fn list_keys_is_sorted_by_name() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init_unsealed().await;
    let root = daemon.client(Some(&init.root_token));

    for name in ["zeta", "Alpha", "patient-records", "billing", "0-first"] {
        root.create_key(name).await.expect("create key");
    }
    let names: Vec<String> = root
        .list_keys()
        .await
        .expect("list keys")
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(
        names,
        ["0-first", "Alpha", "billing", "patient-records", "zeta"]
    );
}

#[tokio::test]
async fn rotate_adds_version_for_new_blobs() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init_unsealed().await;
    let root = daemon.client(Some(&init.root_token));
    let created = root
        .create_key("patient-records")
        .await
        .expect("create key");

    let before = root
        .encrypt("patient-records", b"before", &context())
        .await
        .expect("encrypt before rotation");
    for expected in 2..=4 {
        let rotated = root.rotate_key("patient-records").await.expect("rotate");
        assert_eq!(rotated.latest_version, expected);
        assert_eq!(rotated.id, created.id, "rotation changed the key id");
        let versions: Vec<u32> = rotated.versions.iter().map(|v| v.version).collect();
        assert_eq!(versions, (1..=expected).collect::<Vec<_>>());
    }
    let after = root
        .encrypt("patient-records", b"after", &context())
        .await
        .expect("encrypt after rotation");
    assert_eq!(before.key_version, 1);
    assert_eq!(after.key_version, 4);
    assert_eq!(after.key_id, created.id);

    // The blob header carries the version big-endian at offset 22.
    assert_eq!(&after.ciphertext[22..26], &[0, 0, 0, 4]);
    let opened = root
        .decrypt(&before.ciphertext, &context())
        .await
        .expect("decrypt version 1 blob");
    assert_eq!(opened.key_version, 1);
    assert!(opened.plaintext.expose_secret() == b"before");
}

#[tokio::test]
async fn rewrap_moves_blob_to_latest_version() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (_init, root) = daemon.init_with_key("patient-records").await;

    let data_key = root
        .generate_data_key("patient-records", DataKeySize::Bytes32, &context(), true)
        .await
        .expect("generate");
    let plaintext = data_key.plaintext.as_ref().expect("plaintext");
    root.rotate_key("patient-records").await.expect("rotate");
    root.rotate_key("patient-records")
        .await
        .expect("rotate again");

    let rewrapped = root
        .rewrap(&data_key.ciphertext, &context())
        .await
        .expect("rewrap");
    assert_eq!(data_key.key_version, 1);
    assert_eq!(rewrapped.key_version, 3);
    assert_eq!(rewrapped.key_id, data_key.key_id);
    assert_eq!(rewrapped.ciphertext.len(), data_key.ciphertext.len());
    assert_ne!(rewrapped.ciphertext, data_key.ciphertext);

    let opened = root
        .decrypt(&rewrapped.ciphertext, &context())
        .await
        .expect("decrypt rewrapped blob");
    assert_eq!(opened.key_version, 3);
    assert!(
        opened.plaintext.expose_secret() == plaintext.expose_secret(),
        "rewrap changed the data key"
    );

    // Rewrap binds the same context: the new blob does not open under another one.
    let other = Context::from([("tenant".to_owned(), "clinic-8".to_owned())]);
    assert_api_error(
        root.decrypt(&rewrapped.ciphertext, &other).await,
        400,
        "decryption_failed",
    );
    assert_api_error(
        root.rewrap(&data_key.ciphertext, &other).await,
        400,
        "decryption_failed",
    );

    // The original blob still opens under version 1.
    let opened = root
        .decrypt(&data_key.ciphertext, &context())
        .await
        .expect("decrypt original blob");
    assert_eq!(opened.key_version, 1);
}

#[tokio::test]
async fn disable_and_enable_change_key_state() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (_init, root) = daemon.init_with_key("patient-records").await;

    let disabled = root.disable_key("patient-records").await.expect("disable");
    assert_eq!(disabled.state, KeyState::Disabled);
    let shown = root
        .get_key("patient-records")
        .await
        .expect("show disabled key");
    assert_eq!(shown.state, KeyState::Disabled);
    let listed = root.list_keys().await.expect("list keys");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, KeyState::Disabled);

    let enabled = root.enable_key("patient-records").await.expect("enable");
    assert_eq!(enabled.state, KeyState::Enabled);
}

#[tokio::test]
async fn disabled_state_survives_restart() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (init, root) = daemon.init_with_key("patient-records").await;
    root.rotate_key("patient-records").await.expect("rotate");
    root.disable_key("patient-records").await.expect("disable");
    assert!(daemon.stop());

    let daemon = Daemon::start(dir.path());
    daemon.unseal(&init.shares[..3]).await;
    let root = daemon.client(Some(&init.root_token));
    let key = root.get_key("patient-records").await.expect("show key");
    assert_eq!(key.state, KeyState::Disabled);
    assert_eq!(key.latest_version, 2);
    assert_api_error(
        root.generate_data_key("patient-records", DataKeySize::Bytes32, &context(), true)
            .await,
        409,
        "key_disabled",
    );
}

#[tokio::test]
async fn concurrent_rotations_get_distinct_versions() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (_init, root) = daemon.init_with_key("patient-records").await;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = root.clone();
        tasks.spawn(async move { client.rotate_key("patient-records").await });
    }
    let mut versions = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let key = joined.expect("task").expect("rotate");
        versions.push(key.latest_version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=9).collect::<Vec<_>>());

    let key = root.get_key("patient-records").await.expect("show key");
    assert_eq!(key.latest_version, 9);
    assert_eq!(key.versions.len(), 9);
}

#[tokio::test]
async fn concurrent_creates_succeed_once() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init_unsealed().await;
    let root = daemon.client(Some(&init.root_token));

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = root.clone();
        tasks.spawn(async move { client.create_key("patient-records").await });
    }
    let mut created = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task") {
            Ok(_) => created += 1,
            Err(err) => assert_eq!(err.code(), Some("key_exists"), "{err}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(root.list_keys().await.expect("list keys").len(), 1);
}
