//! The audit log: one record per request, no secrets in it, and requests rejected when the log
//! cannot take their records.

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::Duration;

use client_sdk::secrecy::{ExposeSecret, SecretString};
use client_sdk::{Client, ClientBuilder, Context, DataKeySize, Operation, PolicyRule, RetryPolicy};
use kms_tests::http::{Http, Reply};
use kms_tests::{Daemon, Options, assert_api_error, base64, data_dir, hex};
use reqwest::Method;
use serde_json::{Value, json};

/// What one request must leave in the audit log.
struct Expected {
    reply: Reply,
    operation: &'static str,
    outcome: &'static str,
    status: u16,
    accessor: Option<String>,
    key: Option<&'static str>,
}

fn expect(
    reply: Reply,
    operation: &'static str,
    outcome: &'static str,
    status: u16,
    accessor: Option<&str>,
    key: Option<&'static str>,
) -> Expected {
    Expected {
        reply,
        operation,
        outcome,
        status,
        accessor: accessor.map(str::to_owned),
        key,
    }
}

/// Checks one record against what its request returned; returns the differences.
fn compare(index: usize, record: &Value, expected: &Expected) -> Vec<String> {
    let reply = &expected.reply;
    let request_id = reply.request_id.as_deref();

    let mut problems = Vec::new();
    let mut check = |field: &str, found: &Value, wanted: Value| {
        if *found != wanted {
            problems.push(format!(
                "request {index}: {field} is {found}, expected {wanted}"
            ));
        }
    };
    check(
        "response status",
        &json!(reply.status),
        json!(expected.status),
    );
    check("request_id", &record["request_id"], json!(request_id));
    check("operation", &record["operation"], json!(expected.operation));
    check("outcome", &record["outcome"], json!(expected.outcome));
    check("status", &record["status"], json!(expected.status));
    check("accessor", &record["accessor"], json!(expected.accessor));
    check("key", &record["key"], json!(expected.key));

    if reply.status >= 400 {
        check(
            "error body request_id",
            &json!(reply.body_request_id()),
            json!(request_id),
        );
        check(
            "error body code",
            &json!(reply.code()),
            json!(expected.outcome),
        );
    }
    problems
}

