//! The PKCS#11 root of trust end to end: a real kmsd on a SoftHSM2 token.
//!
//! Each test makes its own token folder with [`SoftHsm::new`], so the tests run in parallel.

use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use client_sdk::secrecy::{ExposeSecret, SecretString};
use client_sdk::{Client, Context, DataKey, DataKeySize, Operation, PolicyRule};
use kms_tests::share_text::{self, ShareFields};
use kms_tests::softhsm::{SoftHsm, USER_PIN};
use kms_tests::{Daemon, Initialized, Options, assert_api_error, data_dir, run_with_input};
use reqwest::Method;
use serde_json::{Value, json};

const KEY: &str = "patient-records";

/// The key label that init creates when `--pkcs11-key-label` is not given.
const DEFAULT_KEY_LABEL: &str = "kms-root";

fn context() -> Context {
    Context::from([("tenant".to_owned(), "clinic-7".to_owned())])
}

/// Initializes a daemon in HSM mode with 5 recovery shares and threshold 3, checks that it
/// unsealed itself, and creates the key [`KEY`].
async fn init_hsm(daemon: &Daemon) -> (Initialized, Client) {
    let init = daemon.init(5, 3).await;
    let status = daemon.client(None).status().await.expect("status");
    assert!(
        !status.sealed,
        "the token did not unseal the daemon at init"
    );
    let root = daemon.client(Some(&init.root_token));
    root.create_key(KEY).await.expect("create key");
    (init, root)
}

async fn generate(root: &Client, size: DataKeySize) -> DataKey {
    root.generate_data_key(KEY, size, &context(), true)
        .await
        .expect("generate data key")
}

/// Decrypts `data_key` and checks that the daemon returns the same key bytes and version.
async fn assert_decrypts(root: &Client, data_key: &DataKey, description: &str) {
    let opened = root
        .decrypt(&data_key.ciphertext, &context())
        .await
        .unwrap_or_else(|err| panic!("decrypt {description}: {err}"));
    assert_eq!(opened.key_version, data_key.key_version, "{description}");
    let expected = data_key.plaintext.as_ref().expect("plaintext requested");
    assert!(
        opened.plaintext.expose_secret() == expected.expose_secret(),
        "{description}: decrypt returned other bytes than generate"
    );
}

/// Returns `share` with one bit of its value flipped and its checksum recomputed, so that it
/// parses but rebuilds a wrong key.
fn altered(share: &SecretString) -> SecretString {
    let mut fields = share_text::decode(share.expose_secret()).expect("share decodes");
    fields.value[7] ^= 0x10;
    SecretString::from(share_text::encode(&fields))
}

/// Returns a well-formed share of another share set, with the same threshold as `share`.
fn foreign(share: &SecretString) -> SecretString {
    let fields = share_text::decode(share.expose_secret()).expect("share decodes");
    let mut set_id = fields.set_id;
    set_id[0] ^= 0xff;
    SecretString::from(share_text::encode(&ShareFields {
        set_id,
        threshold: fields.threshold,
        index: fields.index,
        value: [0x5a; 32],
    }))
}

/// Joins `shares` into stdin text for `kmsd migrate-seal`, one per line.
fn share_lines(shares: &[SecretString]) -> Vec<u8> {
    let mut text = Vec::new();
    for share in shares {
        text.extend_from_slice(share.expose_secret().as_bytes());
        text.push(b'\n');
    }
    text
}

/// Runs `kmsd migrate-seal --to <to>` with `shares` on stdin.
fn migrate(hsm: &SoftHsm, dir: &std::path::Path, to: &str, shares: &[SecretString]) -> Output {
    run_with_input(&mut hsm.migrate_seal(dir, to), &share_lines(shares))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `kmsctl` against `daemon` with `args`, `token` when given, and an empty stdin.
fn kmsctl(daemon: &Daemon, token: Option<&SecretString>, args: &[&str]) -> Output {
    let mut command = daemon.kmsctl();
    if let Some(token) = token {
        command.env("KMS_TOKEN", token.expose_secret());
    }
    command.args(args).output().expect("run kmsctl")
}

/// Runs `kmsctl --format json` and parses its stdout after checking that it succeeded.
#[track_caller]
fn kmsctl_json(daemon: &Daemon, token: Option<&SecretString>, args: &[&str]) -> Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let output = kmsctl(daemon, token, &all);
    assert!(
        output.status.success(),
        "kmsctl {args:?} failed: {}",
        stderr(&output)
    );
    serde_json::from_slice(&output.stdout).expect("kmsctl printed JSON")
}

