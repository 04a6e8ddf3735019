//! `kmsctl file encrypt` and `file decrypt` against a real daemon: round trips at the segment
//! boundaries, and tampered, truncated and wrongly bound files rejected with no output left.

mod common;

use std::fs;

use common::{KEY, Setup, folder_names, header_len, plaintext};

/// Segment size of the boundary cases, the smallest that the format allows.
const SEGMENT: usize = 4096;

#[tokio::test]
async fn file_round_trips_boundary_sizes() {
    let setup = Setup::start().await;
    let segment = SEGMENT.to_string();
    for len in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 7] {
        let input = setup.path(&format!("plain-{len}"));
        let encrypted = setup.path(&format!("plain-{len}.kmsf"));
        let output = setup.path(&format!("restored-{len}"));
        let data = plaintext(len);
        fs::write(&input, &data).expect("write plaintext");

        let args = ["file", "encrypt", "--key", KEY, "--segment-size", &segment];
        setup.kmsctl_paths(&args, &[&input, &encrypted], b"").ok();
        let sealed = fs::read(&encrypted).expect("read encrypted file");
        let segments = len.div_ceil(SEGMENT).max(1);
        assert_eq!(
            sealed.len(),
            header_len(&sealed) + len + 16 * segments,
            "{len} bytes: one tag per segment"
        );

        setup
            .kmsctl_paths(&["file", "decrypt"], &[&encrypted, &output], b"")
            .ok();
        let restored = fs::read(&output).expect("read decrypted file");
        assert!(restored == data, "{len} bytes did not round-trip");
    }
}

#[tokio::test]
async fn file_round_trips_multi_mib_file() {
    let setup = Setup::start().await;
    let input = setup.path("export.bin");
    let encrypted = setup.path("export.bin.kmsf");
    let output = setup.path("export.restored");
    let data = plaintext(5 * 1024 * 1024 + 333);
    fs::write(&input, &data).expect("write plaintext");

    let args = [
        "--format",
        "json",
        "file",
        "encrypt",
        "--key",
        KEY,
        "--context",
        "tenant=clinic-7",
    ];
    let summary = setup.kmsctl_paths(&args, &[&input, &encrypted], b"").json();
    assert_eq!(
        summary,
        serde_json::json!({
            "input": input,
            "output": encrypted,
            "plaintext_len": data.len(),
            "key_id": setup.key_id(),
            "key_version": 1,
            "segment_size": 65536,
        })
    );

    let args = ["--format", "json", "file", "decrypt"];
    let summary = setup
        .kmsctl_paths(&args, &[&encrypted, &output], b"")
        .json();
    assert_eq!(summary["plaintext_len"], data.len());
    let restored = fs::read(&output).expect("read decrypted file");
    assert!(restored == data, "the multi-MiB file did not round-trip");
}

/// Encrypts three and a half segments of synthetic data and returns the plaintext and the
/// encrypted bytes.
fn encrypt_sample(setup: &Setup, context: &str) -> (Vec<u8>, Vec<u8>) {
    let input = setup.path("sample");
    let encrypted = setup.path("sample.kmsf");
    let data = plaintext(3 * SEGMENT + SEGMENT / 2);
    fs::write(&input, &data).expect("write plaintext");
    let segment = SEGMENT.to_string();
    let args = [
        "file",
        "encrypt",
        "--key",
        KEY,
        "--context",
        context,
        "--segment-size",
        &segment,
    ];
    setup.kmsctl_paths(&args, &[&input, &encrypted], b"").ok();
    fs::remove_file(&input).expect("remove plaintext");
    (data, fs::read(&encrypted).expect("read encrypted file"))
}

/// Writes `bytes` as `name`, decrypts it into `out`, and returns the run; checks that the
/// failure left the folder as it was.
fn decrypt_altered(setup: &Setup, name: &str, bytes: &[u8], extra: &[&str]) -> common::Run {
    let altered = setup.path(name);
    fs::write(&altered, bytes).expect("write altered file");
    let before = folder_names(setup.work.path());
    let mut args = vec!["file", "decrypt"];
    args.extend_from_slice(extra);
    let run = setup.kmsctl_paths(&args, &[&altered, &setup.path("out")], b"");
    assert_eq!(
        folder_names(setup.work.path()),
        before,
        "a failed decrypt of {name} left a file behind"
    );
    run
}

