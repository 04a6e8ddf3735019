use std::time::Duration;

use clap::Parser as _;
use clap::error::ErrorKind;
use client_sdk::{DataKeySize, Operation};

use super::*;
use crate::cli::{BackupCommand, Cli, Command, DatakeyCommand, Format, TokenCommand};

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("kmsctl").chain(args.iter().copied()))
}

fn usage_error(args: &[&str]) -> String {
    let err = parse(args).unwrap_err();
    assert_eq!(err.exit_code(), 2, "usage errors exit with status 2");
    err.to_string()
}

#[test]
fn context_splits_at_first_equals() {
    let pair = parse_context_pair("query=a=b").unwrap();
    assert_eq!(pair.key, "query");
    assert_eq!(pair.value, "a=b");
}

#[test]
fn context_allows_empty_value() {
    let pair = parse_context_pair("tenant=").unwrap();
    assert_eq!(pair.value, "");
}

#[test]
fn context_without_equals_names_value() {
    let err = usage_error(&["encrypt", "k", "--context", "tenant"]);
    assert!(err.contains("'tenant'"), "{err}");
    assert!(err.contains("missing '='"), "{err}");
}

#[test]
fn context_with_empty_key_names_value() {
    let err = usage_error(&["decrypt", "--context", "=clinic-7", "AAAA"]);
    assert!(err.contains("'=clinic-7'"), "{err}");
    assert!(err.contains("empty key"), "{err}");
}

#[test]
fn duplicate_context_key_is_reported() {
    let pairs = [
        parse_context_pair("a=1").unwrap(),
        parse_context_pair("a=2").unwrap(),
    ];
    assert_eq!(collect_context(&pairs), Err("a".to_owned()));
}

#[test]
fn context_collects_pairs() {
    let pairs = [
        parse_context_pair("b=2").unwrap(),
        parse_context_pair("a=1").unwrap(),
    ];
    let context = collect_context(&pairs).unwrap();
    assert_eq!(context.get("a").map(String::as_str), Some("1"));
    assert_eq!(context.len(), 2);
}

#[test]
fn policy_parses_patterns_and_operations() {
    let rule = parse_policy("patient-*, billing:generate,decrypt").unwrap();
    assert_eq!(rule.keys, vec!["patient-*", "billing"]);
    assert_eq!(
        rule.operations,
        vec![Operation::Generate, Operation::Decrypt]
    );
}

#[test]
fn policy_without_colon_is_usage_error() {
    let err = usage_error(&["token", "create", "--ttl", "1h", "--policy", "patient-*"]);
    assert!(err.contains("'patient-*'"), "{err}");
    assert!(err.contains("missing ':'"), "{err}");
}

#[test]
fn policy_with_unknown_operation_names_it() {
    let err = usage_error(&[
        "token",
        "create",
        "--ttl",
        "1h",
        "--policy",
        "k:generate,delete",
    ]);
    assert!(err.contains("unknown operation 'delete'"), "{err}");
}

#[test]
fn policy_with_empty_pattern_is_rejected() {
    assert!(parse_policy(":decrypt").is_err());
    assert!(parse_policy("a,,b:decrypt").is_err());
    assert!(parse_policy("a:").is_err());
}