#[tokio::test]
async fn init_unseals_and_returns_recovery_shares() {
    let hsm = SoftHsm::new("e2e-init");
    let dir = data_dir();
    let daemon = Daemon::start_with(dir.path(), &hsm.options());
    let client = daemon.client(None);

    let before = client.status().await.expect("status before init");
    assert!(!before.initialized);
    assert!(before.sealed);
    assert_eq!(before.root_of_trust, None);
    assert_eq!(hsm.secret_key_labels(), Vec::<String>::new());

    let init = daemon.init(5, 3).await;
    assert_eq!(init.shares.len(), 5);
    let fields: Vec<ShareFields> = init
        .shares
        .iter()
        .map(|s| share_text::decode(s.expose_secret()).expect("recovery share decodes"))
        .collect();
    let indexes: Vec<u8> = fields.iter().map(|f| f.index).collect();
    assert_eq!(indexes, [1, 2, 3, 4, 5]);
    assert!(fields.iter().all(|f| f.threshold == 3));
    assert!(fields.iter().all(|f| f.set_id == fields[0].set_id));
    assert!(init.root_token.expose_secret().starts_with("kmst_"));

    let status = client.status().await.expect("status after init");
    assert!(status.initialized);
    assert!(!status.sealed, "HSM mode must be unsealed right after init");
    assert_eq!(status.root_of_trust.as_deref(), Some("pkcs11"));
    assert_eq!(status.threshold, Some(3));
    assert_eq!(status.shares, Some(5));
    assert_eq!(status.progress, 0);
    assert_eq!(hsm.secret_key_labels(), [DEFAULT_KEY_LABEL]);
    assert!(
        daemon.log().contains("unsealed by the PKCS#11 token"),
        "no unseal line in the log"
    );
    assert!(!daemon.log().contains(USER_PIN), "the log shows the PIN");

    // Keys work at once, without any unseal step.
    let root = daemon.client(Some(&init.root_token));
    root.create_key(KEY).await.expect("create key");
    let data_key = generate(&root, DataKeySize::Bytes32).await;
    assert_eq!(data_key.key_version, 1);
    assert_decrypts(&root, &data_key, "a data key right after init").await;

    assert_api_error(client.init(5, 3, false).await, 409, "already_initialized");
    assert_eq!(hsm.secret_key_labels(), [DEFAULT_KEY_LABEL]);
}

#[tokio::test]
async fn restart_unseals_and_decrypts_data_keys() {
    let hsm = SoftHsm::new("e2e-restart");
    let dir = data_dir();
    let daemon = Daemon::start_with(dir.path(), &hsm.options());
    let (init, root) = init_hsm(&daemon).await;

    let v1_keys = [
        generate(&root, DataKeySize::Bytes16).await,
        generate(&root, DataKeySize::Bytes24).await,
        generate(&root, DataKeySize::Bytes32).await,
    ];
    let payload = b"chart 4711: allergic to penicillin".to_vec();
    let sealed_payload = root
        .encrypt(KEY, &payload, &context())
        .await
        .expect("encrypt payload");
    root.rotate_key(KEY).await.expect("rotate key");
    let v2_key = generate(&root, DataKeySize::Bytes32).await;
    assert_eq!(v2_key.key_version, 2);
    assert!(daemon.stop(), "kmsd did not exit with status 0 on SIGTERM");

    // The restarted daemon is unsealed before any request.
    let daemon = Daemon::start_with(dir.path(), &hsm.options());
    let status = daemon.client(None).status().await.expect("status");
    assert!(status.initialized);
    assert!(!status.sealed, "the restarted daemon did not unseal itself");
    assert_eq!(status.progress, 0);
    assert_eq!(status.root_of_trust.as_deref(), Some("pkcs11"));
    let root = daemon.client(Some(&init.root_token));
    for (i, data_key) in v1_keys.iter().enumerate() {
        assert_decrypts(&root, data_key, &format!("version 1 data key {i}")).await;
    }
    assert_decrypts(&root, &v2_key, "version 2 data key").await;
    let opened = root
        .decrypt(&sealed_payload.ciphertext, &context())
        .await
        .expect("decrypt payload");
    assert!(
        opened.plaintext.expose_secret() == payload.as_slice(),
        "the payload changed across the restart"
    );
    assert!(daemon.stop());

    // The same token by serial number, with the PIN from a file instead of the environment.
    let options = Options {
        args: vec![
            "--seal".into(),
            "pkcs11".into(),
            "--pkcs11-module".into(),
            hsm.module().display().to_string(),
            "--pkcs11-token-serial".into(),
            hsm.serial(),
            "--pkcs11-pin-file".into(),
            hsm.pin_file(USER_PIN).display().to_string(),
        ],
        env: vec![("SOFTHSM2_CONF".to_owned(), hsm.conf().display().to_string())],
        ..Options::default()
    };
    let daemon = Daemon::start_with(dir.path(), &options);
    let root = daemon.client(Some(&init.root_token));
    assert_decrypts(&root, &v1_keys[2], "version 1 data key, token by serial").await;
    assert_decrypts(&root, &v2_key, "version 2 data key, token by serial").await;
}

