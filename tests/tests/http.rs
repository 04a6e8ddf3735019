//! Malformed requests over raw HTTPS: bodies, fields, sizes, tokens, routes and methods.

use client_sdk::secrecy::ExposeSecret;
use kms_tests::http::{Http, Reply};
use kms_tests::{Daemon, Initialized, data_dir};
use reqwest::Method;
use serde_json::json;

const DATAKEY: &str = "/v1/keys/patient-records/datakey";
const ENCRYPT: &str = "/v1/keys/patient-records/encrypt";
const INIT: &str = "/v1/sys/init";

async fn unsealed_with_key(daemon: &Daemon) -> Initialized {
    let (init, _root) = daemon.init_with_key("patient-records").await;
    init
}

async fn post_raw(daemon: &Daemon, path: &str, token: &str, body: &[u8]) -> Reply {
    daemon
        .http()
        .send(
            Method::POST,
            path,
            Some(token),
            Some(("application/json", body.to_vec())),
        )
        .await
}

/// Posts `body` to `path` and asserts a 400 `invalid_request` error whose message names `field`.
async fn assert_invalid_field(
    http: &Http,
    path: &str,
    token: Option<&str>,
    body: &serde_json::Value,
    field: &str,
) {
    let reply = http.post(path, token, body).await;
    let message = reply.assert_error(400, "invalid_request");
    assert!(message.contains(field), "{path} {body}: {message}");
}

#[tokio::test]
async fn malformed_json_is_invalid_request() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = unsealed_with_key(&daemon).await;
    let token = init.root_token.expose_secret();

    let bodies: [&[u8]; 6] = [
        b"{",
        b"",
        b"not json",
        b"{\"bytes\": 32} trailing",
        b"{\"bytes\": 32,}",
        b"\xff\xfe",
    ];
    for body in bodies {
        let reply = post_raw(&daemon, DATAKEY, token, body).await;
        assert_eq!(
            (reply.status, reply.code()),
            (400, Some("invalid_request")),
            "body {:?}: {}",
            String::from_utf8_lossy(body),
            reply.message()
        );
        assert_eq!(reply.body_request_id(), reply.request_id.as_deref());
    }
}

/// The API takes JSON objects. serde would also read a struct from an array by position, so
/// `[16, {}, false]` would quietly mean a 16-byte data key without plaintext.
#[tokio::test]
async fn array_body_is_invalid_request() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = unsealed_with_key(&daemon).await;
    let token = init.root_token.expose_secret();

    let bodies: [&[u8]; 3] = [b"[]", b"[16, {}, false]", b"[\"patient-records\"]"];
    let mut accepted = Vec::new();
    for (path, body) in [DATAKEY, DATAKEY, "/v1/keys"].into_iter().zip(bodies) {
        let reply = post_raw(&daemon, path, token, body).await;
        if (reply.status, reply.code()) != (400, Some("invalid_request")) {
            let body = String::from_utf8_lossy(body);
            accepted.push(format!("{path} {body} -> HTTP {}", reply.status));
        }
    }
    assert!(
        accepted.is_empty(),
        "array bodies were not rejected: {}",
        accepted.join("; ")
    );
}

#[tokio::test]
async fn non_json_content_type_invalid_request() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = unsealed_with_key(&daemon).await;

    let reply = daemon
        .http()
        .send(
            Method::POST,
            DATAKEY,
            Some(init.root_token.expose_secret()),
            Some(("text/plain", b"{}".to_vec())),
        )
        .await;
    let message = reply.assert_error(400, "invalid_request");
    assert!(message.contains("Content-Type"), "{message}");
}

#[tokio::test]
async fn unknown_field_is_rejected_and_named() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = unsealed_with_key(&daemon).await;
    let http = daemon.http();
    let token = init.root_token.expose_secret();

    let cases = [
        ("/v1/keys", json!({"name": "k2", "colour": "red"}), "colour"),
        (DATAKEY, json!({"bytes": 32, "lenght": 1}), "lenght"),
        (ENCRYPT, json!({"plaintext": "", "ctx": {}}), "ctx"),
        ("/v1/decrypt", json!({"ciphertext": "", "key": "k"}), "key"),
        (
            "/v1/sys/unseal",
            json!({"share": "x", "force": true}),
            "force",
        ),
        (
            INIT,
            json!({"shares": 3, "threshold": 2, "pgp_keys": []}),
            "pgp_keys",
        ),
    ];
    for (path, body, field) in &cases {
        assert_invalid_field(&http, path, Some(token), body, field).await;
    }
}

