//! Tokens and policies: what a narrow token may and may not do, revocation, expiry and root.

use std::time::Duration;

use client_sdk::secrecy::{ExposeSecret, SecretString};
use client_sdk::{Client, Context, DataKeySize, Operation, PolicyRule};
use kms_tests::{Daemon, Initialized, assert_api_error, data_dir};
use serde_json::json;

fn context() -> Context {
    Context::from([("tenant".to_owned(), "clinic-7".to_owned())])
}

fn rule(keys: &[&str], operations: &[Operation]) -> PolicyRule {
    PolicyRule {
        keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        operations: operations.to_vec(),
    }
}

/// Unseals the daemon and creates the keys `patient-records`, `patient-notes` and `billing`.
async fn unsealed_with_keys(daemon: &Daemon) -> (Initialized, Client) {
    let init = daemon.init_unsealed().await;
    let root = daemon.client(Some(&init.root_token));
    for name in ["patient-records", "patient-notes", "billing"] {
        root.create_key(name).await.expect("create key");
    }
    (init, root)
}

/// Creates a token with `policy` and returns a client that uses it, with the token's accessor.
async fn token_client(
    daemon: &Daemon,
    root: &Client,
    policy: &[PolicyRule],
    ttl: Duration,
) -> (Client, String) {
    let token = root
        .create_token(policy, ttl, Some("test"))
        .await
        .expect("create token");
    assert!(token.token.expose_secret().starts_with("kmst_"));
    (daemon.client(Some(&token.token)), token.info.accessor)
}

#[tokio::test]
async fn generate_only_token_only_generates() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (_init, root) = unsealed_with_keys(&daemon).await;
    let policy = [rule(&["patient-*"], &[Operation::Generate])];
    let (limited, _) = token_client(&daemon, &root, &policy, Duration::from_secs(600)).await;

    let data_key = limited
        .generate_data_key("patient-records", DataKeySize::Bytes32, &context(), true)
        .await
        .expect("generate on patient-records");
    limited
        .generate_data_key("patient-notes", DataKeySize::Bytes16, &context(), false)
        .await
        .expect("generate on patient-notes");

    let denied = [
        (
            "decrypt its own data key",
            limited
                .decrypt(&data_key.ciphertext, &context())
                .await
                .err(),
        ),
        (
            "rewrap",
            limited.rewrap(&data_key.ciphertext, &context()).await.err(),
        ),
        (
            "generate on billing",
            limited
                .generate_data_key("billing", DataKeySize::Bytes32, &context(), true)
                .await
                .err(),
        ),
        (
            "encrypt",
            limited
                .encrypt("patient-records", b"x", &context())
                .await
                .err(),
        ),
        (
            "create a key",
            limited.create_key("patient-new").await.err(),
        ),
        ("rotate", limited.rotate_key("patient-records").await.err()),
        (
            "disable",
            limited.disable_key("patient-records").await.err(),
        ),
        ("show", limited.get_key("patient-records").await.err()),
        (
            "create a token",
            limited
                .create_token(&policy, Duration::from_secs(60), None)
                .await
                .err(),
        ),
        ("seal", limited.seal().await.err()),
    ];
    for (action, err) in denied {
        let err = err.unwrap_or_else(|| panic!("the token was allowed to {action}"));
        assert_eq!(err.code(), Some("permission_denied"), "{action}: {err}");
        assert_eq!(err.status(), Some(403), "{action}: {err}");
    }

    // Listing is allowed but shows only described keys, so none.
    assert!(limited.list_keys().await.expect("list keys").is_empty());

    // Nothing changed: no key was created or rotated and the daemon is still unsealed.
    let keys = root.list_keys().await.expect("list keys as root");
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k.latest_version == 1));
    assert!(!daemon.client(None).status().await.expect("status").sealed);
}

#[tokio::test]
async fn describe_policy_filters_key_list() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (_init, root) = unsealed_with_keys(&daemon).await;
    let policy = [
        rule(&["patient-*"], &[Operation::Describe]),
        rule(&["billing"], &[Operation::Generate]),
    ];
    let (limited, _) = token_client(&daemon, &root, &policy, Duration::from_secs(600)).await;

    let names: Vec<String> = limited
        .list_keys()
        .await
        .expect("list keys")
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, ["patient-notes", "patient-records"]);
    limited
        .get_key("patient-notes")
        .await
        .expect("show described key");
    assert_api_error(limited.get_key("billing").await, 403, "permission_denied");
    limited
        .generate_data_key("billing", DataKeySize::Bytes32, &context(), true)
        .await
        .expect("generate on billing");
}

