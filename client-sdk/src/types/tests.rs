use secrecy::ExposeSecret;

use super::*;

#[test]
fn status_before_init_parses() {
    let json = r#"{"initialized": false, "sealed": true, "threshold": null, "shares": null,
        "progress": 0, "root_of_trust": null, "version": "0.1.0"}"#;
    let status: Status = serde_json::from_str(json).unwrap();

    assert!(!status.initialized);
    assert!(status.sealed);
    assert_eq!(status.threshold, None);
    assert_eq!(status.root_of_trust, None);
}

#[test]
fn init_output_debug_hides_secrets() {
    let json = r#"{"shares": ["kms-share-v1-aaaa", "kms-share-v1-bbbb"],
        "root_token": "kms.rsecret", "root_token_accessor": "0a1b"}"#;
    let output: InitOutput = serde_json::from_str(json).unwrap();
    let debug = format!("{output:?}");

    assert_eq!(output.shares.len(), 2);
    assert_eq!(output.shares[0].expose_secret(), "kms-share-v1-aaaa");
    assert!(!debug.contains("aaaa"), "share in Debug: {debug}");
    assert!(!debug.contains("rsecret"), "root token in Debug: {debug}");
    assert!(debug.contains("0a1b"));
}

#[test]
fn key_object_parses_with_unknown_version_state() {
    let json = r#"{"name": "patient-records", "id": "4b0f", "state": "enabled",
        "created_at": "2026-01-01T00:00:00Z", "latest_version": 2,
        "versions": [{"version": 1, "created_at": "2026-01-01T00:00:00Z", "state": "retired"},
                     {"version": 2, "created_at": "2026-01-02T00:00:00Z", "state": "enabled"}]}"#;
    let key: Key = serde_json::from_str(json).unwrap();

    assert_eq!(key.state, KeyState::Enabled);
    assert_eq!(key.versions[0].state, KeyState::Other("retired".into()));
    assert_eq!(key.versions[0].state.as_str(), "retired");
    assert_eq!(key.latest_version, 2);
}

#[test]
fn key_state_serializes_as_api_spelling() {
    assert_eq!(
        serde_json::to_string(&KeyState::Disabled).unwrap(),
        r#""disabled""#
    );
    assert_eq!(
        serde_json::to_string(&KeyState::Other("x".into())).unwrap(),
        r#""x""#
    );
}

#[test]
fn data_key_decodes_base64_fields() {
    let json = r#"{"key_name": "k", "key_id": "4b0f", "key_version": 2,
        "plaintext": "AAECAw==", "ciphertext": "BAUG"}"#;
    let key: DataKey = serde_json::from_str(json).unwrap();

    let plaintext = key.plaintext.as_ref().unwrap();
    assert_eq!(plaintext.expose_secret(), &[0, 1, 2, 3]);
    assert_eq!(key.ciphertext, vec![4, 5, 6]);
}

#[test]
fn data_key_without_plaintext_parses() {
    let json = r#"{"key_name": "k", "key_id": "4b0f", "key_version": 1, "ciphertext": "BAUG"}"#;
    let key: DataKey = serde_json::from_str(json).unwrap();

    assert!(key.plaintext.is_none());
}

#[test]
fn data_key_debug_shows_lengths_only() {
    let json = r#"{"key_name": "k", "key_id": "4b0f", "key_version": 2,
        "plaintext": "c2VjcmV0LWRhdGEta2V5", "ciphertext": "BAUG"}"#;
    let key: DataKey = serde_json::from_str(json).unwrap();
    let debug = format!("{key:?}");

    assert!(!debug.contains("secret"), "plaintext in Debug: {debug}");
    assert!(debug.contains("ciphertext_len: 3"), "{debug}");
}

#[test]
fn plaintext_with_invalid_base64_is_rejected() {
    let json = r#"{"key_name": "k", "key_id": "4b0f", "key_version": 1, "plaintext": "@@@@"}"#;
    let err = serde_json::from_str::<Plaintext>(json).unwrap_err();

    // The decoder's own message ("Invalid symbol 64, offset 0.") would reveal input bytes.
    assert!(
        err.to_string()
            .starts_with("invalid base64 in a secret field at"),
        "{err}"
    );
    assert!(
        !err.to_string().contains("symbol"),
        "decoder detail leaked: {err}"
    );
}

#[test]
fn data_key_size_accepts_only_aes_lengths() {
    assert_eq!(DataKeySize::try_from(16), Ok(DataKeySize::Bytes16));
    assert_eq!(DataKeySize::try_from(24), Ok(DataKeySize::Bytes24));
    assert_eq!(DataKeySize::try_from(32), Ok(DataKeySize::Bytes32));
    assert_eq!(DataKeySize::try_from(20), Err(20));
    assert_eq!(DataKeySize::default().bytes(), 32);
}

#[test]
fn operation_parses_api_names() {
    for operation in Operation::ALL {
        assert_eq!(operation.as_str().parse::<Operation>(), Ok(operation));
    }
    let err = "delete".parse::<Operation>().unwrap_err();
    assert_eq!(err, UnknownOperation("delete".into()));
}

#[test]
fn new_token_parses_flattened_info() {
    let json = r#"{"token": "kms.tsecret", "accessor": "9f", "display_name": "billing",
        "root": false, "policy": [{"keys": ["patient-*"], "operations": ["generate", "decrypt"]}],
        "created_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-01T01:00:00Z",
        "revoked_at": null}"#;
    let token: NewToken = serde_json::from_str(json).unwrap();

    assert_eq!(token.token.expose_secret(), "kms.tsecret");
    assert_eq!(token.info.accessor, "9f");
    assert_eq!(
        token.info.policy[0].operations,
        vec![Operation::Generate, Operation::Decrypt]
    );
    assert!(!format!("{token:?}").contains("tsecret"));
}

#[test]
fn root_token_info_parses_without_expiry() {
    let json = r#"{"accessor": "0a", "display_name": null, "root": true, "policy": null,
        "created_at": "2026-01-01T00:00:00Z", "expires_at": null, "revoked_at": null}"#;
    let info: TokenInfo = serde_json::from_str(json).unwrap();

    assert!(info.root);
    assert!(info.policy.is_empty());
    assert_eq!(info.expires_at, None);
}
