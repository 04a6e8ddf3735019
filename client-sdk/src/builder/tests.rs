use std::io::Write as _;

use super::*;

fn pem_file(contents: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(contents.as_bytes()).unwrap();
    file
}

fn self_signed_pem() -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

#[test]
fn address_keeps_host_port_and_prefix() {
    assert_eq!(
        normalize_addr("https://127.0.0.1:8443").unwrap(),
        "https://127.0.0.1:8443"
    );
    assert_eq!(
        normalize_addr("https://kms.local:8443/").unwrap(),
        "https://kms.local:8443"
    );
    assert_eq!(
        normalize_addr("https://proxy.local/kms/").unwrap(),
        "https://proxy.local/kms"
    );
}

#[test]
fn address_rejects_plain_http() {
    let err = normalize_addr("http://127.0.0.1:8443").unwrap_err();
    assert!(err.to_string().contains("HTTPS only"), "{err}");
}

#[test]
fn address_rejects_non_urls_and_extras() {
    for addr in [
        "127.0.0.1:8443",
        "",
        "https://user:pw@host:1",
        "https://host:1/?a=b",
    ] {
        let err = normalize_addr(addr).unwrap_err();
        assert!(matches!(err, Error::InvalidAddress { .. }), "{addr}: {err}");
    }
}

#[test]
fn address_error_hides_user_info() {
    let err = normalize_addr("https://alice:hunter2@host:1").unwrap_err();
    assert!(
        err.to_string().contains("user info is not allowed"),
        "{err}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(!err.to_string().contains("alice"), "{err}");
}

#[test]
fn missing_ca_file_names_path() {
    let err = ClientBuilder::new(DEFAULT_ADDR)
        .ca_cert("/nonexistent/ca.pem")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::CaFile { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

#[test]
fn ca_file_without_certificate_is_rejected() {
    let (_, key_pem) = self_signed_pem();
    let file = pem_file(&key_pem);
    let err = ClientBuilder::new(DEFAULT_ADDR)
        .ca_cert(file.path())
        .build()
        .unwrap_err();

    assert!(matches!(err, Error::CaFileEmpty { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&file.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn ca_file_with_garbage_certificate_is_rejected() {
    let file = pem_file("-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n");
    let err = ClientBuilder::new(DEFAULT_ADDR)
        .ca_cert(file.path())
        .build()
        .unwrap_err();

    assert!(
        matches!(err, Error::CaCertificateRejected { .. }),
        "{err:?}"
    );
}

#[test]
fn ca_file_with_certificate_builds_client() {
    let (cert_pem, _) = self_signed_pem();
    let file = pem_file(&cert_pem);
    let client = ClientBuilder::new(DEFAULT_ADDR)
        .ca_cert(file.path())
        .build();

    assert!(client.is_ok(), "{:?}", client.err());
}

#[test]
fn builder_debug_hides_token() {
    let builder = ClientBuilder::new(DEFAULT_ADDR).token(SecretString::from("kms.tcanary"));
    let debug = format!("{builder:?}");

    assert!(!debug.contains("canary"), "{debug}");
}
