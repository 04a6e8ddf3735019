//! `kmsctl backup` and `kmsctl recovery` against a real daemon: streams through pipes, verify,
//! inspect, rewrap after a key rotation, restore with a recovery key and no daemon, and a
//! PostgreSQL dump encrypted and restored through kmsctl.

mod common;

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};

use client_sdk::stream::{self, FileKey, KeySlot};
use common::{
    KEY, Run, Setup, folder_names, header_len, offline_kmsctl, plaintext, run_with_input,
};
use kms_tests::postgres::Postgres;
use serde_json::json;

const SEGMENT: usize = 4096;

#[tokio::test]
async fn backup_round_trips_through_pipes() {
    let setup = Setup::start().await;
    let segment = SEGMENT.to_string();
    let sizes = [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * 1024 * 1024 + 5];
    for len in sizes {
        let data = plaintext(len);
        let args = [
            "backup",
            "encrypt",
            "--key",
            KEY,
            "--context",
            "db=clinic",
            "--segment-size",
            &segment,
        ];
        // Silent on stderr when piped: Run::ok checks that stderr is empty.
        let sealed = setup.kmsctl(&args, &data).ok().stdout;
        let segments = len.div_ceil(SEGMENT).max(1);
        assert_eq!(sealed.len(), header_len(&sealed) + len + 16 * segments);

        let restored = setup.kmsctl(&["backup", "decrypt"], &sealed).ok().stdout;
        assert!(restored == data, "{len} bytes did not round-trip");
    }
}

#[tokio::test]
async fn backup_round_trips_through_files() {
    let setup = Setup::start().await;
    let data = plaintext(2 * 1024 * 1024 + 17);
    let encrypted = setup.path("dump.kmsf");
    let restored = setup.path("dump.sql");

    let encrypted_arg = encrypted.to_str().expect("UTF-8 path");
    let args = ["backup", "encrypt", "--key", KEY, "-o", encrypted_arg];
    let run = setup.kmsctl(&args, &data).ok();
    assert!(run.stdout.is_empty());

    let args = ["backup", "decrypt", "-i", encrypted_arg, "-o"];
    let run = setup.kmsctl_paths(&args, &[&restored], b"").ok();
    assert!(run.stdout.is_empty());
    assert!(fs::read(&restored).expect("read restored") == data);
    let mode = fs::metadata(&restored)
        .expect("stat restored")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "decrypted output is private");

    // The encrypted file from stdin decrypts the same as from -i.
    let sealed = fs::read(&encrypted).expect("read encrypted");
    let again = setup.kmsctl(&["backup", "decrypt"], &sealed).ok().stdout;
    assert!(again == data);
}

#[tokio::test]
async fn backup_decrypt_rejects_tampered_and_truncated() {
    let setup = Setup::start().await;
    let data = plaintext(5 * SEGMENT);
    let args = ["backup", "encrypt", "--key", KEY, "--segment-size", "4KiB"];
    let sealed = setup.kmsctl(&args, &data).ok().stdout;
    let start = header_len(&sealed);

    let mut tampered = sealed.clone();
    tampered[start + SEGMENT + 16 + 9] ^= 0x04;
    let truncated = &sealed[..start + 4 * (SEGMENT + 16)];
    let cases: [(&str, &[u8], &str); 2] = [
        (
            "tampered",
            &tampered,
            "error: segment 1 failed authentication: the file was altered, damaged, cut inside a \
             segment or has bytes appended; restore it from an intact copy\n",
        ),
        (
            "truncated",
            truncated,
            "error: the file is truncated: it ends after 4 complete segments without a last \
             segment; restore it from an intact copy\n",
        ),
    ];
    for (name, bytes, expected) in cases {
        // To stdout: the segments before the damage have been written, and the status is 1.
        let run = setup.kmsctl(&["backup", "decrypt"], bytes);
        assert_eq!((run.status, run.stderr.as_str()), (1, expected), "{name}");
        assert!(run.stdout.len() < data.len(), "{name}: no complete output");

        // To a file: nothing is left behind.
        let before = folder_names(setup.work.path());
        let output = setup.path(name);
        let run = setup.kmsctl_paths(&["backup", "decrypt", "-o"], &[&output], bytes);
        run.fails_with(1, expected);
        assert_eq!(folder_names(setup.work.path()), before, "{name}");

        let run = setup.kmsctl(&["backup", "verify"], bytes);
        run.fails_with(1, expected);
    }
}