#[tokio::test]
async fn each_request_has_one_record() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let http = daemon.http();
    let mut steps = Vec::new();

    // Init and unseal, including a rejected share.
    steps.push(expect(
        http.get("/v1/sys/status", None).await,
        "sys.status",
        "ok",
        200,
        None,
        None,
    ));
    let reply = http
        .post("/v1/sys/init", None, &json!({"shares": 3, "threshold": 2}))
        .await;
    let shares: Vec<String> = reply.body["shares"]
        .as_array()
        .expect("shares")
        .iter()
        .map(|s| s.as_str().expect("share text").to_owned())
        .collect();
    let root = reply.body["root_token"]
        .as_str()
        .expect("root token")
        .to_owned();
    let root_accessor = reply.body["root_token_accessor"]
        .as_str()
        .expect("accessor")
        .to_owned();
    let root_accessor = Some(root_accessor.as_str());
    steps.push(expect(reply, "sys.init", "ok", 200, None, None));
    let reply = http
        .post("/v1/sys/unseal", None, &json!({"share": shares[0]}))
        .await;
    steps.push(expect(reply, "sys.unseal", "ok", 200, None, None));
    let reply = http
        .post(
            "/v1/sys/unseal",
            None,
            &json!({"share": "kms-share-v1-typo"}),
        )
        .await;
    steps.push(expect(
        reply,
        "sys.unseal",
        "invalid_share",
        400,
        None,
        None,
    ));
    let reply = http
        .post("/v1/sys/unseal", None, &json!({"share": shares[1]}))
        .await;
    steps.push(expect(reply, "sys.unseal", "ok", 200, None, None));

    // Rejected before a token is known.
    let reply = http.get("/v1/keys", None).await;
    steps.push(expect(
        reply,
        "key.list",
        "unauthenticated",
        401,
        None,
        None,
    ));
    let reply = http.get("/v1/keys", Some("kmst_unknown")).await;
    steps.push(expect(
        reply,
        "key.list",
        "unauthenticated",
        401,
        None,
        None,
    ));

    // Root sets up a key and a narrow token.
    let reply = http
        .post("/v1/keys", Some(&root), &json!({"name": "patient-records"}))
        .await;
    steps.push(expect(
        reply,
        "key.create",
        "ok",
        201,
        root_accessor,
        Some("patient-records"),
    ));
    let policy = json!([{"keys": ["patient-*"], "operations": ["describe"]}]);
    let reply = http
        .post(
            "/v1/tokens",
            Some(&root),
            &json!({"policy": policy, "ttl_seconds": 600}),
        )
        .await;
    let limited = reply.body["token"].as_str().expect("token").to_owned();
    let limited_accessor = reply.body["accessor"]
        .as_str()
        .expect("accessor")
        .to_owned();
    let limited_accessor = Some(limited_accessor.as_str());
    steps.push(expect(
        reply,
        "token.create",
        "ok",
        201,
        root_accessor,
        None,
    ));

    // Rejections of every kind.
    let path = "/v1/keys/billing/datakey";
    let reply = http.post(path, Some(&limited), &json!({})).await;
    steps.push(expect(
        reply,
        "datakey.generate",
        "permission_denied",
        403,
        limited_accessor,
        Some("billing"),
    ));
    let reply = http.get("/v1/keys/missing", Some(&root)).await;
    steps.push(expect(
        reply,
        "key.show",
        "key_not_found",
        404,
        root_accessor,
        Some("missing"),
    ));
    let reply = http.get("/v1/nope", Some(&root)).await;
    steps.push(expect(reply, "unknown", "not_found", 404, None, None));
    let path = "/v1/keys/patient-records/datakey";
    let reply = http.post(path, Some(&root), &json!({"bytes": 20})).await;
    steps.push(expect(
        reply,
        "datakey.generate",
        "invalid_request",
        400,
        root_accessor,
        Some("patient-records"),
    ));
    let reply = http.send(Method::GET, "/v1/sys/init", None, None).await;
    steps.push(expect(
        reply,
        "sys.init",
        "method_not_allowed",
        405,
        None,
        None,
    ));
    let big = vec![b' '; 70 * 1024];
    let reply = http
        .send(
            Method::POST,
            "/v1/keys",
            Some(&root),
            Some(("application/json", big)),
        )
        .await;
    steps.push(expect(
        reply,
        "key.create",
        "payload_too_large",
        413,
        root_accessor,
        None,
    ));
    let reply = http.post("/v1/sys/seal", Some(&limited), &json!({})).await;
    steps.push(expect(
        reply,
        "sys.seal",
        "permission_denied",
        403,
        limited_accessor,
        None,
    ));

    // Data keys, with a context whose keys (never values) are recorded.
    let context = json!({"tenant": "clinic-7", "app": "billing"});
    let reply = http
        .post(path, Some(&root), &json!({"context": context}))
        .await;
    let blob = reply.body["ciphertext"]
        .as_str()
        .expect("ciphertext")
        .to_owned();
    steps.push(expect(
        reply,
        "datakey.generate",
        "ok",
        200,
        root_accessor,
        Some("patient-records"),
    ));
    let reply = http
        .post(
            "/v1/decrypt",
            Some(&root),
            &json!({"ciphertext": blob, "context": context}),
        )
        .await;
    steps.push(expect(
        reply,
        "decrypt",
        "ok",
        200,
        root_accessor,
        Some("patient-records"),
    ));
    let reply = http
        .post(
            "/v1/decrypt",
            Some(&root),
            &json!({"ciphertext": blob, "context": {"tenant": "x"}}),
        )
        .await;
    steps.push(expect(
        reply,
        "decrypt",
        "decryption_failed",
        400,
        root_accessor,
        Some("patient-records"),
    ));
    let reply = http.get("/v1/keys", Some(&limited)).await;
    steps.push(expect(reply, "key.list", "ok", 200, limited_accessor, None));

    let records = daemon.audit_records();
    let mut problems = Vec::new();
    if records.len() != steps.len() {
        problems.push(format!(
            "{} records for {} requests",
            records.len(),
            steps.len()
        ));
    }
    for (i, (record, step)) in records.iter().zip(&steps).enumerate() {
        problems.extend(compare(i, record, step));
    }
    assert!(
        problems.is_empty(),
        "audit log mismatches:\n{}",
        problems.join("\n")
    );

    // Every record has the documented fields; data-key records name the version and the
    // context keys in byte order.
    for record in &records {
        for field in ["time", "method", "path", "remote_addr", "context_keys"] {
            assert!(
                record.get(field).is_some(),
                "record without {field}: {record}"
            );
        }
        assert_eq!(record["remote_addr"], "127.0.0.1");
    }
    let generated = &records[16];
    assert_eq!(generated["key_version"], 1);
    assert_eq!(generated["context_keys"], json!(["app", "tenant"]));
    assert_eq!(generated["method"], "POST");
    assert_eq!(generated["path"], "/v1/keys/patient-records/datakey");
}

