//! Throughput of the file format at the default segment size (64 KiB).
//!
//! `stream/*` runs the sync adapters between memory buffers, on one thread, and as one stream
//! per core over equal parts of the input. `file/*` runs
//! `encrypt_file` and `decrypt_file` on every core, with files in the temporary folder
//! (`TMPDIR`). Those numbers include reading the input, writing and syncing the output, and the
//! rename, so they depend on the storage under `TMPDIR`. Run with
//! `cargo bench -p client-sdk --bench stream`.

use std::hint::black_box;
use std::io::{self, Read, Write};

use client_sdk::Context;
use client_sdk::stream::{
    DecryptingReader, EncryptOptions, EncryptingWriter, FileKey, decrypt_file, encrypt_file,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Plaintext per iteration.
const LEN: usize = 64 << 20;

fn plaintext() -> Vec<u8> {
    (0..LEN).map(|i| (i.wrapping_mul(31) >> 3) as u8).collect()
}

fn context() -> Context {
    Context::from([("tenant".to_owned(), "bench".to_owned())])
}

fn encrypt_in_memory(key: &FileKey, plaintext: &[u8]) -> Vec<u8> {
    let output = Vec::with_capacity(plaintext.len() + plaintext.len() / 1024 + 8192);
    let mut writer = EncryptingWriter::new(output, key, &context(), vec![], EncryptOptions::new())
        .expect("the default options are valid");
    writer
        .write_all(plaintext)
        .expect("writing to memory does not fail");
    writer.finish().expect("writing to memory does not fail")
}

fn stream_benches(c: &mut Criterion) {
    let key = FileKey::generate().expect("the system random number generator works");
    let plaintext = plaintext();
    let encrypted = encrypt_in_memory(&key, &plaintext);

    let mut group = c.benchmark_group("stream");
    group.throughput(Throughput::Bytes(LEN as u64));
    group.sample_size(10);
    group.bench_function("encrypt, 1 thread", |b| {
        b.iter(|| {
            let mut writer =
                EncryptingWriter::new(io::sink(), &key, &context(), vec![], EncryptOptions::new())
                    .expect("the default options are valid");
            writer.write_all(black_box(&plaintext)).expect("sink");
            writer.finish().expect("sink");
        });
    });
    // Independent streams on every core, between memory buffers: the scaling of the cipher
    // without the storage under the file functions.
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    group.bench_function("encrypt, all cores", |b| {
        b.iter(|| {
            std::thread::scope(|scope| {
                for part in plaintext.chunks(LEN.div_ceil(cores)) {
                    let key = &key;
                    scope.spawn(move || {
                        let mut writer = EncryptingWriter::new(
                            io::sink(),
                            key,
                            &context(),
                            vec![],
                            EncryptOptions::new(),
                        )
                        .expect("the default options are valid");
                        writer.write_all(black_box(part)).expect("sink");
                        writer.finish().expect("sink");
                    });
                }
            });
        });
    });
    group.bench_function("decrypt, 1 thread", |b| {
        b.iter(|| {
            let mut reader = DecryptingReader::open(black_box(&encrypted[..]), &key, &context())
                .expect("the file was just written");
            let mut buffer = vec![0; 1 << 20];
            while reader.read(&mut buffer).expect("the file is intact") > 0 {}
        });
    });
    group.finish();
}

fn file_benches(c: &mut Criterion) {
    let key = FileKey::generate().expect("the system random number generator works");
    let folder = tempfile::tempdir().expect("the temporary folder is writable");
    let plain = folder.path().join("plain");
    let encrypted = folder.path().join("plain.kmsf");
    let restored = folder.path().join("restored");
    std::fs::write(&plain, plaintext()).expect("the temporary folder is writable");
    encrypt_file(
        &plain,
        &encrypted,
        &key,
        &context(),
        vec![],
        EncryptOptions::new(),
    )
    .expect("the temporary folder is writable");

    let mut group = c.benchmark_group("file");
    group.throughput(Throughput::Bytes(LEN as u64));
    group.sample_size(10);
    group.bench_function("encrypt, all cores", |b| {
        b.iter(|| {
            let target = folder.path().join("bench.kmsf");
            encrypt_file(
                &plain,
                &target,
                &key,
                &context(),
                vec![],
                EncryptOptions::new(),
            )
            .expect("the temporary folder is writable");
        });
    });
    group.bench_function("decrypt, all cores", |b| {
        b.iter(|| {
            decrypt_file(&encrypted, &restored, &key, &context()).expect("the file is intact");
        });
    });
    group.finish();
}

criterion_group!(benches, stream_benches, file_benches);
criterion_main!(benches);