#[tokio::test]
async fn decrypt_permission_follows_blob_key() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (_init, root) = unsealed_with_keys(&daemon).await;
    let policy = [rule(
        &["patient-records"],
        &[Operation::Decrypt, Operation::Rewrap],
    )];
    let (limited, _) = token_client(&daemon, &root, &policy, Duration::from_secs(600)).await;

    let mut blobs = Vec::new();
    for name in ["patient-records", "patient-notes", "billing"] {
        let blob = root
            .encrypt(name, b"chart", &context())
            .await
            .expect("encrypt as root");
        blobs.push((name, blob.ciphertext));
    }

    let opened = limited
        .decrypt(&blobs[0].1, &context())
        .await
        .expect("decrypt patient-records blob");
    assert!(opened.plaintext.expose_secret() == b"chart");
    limited
        .rewrap(&blobs[0].1, &context())
        .await
        .expect("rewrap patient-records blob");
    for (name, blob) in &blobs[1..] {
        let err = limited.decrypt(blob, &context()).await.err();
        let err = err.unwrap_or_else(|| panic!("decrypted a {name} blob"));
        assert_eq!(err.code(), Some("permission_denied"), "{name}: {err}");
        let err = limited.rewrap(blob, &context()).await.err();
        let err = err.unwrap_or_else(|| panic!("rewrapped a {name} blob"));
        assert_eq!(err.code(), Some("permission_denied"), "{name}: {err}");
    }
}

#[tokio::test]
async fn exact_pattern_rejects_longer_names() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (_init, root) = unsealed_with_keys(&daemon).await;
    root.create_key("billing-archive")
        .await
        .expect("create key");
    let policy = [rule(&["billing"], &[Operation::Encrypt])];
    let (limited, _) = token_client(&daemon, &root, &policy, Duration::from_secs(600)).await;

    limited
        .encrypt("billing", b"x", &context())
        .await
        .expect("encrypt under billing");
    assert_api_error(
        limited.encrypt("billing-archive", b"x", &context()).await,
        403,
        "permission_denied",
    );
}

#[tokio::test]
async fn revoked_token_is_unauthenticated() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (_init, root) = unsealed_with_keys(&daemon).await;
    let policy = [rule(&["*"], &[Operation::Describe])];
    let (limited, accessor) = token_client(&daemon, &root, &policy, Duration::from_secs(600)).await;

    // Use the token first, so that a cached lookup would be found if revocation missed it.
    assert_eq!(limited.list_keys().await.expect("list keys").len(), 3);
    let info = root.revoke_token(&accessor).await.expect("revoke");
    assert_eq!(info.accessor, accessor);
    assert!(info.revoked_at.is_some());

    assert_api_error(limited.list_keys().await, 401, "unauthenticated");
    assert_api_error(limited.lookup_self().await, 401, "unauthenticated");
    let info = root
        .lookup_token(&accessor)
        .await
        .expect("root looks up revoked token");
    assert!(info.revoked_at.is_some());
}

#[tokio::test]
async fn token_can_revoke_itself() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (_init, root) = unsealed_with_keys(&daemon).await;
    let policy = [rule(&["*"], &[Operation::Describe])];
    let (limited, accessor) = token_client(&daemon, &root, &policy, Duration::from_secs(600)).await;
    let (other, other_accessor) =
        token_client(&daemon, &root, &policy, Duration::from_secs(600)).await;

    assert_api_error(
        limited.revoke_token(&other_accessor).await,
        403,
        "permission_denied",
    );
    other
        .list_keys()
        .await
        .expect("the other token still works");

    limited
        .revoke_token(&accessor)
        .await
        .expect("revoke itself");
    assert_api_error(limited.list_keys().await, 401, "unauthenticated");
}

#[tokio::test]
async fn expired_token_is_unauthenticated() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (_init, root) = unsealed_with_keys(&daemon).await;
    let policy = [rule(&["*"], &[Operation::Describe])];
    let (limited, _) = token_client(&daemon, &root, &policy, Duration::from_secs(1)).await;
    let info = limited.lookup_self().await.expect("lookup before expiry");
    assert!(info.expires_at.is_some());

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_api_error(limited.list_keys().await, 401, "unauthenticated");
    assert_api_error(limited.lookup_self().await, 401, "unauthenticated");
}

#[tokio::test]
async fn root_token_can_do_everything() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init_unsealed().await;
    let root = daemon.client(Some(&init.root_token));

    root.create_key("anything").await.expect("create");
    root.rotate_key("anything").await.expect("rotate");
    root.disable_key("anything").await.expect("disable");
    root.enable_key("anything").await.expect("enable");
    root.get_key("anything").await.expect("show");
    assert_eq!(root.list_keys().await.expect("list").len(), 1);
    let data_key = root
        .generate_data_key("anything", DataKeySize::Bytes32, &context(), true)
        .await
        .expect("generate");
    root.decrypt(&data_key.ciphertext, &context())
        .await
        .expect("decrypt");
    root.rewrap(&data_key.ciphertext, &context())
        .await
        .expect("rewrap");
    root.encrypt("anything", b"x", &context())
        .await
        .expect("encrypt");

    let policy = [rule(&["*"], &[Operation::Describe])];
    let token = root
        .create_token(&policy, Duration::from_secs(60), None)
        .await
        .expect("create token");
    root.lookup_token(&token.info.accessor)
        .await
        .expect("lookup other token");
    root.revoke_token(&token.info.accessor)
        .await
        .expect("revoke other token");
    let me = root.lookup_self().await.expect("lookup self");
    assert!(me.root);
    assert_eq!(me.accessor, init.root_accessor);
    assert_eq!(me.expires_at, None);
    root.seal().await.expect("seal");
}