#[tokio::test]
async fn seal_then_unseal_with_token() {
    let hsm = SoftHsm::new("e2e-seal");
    let dir = data_dir();
    let options = Options {
        log_level: Some("trace".into()),
        ..hsm.options()
    };
    let daemon = Daemon::start_with(dir.path(), &options);
    let (init, root) = init_hsm(&daemon).await;
    let daemon_log = daemon.log_path().to_owned();
    let data_key = generate(&root, DataKeySize::Bytes32).await;

    let status = root.seal().await.expect("seal");
    assert!(status.sealed);
    assert!(status.initialized);
    assert_eq!(status.root_of_trust.as_deref(), Some("pkcs11"));
    assert_api_error(
        root.decrypt(&data_key.ciphertext, &context()).await,
        503,
        "sealed",
    );
    assert_api_error(
        root.generate_data_key(KEY, DataKeySize::Bytes32, &context(), true)
            .await,
        503,
        "sealed",
    );

    // No share: the daemon unwraps its keyring with the PKCS#11 token, for the root token only,
    // so that no other caller can undo an emergency seal.
    let reply = daemon.http().post("/v1/sys/unseal", None, &json!({})).await;
    reply.assert_error(401, "unauthenticated");
    let status = root.unseal_with_token().await.expect("unseal");
    assert!(!status.sealed);
    assert_eq!(status.progress, 0);
    assert_decrypts(&root, &data_key, "data key after seal and unseal").await;

    // Unsealing an unsealed daemon changes nothing.
    let status = root.unseal_with_token().await.expect("second unseal");
    assert!(!status.sealed);
    assert_decrypts(&root, &data_key, "data key after a second unseal").await;

    // Even at trace level, the PIN, the root token and the recovery shares stay out of the log.
    assert!(daemon.stop());
    let log = std::fs::read_to_string(daemon_log).expect("read kmsd log");
    assert!(
        log.contains("unsealed by the PKCS#11 token"),
        "no unseal line"
    );
    assert!(!log.contains(USER_PIN), "the log shows the PIN");
    assert!(
        !log.contains(init.root_token.expose_secret()),
        "the log shows the root token"
    );
    for (i, share) in init.shares.iter().enumerate() {
        assert!(
            !log.contains(share.expose_secret()),
            "the log shows recovery share {i}"
        );
    }
}

#[tokio::test]
async fn unseal_rejects_shares_in_hsm_mode() {
    let hsm = SoftHsm::new("e2e-no-shares");
    let dir = data_dir();
    let daemon = Daemon::start_with(dir.path(), &hsm.options());
    let (init, root) = init_hsm(&daemon).await;
    let client = daemon.client(None);

    let err = assert_api_error(client.unseal(&init.shares[0]).await, 400, "invalid_request");
    assert!(err.to_string().contains("takes no shares"), "{err}");
    let status = client.status().await.expect("status");
    assert!(!status.sealed);
    assert_eq!(status.progress, 0);

    // Sealed, every share is rejected too, and none counts towards progress.
    root.seal().await.expect("seal");
    for share in &init.shares[..3] {
        assert_api_error(client.unseal(share).await, 400, "invalid_request");
    }
    let status = client.status().await.expect("status");
    assert!(status.sealed, "shares unsealed a daemon in HSM mode");
    assert_eq!(status.progress, 0);

    // kmsctl sends a share given as an argument, and reports the rejection.
    let output = daemon
        .kmsctl()
        .args(["operator", "unseal", init.shares[1].expose_secret()])
        .output()
        .expect("run kmsctl");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("HTTP 400, code invalid_request"),
        "{}",
        stderr(&output)
    );

    let status = root.unseal_with_token().await.expect("unseal");
    assert!(!status.sealed);
}

#[tokio::test]
async fn wrong_pin_stops_kmsd_hiding_pin() {
    const WRONG_PIN: &str = "e2e-wrong-pin-3371";
    let hsm = SoftHsm::new("e2e-wrong-pin");
    let dir = data_dir();

    // Before init, the daemon logs in at start too.
    let exited = Daemon::start_expecting_exit(dir.path(), &hsm.options_with_pin(WRONG_PIN));
    assert_eq!(exited.code, Some(1), "{}", exited.stderr);
    assert!(
        exited
            .stderr
            .contains("PKCS#11 token \"e2e-wrong-pin\" rejected the user PIN"),
        "{}",
        exited.stderr
    );
    assert!(
        exited.stderr.contains("C_Login: CKR_PIN_INCORRECT"),
        "{}",
        exited.stderr
    );
    assert!(!exited.stderr.contains(WRONG_PIN), "stderr shows the PIN");
    assert!(!exited.stderr.contains(USER_PIN), "stderr shows the PIN");

    let daemon = Daemon::start_with(dir.path(), &hsm.options());
    let (init, first_root) = init_hsm(&daemon).await;
    let data_key = generate(&first_root, DataKeySize::Bytes32).await;
    assert!(daemon.stop());

    // After init, from the environment and from a PIN file.
    let mut from_file = hsm.options_with_pin(USER_PIN);
    from_file.env.retain(|(name, _)| name != "KMS_PKCS11_PIN");
    from_file.args.push("--pkcs11-pin-file".into());
    from_file
        .args
        .push(hsm.pin_file(WRONG_PIN).display().to_string());
    for (source, options) in [
        ("KMS_PKCS11_PIN", hsm.options_with_pin(WRONG_PIN)),
        ("--pkcs11-pin-file", from_file),
    ] {
        let exited = Daemon::start_expecting_exit(dir.path(), &options);
        assert_eq!(exited.code, Some(1), "{source}: {}", exited.stderr);
        assert!(
            exited.stderr.contains("rejected the user PIN"),
            "{source}: {}",
            exited.stderr
        );
        assert!(
            exited.stderr.contains("CKR_PIN_INCORRECT"),
            "{source}: {}",
            exited.stderr
        );
        assert!(
            !exited.stderr.contains(WRONG_PIN),
            "{source}: stderr shows the PIN"
        );
        assert!(
            !exited.stderr.contains(USER_PIN),
            "{source}: stderr shows the PIN"
        );
    }

    // The rejected attempts left the token and the key store usable.
    let daemon = Daemon::start_with(dir.path(), &hsm.options());
    let root = daemon.client(Some(&init.root_token));
    assert_decrypts(&root, &data_key, "data key after the wrong PINs").await;
}