/// Returns every form in which `bytes` could show up in a text file.
fn encodings(bytes: &[u8]) -> Vec<String> {
    let mut forms = vec![base64(bytes), hex(bytes), hex(bytes).to_uppercase()];
    if let Ok(text) = std::str::from_utf8(bytes) {
        forms.push(text.to_owned());
    }
    forms
}

#[tokio::test]
async fn audit_records_contain_no_secrets() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init(5, 3).await;
    let anonymous = daemon.client(None);

    // A mistyped share is rejected but must not reach the log either.
    let typo = init.shares[3]
        .expose_secret()
        .replacen("kms-share-v1-", "kms-share-v1-x", 1);
    let typo = SecretString::from(typo);
    assert_api_error(anonymous.unseal(&typo).await, 400, "invalid_share");
    daemon.unseal(&init.shares[..3]).await;

    let root = daemon.client(Some(&init.root_token));
    root.create_key("patient-records")
        .await
        .expect("create key");
    let policy = [PolicyRule {
        keys: vec!["patient-*".to_owned()],
        operations: vec![Operation::Decrypt],
    }];
    let token = root
        .create_token(&policy, Duration::from_secs(600), None)
        .await
        .expect("create token");
    let limited = daemon.client(Some(&token.token));

    let canary_value = format!("ctx-canary-{}", hex(&kms_tests::random_bytes(8)));
    let context = Context::from([("tenant".to_owned(), canary_value.clone())]);
    let plaintext = format!("plaintext-canary-{}", hex(&kms_tests::random_bytes(8)));
    let data_key = root
        .generate_data_key("patient-records", DataKeySize::Bytes32, &context, true)
        .await
        .expect("generate");
    let payload = root
        .encrypt("patient-records", plaintext.as_bytes(), &context)
        .await
        .expect("encrypt");
    let rewrapped = root
        .rewrap(&payload.ciphertext, &context)
        .await
        .expect("rewrap");
    limited
        .decrypt(&payload.ciphertext, &context)
        .await
        .expect("decrypt with the narrow token");
    let wrong = Context::from([("tenant".to_owned(), format!("{canary_value}-wrong"))]);
    assert_api_error(
        limited.decrypt(&data_key.ciphertext, &wrong).await,
        400,
        "decryption_failed",
    );

    let log = std::fs::read_to_string(daemon.audit_path()).expect("read audit log");
    // One record per request, after the record of the daemon's start.
    assert_eq!(log.lines().count(), 13, "one record per request");
    let mut secrets: Vec<(&str, String)> = Vec::new();
    for share in init.shares.iter().chain([&typo]) {
        let text = share.expose_secret();
        secrets.push(("a share", text.to_owned()));
        secrets.push(("a share without dashes", text.replace('-', "")));
        secrets.push((
            "a share value",
            text.get(20..50).expect("share length").to_owned(),
        ));
    }
    secrets.push(("the root token", init.root_token.expose_secret().to_owned()));
    secrets.push(("the narrow token", token.token.expose_secret().to_owned()));
    for form in encodings(plaintext.as_bytes()) {
        secrets.push(("the plaintext", form));
    }
    for form in encodings(canary_value.as_bytes()) {
        secrets.push(("a context value", form));
    }
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
    let found: Vec<&str> = secrets
        .iter()
        .filter(|(_, secret)| log.contains(secret.as_str()))
        .map(|(what, _)| *what)
        .collect();
    assert!(
        found.is_empty(),
        "the audit log contains {}",
        found.join(", ")
    );

    // The context key itself is recorded.
    assert!(log.contains(r#""context_keys":["tenant"]"#));
}

/// Builds a client with a short overall timeout, so that a hanging daemon fails the test
/// instead of stalling it.
fn impatient_client(daemon: &Daemon) -> Client {
    ClientBuilder::new(daemon.addr())
        .ca_cert(daemon.ca())
        .retry(RetryPolicy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build client")
}

#[tokio::test]
async fn full_audit_device_rejects_requests() {
    let dir = data_dir();
    let options = Options {
        args: vec!["--audit-log".into(), "/dev/full".into()],
        ..Options::default()
    };
    let daemon = Daemon::start_with(dir.path(), &options);
    let client = impatient_client(&daemon);

    let err = assert_api_error(client.status().await, 503, "audit_unavailable");
    assert!(err.request_id().is_some(), "{err}");
    assert_api_error(client.init(3, 2, false).await, 503, "audit_unavailable");
    let reply = daemon.http().get("/v1/nope", None).await;
    reply.assert_error(503, "audit_unavailable");
    assert_api_error(client.status().await, 503, "audit_unavailable");
}

/// A request rejected with `audit_unavailable` must not have happened. For init that matters
/// most: an init whose shares never reach anyone leaves a daemon that cannot be unsealed.
#[tokio::test]
async fn audit_rejected_init_has_no_effect() {
    let dir = data_dir();
    let options = Options {
        args: vec!["--audit-log".into(), "/dev/full".into()],
        ..Options::default()
    };
    let daemon = Daemon::start_with(dir.path(), &options);
    let client = impatient_client(&daemon);
    assert_api_error(client.init(3, 2, false).await, 503, "audit_unavailable");
    assert!(daemon.stop());

    let daemon = Daemon::start(dir.path());
    let status = daemon.client(None).status().await.expect("status");
    assert!(
        !status.initialized,
        "the rejected init took effect, and its shares were never returned"
    );
}

/// Creates a FIFO, opens its read end without blocking, and returns the reader. The daemon can
/// then open the write end, and every record stays in the pipe until the test reads it.
fn open_fifo(path: &Path) -> File {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    nix::unistd::mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR).expect("mkfifo");
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)
        .expect("open FIFO for reading")
}

