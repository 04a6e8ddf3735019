use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::fake::FakeSource;
use super::*;

const KEY: &str = "patient-records";

fn context(tenant: &str) -> Context {
    Context::from([("tenant".to_owned(), tenant.to_owned())])
}

fn cache_with(source: FakeSource, limits: CacheLimits) -> DataKeyCache<FakeSource> {
    DataKeyCache::new(Arc::new(source), limits).unwrap()
}

fn long_lived() -> CacheLimits {
    CacheLimits::default().with_max_age(Duration::from_secs(3600))
}

#[tokio::test]
async fn message_limit_rotates_keys() {
    let cache = cache_with(FakeSource::default(), long_lived().with_max_messages(100));
    let mut uses: HashMap<Vec<u8>, usize> = HashMap::new();
    for _ in 0..1000 {
        let key = cache
            .data_key_for_encrypt(KEY, &context("a"), 10)
            .await
            .unwrap();
        *uses.entry(key.ciphertext().to_vec()).or_default() += 1;
    }

    assert_eq!(cache.source().generated(), 10);
    assert_eq!(uses.len(), 10);
    assert!(uses.values().all(|&count| count == 100), "{uses:?}");
}

#[tokio::test]
async fn cache_without_limits_uses_one_key() {
    let cache = cache_with(FakeSource::default(), long_lived());
    for _ in 0..1000 {
        cache
            .data_key_for_encrypt(KEY, &context("a"), 100)
            .await
            .unwrap();
    }

    assert_eq!(cache.source().generated(), 1);
}

#[tokio::test]
async fn message_limit_evicts_at_exact_count() {
    let cache = cache_with(FakeSource::default(), long_lived().with_max_messages(3));
    let mut blobs = Vec::new();
    for _ in 0..4 {
        let key = cache
            .data_key_for_encrypt(KEY, &context("a"), 1)
            .await
            .unwrap();
        blobs.push(key.ciphertext().to_vec());
    }

    assert_eq!(blobs[0], blobs[1]);
    assert_eq!(blobs[0], blobs[2]);
    assert_ne!(blobs[2], blobs[3]);
    assert_eq!(cache.source().generated(), 2);
}

#[tokio::test]
async fn byte_limit_admits_exact_total() {
    let cache = cache_with(FakeSource::default(), long_lived().with_max_bytes(1000));
    let first = cache
        .data_key_for_encrypt(KEY, &context("a"), 999)
        .await
        .unwrap();
    let last_byte = cache
        .data_key_for_encrypt(KEY, &context("a"), 1)
        .await
        .unwrap();
    let next = cache
        .data_key_for_encrypt(KEY, &context("a"), 1)
        .await
        .unwrap();

    assert_eq!(first.ciphertext(), last_byte.ciphertext());
    assert_ne!(last_byte.ciphertext(), next.ciphertext());
    assert_eq!(cache.source().generated(), 2);
}

#[tokio::test]
async fn byte_limit_rejects_one_byte_over() {
    let cache = cache_with(FakeSource::default(), long_lived().with_max_bytes(1000));
    let first = cache
        .data_key_for_encrypt(KEY, &context("a"), 999)
        .await
        .unwrap();
    let over = cache
        .data_key_for_encrypt(KEY, &context("a"), 2)
        .await
        .unwrap();

    assert_ne!(first.ciphertext(), over.ciphertext());
    assert_eq!(cache.source().generated(), 2);
}

#[tokio::test]
async fn byte_limit_forces_new_key() {
    let cache = cache_with(FakeSource::default(), long_lived().with_max_bytes(1000));
    for _ in 0..1000 {
        cache
            .data_key_for_encrypt(KEY, &context("a"), 100)
            .await
            .unwrap();
    }

    // Ten messages of 100 bytes fill one key's 1000 bytes.
    assert_eq!(cache.source().generated(), 100);
}

#[tokio::test]
async fn byte_limit_counts_partial_fill() {
    let cache = cache_with(FakeSource::default(), long_lived().with_max_bytes(1000));
    let first = cache
        .data_key_for_encrypt(KEY, &context("a"), 600)
        .await
        .unwrap();
    let second = cache
        .data_key_for_encrypt(KEY, &context("a"), 400)
        .await
        .unwrap();
    let third = cache
        .data_key_for_encrypt(KEY, &context("a"), 1)
        .await
        .unwrap();

    assert_eq!(first.ciphertext(), second.ciphertext());
    assert_ne!(second.ciphertext(), third.ciphertext());
    assert_eq!(cache.source().generated(), 2);
}