#[tokio::test]
async fn missing_pin_stops_kmsd_naming_setting() {
    let hsm = SoftHsm::new("e2e-no-pin");
    let dir = data_dir();
    let mut options = hsm.options();
    options.env.retain(|(name, _)| name != "KMS_PKCS11_PIN");

    let exited = Daemon::start_expecting_exit(dir.path(), &options);
    assert_eq!(exited.code, Some(2), "{}", exited.stderr);
    assert!(
        exited
            .stderr
            .contains("set KMS_PKCS11_PIN or give a PIN file"),
        "{}",
        exited.stderr
    );

    let empty = hsm.options_with_pin("");
    let exited = Daemon::start_expecting_exit(dir.path(), &empty);
    assert_eq!(exited.code, Some(2), "{}", exited.stderr);
    assert!(
        exited.stderr.contains("the token's user PIN is empty"),
        "{}",
        exited.stderr
    );
}

#[tokio::test]
async fn deleted_key_stops_kmsd_naming_label() {
    let hsm = SoftHsm::new("e2e-deleted-key");
    let dir = data_dir();
    let mut options = hsm.options();
    options
        .args
        .extend(["--pkcs11-key-label".into(), "records-root-1".into()]);
    let daemon = Daemon::start_with(dir.path(), &options);
    let (_init, root) = init_hsm(&daemon).await;
    generate(&root, DataKeySize::Bytes32).await;
    assert_eq!(hsm.secret_key_labels(), ["records-root-1"]);
    assert!(daemon.stop());

    hsm.delete_secret_key("records-root-1");
    assert_eq!(hsm.secret_key_labels(), Vec::<String>::new());

    let exited = Daemon::start_expecting_exit(dir.path(), &options);
    assert_eq!(exited.code, Some(1), "{}", exited.stderr);
    assert!(
        exited.stderr.contains(
            "key object \"records-root-1\" not found on PKCS#11 token \"e2e-deleted-key\""
        ),
        "{}",
        exited.stderr
    );
    // A restart must not create a new, empty root key in place of the lost one.
    assert_eq!(hsm.secret_key_labels(), Vec::<String>::new());
}