/// Starts a daemon whose audit log is a FIFO that is never read, with a 300 ms audit timeout.
fn start_with_stuck_audit(dir: &Path) -> (Daemon, File) {
    let fifo = dir.join("audit.fifo");
    std::fs::create_dir_all(dir).expect("create data dir");
    let reader = open_fifo(&fifo);
    let options = Options {
        args: vec![
            "--audit-log".into(),
            fifo.display().to_string(),
            "--audit-timeout".into(),
            "300ms".into(),
            // fdatasync fails on a pipe, so the records would all fail at once.
            "--audit-fsync".into(),
            "false".into(),
        ],
        ..Options::default()
    };
    (Daemon::start_with(dir, &options), reader)
}

/// Sends status requests until the pipe is full and one is rejected, and returns how many passed.
async fn fill_pipe(client: &Client) -> usize {
    // A Linux pipe buffers 64 KiB by default and a status record is about 250 bytes, so a few
    // hundred requests fill it. The bound only keeps a broken daemon from looping forever.
    for sent in 0..20_000 {
        let result = tokio::time::timeout(Duration::from_secs(10), client.status())
            .await
            .expect("a status request hung while the audit pipe filled");
        match result {
            Ok(_) => {}
            Err(err) if err.code() == Some("audit_unavailable") => return sent,
            Err(err) => panic!("unexpected error while filling the audit pipe: {err}"),
        }
    }
    panic!("the audit pipe never filled");
}

/// Reads everything the daemon writes into the FIFO until it closes its end.
fn drain(reader: File) -> std::thread::JoinHandle<Vec<u8>> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    fcntl(&reader, FcntlArg::F_SETFL(OFlag::empty())).expect("make the FIFO blocking");
    std::thread::spawn(move || {
        let mut reader = reader;
        let mut bytes = Vec::new();
        let _ = reader.read_to_end(&mut bytes);
        bytes
    })
}

#[tokio::test]
async fn stuck_audit_pipe_rejects_requests_promptly() {
    let dir = data_dir();
    let (daemon, reader) = start_with_stuck_audit(dir.path());
    let client = impatient_client(&daemon);

    let passed = fill_pipe(&client).await;
    assert!(passed > 0, "the first request was already rejected");

    // Further requests are rejected within the timeout instead of hanging, on any endpoint.
    for _ in 0..3 {
        let result = tokio::time::timeout(Duration::from_secs(5), client.status())
            .await
            .expect("status hung on a stuck audit device");
        assert_api_error(result, 503, "audit_unavailable");
    }
    let http = Http::new(daemon.addr(), daemon.ca());
    let reply = tokio::time::timeout(Duration::from_secs(5), http.get("/v1/keys", None))
        .await
        .expect("key list hung on a stuck audit device");
    reply.assert_error(503, "audit_unavailable");

    // Once the pipe is read again, requests succeed again.
    let drained = drain(reader);
    let mut recovered = false;
    for _ in 0..100 {
        if client.status().await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "the daemon did not recover after the audit pipe was drained"
    );
    drop(daemon);
    let bytes = drained.join().expect("drain thread");
    assert!(
        bytes.len() > 60_000,
        "only {} audit bytes were written",
        bytes.len()
    );
}