#[tokio::test]
async fn message_over_byte_limit_gets_uncached_key() {
    let cache = cache_with(FakeSource::default(), long_lived().with_max_bytes(1000));
    let first = cache
        .data_key_for_encrypt(KEY, &context("a"), 1001)
        .await
        .unwrap();
    let second = cache
        .data_key_for_encrypt(KEY, &context("a"), 1001)
        .await
        .unwrap();

    assert_ne!(first.ciphertext(), second.ciphertext());
    assert_eq!(cache.source().generated(), 2);
    assert_eq!(cache.entry_counts(), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn age_limit_forces_new_key() {
    let limits = CacheLimits::default().with_max_age(Duration::from_secs(60));
    let cache = cache_with(FakeSource::default(), limits);
    let first = cache
        .data_key_for_encrypt(KEY, &context("a"), 1)
        .await
        .unwrap();

    tokio::time::advance(Duration::from_millis(59_999)).await;
    let young = cache
        .data_key_for_encrypt(KEY, &context("a"), 1)
        .await
        .unwrap();
    assert_eq!(first.ciphertext(), young.ciphertext());
    assert_eq!(cache.source().generated(), 1);

    tokio::time::advance(Duration::from_millis(1)).await;
    let renewed = cache
        .data_key_for_encrypt(KEY, &context("a"), 1)
        .await
        .unwrap();
    assert_ne!(first.ciphertext(), renewed.ciphertext());
    assert_eq!(cache.source().generated(), 2);
}

#[tokio::test]
async fn key_names_and_contexts_get_separate_keys() {
    let cache = cache_with(FakeSource::default(), long_lived());
    let a = cache
        .data_key_for_encrypt(KEY, &context("a"), 1)
        .await
        .unwrap();
    let b = cache
        .data_key_for_encrypt(KEY, &context("b"), 1)
        .await
        .unwrap();
    let other = cache
        .data_key_for_encrypt("billing", &context("a"), 1)
        .await
        .unwrap();
    let empty = cache
        .data_key_for_encrypt(KEY, &Context::new(), 1)
        .await
        .unwrap();
    let a_again = cache
        .data_key_for_encrypt(KEY, &context("a"), 1)
        .await
        .unwrap();

    assert_eq!(cache.source().generated(), 4);
    assert_eq!(a.ciphertext(), a_again.ciphertext());
    assert_ne!(a.ciphertext(), b.ciphertext());
    assert_ne!(a.ciphertext(), other.ciphertext());
    assert_ne!(a.ciphertext(), empty.ciphertext());
}

#[test]
fn entry_ids_do_not_run_together() {
    // "ab" + {"c": "d"} and "a" + {"bc": "d"} must not share an entry.
    let one = encrypt_entry_id("ab", &Context::from([("c".into(), "d".into())]));
    let two = encrypt_entry_id("a", &Context::from([("bc".into(), "d".into())]));
    let three = encrypt_entry_id("a", &Context::from([("b".into(), "cd".into())]));

    assert_ne!(one, two);
    assert_ne!(two, three);
    assert_ne!(
        encrypt_entry_id("k", &Context::new()),
        decrypt_entry_id(b"k", &Context::new())
    );
}

#[tokio::test(start_paused = true)]
async fn fifty_concurrent_misses_make_one_call() {
    let source = FakeSource::with_delay(Duration::from_millis(50));
    let cache = Arc::new(cache_with(source, long_lived()));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                cache
                    .data_key_for_encrypt(KEY, &context("a"), 10)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut blobs = Vec::new();
    for task in tasks {
        blobs.push(task.await.unwrap().ciphertext().to_vec());
    }

    assert_eq!(cache.source().generated(), 1);
    assert!(blobs.iter().all(|blob| *blob == blobs[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_call() {
    let source = FakeSource::with_delay(Duration::from_millis(200));
    let cache = Arc::new(cache_with(source, long_lived()));
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = Arc::clone(&cache);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                cache
                    .data_key_for_encrypt(KEY, &context("a"), 10)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }

    assert_eq!(cache.source().generated(), 1);
}

#[tokio::test(start_paused = true)]
async fn misses_beyond_message_limit_share_calls() {
    let source = FakeSource::with_delay(Duration::from_millis(50));
    let cache = Arc::new(cache_with(source, long_lived().with_max_messages(10)));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                cache
                    .data_key_for_encrypt(KEY, &context("a"), 10)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut uses: HashMap<Vec<u8>, usize> = HashMap::new();
    for task in tasks {
        *uses
            .entry(task.await.unwrap().ciphertext().to_vec())
            .or_default() += 1;
    }

    assert_eq!(cache.source().generated(), 5);
    assert!(uses.values().all(|&count| count == 10), "{uses:?}");
}

#[tokio::test]
async fn failed_generation_is_not_cached() {
    let cache = cache_with(FakeSource::default(), long_lived());
    cache.source().fail_next(1);
    let err = cache
        .data_key_for_encrypt(KEY, &context("a"), 1)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("sealed"));

    let key = cache
        .data_key_for_encrypt(KEY, &context("a"), 1)
        .await
        .unwrap();
    assert_eq!(key.key_name(), KEY);
    assert_eq!(cache.source().generated(), 2);
}

#[tokio::test(start_paused = true)]
async fn waiters_retry_after_failed_shared_call() {
    let source = FakeSource::with_delay(Duration::from_millis(50));
    source.fail_next(1);
    let cache = Arc::new(cache_with(source, long_lived()));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.data_key_for_encrypt(KEY, &context("a"), 1).await })
        })
        .collect();
    let mut failures = 0;
    for task in tasks {
        if task.await.unwrap().is_err() {
            failures += 1;
        }
    }

    // The caller whose call failed gets the error. The next waiter's call succeeds and the
    // rest share its key.
    assert_eq!(failures, 1);
    assert_eq!(cache.source().generated(), 2);
}

