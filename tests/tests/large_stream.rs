//! A multi-GiB stream through `kmsctl backup encrypt` and `backup decrypt` against a real
//! daemon, piped end to end so that nothing of that size touches the disk. The reader rebuilds
//! the expected bytes from the same generator and compares them as they arrive.

mod common;

use std::io::{Read as _, Write as _};
use std::process::Stdio;

use common::{KEY, Setup};

/// Bytes streamed: more than 2^31, so that no 32-bit length or counter can pass unnoticed.
const LEN: u64 = (2 << 30) + 12_345;
/// Size of each generated chunk.
const CHUNK: usize = 1 << 20;

/// Builds the chunk at `index`: one random base with the chunk index stamped every 4 KiB, so
/// that no two 64 KiB segments of the stream are alike. It is cheap enough for a debug build.
fn chunk(base: &[u8], index: u64) -> Vec<u8> {
    let mut chunk = base.to_vec();
    for offset in (0..CHUNK).step_by(4096) {
        chunk[offset..offset + 8].copy_from_slice(&index.to_le_bytes());
    }
    chunk
}

#[tokio::test]
async fn backup_round_trips_multi_gib_stream() {
    let setup = Setup::start().await;
    let base = kms_tests::random_bytes(CHUNK);
    let mut encrypt = setup.command();
    let mut encrypt = encrypt
        .args([
            "backup",
            "encrypt",
            "--key",
            KEY,
            "--context",
            "job=nightly",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start backup encrypt");
    let encrypted = encrypt.stdout.take().expect("encrypt stdout");
    let mut decrypt = setup.command();
    let mut decrypt = decrypt
        .args(["backup", "decrypt"])
        .stdin(Stdio::from(encrypted))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start backup decrypt");

    let mut input = encrypt.stdin.take().expect("encrypt stdin");
    let writer_base = base.clone();
    let writer = std::thread::spawn(move || {
        let mut sent = 0u64;
        let mut index = 0u64;
        while sent < LEN {
            let chunk = chunk(&writer_base, index);
            let len = usize::try_from((LEN - sent).min(CHUNK as u64)).expect("chunk fits");
            input.write_all(&chunk[..len]).expect("feed backup encrypt");
            sent += len as u64;
            index += 1;
        }
    });

    let mut output = decrypt.stdout.take().expect("decrypt stdout");
    let mut received = 0u64;
    let mut expected = chunk(&base, 0);
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let read = output.read(&mut buffer).expect("read backup decrypt");
        if read == 0 {
            break;
        }
        let mut done = 0;
        while done < read {
            let index = received / CHUNK as u64;
            let offset = usize::try_from(received % CHUNK as u64).expect("offset fits");
            if offset == 0 {
                expected = chunk(&base, index);
            }
            let len = (read - done).min(CHUNK - offset);
            assert!(
                buffer[done..done + len] == expected[offset..offset + len],
                "the restored stream differs in chunk {index}"
            );
            done += len;
            received += len as u64;
        }
    }
    writer.join().expect("writer thread");

    let encrypt = encrypt.wait_with_output().expect("wait for encrypt");
    let decrypt = decrypt.wait_with_output().expect("wait for decrypt");
    assert!(
        encrypt.status.success(),
        "{}",
        String::from_utf8_lossy(&encrypt.stderr)
    );
    assert!(
        decrypt.status.success(),
        "{}",
        String::from_utf8_lossy(&decrypt.stderr)
    );
    assert_eq!(received, LEN);
}