#[tokio::test]
async fn migration_round_trip_keeps_data() {
    let dir = data_dir();
    let hsm = SoftHsm::new("e2e-migrate");

    // Shamir: keys and data keys under two key versions.
    let daemon = Daemon::start(dir.path());
    let (init, root) = daemon.init_with_key(KEY).await;
    let mut data_keys = vec![
        generate(&root, DataKeySize::Bytes32).await,
        generate(&root, DataKeySize::Bytes16).await,
    ];
    let payload = b"lab result 0815: negative".to_vec();
    let sealed_payload = root
        .encrypt(KEY, &payload, &context())
        .await
        .expect("encrypt payload");
    root.rotate_key(KEY).await.expect("rotate key");
    data_keys.push(generate(&root, DataKeySize::Bytes24).await);
    assert!(daemon.stop());

    // Shamir -> PKCS#11, with three of the unseal shares.
    let output = migrate(&hsm, dir.path(), "pkcs11", &init.shares[..3]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(
            "The root of trust is now the key object \"kms-root\" on token \"e2e-migrate\""
        ),
        "{}",
        stdout(&output)
    );
    assert_eq!(hsm.secret_key_labels(), [DEFAULT_KEY_LABEL]);
    let output = migrate(&hsm, dir.path(), "pkcs11", &init.shares[..3]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("the root of trust is pkcs11 already"),
        "{}",
        stderr(&output)
    );
    let exited = Daemon::start_expecting_exit(dir.path(), &Options::default());
    assert_eq!(exited.code, Some(1), "{}", exited.stderr);
    assert!(
        exited.stderr.contains("kmsd migrate-seal --to shamir"),
        "{}",
        exited.stderr
    );

    // HSM mode: unsealed at start, every old blob decrypts, and new ones are made.
    let daemon = Daemon::start_with(dir.path(), &hsm.options());
    let client = daemon.client(None);
    let status = client.status().await.expect("status");
    assert!(!status.sealed);
    assert_eq!(status.root_of_trust.as_deref(), Some("pkcs11"));
    assert_eq!((status.threshold, status.shares), (Some(3), Some(5)));
    let root = daemon.client(Some(&init.root_token));
    for (i, data_key) in data_keys.iter().enumerate() {
        assert_decrypts(&root, data_key, &format!("Shamir data key {i} in HSM mode")).await;
    }
    let opened = root
        .decrypt(&sealed_payload.ciphertext, &context())
        .await
        .expect("decrypt payload in HSM mode");
    assert!(opened.plaintext.expose_secret() == payload.as_slice());
    data_keys.push(generate(&root, DataKeySize::Bytes32).await);

    // The old unseal shares are the recovery shares now.
    assert_api_error(client.unseal(&init.shares[0]).await, 400, "invalid_request");
    let generated = client
        .generate_root(&init.shares[2..5])
        .await
        .expect("generate root from recovery shares");
    let new_root = daemon.client(Some(&generated.root_token));
    let lookup = new_root.lookup_self().await.expect("lookup self");
    assert_eq!(lookup.accessor, generated.root_token_accessor);
    let with_foreign = [
        init.shares[0].clone(),
        init.shares[1].clone(),
        foreign(&init.shares[2]),
    ];
    assert_api_error(
        client.generate_root(&with_foreign).await,
        400,
        "foreign_share",
    );
    let with_altered = [
        altered(&init.shares[0]),
        init.shares[1].clone(),
        init.shares[2].clone(),
    ];
    assert_api_error(
        client.generate_root(&with_altered).await,
        400,
        "shares_rejected",
    );
    assert!(daemon.stop());

    // PKCS#11 -> Shamir: an altered share changes nothing, the right ones move the root back.
    let output = migrate(&hsm, dir.path(), "shamir", &with_altered);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("do not reconstruct the key of this key store"),
        "{}",
        stderr(&output)
    );
    let output = migrate(&hsm, dir.path(), "shamir", &init.shares[1..4]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("the recovery shares unseal the daemon"),
        "{}",
        stdout(&output)
    );
    let exited = Daemon::start_expecting_exit(dir.path(), &hsm.options());
    assert_eq!(exited.code, Some(1), "{}", exited.stderr);
    assert!(
        exited.stderr.contains("kmsd migrate-seal --to pkcs11"),
        "{}",
        exited.stderr
    );

    // Shamir again: sealed at start, the shares unseal, and every blob decrypts.
    let daemon = Daemon::start(dir.path());
    let status = daemon.client(None).status().await.expect("status");
    assert!(status.sealed);
    assert_eq!(status.root_of_trust.as_deref(), Some("shamir"));
    let unsealed = daemon
        .unseal(&[
            init.shares[0].clone(),
            init.shares[3].clone(),
            init.shares[4].clone(),
        ])
        .await;
    assert!(!unsealed.sealed);
    assert_api_error(
        daemon.client(None).generate_root(&with_altered).await,
        400,
        "shares_rejected",
    );
    let root = daemon.client(Some(&init.root_token));
    for (i, data_key) in data_keys.iter().enumerate() {
        assert_decrypts(
            &root,
            data_key,
            &format!("data key {i} after migrating back"),
        )
        .await;
    }
    let opened = root
        .decrypt(&sealed_payload.ciphertext, &context())
        .await
        .expect("decrypt payload after migrating back");
    assert!(opened.plaintext.expose_secret() == payload.as_slice());
}

#[tokio::test]
async fn migrate_seal_bad_shares_change_nothing() {
    let dir = data_dir();
    let hsm = SoftHsm::new("e2e-migrate-bad");
    let daemon = Daemon::start(dir.path());
    let (init, root) = daemon.init_with_key(KEY).await;
    let data_key = generate(&root, DataKeySize::Bytes32).await;

    // The running daemon locks the data directory, so even the right shares change nothing.
    let output = migrate(&hsm, dir.path(), "pkcs11", &init.shares[..3]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("is in use by another kmsd"),
        "{}",
        stderr(&output)
    );
    assert_eq!(hsm.secret_key_labels(), Vec::<String>::new());
    assert!(daemon.stop());

    let cases = [
        (
            "foreign share",
            vec![
                init.shares[0].clone(),
                init.shares[1].clone(),
                foreign(&init.shares[2]),
            ],
            "share rejected: share belongs to share set",
        ),
        (
            "altered share",
            vec![
                init.shares[0].clone(),
                altered(&init.shares[1]),
                init.shares[2].clone(),
            ],
            "do not reconstruct the key of this key store",
        ),
        (
            "too few shares",
            init.shares[..2].to_vec(),
            "2 valid shares given, 3 needed",
        ),
    ];
    for (case, shares, message) in &cases {
        let output = migrate(&hsm, dir.path(), "pkcs11", shares);
        assert_eq!(output.status.code(), Some(1), "{case}: {}", stderr(&output));
        assert!(
            stderr(&output).contains(message),
            "{case}: {}",
            stderr(&output)
        );
        assert_eq!(
            hsm.secret_key_labels(),
            Vec::<String>::new(),
            "{case}: a rejected migration created a key object"
        );
    }

    // The key store still unseals with its shares.
    let daemon = Daemon::start(dir.path());
    let status = daemon.unseal(&init.shares[..3]).await;
    assert!(!status.sealed);
    assert_eq!(status.root_of_trust.as_deref(), Some("shamir"));
    let root = daemon.client(Some(&init.root_token));
    assert_decrypts(&root, &data_key, "data key after rejected migrations").await;
}