#[tokio::test]
async fn invalid_base64_is_rejected_and_named() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = unsealed_with_key(&daemon).await;
    let http = daemon.http();
    let token = init.root_token.expose_secret();

    // Unpadded, URL-safe and non-alphabet input are all invalid standard base64.
    for text in ["aGVsbG8", "-_8BAg==", "not base64!", "aGVsbG8=="] {
        let body = json!({"plaintext": text});
        assert_invalid_field(&http, ENCRYPT, Some(token), &body, "plaintext").await;

        for path in ["/v1/decrypt", "/v1/rewrap"] {
            let body = json!({"ciphertext": text});
            assert_invalid_field(&http, path, Some(token), &body, "ciphertext").await;
        }
    }
}

#[tokio::test]
async fn out_of_range_values_name_field() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let http = daemon.http();

    let body = json!({"shares": 300, "threshold": 2});
    assert_invalid_field(&http, INIT, None, &body, "shares").await;
    let body = json!({"shares": 3, "threshold": 4});
    assert_invalid_field(&http, INIT, None, &body, "threshold").await;

    let init = unsealed_with_key(&daemon).await;
    let token = init.root_token.expose_secret();
    let body = json!({"bytes": 20});
    assert_invalid_field(&http, DATAKEY, Some(token), &body, "bytes").await;

    let rule = json!([{"keys": ["patient-*"], "operations": ["generate"]}]);
    for ttl in [0, 31_536_001] {
        let body = json!({"policy": rule, "ttl_seconds": ttl});
        assert_invalid_field(&http, "/v1/tokens", Some(token), &body, "ttl_seconds").await;
    }
}

/// Values outside the range of the field's integer type are out of range too, and the API
/// reference promises that the message names the field.
#[tokio::test]
async fn oversized_integers_name_their_field() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let http = daemon.http();

    let body = json!({"shares": 70000, "threshold": 2});
    assert_invalid_field(&http, INIT, None, &body, "shares").await;
    let body = json!({"shares": 3, "threshold": -1});
    assert_invalid_field(&http, INIT, None, &body, "threshold").await;

    let init = unsealed_with_key(&daemon).await;
    let token = init.root_token.expose_secret();
    let body = json!({"bytes": 65568});
    assert_invalid_field(&http, DATAKEY, Some(token), &body, "bytes").await;
}

#[tokio::test]
async fn wrong_json_types_name_their_field() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = unsealed_with_key(&daemon).await;
    let http = daemon.http();
    let token = init.root_token.expose_secret();

    let cases = [
        (DATAKEY, json!({"bytes": "32"}), "bytes"),
        (
            DATAKEY,
            json!({"include_plaintext": "no"}),
            "include_plaintext",
        ),
        (DATAKEY, json!({"context": ["tenant"]}), "context"),
        ("/v1/keys", json!({"name": 7}), "name"),
    ];
    let mut unnamed = Vec::new();
    for (path, body, field) in &cases {
        let reply = http.post(path, Some(token), body).await;
        let message = reply.assert_error(400, "invalid_request");
        if !message.contains(field) {
            unnamed.push(format!("{path} {body}: {message}"));
        }
    }
    assert!(
        unnamed.is_empty(),
        "messages that do not name the field:\n{}",
        unnamed.join("\n")
    );
}

/// Error messages go back to clients and into their logs, so they must not repeat a context
/// value or other input that the daemon treats as secret.
#[tokio::test]
async fn error_messages_omit_request_values() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = unsealed_with_key(&daemon).await;
    let http = daemon.http();
    let token = init.root_token.expose_secret();
    let canary = format!("canary-{}", kms_tests::hex(&kms_tests::random_bytes(8)));

    let cases = [
        (DATAKEY, json!({"context": format!("tenant={canary}")})),
        (DATAKEY, json!({"context": {"tenant": [canary]}})),
        ("/v1/sys/unseal", json!({"reset": canary})),
        (ENCRYPT, json!({"plaintext": [canary]})),
    ];
    let mut echoed = Vec::new();
    for (i, (path, body)) in cases.iter().enumerate() {
        let reply = http.post(path, Some(token), body).await;
        // Compared without printing the message, which may contain the canary.
        assert_eq!(
            (reply.status, reply.code()),
            (400, Some("invalid_request")),
            "case {i}"
        );
        if reply.message().contains(&canary) {
            echoed.push(format!("case {i} ({path})"));
        }
    }
    assert!(
        echoed.is_empty(),
        "error messages repeat a value from the request: {}",
        echoed.join(", ")
    );
}