#[test]
fn token_create_requires_policy() {
    let err = parse(&["token", "create", "--ttl", "1h"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
}

#[test]
fn ttl_accepts_humantime() {
    assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_ttl("365d"), Ok(Duration::from_secs(31_536_000)));
}

#[test]
fn ttl_rejects_out_of_range() {
    assert!(parse_ttl("0s").is_err());
    assert!(parse_ttl("500ms").is_err());
    assert!(parse_ttl("1y").unwrap_err().contains("365.25"));
    assert!(parse_ttl("soon").is_err());
}

#[test]
fn token_create_parses_repeated_policies() {
    let cli = parse(&[
        "token",
        "create",
        "--policy",
        "a:decrypt",
        "--policy",
        "b*:generate",
        "--ttl",
        "90m",
        "--display-name",
        "billing",
    ])
    .unwrap();
    let Command::Token(TokenCommand::Create {
        policy,
        ttl,
        display_name,
    }) = cli.command
    else {
        panic!("parsed as another command");
    };
    assert_eq!(policy.len(), 2);
    assert_eq!(ttl, Duration::from_secs(5400));
    assert_eq!(display_name.as_deref(), Some("billing"));
}

#[test]
fn datakey_bytes_accepts_only_aes_lengths() {
    let cli = parse(&["datakey", "generate", "k", "--bytes", "16"]).unwrap();
    let Command::Datakey(DatakeyCommand::Generate { bytes, .. }) = cli.command else {
        panic!("parsed as another command");
    };
    assert_eq!(bytes, DataKeySize::Bytes16);

    let err = usage_error(&["datakey", "generate", "k", "--bytes", "20"]);
    assert!(err.contains("expected 16, 24 or 32"), "{err}");
}

#[test]
fn datakey_bytes_defaults_to_32() {
    let cli = parse(&["datakey", "generate", "k"]).unwrap();
    let Command::Datakey(DatakeyCommand::Generate {
        bytes,
        no_plaintext,
        ..
    }) = cli.command
    else {
        panic!("parsed as another command");
    };
    assert_eq!(bytes, DataKeySize::Bytes32);
    assert!(!no_plaintext);
}

#[test]
fn global_flags_parse_after_subcommand() {
    let cli = parse(&["key", "list", "--format", "json", "--addr", "https://kms:1"]).unwrap();
    assert_eq!(cli.format, Format::Json);
    assert_eq!(cli.addr, "https://kms:1");
}

#[test]
fn unseal_reset_conflicts_with_share() {
    let err = parse(&["operator", "unseal", "--reset", "kms-share-v1-x"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
}

#[test]
fn unknown_format_is_usage_error() {
    let err = usage_error(&["operator", "status", "--format", "yaml"]);
    assert!(err.contains("yaml"), "{err}");
}

#[test]
fn cli_definition_is_consistent() {
    use clap::CommandFactory as _;
    Cli::command().debug_assert();
}

#[test]
fn segment_size_accepts_bytes_and_units() {
    assert_eq!(parse_segment_size("4096"), Ok(4096));
    assert_eq!(parse_segment_size("64KiB"), Ok(65_536));
    assert_eq!(parse_segment_size("16MiB"), Ok(16_777_216));
}

#[test]
fn segment_size_rejects_bad_values() {
    for text in [
        "4095",
        "0KiB",
        "17MiB",
        "4294967295MiB",
        "1.5MiB",
        "64kb",
        "64 KiB",
        "",
    ] {
        assert!(parse_segment_size(text).is_err(), "{text:?} was accepted");
    }
    assert_eq!(
        parse_segment_size("3KiB"),
        Err("3072 bytes is out of range: give 4KiB (4096) to 16MiB (16777216)".to_owned())
    );
}

#[test]
fn recipient_error_never_shows_secret_identity() {
    let secret = "AGE-SECRET-KEY-1GQ9778VQXMMJVE8SK7J6VT8UJ4HDQAJUVSFCWCM02D8GEWQ72PVQ2Y5J33";
    let err = parse_recipient(secret).unwrap_err();
    assert!(!err.contains("GQ9778"), "{err}");
    assert!(err.contains("AGE-SECRET-KEY-<redacted>"), "{err}");
}

#[test]
fn file_encrypt_requires_key() {
    let err = parse(&["file", "encrypt", "in", "out"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
}

#[test]
fn field_encrypt_needs_one_key_source() {
    let err = parse(&["field", "encrypt", "--key", "k", "--data-key", "AAAA", "v"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    let err = parse(&["field", "encrypt", "v"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
    assert!(parse(&["field", "encrypt", "--data-key", "AAAA", "v"]).is_ok());
}

#[test]
fn backup_decrypt_takes_short_flags() {
    let cli = parse(&["backup", "decrypt", "-i", "dump.kmsf", "-o", "dump.sql"]).unwrap();
    let Command::Backup(BackupCommand::Decrypt(args)) = cli.command else {
        panic!("parsed as another command");
    };
    assert_eq!(
        args.input.as_deref(),
        Some(std::path::Path::new("dump.kmsf"))
    );
    assert_eq!(
        args.output.as_deref(),
        Some(std::path::Path::new("dump.sql"))
    );
    assert_eq!(args.key.identity, None);
}