#[tokio::test]
async fn limited_token_looks_up_only_itself() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (init, root) = unsealed_with_keys(&daemon).await;
    let policy = [
        rule(&["patient-*"], &[Operation::Generate, Operation::Decrypt]),
        rule(&["billing"], &[Operation::Describe]),
    ];
    let token = root
        .create_token(&policy, Duration::from_secs(3600), Some("billing-app"))
        .await
        .expect("create token");
    assert!(!token.info.root);
    assert_eq!(token.info.policy, policy);
    assert_eq!(token.info.display_name.as_deref(), Some("billing-app"));
    let limited = daemon.client(Some(&token.token));

    let me = limited.lookup_self().await.expect("lookup self");
    assert_eq!(me, token.info);
    let by_accessor = limited
        .lookup_token(&token.info.accessor)
        .await
        .expect("lookup own accessor");
    assert_eq!(by_accessor, token.info);

    assert_api_error(
        limited.lookup_token(&init.root_accessor).await,
        403,
        "permission_denied",
    );
    assert_api_error(
        limited.revoke_token(&init.root_accessor).await,
        403,
        "permission_denied",
    );
    assert_api_error(
        root.lookup_token("000000000000000000000000").await,
        404,
        "token_not_found",
    );
    assert_api_error(
        root.revoke_token("000000000000000000000000").await,
        404,
        "token_not_found",
    );
}

#[tokio::test]
async fn token_create_validates_policy_and_ttl() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (init, root) = unsealed_with_keys(&daemon).await;
    let good = [rule(&["patient-*"], &[Operation::Generate])];

    let ttls = [Duration::ZERO, Duration::from_secs(31_536_001)];
    for ttl in ttls {
        let err = assert_api_error(
            root.create_token(&good, ttl, None).await,
            400,
            "invalid_request",
        );
        assert!(err.to_string().contains("ttl_seconds"), "{err}");
    }
    root.create_token(&good, Duration::from_secs(31_536_000), None)
        .await
        .expect("one year is allowed");

    let bad_policies = [
        vec![],
        vec![rule(&[], &[Operation::Generate])],
        vec![rule(&["patient-*"], &[])],
        vec![rule(&["pat*ient"], &[Operation::Generate])],
        vec![rule(&["has space"], &[Operation::Generate])],
        vec![rule(&["**"], &[Operation::Generate])],
    ];
    for policy in &bad_policies {
        let err = assert_api_error(
            root.create_token(policy, Duration::from_secs(60), None)
                .await,
            400,
            "invalid_request",
        );
        assert!(err.to_string().contains("policy"), "{policy:?}: {err}");
    }

    let reply = daemon
        .http()
        .post(
            "/v1/tokens",
            Some(init.root_token.expose_secret()),
            &json!({"policy": [{"keys": ["*"], "operations": ["delete"]}], "ttl_seconds": 60}),
        )
        .await;
    reply.assert_error(400, "invalid_request");
    let reply = daemon
        .http()
        .post(
            "/v1/tokens",
            Some(init.root_token.expose_secret()),
            &json!({"policy": [{"keys": ["*"], "operations": ["describe"]}]}),
        )
        .await;
    let message = reply.assert_error(400, "invalid_request");
    assert!(message.contains("ttl_seconds"), "{message}");
}

#[tokio::test]
async fn tokens_survive_restart() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let (init, root) = unsealed_with_keys(&daemon).await;
    let policy = [rule(&["*"], &[Operation::Describe])];
    let token = root
        .create_token(&policy, Duration::from_secs(600), None)
        .await
        .expect("create token");
    let revoked = root
        .create_token(&policy, Duration::from_secs(600), None)
        .await
        .expect("create second token");
    root.revoke_token(&revoked.info.accessor)
        .await
        .expect("revoke");
    assert!(daemon.stop());

    let daemon = Daemon::start(dir.path());
    daemon.unseal(&init.shares[..3]).await;
    let limited = daemon.client(Some(&token.token));
    assert_eq!(limited.list_keys().await.expect("list keys").len(), 3);
    let gone = daemon.client(Some(&revoked.token));
    assert_api_error(gone.list_keys().await, 401, "unauthenticated");
    let stranger = daemon.client(Some(&SecretString::from("kmst_unknown")));
    assert_api_error(stranger.list_keys().await, 401, "unauthenticated");
}