#[tokio::test]
async fn body_over_64_kib_rejected() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = unsealed_with_key(&daemon).await;
    let token = init.root_token.expose_secret();

    // A JSON body of exactly 64 KiB is read and then rejected for its content.
    let padding = |total: usize| {
        let frame = br#"{"name":""}"#.len();
        let mut body = br#"{"name":""#.to_vec();
        body.extend(std::iter::repeat_n(b'a', total - frame));
        body.extend_from_slice(br#""}"#);
        assert_eq!(body.len(), total);
        body
    };
    let reply = post_raw(&daemon, "/v1/keys", token, &padding(64 * 1024)).await;
    let message = reply.assert_error(400, "invalid_request");
    assert!(message.contains("name"), "{message}");

    let reply = post_raw(&daemon, "/v1/keys", token, &padding(64 * 1024 + 1)).await;
    reply.assert_error(413, "payload_too_large");
    let reply = post_raw(&daemon, "/v1/keys", token, &padding(1024 * 1024)).await;
    reply.assert_error(413, "payload_too_large");
    let reply = post_raw(&daemon, "/v1/sys/unseal", token, &padding(100 * 1024)).await;
    reply.assert_error(413, "payload_too_large");

    // The daemon still responds normally afterwards.
    let status = daemon.client(None).status().await.expect("status");
    assert!(!status.sealed);
}

#[tokio::test]
async fn missing_or_unknown_token_is_unauthenticated() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    unsealed_with_key(&daemon).await;
    let http = daemon.http();

    let reply = http.get("/v1/keys", None).await;
    reply.assert_error(401, "unauthenticated");
    let reply = http
        .get(
            "/v1/keys",
            Some("kmst_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        )
        .await;
    reply.assert_error(401, "unauthenticated");
    let reply = http.post(DATAKEY, Some("not-a-token"), &json!({})).await;
    reply.assert_error(401, "unauthenticated");

    for header in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "kmst_abc"] {
        let reply = http
            .get_with_header("/v1/keys", "authorization", header)
            .await;
        reply.assert_error(401, "unauthenticated");
    }
}

#[tokio::test]
async fn unknown_route_gets_not_found_body() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let http = daemon.http();

    for path in ["/v1/nope", "/v1/keys/a/b/c", "/v1/sys"] {
        let reply = http.get(path, None).await;
        reply.assert_error(404, "not_found");
        assert!(reply.request_id.is_some(), "{path}: no x-request-id");
        assert_eq!(reply.body_request_id(), reply.request_id.as_deref());
    }
}

/// The audit log promises a record for every request, including unknown routes, so requests
/// outside `/v1` get the same error body and request id as the rest.
#[tokio::test]
async fn route_outside_v1_audited_not_found() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let http = daemon.http();

    let reply = http.get("/", None).await;
    reply.assert_error(404, "not_found");
    let reply = http.get("/v2/keys", None).await;
    reply.assert_error(404, "not_found");
    let request_id = reply.request_id.clone().expect("x-request-id");

    let records = daemon.audit_records();
    assert_eq!(records.len(), 2, "one audit record per request");
    assert_eq!(records[1]["request_id"], request_id.as_str());
    assert_eq!(records[1]["outcome"], "not_found");
}

#[tokio::test]
async fn wrong_method_is_method_not_allowed() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = unsealed_with_key(&daemon).await;
    let http = daemon.http();
    let token = init.root_token.expose_secret();

    let cases = [
        (Method::GET, INIT),
        (Method::POST, "/v1/sys/status"),
        (Method::DELETE, "/v1/keys/patient-records"),
        (Method::PUT, "/v1/keys"),
        (Method::GET, "/v1/decrypt"),
    ];
    for (method, path) in cases {
        let reply = http.send(method.clone(), path, Some(token), None).await;
        assert_eq!(
            (reply.status, reply.code()),
            (405, Some("method_not_allowed")),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn key_name_in_path_is_validated() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = unsealed_with_key(&daemon).await;
    let http = daemon.http();
    let token = init.root_token.expose_secret();

    for path in [
        "/v1/keys/-bad",
        "/v1/keys/has%20space",
        "/v1/keys/a%2Fb",
        "/v1/keys/.hidden",
    ] {
        let reply = http.get(path, Some(token)).await;
        assert_eq!(
            (reply.status, reply.code()),
            (400, Some("invalid_request")),
            "{path}"
        );
    }
}
