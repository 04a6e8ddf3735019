//! `kmsctl field encrypt` and `field decrypt` against a real daemon: byte-exact round trips,
//! deterministic equality, and values rejected under another binding or context.

mod common;

use common::{KEY, Setup};

/// A synthetic value with a newline, a NUL and bytes that are not UTF-8, to show that stdin is
/// taken byte for byte.
const VALUE: &[u8] = b"synthetic note 0042\n\x00\xff\xfe end";

#[tokio::test]
async fn field_round_trips_value() {
    let setup = Setup::start().await;
    let args = [
        "field",
        "encrypt",
        "--key",
        KEY,
        "--context",
        "table=notes",
        "--field",
        "notes.body",
        "--record-id",
        "8d3e5a",
    ];
    let value = setup.kmsctl(&args, VALUE).text();
    assert!(value.starts_with("f1r."), "{value}");
    assert!(value.ends_with('\n'));

    let args = [
        "field",
        "decrypt",
        "--context",
        "table=notes",
        "--field",
        "notes.body",
        "--record-id",
        "8d3e5a",
    ];
    let plaintext = setup.kmsctl(&args, value.as_bytes()).ok().stdout;
    assert_eq!(plaintext, VALUE);

    // Randomized: the same plaintext gives a new value every time.
    let again = setup
        .kmsctl(
            &[
                "field",
                "encrypt",
                "--key",
                KEY,
                "--context",
                "table=notes",
                "--field",
                "notes.body",
                "--record-id",
                "8d3e5a",
            ],
            VALUE,
        )
        .text();
    assert_ne!(again, value);

    // The value as an argument, and the default field name.
    let value = setup
        .kmsctl(&["field", "encrypt", "--key", KEY, "synthetic-42"], b"")
        .text();
    let plaintext = setup
        .kmsctl(&["field", "decrypt", value.trim()], b"")
        .ok()
        .stdout;
    assert_eq!(plaintext, b"synthetic-42");
}

#[tokio::test]
async fn field_json_output_names_key() {
    let setup = Setup::start().await;
    let args = [
        "--format", "json", "field", "encrypt", "--key", KEY, "--field", "f",
    ];
    let encrypted = setup.kmsctl(&args, b"abc").json();
    assert_eq!(encrypted["mode"], "randomized");
    assert_eq!(encrypted["key_name"], KEY);
    assert_eq!(encrypted["key_id"], setup.key_id());
    assert_eq!(encrypted["key_version"], 1);
    let value = encrypted["value"].as_str().expect("value");

    let args = [
        "--format", "json", "field", "decrypt", "--field", "f", value,
    ];
    let decrypted = setup.kmsctl(&args, b"").json();
    assert_eq!(
        decrypted,
        serde_json::json!({
            "plaintext": "YWJj",
            "key_name": KEY,
            "key_id": setup.key_id(),
            "key_version": 1,
        })
    );
}

#[tokio::test]
async fn field_deterministic_values_are_equal() {
    let setup = Setup::start().await;
    let generated = setup
        .kmsctl(
            &[
                "--format",
                "json",
                "datakey",
                "generate",
                KEY,
                "--context",
                "table=patients",
                "--no-plaintext",
            ],
            b"",
        )
        .json();
    let data_key = generated["ciphertext"]
        .as_str()
        .expect("ciphertext")
        .to_owned();

    let encrypt = |record_id: Option<&str>, plaintext: &[u8]| {
        let mut args = vec![
            "field",
            "encrypt",
            "--deterministic",
            "--data-key",
            &data_key,
            "--context",
            "table=patients",
            "--field",
            "patients.email",
        ];
        if let Some(record_id) = record_id {
            args.extend(["--record-id", record_id]);
        }
        setup.kmsctl(&args, plaintext).text()
    };
    let first = encrypt(None, b"ada@example.org");
    let second = encrypt(None, b"ada@example.org");
    assert!(first.starts_with("f1d."), "{first}");
    assert_eq!(first, second, "deterministic values differ");
    assert_ne!(encrypt(None, b"bob@example.org"), first);
    assert_ne!(encrypt(Some("row-1"), b"ada@example.org"), first);
    assert_eq!(
        encrypt(Some("row-1"), b"ada@example.org"),
        encrypt(Some("row-1"), b"ada@example.org")
    );

    let args = [
        "field",
        "decrypt",
        "--context",
        "table=patients",
        "--field",
        "patients.email",
    ];
    let plaintext = setup.kmsctl(&args, first.as_bytes()).ok().stdout;
    assert_eq!(plaintext, b"ada@example.org");
}

