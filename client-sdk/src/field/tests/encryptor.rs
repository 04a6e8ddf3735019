//! [`FieldEncryptor`] against a counting fake of the KMS.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::cache::fake::FakeSource;
use crate::cache::{CacheLimits, DataKeyCache};
use crate::{Client, ClientBuilder, Context};

const KEY: &str = "patient-records";

fn context(table: &str) -> Context {
    Context::from([("table".to_owned(), table.to_owned())])
}

fn cache_with(source: FakeSource, limits: CacheLimits) -> Arc<DataKeyCache<FakeSource>> {
    Arc::new(DataKeyCache::new(Arc::new(source), limits).unwrap())
}

fn long_lived() -> CacheLimits {
    CacheLimits::default().with_max_age(Duration::from_secs(3600))
}

fn notes_aad(record_id: &str) -> FieldAad<'_> {
    FieldAad::new("patients.notes").with_record_id(record_id)
}

async fn stored_key(cache: &DataKeyCache<FakeSource>) -> StoredKey {
    StoredKey::generate(&**cache.source(), KEY, &context("patients"))
        .await
        .unwrap()
}

#[tokio::test]
async fn generated_key_costs_one_call() {
    let cache = cache_with(FakeSource::default(), long_lived());
    let notes = FieldEncryptor::generated(Arc::clone(&cache), KEY, context("patients"));
    let mut values = Vec::new();
    for record in 0..1000 {
        let record_id = record.to_string();
        let plaintext = format!("note {record}");
        let value = notes
            .encrypt(plaintext.as_bytes(), &notes_aad(&record_id))
            .await
            .unwrap();
        values.push((record_id, plaintext, value));
    }
    assert_eq!(cache.source().generated(), 1);

    for (record_id, plaintext, value) in &values {
        let decrypted = notes.decrypt(value, &notes_aad(record_id)).await.unwrap();
        assert_eq!(decrypted.as_slice(), plaintext.as_bytes());
    }
    assert_eq!(cache.source().decrypted(), 1);
    let distinct: HashSet<_> = values.iter().map(|(_, _, value)| value).collect();
    assert_eq!(distinct.len(), 1000);
}

#[tokio::test]
async fn generated_values_are_randomized_and_self_contained() {
    let cache = cache_with(FakeSource::default(), long_lived());
    let notes = FieldEncryptor::generated(Arc::clone(&cache), KEY, context("patients"));
    let value = notes.encrypt(b"x", &notes_aad("1")).await.unwrap();
    let info = inspect(&value).unwrap();

    assert_eq!(notes.mode(), Some(Mode::Randomized));
    assert_eq!(notes.form(), Some(Form::SelfContained));
    assert_eq!(info.mode(), Mode::Randomized);
    assert_eq!(info.form(), Form::SelfContained);
    assert_eq!(info.wrapped_key().map(<[u8]>::len), Some(86));
}

