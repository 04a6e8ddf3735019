//! The listener speaks only TLS 1.2 and 1.3, and clients must trust the daemon's CA.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use client_sdk::{ClientBuilder, Error, RetryPolicy};
use kms_tests::http::{Http, tls_config};
use kms_tests::{Daemon, data_dir};

/// TLS record content types and the handshake type of a ServerHello.
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const SERVER_HELLO: u8 = 2;
/// Alert level and description for a rejected protocol version.
const FATAL: u8 = 2;
const PROTOCOL_VERSION: u8 = 70;

fn host_port(daemon: &Daemon) -> String {
    daemon
        .addr()
        .strip_prefix("https://")
        .expect("https address")
        .to_owned()
}

/// Sends `bytes` on a fresh connection and returns the start of the response: at least 7
/// bytes (the length of an alert record) unless the daemon closes the connection first.
fn exchange(daemon: &Daemon, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(host_port(daemon)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set timeout");
    stream.write_all(bytes).expect("send");
    let mut response = vec![0u8; 64];
    let mut read = 0;
    while read < 7 {
        match stream.read(&mut response[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(err) => panic!("reading the response failed: {err}"),
        }
    }
    response.truncate(read);
    response
}

/// Appends a TLS extension: type, length, data.
fn extension(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// Builds a ClientHello record that offers only `version` (0x0302 for TLS 1.1, 0x0303 for TLS
/// 1.2), with ECDHE suites and the extensions a TLS 1.2 server needs to accept it.
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    let mut extensions = Vec::new();
    // supported_groups: x25519, secp256r1.
    extension(&mut extensions, 10, &[0, 4, 0x00, 0x1d, 0x00, 0x17]);
    // ec_point_formats: uncompressed.
    extension(&mut extensions, 11, &[1, 0]);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256.
    extension(
        &mut extensions,
        13,
        &[0, 6, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01],
    );

    let mut body = version.to_vec();
    body.extend_from_slice(&kms_tests::random_bytes(32));
    body.push(0); // empty session id
    // ECDHE-ECDSA and ECDHE-RSA with AES-GCM, and the CBC suites that TLS 1.1 can use.
    let suites = [0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x09, 0xc0, 0x13];
    body.extend_from_slice(&(suites.len() as u16).to_be_bytes());
    body.extend_from_slice(&suites);
    body.extend_from_slice(&[1, 0]); // null compression only
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);

    let mut handshake = vec![1]; // ClientHello
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);

    let mut record = vec![HANDSHAKE, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[test]
fn tls_1_1_client_is_rejected() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());

    // The same hello offering TLS 1.2 gets a ServerHello, so the refusal below is about the
    // version and not about a malformed hello.
    let response = exchange(&daemon, &client_hello([0x03, 0x03]));
    assert_eq!(
        response.first(),
        Some(&HANDSHAKE),
        "response to TLS 1.2: {response:02x?}"
    );
    assert_eq!(
        response.get(5),
        Some(&SERVER_HELLO),
        "response to TLS 1.2: {response:02x?}"
    );

    for version in [[0x03, 0x02], [0x03, 0x01]] {
        let response = exchange(&daemon, &client_hello(version));
        assert_eq!(
            response,
            [ALERT, 0x03, 0x03, 0x00, 0x02, FATAL, PROTOCOL_VERSION],
            "response to a hello offering {version:02x?}"
        );
    }
}

#[test]
fn plain_http_gets_no_http_response() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());

    let request = b"GET /v1/sys/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let response = exchange(&daemon, request);
    assert!(
        !response.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP response"
    );
    if let Some(&first) = response.first() {
        assert_eq!(
            first, ALERT,
            "plain HTTP got a non-alert response: {response:02x?}"
        );
    }
}

#[tokio::test]
async fn client_without_daemon_ca_fails_tls() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let other_dir = data_dir();
    let other = Daemon::start(other_dir.path());

    // The system roots do not include the daemon's private CA.
    let system_roots = ClientBuilder::new(daemon.addr())
        .retry(RetryPolicy::none())
        .build()
        .expect("build client with system roots");
    let err = system_roots
        .status()
        .await
        .expect_err("status without the CA");
    assert!(
        matches!(err, Error::Tls { .. }),
        "expected a TLS error, got {err:?}"
    );

    // Another daemon's CA does not vouch for this daemon either.
    let other_ca = ClientBuilder::new(daemon.addr())
        .ca_cert(other.ca())
        .retry(RetryPolicy::none())
        .build()
        .expect("build client with another CA");
    let err = other_ca.status().await.expect_err("status with another CA");
    assert!(
        matches!(err, Error::Tls { .. }),
        "expected a TLS error, got {err:?}"
    );

    // Nothing reached the request layer, so nothing was audited.
    assert_eq!(daemon.audit_records().len(), 0);
    daemon
        .client(None)
        .status()
        .await
        .expect("status with the right CA");
}

#[tokio::test]
async fn tls_1_2_and_1_3_clients_connect() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());

    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let http = Http::with_tls(daemon.addr(), tls_config(daemon.ca(), &[version]));
        let reply = http.get("/v1/sys/status", None).await;
        assert_eq!(reply.status, 200, "{version:?}");
        assert_eq!(reply.body["initialized"], false, "{version:?}");
    }
}