#[tokio::test]
async fn field_decrypt_rejects_wrong_binding() {
    let setup = Setup::start().await;
    let args = [
        "field",
        "encrypt",
        "--key",
        KEY,
        "--context",
        "table=notes",
        "--field",
        "notes.body",
        "--record-id",
        "r1",
    ];
    let value = setup.kmsctl(&args, VALUE).text();

    let decrypt = |extra: &[&str]| {
        let mut args = vec!["field", "decrypt"];
        args.extend_from_slice(extra);
        setup.kmsctl(&args, value.as_bytes())
    };
    let failed_authentication = |with: &str| {
        format!(
            "error: value failed authentication for field \"{}\" ({with}): it was modified, or \
             it was encrypted for another field name, record id or data key\nhint: pass the \
             --field and --record-id that were given at encryption\n",
            "notes.body"
        )
    };
    let run = decrypt(&[
        "--context",
        "table=notes",
        "--field",
        "notes.body",
        "--record-id",
        "r2",
    ]);
    run.fails_with(1, &failed_authentication("with a record id"));
    let run = decrypt(&["--context", "table=notes", "--field", "notes.body"]);
    run.fails_with(1, &failed_authentication("without a record id"));
    let run = decrypt(&[
        "--context",
        "table=notes",
        "--field",
        "notes.title",
        "--record-id",
        "r1",
    ]);
    assert_eq!(run.status, 1);
    assert!(run.stdout.is_empty());

    let run = decrypt(&[
        "--context",
        "table=other",
        "--field",
        "notes.body",
        "--record-id",
        "r1",
    ]);
    assert_eq!(run.status, 1);
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr
            .contains("(HTTP 400, code decryption_failed, request id "),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .ends_with("\nhint: pass the same --context pairs that were given at encryption\n"),
        "{}",
        run.stderr
    );

    // One changed character of the value.
    let mut altered = value.trim().to_owned().into_bytes();
    let last = altered.len() - 2;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).expect("ASCII");
    let args = [
        "field",
        "decrypt",
        "--context",
        "table=notes",
        "--field",
        "notes.body",
        "--record-id",
        "r1",
        &altered,
    ];
    let run = setup.kmsctl(&args, b"");
    run.fails_with(1, &failed_authentication("with a record id"));
}

#[tokio::test]
async fn field_usage_errors_exit_2() {
    let setup = Setup::start().await;
    let help = "\n\nFor more information, try '--help'.\n";
    let usage = "\n\nUsage: kmsctl [OPTIONS] <COMMAND>\n\nFor more information, try '--help'.\n";

    let run = setup.kmsctl(
        &["field", "encrypt", "--key", KEY, "--deterministic", "x"],
        b"",
    );
    run.fails_with(
        2,
        &format!(
            "error: --deterministic needs --data-key: values come out equal only under one data \
             key, and --key makes a new data key for every value; create a stored data key with \
             `kmsctl datakey generate NAME --no-plaintext` and pass its ciphertext with \
             --data-key{usage}"
        ),
    );
    let run = setup.kmsctl(&["field", "encrypt", "--key", KEY, "--field", "", "x"], b"");
    run.fails_with(
        2,
        &format!("error: a value is required for '--field <NAME>' but none was supplied{help}"),
    );
    let run = setup.kmsctl(&["field", "encrypt", "x"], b"");
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .starts_with("error: the following required arguments were not provided:"),
        "{}",
        run.stderr
    );

    let run = setup.kmsctl(&["field", "decrypt", "not-a-value"], b"");
    run.fails_with(
        1,
        "error: value is not an encrypted field value: expected it to start with \"f1r.\" or \
         \"f1d.\"\nhint: pass the value exactly as `kmsctl field encrypt` printed it\n",
    );
}