#[tokio::test]
async fn generate_root_takes_recovery_shares() {
    let hsm = SoftHsm::new("e2e-generate-root");
    let dir = data_dir();
    let daemon = Daemon::start_with(dir.path(), &hsm.options());
    let (init, _root) = init_hsm(&daemon).await;
    let client = daemon.client(None);

    assert_api_error(
        client.generate_root(&init.shares[..2]).await,
        400,
        "invalid_request",
    );
    let with_foreign = [
        foreign(&init.shares[0]),
        init.shares[1].clone(),
        init.shares[2].clone(),
    ];
    assert_api_error(
        client.generate_root(&with_foreign).await,
        400,
        "foreign_share",
    );
    let with_altered = [
        init.shares[0].clone(),
        init.shares[1].clone(),
        altered(&init.shares[4]),
    ];
    assert_api_error(
        client.generate_root(&with_altered).await,
        400,
        "shares_rejected",
    );

    let generated = client
        .generate_root(&[
            init.shares[0].clone(),
            init.shares[2].clone(),
            init.shares[4].clone(),
        ])
        .await
        .expect("generate root");
    assert_ne!(
        generated.root_token.expose_secret(),
        init.root_token.expose_secret()
    );
    let new_root = daemon.client(Some(&generated.root_token));
    new_root
        .create_key("lab-results")
        .await
        .expect("the new root token manages keys");
    new_root
        .reconnect_hsm()
        .await
        .expect("the new root token reconnects");

    // Generating a root token leaves the seal state alone, sealed or not.
    new_root.seal().await.expect("seal");
    client
        .generate_root(&init.shares[1..4])
        .await
        .expect("generate root while sealed");
    let status = client.status().await.expect("status");
    assert!(status.sealed);
}

#[tokio::test]
async fn root_key_rotation_keeps_old_blobs() {
    let hsm = SoftHsm::new("e2e-rotate");
    let dir = data_dir();
    let daemon = Daemon::start_with(dir.path(), &hsm.options());
    let (init, root) = init_hsm(&daemon).await;
    let before = generate(&root, DataKeySize::Bytes32).await;

    let rotation = root
        .rotate_root_key(Some("kms-root-2"))
        .await
        .expect("rotate root key");
    assert_eq!(rotation.key_label, "kms-root-2");
    assert_eq!(rotation.previous_key_label, DEFAULT_KEY_LABEL);
    assert_eq!(hsm.secret_key_labels(), [DEFAULT_KEY_LABEL, "kms-root-2"]);
    assert_decrypts(&root, &before, "data key from before the rotation").await;
    let after = generate(&root, DataKeySize::Bytes24).await;
    assert_decrypts(&root, &after, "data key from after the rotation").await;

    let err = assert_api_error(
        root.rotate_root_key(Some("kms-root-2")).await,
        400,
        "invalid_request",
    );
    assert!(
        err.to_string().contains("already wraps the keyring"),
        "{err}"
    );
    assert_api_error(
        root.rotate_root_key(Some("two words")).await,
        400,
        "invalid_request",
    );
    let err = assert_api_error(
        root.remove_root_key("kms-root-2").await,
        400,
        "invalid_request",
    );
    assert!(err.to_string().contains("still wraps the keyring"), "{err}");

    root.remove_root_key(DEFAULT_KEY_LABEL)
        .await
        .expect("remove the previous root key object");
    assert_eq!(hsm.secret_key_labels(), ["kms-root-2"]);
    let err = assert_api_error(
        root.remove_root_key(DEFAULT_KEY_LABEL).await,
        404,
        "key_object_not_found",
    );
    assert!(err.to_string().contains(DEFAULT_KEY_LABEL), "{err}");

    // Only the new object is left, so unsealing proves that it wraps the keyring.
    root.seal().await.expect("seal");
    assert_api_error(
        root.rotate_root_key(Some("kms-root-3")).await,
        503,
        "sealed",
    );
    let status = root.unseal_with_token().await.expect("unseal");
    assert!(!status.sealed);
    assert_decrypts(&root, &before, "data key after removing the old object").await;
    assert!(daemon.stop());

    // The restart uses the stored label, though the configured one is gone.
    let daemon = Daemon::start_with(dir.path(), &hsm.options());
    let status = daemon.client(None).status().await.expect("status");
    assert!(!status.sealed);
    let root = daemon.client(Some(&init.root_token));
    assert_decrypts(&root, &before, "data key from before, after the restart").await;
    assert_decrypts(&root, &after, "data key from after, after the restart").await;

    // Without a label, the new object is named after the time and a random suffix.
    let rotation = root.rotate_root_key(None).await.expect("rotate again");
    assert_eq!(rotation.previous_key_label, "kms-root-2");
    let rest = rotation
        .key_label
        .strip_prefix("kms-root-")
        .expect("default label prefix");
    let (seconds, suffix) = rest.split_once('-').expect("seconds and suffix");
    assert!(
        !seconds.is_empty() && seconds.bytes().all(|b| b.is_ascii_digit()),
        "{}",
        rotation.key_label
    );
    assert!(
        suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_hexdigit()),
        "{}",
        rotation.key_label
    );
    let mut expected = vec![rotation.key_label.clone(), "kms-root-2".to_owned()];
    expected.sort_unstable();
    assert_eq!(hsm.secret_key_labels(), expected);
    assert_decrypts(&root, &before, "data key after the second rotation").await;
}