#[tokio::test]
async fn backup_verify_checks_every_segment() {
    let setup = Setup::start().await;
    let data = plaintext(3 * SEGMENT + 1);
    let args = ["backup", "encrypt", "--key", KEY, "--segment-size", "4KiB"];
    let sealed = setup.kmsctl(&args, &data).ok().stdout;

    let text = setup.kmsctl(&["backup", "verify"], &sealed).text();
    assert_eq!(
        text,
        format!(
            "verified stdin: {} bytes of plaintext in 4 segments, every tag checked\n",
            data.len()
        )
    );
    let verified = setup
        .kmsctl(&["--format", "json", "backup", "verify"], &sealed)
        .json();
    assert_eq!(
        verified,
        json!({"input": "stdin", "plaintext_len": data.len(), "segments": 4})
    );
}

#[tokio::test]
async fn backup_inspect_shows_header_fields() {
    let setup = Setup::start().await;
    let identity = setup.path("recovery.txt");
    let recipient = setup.recovery_keygen(&identity);
    let data = plaintext(10_000);
    let encrypted = setup.path("inspect.kmsf");
    let args = [
        "backup",
        "encrypt",
        "--key",
        KEY,
        "--context",
        "tenant=clinic-7",
        "--context",
        "db=lab",
        "--recovery-recipient",
        &recipient,
        "--segment-size",
        "4KiB",
        "-o",
    ];
    setup.kmsctl_paths(&args, &[&encrypted], &data).ok();
    let sealed = fs::read(&encrypted).expect("read encrypted");

    let args = ["--format", "json", "backup", "inspect", "-i"];
    let described = setup.kmsctl_paths(&args, &[&encrypted], b"").json();
    let expected = json!({
        "input": format!("file {}", encrypted.display()),
        "version": 1,
        "algorithm": "AES-256-GCM, HKDF-SHA256",
        "algorithm_id": 1,
        "segment_size": 4096,
        "header_len": header_len(&sealed),
        "slot_area_len": 2048,
        "slot_generation": 1,
        "context": {"db": "lab", "tenant": "clinic-7"},
        "slots": [
            {"kind": "kms", "key_id": setup.key_id(), "key_version": 1},
            {"kind": "recovery", "recipient": recipient},
        ],
        "encrypted_len": sealed.len(),
        "segments": 3,
        "plaintext_len": data.len(),
    });
    assert_eq!(described, expected);

    // From stdin the header is the same, and the lengths are unknown.
    let args = ["--format", "json", "backup", "inspect"];
    let described = setup.kmsctl(&args, &sealed).json();
    let mut expected = expected;
    expected["input"] = json!("stdin");
    expected["encrypted_len"] = json!(null);
    expected["segments"] = json!(null);
    expected["plaintext_len"] = json!(null);
    assert_eq!(described, expected);

    // Inspect needs no daemon and prints no secret.
    let mut command = offline_kmsctl();
    command.args(["backup", "inspect", "-i"]).arg(&encrypted);
    let run: Run = run_with_input(&mut command, b"").into();
    let text = run.text();
    assert!(
        text.contains("Context           db=lab, tenant=clinic-7\n"),
        "{text}"
    );
    assert!(text.contains(&format!(
        "Key slot          recovery, recipient {recipient}\n"
    )));
    assert!(!text.contains("AGE-SECRET-KEY"));
}