/// The audit log must not record a request as successful when the client received a 503
/// refusal for it.
#[tokio::test]
async fn rejected_requests_not_audited_as_ok() {
    let dir = data_dir();
    let (daemon, reader) = start_with_stuck_audit(dir.path());
    let client = impatient_client(&daemon);
    fill_pipe(&client).await;

    let mut rejected = Vec::new();
    for _ in 0..3 {
        let err = assert_api_error(client.status().await, 503, "audit_unavailable");
        rejected.push(err.request_id().expect("request id").to_owned());
    }
    let drained = drain(reader);
    for _ in 0..100 {
        if client.status().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(daemon);
    let bytes = drained.join().expect("drain thread");
    let text = String::from_utf8_lossy(&bytes);

    let mut misrecorded = Vec::new();
    for line in text.lines() {
        let Ok(record) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let id = record["request_id"].as_str().unwrap_or_default();
        if rejected.iter().any(|r| r == id) && record["status"] != 503 {
            misrecorded.push(format!(
                "{id}: recorded as {} {}",
                record["status"], record["outcome"]
            ));
        }
    }
    assert!(
        misrecorded.is_empty(),
        "rejected requests recorded with another outcome:\n{}",
        misrecorded.join("\n")
    );
}

#[tokio::test]
async fn request_id_header_matches_error_body() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let http = daemon.http();

    let ok = http.get("/v1/sys/status", None).await;
    let error = http.get("/v1/keys", None).await;
    let ok_id = ok.request_id.clone().expect("x-request-id on success");
    let error_id = error.request_id.clone().expect("x-request-id on error");
    assert_eq!(error.body_request_id(), Some(error_id.as_str()));
    assert_ne!(ok_id, error_id);
    assert_eq!(ok_id.len(), 32);
    assert!(ok_id.bytes().all(|b| b.is_ascii_hexdigit()));
}

/// A token pasted where an accessor belongs is rejected without being repeated, and reaches
/// neither the audit log nor the daemon log.
#[tokio::test]
async fn token_in_path_is_redacted() {
    let dir = data_dir();
    let options = Options {
        log_level: Some("trace".into()),
        ..Options::default()
    };
    let daemon = Daemon::start_with(dir.path(), &options);
    let init = daemon.init_unsealed().await;
    let token = init.root_token.expose_secret();
    let http = daemon.http();

    let replies = [
        http.get(&format!("/v1/tokens/{token}"), Some(token)).await,
        http.post(
            &format!("/v1/tokens/{token}/revoke"),
            Some(token),
            &json!({}),
        )
        .await,
    ];
    for reply in replies {
        let message = reply.assert_error(400, "invalid_request");
        assert!(!message.contains(token), "the error repeats the token");
    }

    let log = std::fs::read_to_string(daemon.audit_path()).expect("read audit log");
    assert!(!log.contains(token), "the audit log contains the token");
    assert!(log.contains("/v1/tokens/kmst_[redacted]"), "{log}");
    assert!(
        !daemon.log().contains(token),
        "the daemon log contains the token"
    );
}

/// Records of requests that mint a token name the new token's accessor, so that the trail ties
/// each token to the request that created it.
#[tokio::test]
async fn token_creation_records_created_accessor() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init_unsealed().await;
    let root = daemon.client(Some(&init.root_token));
    let policy = [PolicyRule {
        keys: vec!["patient-*".to_owned()],
        operations: vec![Operation::Generate],
    }];
    let token = root
        .create_token(&policy, Duration::from_secs(600), None)
        .await
        .expect("create token");
    let generated = daemon
        .client(None)
        .generate_root(&init.shares[..3])
        .await
        .expect("generate root");

    let records = daemon.audit_records();
    let created = |operation: &str| {
        records
            .iter()
            .find(|record| record["operation"] == operation)
            .map(|record| record["created_accessor"].clone())
            .unwrap_or_else(|| panic!("no {operation} record"))
    };
    assert_eq!(created("sys.init"), init.root_accessor.as_str());
    assert_eq!(created("token.create"), token.info.accessor.as_str());
    assert_eq!(
        created("sys.generate_root"),
        generated.root_token_accessor.as_str()
    );
}