#[tokio::test]
async fn root_key_endpoints_need_root_and_hsm() {
    let hsm = SoftHsm::new("e2e-root-only");
    let dir = data_dir();
    let daemon = Daemon::start_with(dir.path(), &hsm.options());
    let (_init, root) = init_hsm(&daemon).await;
    let policy = [PolicyRule {
        keys: vec!["*".to_owned()],
        operations: Operation::ALL.to_vec(),
    }];
    let token = root
        .create_token(&policy, Duration::from_secs(600), Some("all keys"))
        .await
        .expect("create token");
    let limited = daemon.client(Some(&token.token));

    assert_api_error(
        limited.rotate_root_key(Some("kms-root-x")).await,
        403,
        "permission_denied",
    );
    assert_api_error(
        limited.remove_root_key(DEFAULT_KEY_LABEL).await,
        403,
        "permission_denied",
    );
    assert_api_error(limited.reconnect_hsm().await, 403, "permission_denied");

    // The SDK sends no request without a token, so these go out raw.
    let http = daemon.http();
    let requests = [
        (Method::POST, "/v1/sys/root-key/rotate", Some(json!({}))),
        (Method::DELETE, "/v1/sys/root-key/objects/kms-root", None),
        (Method::POST, "/v1/sys/hsm/reconnect", None),
    ];
    for (method, path, body) in requests {
        let body = body.map(|b| ("application/json", serde_json::to_vec(&b).expect("JSON")));
        let reply = http.send(method.clone(), path, None, body).await;
        assert_eq!(
            (reply.status, reply.code()),
            (401, Some("unauthenticated")),
            "{method} {path}: {}",
            reply.message()
        );
    }
    assert_eq!(hsm.secret_key_labels(), [DEFAULT_KEY_LABEL]);

    // A daemon whose root key is split into shares has no token to manage.
    let shamir_dir = data_dir();
    let shamir = Daemon::start(shamir_dir.path());
    let init = shamir.init_unsealed().await;
    let shamir_root = shamir.client(Some(&init.root_token));
    let err = assert_api_error(
        shamir_root.rotate_root_key(None).await,
        400,
        "invalid_request",
    );
    assert!(err.to_string().contains("Shamir shares"), "{err}");
    assert_api_error(
        shamir_root.remove_root_key("kms-root").await,
        400,
        "invalid_request",
    );
    assert_api_error(shamir_root.reconnect_hsm().await, 400, "invalid_request");
    assert_api_error(
        shamir_root.unseal_with_token().await,
        400,
        "invalid_request",
    );
}