#[tokio::test]
async fn backup_rewrap_uses_latest_version() {
    let setup = Setup::start().await;
    let data = plaintext(3 * SEGMENT + 99);
    let encrypted = setup.path("rotate.kmsf");
    let args = [
        "backup",
        "encrypt",
        "--key",
        KEY,
        "--context",
        "tenant=clinic-7",
        "--segment-size",
        "4KiB",
        "-o",
    ];
    setup.kmsctl_paths(&args, &[&encrypted], &data).ok();
    let before = fs::read(&encrypted).expect("read encrypted");
    let header_before = stream::inspect_file(&encrypted).expect("inspect").header;
    let Some(KeySlot::Kms(old_slot)) = header_before.slots().first().cloned() else {
        panic!("the first slot is not a kmsd slot");
    };

    setup.kmsctl(&["key", "rotate", KEY], b"").ok();
    let text = setup
        .kmsctl_paths(&["backup", "rewrap"], &[&encrypted], b"")
        .text();
    let key_id = setup.key_id();
    assert_eq!(
        text,
        format!(
            "rewrapped {}: key {key_id} version 1 -> 2\n",
            encrypted.display()
        )
    );

    let after = fs::read(&encrypted).expect("read rewrapped");
    let start = header_len(&before);
    assert_eq!(after.len(), before.len());
    assert!(after[start..] == before[start..], "the body changed");
    let authenticated = 57 + 4 + (4 + 6 + 4 + 8) + 32;
    assert!(
        after[..authenticated] == before[..authenticated],
        "the authenticated header or the commitment changed"
    );
    let old_blob = old_slot.blob();
    assert!(
        !after
            .windows(old_blob.len())
            .any(|window| window == old_blob),
        "the old wrapped key is still in the file"
    );

    let header_after = stream::inspect_file(&encrypted).expect("inspect").header;
    assert_eq!(header_after.slot_generation(), 2);
    let new_slot = header_after.kms_slot().expect("kmsd slot");
    assert_eq!(
        (new_slot.key_id(), new_slot.key_version()),
        (key_id.as_str(), 2)
    );

    let args = ["backup", "decrypt", "-i"];
    let restored = setup.kmsctl_paths(&args, &[&encrypted], b"").ok().stdout;
    assert!(restored == data, "the rewrapped file did not decrypt");

    // A second rewrap finds the latest version and leaves the file alone.
    let args = ["--format", "json", "backup", "rewrap"];
    let summary = setup.kmsctl_paths(&args, &[&encrypted], b"").json();
    assert_eq!(
        summary,
        json!({
            "file": encrypted,
            "key_id": key_id,
            "previous_version": 2,
            "key_version": 2,
            "changed": false,
        })
    );
    assert!(fs::read(&encrypted).expect("read") == after);
}

#[tokio::test]
async fn recovery_key_restores_backup_without_daemon() {
    let setup = Setup::start().await;
    let identity = setup.path("recovery-identity.txt");
    let recipient = setup.recovery_keygen(&identity);
    assert!(recipient.starts_with("age1"), "{recipient}");
    let mode = fs::metadata(&identity)
        .expect("stat identity")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let identity_text = fs::read_to_string(&identity).expect("read identity");
    assert!(identity_text.contains(&format!("# public key: {recipient}\n")));

    // An existing identity file is never replaced.
    let run = setup.kmsctl_paths(&["recovery", "keygen", "-o"], &[&identity], b"");
    run.fails_with(
        1,
        &format!(
            "error: {} already exists\nhint: choose another path, or move the existing file \
             away first\n",
            identity.display()
        ),
    );
    assert_eq!(fs::read_to_string(&identity).expect("read"), identity_text);

    let data = plaintext(SEGMENT * 20 + 3);
    let encrypted = setup.path("offsite.kmsf");
    let args = [
        "backup",
        "encrypt",
        "--key",
        KEY,
        "--context",
        "site=offsite",
        "--recovery-recipient",
        &recipient,
        "-o",
    ];
    setup.kmsctl_paths(&args, &[&encrypted], &data).ok();

    let Setup { daemon, work, .. } = setup;
    assert!(daemon.stop(), "kmsd did not stop cleanly");

    // No KMS_ADDR or KMS_TOKEN, and a CA file that does not exist: none of them is needed.
    let restored = work.path().join("restored");
    let mut command = offline_kmsctl();
    command
        .env("KMS_CACERT", work.path().join("no-such-ca.pem"))
        .args(["backup", "decrypt", "--identity"])
        .arg(&identity)
        .arg("-i")
        .arg(&encrypted)
        .arg("-o")
        .arg(&restored);
    let run: Run = run_with_input(&mut command, b"").into();
    run.ok();
    assert!(fs::read(&restored).expect("read restored") == data);

    let mut command = offline_kmsctl();
    command
        .args(["backup", "verify", "--identity"])
        .arg(&identity)
        .arg("-i")
        .arg(&encrypted);
    let run: Run = run_with_input(&mut command, b"").into();
    run.ok();

    // With another identity the slot does not open, and the error names its recipient.
    let other = work.path().join("other-identity.txt");
    let mut command = offline_kmsctl();
    command.args(["recovery", "keygen", "-o"]).arg(&other);
    let run: Run = run_with_input(&mut command, b"").into();
    run.ok();
    let mut command = offline_kmsctl();
    command
        .args(["backup", "decrypt", "--identity"])
        .arg(&other)
        .arg("-i")
        .arg(&encrypted);
    let run: Run = run_with_input(&mut command, b"").into();
    run.fails_with(
        1,
        &format!(
            "error: none of the identities opens a recovery slot of this file; it was written \
             for {recipient}\nhint: leave out --identity to unwrap the kmsd key slot instead\n"
        ),
    );

    check_slot_opens_with_age(&encrypted, &identity, &work);
}