#[tokio::test]
async fn round_trips_every_size_through_the_cache() {
    let cache = cache_with(FakeSource::default(), long_lived());
    let stored = stored_key(&cache).await;
    let generated = FieldEncryptor::generated(Arc::clone(&cache), KEY, context("patients"));
    let mut encryptors = vec![generated];
    for (mode, form) in MODES_AND_FORMS {
        let stored = stored.clone();
        let encryptor =
            FieldEncryptor::stored(Arc::clone(&cache), context("patients"), stored, mode, form);
        encryptors.push(encryptor);
    }
    for encryptor in &encryptors {
        for size in [0, 1, 64, 1 << 20] {
            let plaintext: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
            let value = encryptor
                .encrypt(&plaintext, &notes_aad("7"))
                .await
                .unwrap();
            let decrypted = encryptor.decrypt(&value, &notes_aad("7")).await.unwrap();
            assert_eq!(
                decrypted.as_slice(),
                plaintext.as_slice(),
                "{encryptor:?} {size}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_encrypts_make_one_call() {
    let cache = cache_with(
        FakeSource::with_delay(Duration::from_millis(50)),
        long_lived(),
    );
    let notes = Arc::new(FieldEncryptor::generated(
        Arc::clone(&cache),
        KEY,
        context("patients"),
    ));
    let tasks: Vec<_> = (0..32)
        .map(|record| {
            let notes = Arc::clone(&notes);
            tokio::spawn(async move {
                let record_id = format!("{record}");
                let value = notes.encrypt(b"x", &notes_aad(&record_id)).await.unwrap();
                (record_id, value)
            })
        })
        .collect();
    let mut wrapped_keys = HashSet::new();
    for task in tasks {
        let (record_id, value) = task.await.unwrap();
        wrapped_keys.insert(inspect(&value).unwrap().wrapped_key().unwrap().to_vec());
        let decrypted = notes.decrypt(&value, &notes_aad(&record_id)).await.unwrap();
        assert_eq!(decrypted.as_slice(), b"x");
    }

    assert_eq!(cache.source().generated(), 1);
    assert_eq!(wrapped_keys.len(), 1);
}

#[tokio::test]
async fn message_limit_rotates_the_generated_key() {
    let cache = cache_with(FakeSource::default(), long_lived().with_max_messages(10));
    let notes = FieldEncryptor::generated(Arc::clone(&cache), KEY, context("patients"));
    let mut values = Vec::new();
    for _ in 0..25 {
        values.push(notes.encrypt(b"x", &notes_aad("1")).await.unwrap());
    }

    assert_eq!(cache.source().generated(), 3);
    for value in &values {
        assert_eq!(
            notes
                .decrypt(value, &notes_aad("1"))
                .await
                .unwrap()
                .as_slice(),
            b"x"
        );
    }
    assert_eq!(cache.source().decrypted(), 3);
}

#[tokio::test]
async fn stored_deterministic_values_match_across_processes() {
    let first_cache = cache_with(FakeSource::default(), long_lived());
    let stored = stored_key(&first_cache).await;
    // A second process: its own cache, the same KMS and the same stored key.
    let second_cache = DataKeyCache::new(Arc::clone(first_cache.source()), long_lived()).unwrap();
    let aad = FieldAad::new("patients.email");
    let mut values = Vec::new();
    for cache in [first_cache, Arc::new(second_cache)] {
        let emails = FieldEncryptor::stored(
            cache,
            context("patients"),
            stored.clone(),
            Mode::Deterministic,
            Form::Compact,
        );
        values.push(emails.encrypt(b"ada@example.org", &aad).await.unwrap());
    }

    assert_eq!(values[0], values[1]);
    assert_eq!(values[0].len(), 4 + (4 * (15 + 25usize)).div_ceil(3));
}

#[tokio::test]
async fn stored_key_decrypted_once_per_age() {
    let cache = cache_with(FakeSource::default(), long_lived());
    let stored = stored_key(&cache).await;
    let emails = FieldEncryptor::stored(
        Arc::clone(&cache),
        context("patients"),
        stored,
        Mode::Deterministic,
        Form::Compact,
    );
    for record in 0..100 {
        let email = format!("patient{record}@example.org");
        let value = emails
            .encrypt(email.as_bytes(), &FieldAad::new("patients.email"))
            .await
            .unwrap();
        let decrypted = emails
            .decrypt(&value, &FieldAad::new("patients.email"))
            .await
            .unwrap();
        assert_eq!(decrypted.as_slice(), email.as_bytes());
    }

    assert_eq!(cache.source().generated(), 1);
    assert_eq!(cache.source().decrypted(), 1);
}

#[tokio::test]
async fn unknown_key_error_names_reference() {
    let cache = cache_with(FakeSource::default(), long_lived());
    let old = stored_key(&cache).await;
    let new = stored_key(&cache).await;
    let before = FieldEncryptor::stored(
        Arc::clone(&cache),
        context("patients"),
        old.clone(),
        Mode::Randomized,
        Form::Compact,
    );
    let after = FieldEncryptor::stored(
        Arc::clone(&cache),
        context("patients"),
        new,
        Mode::Randomized,
        Form::Compact,
    );
    let value = before.encrypt(b"x", &notes_aad("1")).await.unwrap();
    let err = after.decrypt(&value, &notes_aad("1")).await.unwrap_err();

    assert!(
        matches!(err, Error::UnknownKeyReference { key_ref } if key_ref == old.key_ref()),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&old.key_ref().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn rotation_keeps_old_values_readable() {
    let cache = cache_with(FakeSource::default(), long_lived());
    let old = stored_key(&cache).await;
    let new = stored_key(&cache).await;
    let aad = FieldAad::new("patients.email");
    let before = FieldEncryptor::stored(
        Arc::clone(&cache),
        context("patients"),
        old.clone(),
        Mode::Deterministic,
        Form::Compact,
    );
    let old_value = before.encrypt(b"ada@example.org", &aad).await.unwrap();

    let after = FieldEncryptor::stored(
        Arc::clone(&cache),
        context("patients"),
        new,
        Mode::Deterministic,
        Form::Compact,
    )
    .with_previous_key(old.clone())
    .with_previous_key(old);
    let new_value = after.encrypt(b"ada@example.org", &aad).await.unwrap();
    let lookups = after.lookup_values(b"ada@example.org", &aad).await.unwrap();

    assert_ne!(old_value, new_value);
    assert_eq!(lookups, vec![new_value, old_value.clone()]);
    let decrypted = after.decrypt(&old_value, &aad).await.unwrap();
    assert_eq!(decrypted.as_slice(), b"ada@example.org");
}

#[tokio::test]
async fn rewrapped_stored_key_keeps_its_reference() {
    let cache = cache_with(FakeSource::default(), long_lived());
    let stored = stored_key(&cache).await;
    let encryptor = FieldEncryptor::stored(
        Arc::clone(&cache),
        context("patients"),
        stored.clone(),
        Mode::Randomized,
        Form::Compact,
    );
    let value = encryptor.encrypt(b"x", &notes_aad("1")).await.unwrap();

    let rewrapped_blob = cache.source().rewrap(stored.ciphertext());
    let rewrapped = StoredKey::new(stored.key_ref(), rewrapped_blob).unwrap();
    let reader = FieldEncryptor::stored(
        Arc::clone(&cache),
        context("patients"),
        rewrapped,
        Mode::Randomized,
        Form::Compact,
    );

    let decrypted = reader.decrypt(&value, &notes_aad("1")).await.unwrap();
    assert_eq!(decrypted.as_slice(), b"x");
}

#[tokio::test]
async fn mismatched_stored_key_is_rejected() {
    let cache = cache_with(FakeSource::default(), long_lived());
    let stored = stored_key(&cache).await;
    let other = stored_key(&cache).await;
    let wrong = StoredKey::new(other.key_ref(), stored.ciphertext().to_vec()).unwrap();
    let encryptor = FieldEncryptor::stored(
        Arc::clone(&cache),
        context("patients"),
        wrong,
        Mode::Randomized,
        Form::Compact,
    );
    let err = encryptor.encrypt(b"x", &notes_aad("1")).await.unwrap_err();

    assert!(
        matches!(err, Error::StoredKeyMismatch { declared, actual }
            if declared == other.key_ref() && actual == stored.key_ref()),
        "{err:?}"
    );
}

#[tokio::test]
async fn lookup_values_need_deterministic_mode() {
    let cache = cache_with(FakeSource::default(), long_lived());
    let notes = FieldEncryptor::generated(Arc::clone(&cache), KEY, context("patients"));
    let err = notes
        .lookup_values(b"x", &notes_aad("1"))
        .await
        .unwrap_err();

    assert!(matches!(err, Error::NotDeterministic), "{err:?}");
}

#[tokio::test]
async fn decrypt_only_reads_but_never_encrypts() {
    let cache = cache_with(FakeSource::default(), long_lived());
    let stored = stored_key(&cache).await;
    let notes = FieldEncryptor::generated(Arc::clone(&cache), KEY, context("patients"));
    let emails = FieldEncryptor::stored(
        Arc::clone(&cache),
        context("patients"),
        stored.clone(),
        Mode::Deterministic,
        Form::Compact,
    );
    let note = notes.encrypt(b"note", &notes_aad("1")).await.unwrap();
    let email_aad = FieldAad::new("patients.email");
    let email = emails
        .encrypt(b"ada@example.org", &email_aad)
        .await
        .unwrap();
    let reader = FieldEncryptor::decrypt_only(Arc::clone(&cache), context("patients"))
        .with_previous_key(stored);
    let generated_before = cache.source().generated();

    let note_plaintext = reader.decrypt(&note, &notes_aad("1")).await.unwrap();
    let email_plaintext = reader.decrypt(&email, &email_aad).await.unwrap();
    let err = reader.encrypt(b"x", &notes_aad("1")).await.unwrap_err();

    assert_eq!(note_plaintext.as_slice(), b"note");
    assert_eq!(email_plaintext.as_slice(), b"ada@example.org");
    assert!(matches!(err, Error::DecryptOnly), "{err:?}");
    assert_eq!(reader.mode(), None);
    assert_eq!(cache.source().generated(), generated_before);
}

#[tokio::test]
async fn other_context_cannot_decrypt() {
    let cache = cache_with(FakeSource::default(), long_lived());
    let patients = FieldEncryptor::generated(Arc::clone(&cache), KEY, context("patients"));
    let billing = FieldEncryptor::generated(Arc::clone(&cache), KEY, context("billing"));
    let value = patients.encrypt(b"x", &notes_aad("1")).await.unwrap();
    let err = billing.decrypt(&value, &notes_aad("1")).await.unwrap_err();

    assert!(
        matches!(&err, Error::Kms(kms) if kms.code() == Some("decryption_failed")),
        "{err:?}"
    );
}

#[tokio::test]
async fn invalid_binding_costs_no_kms_call() {
    let cache = cache_with(FakeSource::default(), long_lived());
    let notes = FieldEncryptor::generated(Arc::clone(&cache), KEY, context("patients"));
    let err = notes.encrypt(b"x", &FieldAad::new("")).await.unwrap_err();

    assert!(matches!(err, Error::InvalidFieldAad { .. }), "{err:?}");
    assert_eq!(cache.source().generated(), 0);
}

#[tokio::test]
async fn evicted_key_takes_its_field_subkeys_along() {
    let cache = cache_with(FakeSource::default(), long_lived());
    let notes = FieldEncryptor::generated(Arc::clone(&cache), KEY, context("patients"));
    notes.encrypt(b"x", &notes_aad("1")).await.unwrap();
    let cached = cache
        .data_key_for_encrypt(KEY, &context("patients"), 1)
        .await
        .unwrap();
    let first = std::ptr::from_ref(cached.field_key().unwrap());
    let second = std::ptr::from_ref(cached.field_key().unwrap());
    assert_eq!(first, second, "the subkeys were derived twice");
    let material = cached.downgrade();
    drop(cached);

    cache.clear();
    assert!(
        material.upgrade().is_none(),
        "the evicted key is still in memory"
    );
}

#[test]
fn futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let client = ClientBuilder::new("https://127.0.0.1:9").build().unwrap();
    let cache = Arc::new(DataKeyCache::new(Arc::new(client), CacheLimits::default()).unwrap());
    let encryptor: FieldEncryptor<Client> =
        FieldEncryptor::generated(cache, KEY, context("patients"));
    let aad = notes_aad("1");
    let mut document = serde_json::json!({});

    assert_send(&encryptor.encrypt(b"x", &aad));
    assert_send(&encryptor.decrypt("f1r.", &aad));
    assert_send(&encryptor.lookup_values(b"x", &aad));
    assert_send(&encryptor.encrypt_json(&mut document, &["/a"], None));
}

#[tokio::test]
async fn debug_output_hides_context_values() {
    let cache = cache_with(FakeSource::default(), long_lived());
    let stored = stored_key(&cache).await;
    let encryptor = FieldEncryptor::stored(
        Arc::clone(&cache),
        Context::from([("patient".to_owned(), "Jane Roe".to_owned())]),
        stored.clone(),
        Mode::Deterministic,
        Form::Compact,
    );
    let debug = format!("{encryptor:?}");

    assert!(!debug.contains("Jane"), "{debug}");
    assert!(debug.contains("patient"), "{debug}");
    assert!(debug.contains(&stored.key_ref().to_string()), "{debug}");
}