#[tokio::test]
async fn file_decrypt_rejects_tampered_byte() {
    let setup = Setup::start().await;
    let (_, sealed) = encrypt_sample(&setup, "tenant=clinic-7");
    let start = header_len(&sealed);

    // One flipped bit in the ciphertext of segment 2.
    let mut tampered = sealed.clone();
    tampered[start + 2 * (SEGMENT + 16) + 100] ^= 0x01;
    let run = decrypt_altered(&setup, "tampered.kmsf", &tampered, &[]);
    run.fails_with(
        1,
        "error: segment 2 failed authentication: the file was altered, damaged, cut inside a \
         segment or has bytes appended; restore it from an intact copy\n",
    );

    // One flipped bit in the last tag.
    let mut tampered = sealed.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x80;
    let run = decrypt_altered(&setup, "tampered-tag.kmsf", &tampered, &[]);
    run.fails_with(
        1,
        "error: segment 3 failed authentication: the file was altered, damaged, cut inside a \
         segment or has bytes appended; restore it from an intact copy\n",
    );
}

#[tokio::test]
async fn file_decrypt_rejects_truncated_file() {
    let setup = Setup::start().await;
    let (_, sealed) = encrypt_sample(&setup, "tenant=clinic-7");
    let start = header_len(&sealed);

    // Cut after three whole segments: the last one is gone.
    let cut = &sealed[..start + 3 * (SEGMENT + 16)];
    let run = decrypt_altered(&setup, "cut-at-boundary.kmsf", cut, &[]);
    run.fails_with(
        1,
        "error: the file is truncated: it ends after 3 complete segments without a last \
         segment; restore it from an intact copy\n",
    );

    // Cut inside the last segment.
    let cut = &sealed[..sealed.len() - 100];
    let run = decrypt_altered(&setup, "cut-inside.kmsf", cut, &[]);
    run.fails_with(
        1,
        "error: segment 3 failed authentication: the file was altered, damaged, cut inside a \
         segment or has bytes appended; restore it from an intact copy\n",
    );

    // Cut inside the header.
    let run = decrypt_altered(&setup, "cut-header.kmsf", &sealed[..40], &[]);
    run.fails_with(
        1,
        "error: the input ends inside the file header: the file was truncated or is not a KMS \
         encrypted file\nhint: pass a file written by `kmsctl file encrypt` or `kmsctl backup \
         encrypt`\n",
    );
}

