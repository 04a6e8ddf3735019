//! `kmsctl` against a real daemon: the README quickstart, and snapshots of error output and
//! exit codes.

use std::process::Output;

use client_sdk::secrecy::{ExposeSecret, SecretString};
use kms_tests::{Daemon, base64, data_dir, run_with_input};
use serde_json::Value;

/// What one `kmsctl` run printed.
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Parses stdout as JSON after checking that the command succeeded.
    #[track_caller]
    fn json(&self) -> Value {
        assert_eq!(self.status, 0, "kmsctl failed: {}", self.stderr);
        serde_json::from_str(&self.stdout).expect("kmsctl printed JSON")
    }
}

/// Runs `kmsctl` with `args`, the token in `KMS_TOKEN` when given, and `stdin`.
fn kmsctl(daemon: &Daemon, token: Option<&str>, args: &[&str], stdin: &[u8]) -> Run {
    let mut command = daemon.kmsctl();
    command.args(args);
    if let Some(token) = token {
        command.env("KMS_TOKEN", token);
    }
    run_with_input(&mut command, stdin).into()
}

/// Replaces the parts of kmsctl output that change between runs: request ids (32 hex digits)
/// and the daemon address.
fn normalize(text: &str, daemon: &Daemon) -> String {
    let text = text.replace(daemon.addr(), "<addr>");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find("request id ") {
        let (before, after) = rest.split_at(start + "request id ".len());
        out.push_str(before);
        let id_len = after.bytes().take_while(u8::is_ascii_hexdigit).count();
        if id_len == 32 {
            out.push_str("<request-id>");
            rest = &after[32..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn readme_quickstart_works_through_kmsctl() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());

    let init = kmsctl(
        &daemon,
        None,
        &[
            "--format",
            "json",
            "operator",
            "init",
            "--shares",
            "5",
            "--threshold",
            "3",
        ],
        b"",
    );
    let output = init.json();
    assert!(
        init.stderr
            .starts_with("WARNING: the unseal shares and the root token are shown only this once."),
        "{}",
        init.stderr
    );
    let shares: Vec<SecretString> = output["shares"]
        .as_array()
        .expect("shares")
        .iter()
        .map(|s| SecretString::from(s.as_str().expect("share")))
        .collect();
    assert_eq!(shares.len(), 5);
    let root = output["root_token"]
        .as_str()
        .expect("root token")
        .to_owned();
    assert!(output["root_token_accessor"].is_string());

    // Three custodians each pipe one share into `operator unseal`.
    for (i, share) in shares[..3].iter().enumerate() {
        let line = format!("{}\n", share.expose_secret());
        let run = kmsctl(
            &daemon,
            None,
            &["--format", "json", "operator", "unseal"],
            line.as_bytes(),
        );
        let status = run.json();
        let done = i == 2;
        assert_eq!(status["sealed"], !done, "after share {}", i + 1);
        assert_eq!(status["progress"], if done { 0 } else { i + 1 });
    }
    let status = kmsctl(
        &daemon,
        None,
        &["--format", "json", "operator", "status"],
        b"",
    )
    .json();
    assert_eq!(status["initialized"], true);
    assert_eq!(status["sealed"], false);
    assert_eq!(status["threshold"], 3);

    let token = Some(root.as_str());
    let key = kmsctl(
        &daemon,
        token,
        &["--format", "json", "key", "create", "patient-records"],
        b"",
    )
    .json();
    assert_eq!(key["name"], "patient-records");
    assert_eq!(key["latest_version"], 1);

    let generated = kmsctl(
        &daemon,
        token,
        &[
            "--format",
            "json",
            "datakey",
            "generate",
            "patient-records",
            "--context",
            "tenant=clinic-7",
        ],
        b"",
    )
    .json();
    assert_eq!(generated["key_version"], 1);
    let data_key = generated["plaintext"]
        .as_str()
        .expect("plaintext")
        .to_owned();
    assert_eq!(data_key.len(), 44);
    let ciphertext = generated["ciphertext"]
        .as_str()
        .expect("ciphertext")
        .to_owned();
    assert_eq!(ciphertext.len(), 116);

    let decrypted = kmsctl(
        &daemon,
        token,
        &[
            "--format",
            "json",
            "datakey",
            "decrypt",
            "--context",
            "tenant=clinic-7",
            &ciphertext,
        ],
        b"",
    )
    .json();
    assert!(
        decrypted["plaintext"] == data_key.as_str(),
        "decrypt returned another data key"
    );
    assert_eq!(decrypted["key_version"], 1);

    let rotated = kmsctl(
        &daemon,
        token,
        &["--format", "json", "key", "rotate", "patient-records"],
        b"",
    )
    .json();
    assert_eq!(rotated["latest_version"], 2);

    let rewrapped = kmsctl(
        &daemon,
        token,
        &[
            "--format",
            "json",
            "rewrap",
            "--context",
            "tenant=clinic-7",
            &ciphertext,
        ],
        b"",
    )
    .json();
    assert_eq!(rewrapped["key_version"], 2);
    let new_ciphertext = rewrapped["ciphertext"]
        .as_str()
        .expect("ciphertext")
        .to_owned();
    assert_ne!(new_ciphertext, ciphertext);

    // Text output of decrypt is the data key alone; the ciphertext comes from stdin.
    let run = kmsctl(
        &daemon,
        token,
        &["datakey", "decrypt", "--context", "tenant=clinic-7", "-"],
        format!("{new_ciphertext}\n").as_bytes(),
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stdout == format!("{data_key}\n"),
        "rewrap changed the data key"
    );
    assert_eq!(run.stderr, "");
}

#[tokio::test]
async fn kmsctl_payload_round_trips_raw_bytes() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init_unsealed().await;
    let token = Some(init.root_token.expose_secret());
    kmsctl(&daemon, token, &["key", "create", "notes"], b"");

    let payload: Vec<u8> = (0..=255u8).rev().chain(0..=255).collect();
    let run = kmsctl(
        &daemon,
        token,
        &["encrypt", "notes", "--context", "a=b=c"],
        &payload,
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    let ciphertext = run.stdout.trim().to_owned();
    assert_eq!(
        ciphertext.len(),
        base64(&vec![0u8; 38 + payload.len() + 16]).len()
    );

    let mut command = daemon.kmsctl();
    command
        .args(["decrypt", "--context", "a=b=c"])
        .env("KMS_TOKEN", init.root_token.expose_secret());
    let output = run_with_input(&mut command, ciphertext.as_bytes());
    assert!(output.status.success());
    assert!(output.stdout == payload, "the payload did not round-trip");

    let too_long = vec![b'x'; 4097];
    let run = kmsctl(&daemon, token, &["encrypt", "notes"], &too_long);
    assert_eq!(run.status, 1);
    assert_eq!(
        run.stderr,
        "error: stdin is longer than 4096 bytes\nhint: encrypt larger data locally with a data \
         key from `kmsctl datakey generate`\n"
    );
}

#[tokio::test]
async fn seal_and_unseal_reset_through_kmsctl() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init_unsealed().await;
    let token = Some(init.root_token.expose_secret());

    let run = kmsctl(&daemon, token, &["operator", "seal"], b"");
    assert_eq!(
        (run.status, run.stdout.as_str()),
        (0, "sealed\n"),
        "{}",
        run.stderr
    );
    let run = kmsctl(&daemon, token, &["key", "list"], b"");
    assert_eq!(run.status, 1);
    assert_eq!(
        normalize(&run.stderr, &daemon),
        "error: the daemon is sealed: unseal it with `kmsctl operator unseal` (HTTP 503, code \
         sealed, request id <request-id>)\nhint: run `kmsctl operator unseal` once per share; \
         `operator status` shows progress\n"
    );

    for (share, expected) in init.shares[..2].iter().zip(["1 of 3\n", "2 of 3\n"]) {
        let line = format!("{}\n", share.expose_secret());
        let run = kmsctl(&daemon, None, &["operator", "unseal"], line.as_bytes());
        assert_eq!(
            (run.status, run.stdout.as_str()),
            (0, expected),
            "{}",
            run.stderr
        );
    }
    let run = kmsctl(&daemon, None, &["operator", "unseal", "--reset"], b"");
    assert_eq!(
        (run.status, run.stdout.as_str()),
        (0, "0 of 3\n"),
        "{}",
        run.stderr
    );
    let line = format!("{}\n", init.shares[2].expose_secret());
    let run = kmsctl(&daemon, None, &["operator", "unseal"], line.as_bytes());
    assert_eq!(run.stdout, "1 of 3\n", "the reset kept earlier shares");
}

#[tokio::test]
async fn token_create_and_lookup_through_kmsctl() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init_unsealed().await;
    let root = Some(init.root_token.expose_secret());
    kmsctl(&daemon, root, &["key", "create", "patient-records"], b"");

    let args = [
        "--format",
        "json",
        "token",
        "create",
        "--policy",
        "patient-*:generate,decrypt",
        "--ttl",
        "24h",
        "--display-name",
        "billing",
    ];
    let run = kmsctl(&daemon, root, &args, b"");
    let created = run.json();
    assert!(
        run.stderr
            .starts_with("WARNING: the token is shown only this once.")
    );
    let token = created["token"].as_str().expect("token").to_owned();
    let accessor = created["accessor"].as_str().expect("accessor").to_owned();
    assert_eq!(created["display_name"], "billing");
    assert_eq!(created["root"], false);

    let me = kmsctl(
        &daemon,
        Some(&token),
        &["--format", "json", "token", "lookup"],
        b"",
    )
    .json();
    assert_eq!(me["accessor"], accessor.as_str());
    assert_eq!(
        me["policy"],
        serde_json::json!([{"keys": ["patient-*"], "operations": ["generate", "decrypt"]}])
    );
    let run = kmsctl(
        &daemon,
        Some(&token),
        &["datakey", "generate", "patient-records"],
        b"",
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    let run = kmsctl(
        &daemon,
        Some(&token),
        &["key", "create", "patient-new"],
        b"",
    );
    assert_eq!(run.status, 1);
    assert!(
        run.stderr.contains("code permission_denied"),
        "{}",
        run.stderr
    );

    let run = kmsctl(&daemon, root, &["token", "revoke", &accessor], b"");
    assert_eq!(run.status, 0, "{}", run.stderr);
    let run = kmsctl(&daemon, Some(&token), &["token", "lookup"], b"");
    assert_eq!(run.status, 1);
    assert!(
        run.stderr.contains("code unauthenticated"),
        "{}",
        run.stderr
    );
}

/// One recorded `kmsctl` invocation: arguments, stdin, and the exact exit status, stdout and
/// stderr after [`normalize`].
struct Case {
    name: &'static str,
    args: Vec<String>,
    token: Option<String>,
    stdin: String,
    status: i32,
    stdout: &'static str,
    stderr: String,
}

fn case(name: &'static str, args: &[&str], status: i32, stderr: &str) -> Case {
    Case {
        name,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        token: None,
        stdin: String::new(),
        status,
        stdout: "",
        stderr: stderr.to_owned(),
    }
}

/// Error output of operations that reach the daemon: exit status 1, an `error:` line naming
/// the problem and, where there is one, a `hint:` line.
#[tokio::test]
async fn operation_errors_exit_1_with_message() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let init = daemon.init(3, 2).await;
    let root = init.root_token.expose_secret().to_owned();

    // One share in, so that the mistyped share below meets a sealed daemon.
    daemon.unseal(&init.shares[..1]).await;
    let typo = init.shares[1]
        .expose_secret()
        .replacen("kms-share-v1-", "kms-share-v1-a", 1);
    let mut cases = vec![Case {
        token: None,
        stdin: format!("{typo}\n"),
        ..case(
            "mistyped share",
            &["operator", "unseal"],
            1,
            "error: share rejected: share text has 75 code characters after the prefix, expected \
             74; check for missing or extra characters (HTTP 400, code invalid_share, request id \
             <request-id>)\nhint: check the share for typos; it starts with kms-share-\n",
        )
    }];
    cases.push(Case {
        stdin: "\n".to_owned(),
        ..case(
            "empty share",
            &["operator", "unseal"],
            1,
            "error: the share is empty\nhint: type one share at the prompt, or pipe it as one line \
             on stdin\n",
        )
    });
    cases.push(case(
        "second init",
        &["operator", "init", "--shares", "3", "--threshold", "2"],
        1,
        "error: the daemon is already initialized: unseal it with the shares from the first init \
         (HTTP 409, code already_initialized, request id <request-id>)\n",
    ));
    run_cases(&daemon, &cases);
    daemon.unseal(&init.shares[1..2]).await;

    let client = daemon.client(Some(&init.root_token));
    client
        .create_key("patient-records")
        .await
        .expect("create key");
    let context = client_sdk::Context::from([("tenant".to_owned(), "clinic-7".to_owned())]);
    let blob = client
        .generate_data_key(
            "patient-records",
            client_sdk::DataKeySize::Bytes32,
            &context,
            false,
        )
        .await
        .expect("generate");
    let blob = base64(&blob.ciphertext);

    let with_root = |case: Case| Case {
        token: Some(root.clone()),
        ..case
    };
    let cases = vec![
        with_root(case(
            "unknown key",
            &["key", "show", "missing"],
            1,
            "error: key \"missing\" not found: list keys with `kmsctl key list` (HTTP 404, code \
             key_not_found, request id <request-id>)\nhint: `kmsctl key list` shows the keys that \
             your token may describe\n",
        )),
        with_root(case(
            "existing key",
            &["key", "create", "patient-records"],
            1,
            "error: key \"patient-records\" already exists: choose another name or rotate the \
             existing key (HTTP 409, code key_exists, request id <request-id>)\nhint: choose \
             another name; `kmsctl key show NAME` shows the existing key\n",
        )),
        with_root(case(
            "wrong context",
            &["datakey", "decrypt", "--context", "tenant=clinic-8", &blob],
            1,
            "error: decryption failed: the ciphertext was altered, or the encryption context \
             differs from the one given at encryption (HTTP 400, code decryption_failed, request \
             id <request-id>)\nhint: pass the same --context pairs that were given at \
             encryption\n",
        )),
        with_root(case(
            "not base64",
            &["decrypt", "not-base64!"],
            1,
            "error: the CIPHERTEXT argument is not valid base64: Invalid symbol 45, offset 3.\n\
             hint: pass the ciphertext exactly as kmsctl printed it\n",
        )),
        with_root(case(
            "not a blob",
            &["decrypt", "aGVsbG8gd29ybGQ="],
            1,
            "error: invalid ciphertext: ciphertext is 11 bytes, shorter than the minimum of 54 \
             (HTTP 400, code invalid_ciphertext, request id <request-id>)\nhint: pass the \
             ciphertext exactly as kmsctl printed it\n",
        )),
        case(
            "no token",
            &["key", "list"],
            1,
            "error: GET /v1/keys needs a token, and none is set\nhint: set KMS_TOKEN to your \
             token (--token works too, but shows in ps)\n",
        ),
        Case {
            token: Some("kmst_unknown".to_owned()),
            ..case(
                "unknown token",
                &["key", "list"],
                1,
                "error: unknown token: check KMS_TOKEN (HTTP 401, code unauthenticated, request \
                 id <request-id>)\nhint: set KMS_TOKEN to a valid token; an admin can issue a new \
                 one\n",
            )
        },
        with_root(case(
            "unknown accessor",
            &["token", "lookup", "000000000000000000000000"],
            1,
            "error: no token has accessor \"000000000000000000000000\" (HTTP 404, code \
             token_not_found, request id <request-id>)\nhint: check the accessor; `kmsctl token \
             lookup` shows your own\n",
        )),
    ];
    run_cases(&daemon, &cases);
}