#[test]
fn recovery_keygen_writes_identity_to_pipe() {
    let mut command = offline_kmsctl();
    command.args(["recovery", "keygen"]);
    let run: Run = run_with_input(&mut command, b"").into();
    assert_eq!(run.status, 0, "{}", run.stderr);
    let identity = String::from_utf8(run.stdout).expect("UTF-8 identity file");
    let recipient = run
        .stderr
        .strip_prefix("Public key: ")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("unexpected stderr: {}", run.stderr));
    assert!(recipient.starts_with("age1"), "{recipient}");

    let lines: Vec<&str> = identity.lines().collect();
    assert_eq!(lines.len(), 3, "comment, public key and identity lines");
    assert!(lines[0].starts_with("# created: "), "{}", lines[0]);
    assert_eq!(lines[1], format!("# public key: {recipient}"));
    assert!(lines[2].starts_with("AGE-SECRET-KEY-1"));

    // The SDK reads the file back to the same public key.
    let parsed = stream::parse_identity_file(&identity).expect("valid identity file");
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].recipient().to_string(), recipient);
}

/// Cuts the recovery slot's age file out of the header and opens it with the `age` tool: its
/// plaintext must be the file key, which the header's commitment confirms.
fn check_slot_opens_with_age(
    encrypted: &std::path::Path,
    identity: &std::path::Path,
    work: &tempfile::TempDir,
) {
    let header = stream::inspect_file(encrypted).expect("inspect").header;
    let recovery = header
        .slots()
        .iter()
        .find_map(|slot| match slot {
            KeySlot::Recovery(recovery) => Some(recovery.clone()),
            _ => None,
        })
        .expect("a recovery slot");
    let slot_file = work.path().join("slot.age");
    fs::write(&slot_file, recovery.age_file()).expect("write slot");
    let output = Command::new("age")
        .arg("--decrypt")
        .arg("-i")
        .arg(identity)
        .arg(&slot_file)
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run age ({err}): run scripts/test.sh, which installs it")
        });
    assert!(
        output.status.success(),
        "age failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout.len(), FileKey::LEN);
    let key = FileKey::from_slice(&output.stdout).expect("32-byte key");
    header
        .check_key(&key)
        .expect("the key from age matches the file's commitment");
}

#[tokio::test]
async fn backup_usage_and_terminal_errors() {
    let setup = Setup::start().await;
    let help = "\n\nFor more information, try '--help'.\n";
    let run = setup.kmsctl(
        &[
            "backup",
            "encrypt",
            "--key",
            KEY,
            "--recovery-recipient",
            "age1notakey",
        ],
        b"",
    );
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .starts_with("error: invalid recovery recipient \"age1notakey\": "),
        "{}",
        run.stderr
    );
    assert!(run.stderr.ends_with(help), "{}", run.stderr);

    let identity = setup.path("missing-identity.txt");
    let run = setup.kmsctl_paths(&["backup", "decrypt", "--identity"], &[&identity], b"");
    run.fails_with(
        1,
        &format!(
            "error: cannot read the identity file {}: No such file or directory (os error 2)\n\
             hint: pass the identity file that `kmsctl recovery keygen` wrote\n",
            identity.display()
        ),
    );

    let run = setup.kmsctl(&["backup", "inspect"], b"not an encrypted file at all");
    run.fails_with(
        1,
        "error: not a KMS encrypted file: expected the magic bytes 4b4d5346 (\"KMSF\"), found \
         6e6f7420; check that the input is the encrypted file\nhint: pass a file \
         written by `kmsctl file encrypt` or `kmsctl backup encrypt`\n",
    );
}