#[tokio::test]
async fn used_up_key_is_dropped_from_memory() {
    let cache = cache_with(FakeSource::default(), long_lived().with_max_messages(2));
    let first = cache
        .data_key_for_encrypt(KEY, &context("a"), 1)
        .await
        .unwrap();
    let material = first.downgrade();
    drop(first);
    assert!(
        material.upgrade().is_some(),
        "the cache still contains the key"
    );

    let second = cache
        .data_key_for_encrypt(KEY, &context("a"), 1)
        .await
        .unwrap();
    drop(second);

    assert!(
        material.upgrade().is_none(),
        "the used-up key is still in memory"
    );
    assert_eq!(cache.entry_counts(), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn expired_key_is_dropped() {
    let limits = CacheLimits::default().with_max_age(Duration::from_secs(60));
    let cache = cache_with(FakeSource::default(), limits);
    let material = cache
        .data_key_for_encrypt(KEY, &context("a"), 1)
        .await
        .unwrap()
        .downgrade();
    let other = cache
        .data_key_for_encrypt(KEY, &context("b"), 1)
        .await
        .unwrap()
        .downgrade();

    tokio::time::advance(Duration::from_secs(60)).await;
    cache
        .data_key_for_encrypt(KEY, &context("a"), 1)
        .await
        .unwrap();
    assert!(
        material.upgrade().is_none(),
        "the expired key is still in memory"
    );
    assert!(other.upgrade().is_some());

    cache.purge_expired();
    assert!(
        other.upgrade().is_none(),
        "purge left an expired key in memory"
    );
    assert_eq!(cache.entry_counts(), (1, 0));
}

#[tokio::test]
async fn clear_and_drop_release_every_key() {
    let cache = cache_with(FakeSource::default(), long_lived());
    let encrypt = cache
        .data_key_for_encrypt(KEY, &context("a"), 1)
        .await
        .unwrap();
    let decrypt = cache
        .data_key_for_decrypt(encrypt.ciphertext(), &context("a"))
        .await
        .unwrap();
    let (encrypt_material, decrypt_material) = (encrypt.downgrade(), decrypt.downgrade());
    drop((encrypt, decrypt));

    cache.clear();
    assert!(encrypt_material.upgrade().is_none());
    assert!(decrypt_material.upgrade().is_none());

    let kept = cache
        .data_key_for_encrypt(KEY, &context("a"), 1)
        .await
        .unwrap()
        .downgrade();
    drop(cache);
    assert!(kept.upgrade().is_none());
}

#[tokio::test(start_paused = true)]
async fn max_entries_evicts_least_recently_used() {
    let cache = cache_with(FakeSource::default(), long_lived().with_max_entries(3));
    for tenant in ["a", "b", "c", "a"] {
        cache
            .data_key_for_encrypt(KEY, &context(tenant), 1)
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(cache.source().generated(), 3);

    // "b" is the least recently used entry, so "d" takes its place.
    cache
        .data_key_for_encrypt(KEY, &context("d"), 1)
        .await
        .unwrap();
    assert_eq!(cache.entry_counts(), (3, 0));
    for tenant in ["a", "c", "d"] {
        cache
            .data_key_for_encrypt(KEY, &context(tenant), 1)
            .await
            .unwrap();
    }
    assert_eq!(cache.source().generated(), 4);

    cache
        .data_key_for_encrypt(KEY, &context("b"), 1)
        .await
        .unwrap();
    assert_eq!(cache.source().generated(), 5);
}

#[tokio::test(start_paused = true)]
async fn cancelled_fetch_is_evicted_before_keys() {
    let source = FakeSource::with_delay(Duration::from_millis(50));
    let cache = Arc::new(cache_with(source, long_lived().with_max_entries(2)));
    cache
        .data_key_for_encrypt(KEY, &context("a"), 1)
        .await
        .unwrap();
    let pending = {
        let cache = Arc::clone(&cache);
        tokio::spawn(async move { cache.data_key_for_encrypt(KEY, &context("b"), 1).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    pending.abort();
    assert!(pending.await.unwrap_err().is_cancelled());
    assert_eq!(cache.entry_counts(), (2, 0));

    // The cancelled fetch of "b" makes room for "c", and the key of "a" stays.
    cache
        .data_key_for_encrypt(KEY, &context("c"), 1)
        .await
        .unwrap();
    cache
        .data_key_for_encrypt(KEY, &context("a"), 1)
        .await
        .unwrap();
    assert_eq!(cache.source().generated(), 3);
    assert_eq!(cache.entry_counts(), (2, 0));
}

#[tokio::test]
async fn failed_decrypts_leave_no_entries() {
    let cache = cache_with(FakeSource::default(), long_lived());
    for blob in 0..10u8 {
        let err = cache
            .data_key_for_decrypt(&[blob; 86], &context("a"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("invalid_ciphertext"));
    }

    assert_eq!(cache.source().decrypted(), 10);
    assert_eq!(cache.entry_counts(), (0, 0));
}

#[tokio::test]
async fn decrypt_of_shared_blob_makes_one_call() {
    let source = FakeSource::default();
    let generated = source.new_data_key(KEY, &context("a")).await.unwrap();
    let cache = cache_with(source, long_lived());
    for _ in 0..100 {
        let key = cache
            .data_key_for_decrypt(generated.ciphertext(), &context("a"))
            .await
            .unwrap();
        assert_eq!(
            key.plaintext().expose_secret(),
            generated.plaintext().expose_secret()
        );
    }

    assert_eq!(cache.source().decrypted(), 1);
}

#[tokio::test]
async fn decrypt_entries_are_per_context() {
    let source = FakeSource::default();
    let generated = source.new_data_key(KEY, &context("a")).await.unwrap();
    let cache = cache_with(source, long_lived());
    cache
        .data_key_for_decrypt(generated.ciphertext(), &context("a"))
        .await
        .unwrap();
    let err = cache
        .data_key_for_decrypt(generated.ciphertext(), &context("b"))
        .await
        .unwrap_err();

    assert_eq!(err.code(), Some("decryption_failed"));
    assert_eq!(cache.source().decrypted(), 2);
    assert_eq!(cache.entry_counts(), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn decrypt_entry_expires_after_max_age() {
    let source = FakeSource::default();
    let generated = source.new_data_key(KEY, &context("a")).await.unwrap();
    let limits = CacheLimits::default().with_max_age(Duration::from_secs(60));
    let cache = cache_with(source, limits);
    let blob = generated.ciphertext();

    cache
        .data_key_for_decrypt(blob, &context("a"))
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(59)).await;
    cache
        .data_key_for_decrypt(blob, &context("a"))
        .await
        .unwrap();
    assert_eq!(cache.source().decrypted(), 1);

    tokio::time::advance(Duration::from_secs(1)).await;
    cache
        .data_key_for_decrypt(blob, &context("a"))
        .await
        .unwrap();
    assert_eq!(cache.source().decrypted(), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrent_decrypt_misses_make_one_call() {
    let source = FakeSource::with_delay(Duration::from_millis(50));
    let generated = source.new_data_key(KEY, &context("a")).await.unwrap();
    let cache = Arc::new(cache_with(source, long_lived()));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = Arc::clone(&cache);
            let blob = generated.ciphertext().to_vec();
            tokio::spawn(async move { cache.data_key_for_decrypt(&blob, &context("a")).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }

    assert_eq!(cache.source().decrypted(), 1);
}

#[test]
fn zero_limits_are_rejected() {
    let cases = [
        CacheLimits::default().with_max_age(Duration::ZERO),
        CacheLimits::default().with_max_messages(0),
        CacheLimits::default().with_max_bytes(0),
        CacheLimits::default().with_max_entries(0),
    ];
    for limits in cases {
        let err = DataKeyCache::new(Arc::new(FakeSource::default()), limits).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { .. }),
            "{limits:?}: {err}"
        );
    }
}

#[tokio::test]
async fn debug_output_has_no_key_material() {
    let cache = cache_with(FakeSource::default(), long_lived());
    let key = cache
        .data_key_for_encrypt(KEY, &context("a"), 1)
        .await
        .unwrap();
    let plaintext_hex: String = key
        .plaintext()
        .expose_secret()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let key_debug = format!("{key:?}");
    let cache_debug = format!("{cache:?}");

    assert!(key_debug.contains("REDACTED"), "{key_debug}");
    assert!(!key_debug.contains("90, 90"), "{key_debug}");
    assert!(!key_debug.contains(&plaintext_hex), "{key_debug}");
    assert!(cache_debug.contains("encrypt_entries: 1"), "{cache_debug}");
}