fn run_cases(daemon: &Daemon, cases: &[Case]) {
    let mut failures = Vec::new();
    for case in cases {
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let run = kmsctl(daemon, case.token.as_deref(), &args, case.stdin.as_bytes());
        let found = (
            run.status,
            run.stdout.as_str(),
            normalize(&run.stderr, daemon),
        );
        let expected = (case.status, case.stdout, case.stderr.clone());
        if found != expected {
            // stdout is shown by length only: a case that wrongly succeeds may print a key.
            failures.push(format!(
                "{}: kmsctl {}\n  expected status {}, {} bytes of stdout, stderr {:?}\n  found    \
                 status {}, {} bytes of stdout, stderr {:?}",
                case.name,
                args.join(" "),
                expected.0,
                expected.1.len(),
                expected.2,
                found.0,
                found.1.len(),
                found.2
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Usage errors never reach the daemon: exit status 2 and clap's `error:` line.
#[tokio::test]
async fn usage_errors_exit_2() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let help = "\n\nFor more information, try '--help'.\n";
    let usage = "\n\nUsage: kmsctl [OPTIONS] <COMMAND>\n\nFor more information, try '--help'.\n";

    let cases = [
        case(
            "data key size",
            &["datakey", "generate", "k", "--bytes", "20"],
            2,
            &format!(
                "error: invalid value '20' for '--bytes <BYTES>': expected 16, 24 or 32{help}"
            ),
        ),
        case(
            "context without =",
            &["datakey", "generate", "k", "--context", "tenant"],
            2,
            &format!(
                "error: invalid value 'tenant' for '--context <KEY=VALUE>': missing '=': write \
                 the context pair as KEY=VALUE{help}"
            ),
        ),
        case(
            "context key twice",
            &[
                "datakey",
                "generate",
                "k",
                "--context",
                "a=1",
                "--context",
                "a=2",
            ],
            2,
            &format!(
                "error: context key 'a' is given more than once: give each --context key \
                 once{usage}"
            ),
        ),
        case(
            "policy without colon",
            &["token", "create", "--policy", "x", "--ttl", "1h"],
            2,
            &format!(
                "error: invalid value 'x' for '--policy <RULE>': missing ':': write the rule as \
                 PATTERNS:OPERATIONS, such as 'patient-*:generate,decrypt'{help}"
            ),
        ),
        case(
            "unknown operation",
            &["token", "create", "--policy", "k:delete", "--ttl", "1h"],
            2,
            &format!(
                "error: invalid value 'k:delete' for '--policy <RULE>': unknown operation \
                 'delete': expected generate, encrypt, decrypt, rewrap, describe or manage{help}"
            ),
        ),
        case(
            "ttl over a year",
            &["token", "create", "--policy", "k:describe", "--ttl", "366d"],
            2,
            &format!(
                "error: invalid value '366d' for '--ttl <TTL>': longer than 365 days, the \
                 maximum (note that 1y means 365.25 days): use 365d or less{help}"
            ),
        ),
        case(
            "unknown flag",
            &["--bogus"],
            2,
            &format!("error: unexpected argument '--bogus' found{usage}"),
        ),
        case(
            "share count out of range",
            &["operator", "init", "--shares", "256", "--threshold", "3"],
            2,
            &format!(
                "error: invalid value '256' for '--shares <SHARES>': 256 is not in 0..=255{help}"
            ),
        ),
    ];
    run_cases(&daemon, &cases);

    // Missing subcommands print clap's list of subcommands; only the first line is ours to pin.
    for args in [
        &["key"][..],
        &["operator"],
        &["token", "create", "--ttl", "1h"],
    ] {
        let run = kmsctl(&daemon, None, args, b"");
        assert_eq!(run.status, 2, "kmsctl {}", args.join(" "));
        assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
        assert_eq!(run.stdout, "");
    }

    // None of the above reached the daemon.
    assert_eq!(daemon.audit_records().len(), 0);
}

#[tokio::test]
async fn kmsctl_init_needs_single_share_flag() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());

    let run = kmsctl(
        &daemon,
        None,
        &["operator", "init", "--shares", "3", "--threshold", "1"],
        b"",
    );
    assert_eq!(run.status, 1);
    assert!(
        run.stderr
            .starts_with("error: invalid request: threshold: 1 lets any single share")
    );
    assert!(
        run.stderr.contains("--allow-single-share"),
        "{}",
        run.stderr
    );

    let args = [
        "--format",
        "json",
        "operator",
        "init",
        "--shares",
        "3",
        "--threshold",
        "1",
    ];
    let run = kmsctl(
        &daemon,
        None,
        &[&args[..], &["--allow-single-share"]].concat(),
        b"",
    );
    assert_eq!(run.json()["shares"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn transport_errors_exit_1_with_hint() {
    let dir = data_dir();
    let daemon = Daemon::start(dir.path());
    let other_dir = data_dir();
    let other = Daemon::start(other_dir.path());

    // A CA that did not sign this daemon's certificate.
    let mut command = daemon.kmsctl();
    command
        .env("KMS_CACERT", other.ca())
        .args(["operator", "status"]);
    let run = Run::from(run_with_input(&mut command, b""));
    assert_eq!(run.status, 1);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stderr);
    assert!(
        lines[0].starts_with(&format!(
            "error: TLS handshake with {} failed",
            daemon.addr()
        )),
        "{}",
        run.stderr
    );
    assert_eq!(
        lines[1],
        "hint: set --cacert (KMS_CACERT) to the PEM file of the CA that signed the kmsd \
         certificate"
    );

    // Nothing listens on port 1 of the loopback address.
    let mut command = daemon.kmsctl();
    command.args(["--addr", "https://127.0.0.1:1", "operator", "status"]);
    let run = Run::from(run_with_input(&mut command, b""));
    assert_eq!(run.status, 1);
    assert!(
        run.stderr
            .starts_with("error: cannot send GET /v1/sys/status to https://127.0.0.1:1"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.ends_with(
            "\nhint: check --addr (KMS_ADDR) and that kmsd is running and reachable from this \
             host\n"
        ),
        "{}",
        run.stderr
    );

    let mut command = daemon.kmsctl();
    command.args(["--addr", "http://127.0.0.1:1", "operator", "status"]);
    let run = Run::from(run_with_input(&mut command, b""));
    assert_eq!(run.status, 1);
    assert!(
        run.stderr.starts_with("error: invalid daemon address"),
        "{}",
        run.stderr
    );
}