/// Synthetic lab results: codes, numbers, timestamps, NULLs, text with newlines, tabs, quotes
/// and backslashes, and binary data, so that the dump exercises COPY escaping.
const SCHEMA_AND_ROWS: &str = "
CREATE TABLE lab_results (
    id integer PRIMARY KEY,
    sample_code text NOT NULL,
    analyte text NOT NULL,
    value numeric(10, 3),
    flagged boolean NOT NULL,
    taken_at timestamptz NOT NULL,
    notes text,
    raw bytea
);
INSERT INTO lab_results
SELECT g,
       'S-' || lpad(g::text, 6, '0'),
       (ARRAY['glucose', 'sodium', 'potassium', 'creatinine'])[1 + g % 4],
       round((g * 7.919) % 1000, 3),
       g % 13 = 0,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '17 minutes',
       CASE WHEN g % 5 = 0 THEN NULL
            ELSE 'line one' || E'\\n' || 'tab' || E'\\t' || 'quote '' backslash \\ ' || md5(g::text)
       END,
       decode(md5(g::text) || md5((g + 1)::text), 'hex')
FROM generate_series(1, 20000) AS g;
";

/// Row count and an MD5 of every row in id order.
const CHECKSUM: &str = "SELECT count(*) || ' ' || md5(string_agg(t::text, E'\\n' ORDER BY id)) \
                        FROM lab_results AS t";

#[tokio::test]
async fn postgres_dump_round_trips_through_kmsctl() {
    let setup = Setup::start().await;
    let postgres = Postgres::start();
    postgres.create_database("clinic_source");
    postgres.psql("clinic_source", SCHEMA_AND_ROWS);
    let source = postgres.psql("clinic_source", CHECKSUM);
    assert!(source.starts_with("20000 "), "{source}");

    // pg_dump | kmsctl backup encrypt --key backups > dump.sql.kmsf
    let encrypted = setup.path("dump.sql.kmsf");
    let mut dump = postgres
        .client("pg_dump")
        .args(["--no-owner", "--dbname", "clinic_source"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pg_dump");
    let dump_stdout = dump.stdout.take().expect("pg_dump stdout");
    let encrypt = setup
        .command()
        .args([
            "backup",
            "encrypt",
            "--key",
            KEY,
            "--context",
            "db=clinic_source",
        ])
        .stdin(Stdio::from(dump_stdout))
        .stdout(File::create(&encrypted).expect("create dump.sql.kmsf"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kmsctl backup encrypt");
    let encrypt = encrypt.wait_with_output().expect("wait for kmsctl");
    let dump = dump.wait_with_output().expect("wait for pg_dump");
    assert!(
        dump.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let encrypt: Run = encrypt.into();
    encrypt.ok();
    let sealed = fs::read(&encrypted).expect("read encrypted dump");
    assert!(sealed.starts_with(b"KMSF"));
    assert!(sealed.len() > 1024 * 1024, "the dump spans many segments");

    // kmsctl backup decrypt -i dump.sql.kmsf | psql clinic_restored
    postgres.create_database("clinic_restored");
    let mut decrypt = setup
        .command()
        .args(["backup", "decrypt", "-i"])
        .arg(&encrypted)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kmsctl backup decrypt");
    let plaintext_dump = decrypt.stdout.take().expect("kmsctl stdout");
    let restore = postgres
        .client("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "clinic_restored"])
        .stdin(Stdio::from(plaintext_dump))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start psql");
    let restore = restore.wait_with_output().expect("wait for psql");
    let decrypt: Run = decrypt.wait_with_output().expect("wait for kmsctl").into();
    decrypt.ok();
    assert!(
        restore.status.success(),
        "psql failed: {}\nserver log:\n{}",
        String::from_utf8_lossy(&restore.stderr),
        postgres.log()
    );

    let restored = postgres.psql("clinic_restored", CHECKSUM);
    assert_eq!(restored, source, "the restored rows differ");
}
