//! Field encryption throughput with a warm data-key cache, in values per second for 64-byte
//! plaintexts.
//!
//! An in-process source replaces `kmsd` and is called once per data key, so the numbers
//! measure the SDK alone: a cache hit, the AEAD and the base64 text. Run with
//! `cargo bench -p client-sdk --bench field`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use client_sdk::cache::{CacheLimits, CachedDataKey, DataKeyCache, DataKeySource};
use client_sdk::field::{FieldAad, FieldEncryptor, Form, Mode, StoredKey};
use client_sdk::secrecy::SecretSlice;
use client_sdk::{Context, Result};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

/// Values per measured iteration, so that entering the runtime is a small share of the time.
const BATCH: usize = 100;
const PLAINTEXT: [u8; 64] = [0x61; 64];

/// Returns one fixed synthetic data key for every request.
struct LocalSource;

fn data_key(key_name: &str, ciphertext: Vec<u8>) -> CachedDataKey {
    CachedDataKey::new(
        key_name.to_owned(),
        "11111111-2222-4333-8444-555555555555".to_owned(),
        1,
        SecretSlice::from(vec![0x42; 32]),
        ciphertext,
    )
}

impl DataKeySource for LocalSource {
    async fn new_data_key(&self, key_name: &str, _context: &Context) -> Result<CachedDataKey> {
        Ok(data_key(key_name, vec![0xb1; 86]))
    }

    async fn decrypt_data_key(
        &self,
        ciphertext: &[u8],
        _context: &Context,
    ) -> Result<CachedDataKey> {
        Ok(data_key("bench", ciphertext.to_vec()))
    }
}

/// Builds the three encryptors to measure: generated randomized self-contained, and stored
/// compact in both modes.
fn encryptors(runtime: &Runtime) -> Vec<(&'static str, FieldEncryptor<LocalSource>)> {
    let limits = CacheLimits::default().with_max_age(Duration::from_secs(24 * 3600));
    let cache = Arc::new(DataKeyCache::new(Arc::new(LocalSource), limits).expect("valid limits"));
    let context = Context::from([("table".to_owned(), "patients".to_owned())]);
    let stored = runtime
        .block_on(StoredKey::generate(&LocalSource, "bench", &context))
        .expect("the local source never fails");
    let stored_encryptor = |mode| {
        let (cache, context) = (Arc::clone(&cache), context.clone());
        FieldEncryptor::stored(cache, context, stored.clone(), mode, Form::Compact)
    };
    vec![
        (
            "randomized_self_contained",
            FieldEncryptor::generated(Arc::clone(&cache), "bench", context.clone()),
        ),
        ("randomized_compact", stored_encryptor(Mode::Randomized)),
        (
            "deterministic_compact",
            stored_encryptor(Mode::Deterministic),
        ),
    ]
}

fn field(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime builds");
    let aad = FieldAad::new("patients.notes").with_record_id("8d3e5a");
    let mut group = c.benchmark_group("field");
    group.throughput(Throughput::Elements(BATCH as u64));

    for (name, encryptor) in encryptors(&runtime) {
        // Warm the cache, and keep a value to decrypt.
        let value = runtime
            .block_on(encryptor.encrypt(&PLAINTEXT, &aad))
            .expect("encryption succeeds");
        runtime
            .block_on(encryptor.decrypt(&value, &aad))
            .expect("decryption succeeds");

        group.bench_function(format!("encrypt/{name}"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    for _ in 0..BATCH {
                        let value = encryptor.encrypt(black_box(&PLAINTEXT), &aad).await;
                        black_box(value.expect("encryption succeeds"));
                    }
                });
            });
        });
        group.bench_function(format!("decrypt/{name}"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    for _ in 0..BATCH {
                        let plaintext = encryptor.decrypt(black_box(&value), &aad).await;
                        black_box(plaintext.expect("decryption succeeds"));
                    }
                });
            });
        });
    }
    group.finish();
}

criterion_group!(benches, field);
criterion_main!(benches);
