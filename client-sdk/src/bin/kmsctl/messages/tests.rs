use super::*;

fn api_error(status: u16, code: &str, request_id: Option<&str>) -> CliError {
    CliError::Sdk(SdkError::Api {
        status,
        code: code.to_owned(),
        message: format!("{code} message"),
        request_id: request_id.map(str::to_owned),
    })
}

#[test]
fn api_error_line_has_message_and_code() {
    let err = api_error(503, "sealed", Some("6f1c"));
    assert_eq!(
        describe(&err),
        "sealed message (HTTP 503, code sealed, request id 6f1c)"
    );
}

#[test]
fn sealed_hint_points_at_unseal() {
    let hint = hint(&api_error(503, "sealed", None)).unwrap();
    assert!(hint.contains("kmsctl operator unseal"), "{hint}");
}

#[test]
fn internal_hint_names_request_id() {
    let hint = hint(&api_error(500, "internal", Some("6f1c"))).unwrap();
    assert!(hint.contains("6f1c"), "{hint}");
}

#[test]
fn unknown_code_has_no_hint() {
    assert_eq!(hint(&api_error(418, "teapot", None)), None);
}

#[test]
fn documented_codes_have_hints() {
    let codes = [
        "sealed",
        "not_initialized",
        "unauthenticated",
        "permission_denied",
        "key_not_found",
        "key_disabled",
        "key_exists",
        "decryption_failed",
        "invalid_ciphertext",
        "invalid_share",
        "foreign_share",
        "duplicate_share",
        "unseal_failed",
        "token_not_found",
        "audit_unavailable",
        "internal",
    ];
    for code in codes {
        assert!(
            hint(&api_error(400, code, None)).is_some(),
            "no hint for {code}"
        );
    }
}

#[test]
fn missing_token_message_speaks_cli() {
    let err = CliError::Sdk(SdkError::MissingToken {
        request: "GET /v1/keys".into(),
    });
    assert_eq!(
        describe(&err),
        "GET /v1/keys needs a token, and none is set"
    );
    assert!(hint(&err).unwrap().contains("KMS_TOKEN"));
}

#[test]
fn error_line_appends_causes() {
    let source = io::Error::new(io::ErrorKind::NotFound, "No such file or directory");
    let err = CliError::ReadInput {
        input: "file /x".into(),
        source,
    };
    assert_eq!(
        describe(&err),
        "cannot read file /x: No such file or directory"
    );
}

#[test]
fn ca_file_error_hints_cacert() {
    let sdk = client_sdk::ClientBuilder::new("https://127.0.0.1:8443")
        .ca_cert("/nonexistent/ca.pem")
        .build()
        .unwrap_err();
    let err = CliError::Sdk(sdk);
    assert!(
        describe(&err).contains("/nonexistent/ca.pem"),
        "{}",
        describe(&err)
    );
    assert!(hint(&err).unwrap().contains("--cacert"));
}

#[test]
fn untrusted_certificate_hints_cacert() {
    let source = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
    let err = CliError::Sdk(SdkError::Tls {
        addr: "https://127.0.0.1:8443".into(),
        source,
    });
    assert!(hint(&err).unwrap().contains("KMS_CACERT"));
    assert!(describe(&err).starts_with("TLS handshake with https://127.0.0.1:8443 failed: "));
}

#[test]
fn wrong_host_name_hints_addr() {
    let source = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
    let err = CliError::Sdk(SdkError::Tls {
        addr: "https://10.0.0.1:8443".into(),
        source,
    });
    assert!(hint(&err).unwrap().contains("--addr"));
}

#[test]
fn too_long_input_hints_datakey() {
    let err = CliError::InputTooLong {
        input: "stdin".into(),
        max: 4096,
    };
    assert_eq!(describe(&err), "stdin is longer than 4096 bytes");
    assert!(hint(&err).unwrap().contains("datakey generate"));
}

#[test]
fn rejected_slot_hints_recovery() {
    let err = CliError::KeySlotRejected {
        input: "file dump.kmsf".into(),
        source: match api_error(400, "decryption_failed", None) {
            CliError::Sdk(sdk) => sdk,
            _ => unreachable!("api_error builds an SDK error"),
        },
    };
    assert!(
        describe(&err).starts_with("kmsd could not unwrap the file key of file dump.kmsf: "),
        "{}",
        describe(&err)
    );
    let hint = hint(&err).unwrap();
    assert!(hint.contains("--identity"), "{hint}");
    assert!(!hint.contains("--context"), "{hint}");
}

#[test]
fn file_format_errors_keep_their_message() {
    let err = CliError::from(StreamError::ContextMismatch);
    assert!(describe(&err).starts_with("the encryption context differs"));
    assert!(hint(&err).unwrap().contains("backup inspect"));

    let source = io::Error::new(io::ErrorKind::NotFound, "No such file or directory");
    let err = CliError::from(StreamError::File {
        action: "open",
        path: "/x.kmsf".into(),
        source,
    });
    assert_eq!(
        describe(&err),
        "cannot open /x.kmsf: No such file or directory"
    );
}

#[test]
fn terminal_output_is_rejected_with_fix() {
    let err = CliError::StdoutIsTerminal { what: "ciphertext" };
    assert_eq!(
        describe(&err),
        "stdout is a terminal, and ciphertext is never written to a terminal"
    );
    assert!(hint(&err).unwrap().contains("-o FILE"));
}