#[tokio::test]
async fn file_decrypt_rejects_wrong_context() {
    let setup = Setup::start().await;
    let (data, sealed) = encrypt_sample(&setup, "tenant=clinic-7");

    let run = decrypt_altered(
        &setup,
        "sample-copy.kmsf",
        &sealed,
        &["--context", "tenant=clinic-8"],
    );
    run.fails_with(
        1,
        "error: the encryption context differs from the one stored in the file header: pass the \
         context the file was written with (the header lists it), or the header was altered\n\
         hint: `kmsctl backup inspect -i FILE` shows the stored context; pass exactly those \
         pairs, or leave out --context\n",
    );

    // The stored context changed from clinic-7 to clinic-8: kmsd rejects the key slot.
    let position = sealed
        .windows(8)
        .position(|window| window == b"clinic-7")
        .expect("the context is stored in clear");
    let mut altered = sealed.clone();
    altered[position + 7] = b'8';
    let run = decrypt_altered(&setup, "altered-context.kmsf", &altered, &[]);
    assert_eq!(run.status, 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with(&format!(
            "error: kmsd could not unwrap the file key of file {}: decryption failed",
            setup.path("altered-context.kmsf").display()
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.ends_with(
            "\nhint: the stored context or the key slot was altered: decrypt with --identity if \
             the file has a recovery slot, or restore an intact copy\n"
        ),
        "{}",
        run.stderr
    );

    // The right context, given explicitly, decrypts.
    let encrypted = setup.path("sample.kmsf");
    let output = setup.path("restored");
    let args = ["file", "decrypt", "--context", "tenant=clinic-7"];
    setup.kmsctl_paths(&args, &[&encrypted, &output], b"").ok();
    assert!(fs::read(&output).expect("read output") == data);
}

#[tokio::test]
async fn file_decrypt_failure_keeps_existing_output() {
    let setup = Setup::start().await;
    let (_, sealed) = encrypt_sample(&setup, "tenant=clinic-7");
    let output = setup.path("out");
    fs::write(&output, b"earlier synthetic contents").expect("write earlier output");

    let mut tampered = sealed;
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let run = decrypt_altered(&setup, "tampered.kmsf", &tampered, &[]);
    assert_eq!(run.status, 1, "{}", run.stderr);
    assert_eq!(
        fs::read(&output).expect("read output"),
        b"earlier synthetic contents"
    );
}

#[tokio::test]
async fn file_encrypt_checks_input_before_kmsd() {
    let setup = Setup::start().await;
    let missing = setup.path("missing");
    let run = setup.kmsctl_paths(
        &["file", "encrypt", "--key", KEY],
        &[&missing, &setup.path("out")],
        b"",
    );
    run.fails_with(
        1,
        &format!(
            "error: cannot read file {}: No such file or directory (os error 2)\n",
            missing.display()
        ),
    );
    assert_eq!(
        generated_data_keys(&setup),
        0,
        "a data key was generated for a missing input"
    );

    // A folder is no input either.
    let run = setup.kmsctl_paths(
        &["file", "encrypt", "--key", KEY],
        &[setup.work.path(), &setup.path("out")],
        b"",
    );
    run.fails_with(
        1,
        &format!(
            "error: file {} is not a regular file\nhint: `kmsctl file` works on regular files; \
             stream pipes and devices through `kmsctl backup encrypt` and `backup decrypt`\n",
            setup.work.path().display()
        ),
    );
    assert_eq!(generated_data_keys(&setup), 0);

    let input = setup.path("in");
    fs::write(&input, b"synthetic").expect("write input");
    let args = ["file", "encrypt", "--key", KEY];
    setup
        .kmsctl_paths(&args, &[&input, &setup.path("out")], b"")
        .ok();
    assert_eq!(generated_data_keys(&setup), 1);
}

/// Counts the data keys generated so far, from the audit log.
fn generated_data_keys(setup: &Setup) -> usize {
    setup
        .daemon
        .audit_records()
        .into_iter()
        .filter(|record| record["operation"] == "datakey.generate")
        .count()
}

#[tokio::test]
async fn file_usage_errors_exit_2() {
    let setup = Setup::start().await;
    let input = setup.path("in");
    fs::write(&input, b"synthetic").expect("write input");
    let help = "\n\nFor more information, try '--help'.\n";
    let output = setup.path("out");

    let args = ["file", "encrypt", "--key", KEY, "--segment-size", "1000"];
    let run = setup.kmsctl_paths(&args, &[&input, &output], b"");
    run.fails_with(
        2,
        &format!(
            "error: invalid value '1000' for '--segment-size <SIZE>': 1000 bytes is out of \
             range: give 4KiB (4096) to 16MiB (16777216){help}"
        ),
    );

    let args = ["file", "encrypt", "--key", KEY, "--segment-size", "2GiB"];
    let run = setup.kmsctl_paths(&args, &[&input, &output], b"");
    run.fails_with(
        2,
        &format!(
            "error: invalid value '2GiB' for '--segment-size <SIZE>': expected a number of \
             bytes, optionally followed by KiB or MiB, such as 1MiB{help}"
        ),
    );

    // A secret identity pasted in place of a recipient is never shown back.
    let secret = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ";
    let args = [
        "file",
        "encrypt",
        "--key",
        KEY,
        "--recovery-recipient",
        secret,
    ];
    let run = setup.kmsctl_paths(&args, &[&input, &output], b"");
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(!run.stderr.contains(&secret[15..]), "{}", run.stderr);
    assert!(
        run.stderr.starts_with(
            "error: invalid recovery recipient \"AGE-SECRET-KEY-<redacted>\": this is a secret \
             identity, not a recipient; pass its public `age1...` key"
        ),
        "{}",
        run.stderr
    );
    assert!(!output.exists());
}