#[tokio::test]
async fn kmsctl_manages_the_hsm_root_key() {
    let hsm = SoftHsm::new("e2e-kmsctl");
    let dir = data_dir();
    let daemon = Daemon::start_with(dir.path(), &hsm.options());
    let init = kmsctl_json(
        &daemon,
        None,
        &["operator", "init", "--shares", "3", "--threshold", "2"],
    );
    assert_eq!(init["shares"].as_array().map(Vec::len), Some(3));
    let token = SecretString::from(init["root_token"].as_str().expect("root token"));
    let status = kmsctl_json(&daemon, Some(&token), &["operator", "status"]);
    assert_eq!(status["root_of_trust"], "pkcs11");
    assert_eq!(status["sealed"], false);

    let rotation = kmsctl_json(
        &daemon,
        Some(&token),
        &["operator", "root-key", "rotate", "--label", "kms-root-cli"],
    );
    assert_eq!(rotation["key_label"], "kms-root-cli");
    assert_eq!(rotation["previous_key_label"], DEFAULT_KEY_LABEL);

    let output = kmsctl(
        &daemon,
        Some(&token),
        &["operator", "root-key", "remove", "kms-root-cli"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("still wraps the keyring"),
        "{}",
        stderr(&output)
    );
    let output = kmsctl(
        &daemon,
        Some(&token),
        &["operator", "root-key", "remove", "kms-root"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "removed root key object kms-root\n");
    assert_eq!(hsm.secret_key_labels(), ["kms-root-cli"]);

    let output = kmsctl(&daemon, Some(&token), &["operator", "hsm-reconnect"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "reconnected to the PKCS#11 token\n");

    // Seal, then unseal without a share: for a PKCS#11 root, kmsctl reads no share from stdin.
    let output = kmsctl(&daemon, Some(&token), &["operator", "seal"]);
    assert_eq!(stdout(&output), "sealed\n", "{}", stderr(&output));
    let output = kmsctl(&daemon, Some(&token), &["operator", "unseal"]);
    assert_eq!(stdout(&output), "unsealed\n", "{}", stderr(&output));

    let mut generate_root = daemon.kmsctl();
    generate_root.args(["--format", "json", "operator", "generate-root"]);
    let shares: Vec<SecretString> = init["shares"]
        .as_array()
        .expect("shares")
        .iter()
        .map(|s| SecretString::from(s.as_str().expect("share text")))
        .collect();
    let output = run_with_input(&mut generate_root, &share_lines(&shares[1..3]));
    assert!(output.status.success(), "{}", stderr(&output));
    let generated: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert!(
        generated["root_token"]
            .as_str()
            .is_some_and(|t| t.starts_with("kmst_"))
    );
}

/// Round trips of one task: generate a data key, decrypt it, and compare, until `stop` is set.
async fn round_trips(
    root: Client,
    done: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    start: Arc<tokio::sync::Barrier>,
) -> Vec<DataKey> {
    let sizes = [
        DataKeySize::Bytes16,
        DataKeySize::Bytes24,
        DataKeySize::Bytes32,
    ];
    let mut keys = Vec::new();
    let mut waited = false;
    while !stop.load(Ordering::SeqCst) {
        let size = sizes[keys.len() % sizes.len()];
        let data_key = generate(&root, size).await;
        assert_decrypts(&root, &data_key, "a data key during reconnects").await;
        keys.push(data_key);
        if waited {
            done.fetch_add(1, Ordering::SeqCst);
        } else {
            // Every task has a round trip behind it before the reconnects begin.
            start.wait().await;
            waited = true;
        }
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn datakeys_survive_reconnects_and_rotations() {
    const TASKS: usize = 8;
    // Round trips that the tasks complete, together, while the main task works the token.
    const MIN_ROUND_TRIPS: usize = TASKS * 25;
    const MIN_RECONNECTS: usize = 12;
    let hsm = SoftHsm::new("e2e-concurrent");
    let dir = data_dir();
    let daemon = Daemon::start_with(dir.path(), &hsm.options());
    let (init, root) = init_hsm(&daemon).await;

    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(tokio::sync::Barrier::new(TASKS + 1));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            tokio::spawn(round_trips(
                daemon.client(Some(&init.root_token)),
                done.clone(),
                stop.clone(),
                start.clone(),
            ))
        })
        .collect();
    start.wait().await;

    // Reconnect until the tasks have done their share; rotate three times, once at the same
    // time as a reconnect.
    let mut labels = vec![DEFAULT_KEY_LABEL.to_owned()];
    let mut reconnects = 0;
    while reconnects < MIN_RECONNECTS || done.load(Ordering::SeqCst) < MIN_ROUND_TRIPS {
        match reconnects {
            3 | 6 => {
                let label = format!("kms-root-c{reconnects}");
                root.rotate_root_key(Some(&label))
                    .await
                    .unwrap_or_else(|err| panic!("rotate to {label}: {err}"));
                labels.push(label);
                root.reconnect_hsm().await.expect("reconnect");
            }
            9 => {
                let label = format!("kms-root-c{reconnects}");
                let (rotated, reconnected) =
                    tokio::join!(root.rotate_root_key(Some(&label)), root.reconnect_hsm());
                rotated.unwrap_or_else(|err| panic!("rotate to {label}: {err}"));
                reconnected.expect("reconnect during a rotation");
                labels.push(label);
            }
            _ => root.reconnect_hsm().await.expect("reconnect"),
        }
        reconnects += 1;
    }
    stop.store(true, Ordering::SeqCst);
    let mut data_keys = Vec::new();
    for task in tasks {
        data_keys.extend(task.await.expect("a round-trip task failed"));
    }
    assert!(data_keys.len() >= MIN_ROUND_TRIPS + TASKS);

    // Every data key still decrypts, now and after a restart on the last root key alone.
    labels.sort_unstable();
    assert_eq!(hsm.secret_key_labels(), labels);
    for (i, data_key) in data_keys.iter().enumerate() {
        assert_decrypts(
            &root,
            data_key,
            &format!("data key {i} after the reconnects"),
        )
        .await;
    }
    for label in [DEFAULT_KEY_LABEL, "kms-root-c3", "kms-root-c6"] {
        root.remove_root_key(label)
            .await
            .unwrap_or_else(|err| panic!("remove {label}: {err}"));
    }
    assert_eq!(hsm.secret_key_labels(), ["kms-root-c9"]);
    assert!(daemon.stop());

    let daemon = Daemon::start_with(dir.path(), &hsm.options());
    let root = daemon.client(Some(&init.root_token));
    for (i, data_key) in data_keys.iter().enumerate() {
        assert_decrypts(&root, data_key, &format!("data key {i} after the restart")).await;
    }
}
