//! A [`DataKeySource`] for tests that counts its calls and needs no daemon.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use secrecy::SecretSlice;

use super::{CachedDataKey, DataKeySource};
use crate::error::{Error, Result};
use crate::types::Context;

/// Length of the fake blobs, the length of a kmsd blob of a 32-byte data key.
pub(crate) const BLOB_LEN: usize = 86;

/// A data key that the fake made, and the context it was made with.
type Registered = ([u8; 32], Context);

/// Makes distinct data keys and blobs, and decrypts only its own blobs with the context that
/// they were made with, as kmsd would.
#[derive(Default)]
pub(crate) struct FakeSource {
    generated: AtomicUsize,
    decrypted: AtomicUsize,
    /// Delay of each call before it returns, so that concurrent callers pile up.
    delay: Duration,
    /// Number of `new_data_key` calls still to fail.
    failures: AtomicUsize,
    keys: Mutex<HashMap<Vec<u8>, Registered>>,
}

impl FakeSource {
    pub(crate) fn with_delay(delay: Duration) -> Self {
        FakeSource {
            delay,
            ..FakeSource::default()
        }
    }

    /// Makes the next `count` calls of `new_data_key` fail.
    pub(crate) fn fail_next(&self, count: usize) {
        self.failures.store(count, Ordering::SeqCst);
    }

    /// Registers a second blob for the data key of `ciphertext`, as a rewrap under a newer
    /// key version would return.
    pub(crate) fn rewrap(&self, ciphertext: &[u8]) -> Vec<u8> {
        let mut keys = self.keys.lock().unwrap();
        let entry = keys
            .get(ciphertext)
            .cloned()
            .expect("rewrap of an unknown blob");
        let mut rewrapped = ciphertext.to_vec();
        let serial = u32::try_from(keys.len()).unwrap();
        rewrapped[12..16].copy_from_slice(&serial.to_be_bytes());
        keys.insert(rewrapped.clone(), entry);
        rewrapped
    }

    pub(crate) fn generated(&self) -> usize {
        self.generated.load(Ordering::SeqCst)
    }

    pub(crate) fn decrypted(&self) -> usize {
        self.decrypted.load(Ordering::SeqCst)
    }

    async fn wait(&self) {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }
}

fn api_error(code: &str) -> Error {
    Error::Api {
        status: 400,
        code: code.to_owned(),
        message: format!("fake source: {code}"),
        request_id: None,
    }
}

impl DataKeySource for FakeSource {
    async fn new_data_key(&self, key_name: &str, context: &Context) -> Result<CachedDataKey> {
        let serial = self.generated.fetch_add(1, Ordering::SeqCst);
        self.wait().await;
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(api_error("sealed"));
        }

        let serial_bytes = (serial as u64).to_be_bytes();
        let mut key = [0x5a; 32];
        key[..8].copy_from_slice(&serial_bytes);
        let mut blob = vec![0xb1; BLOB_LEN];
        blob[..8].copy_from_slice(&serial_bytes);
        blob[8..12].copy_from_slice(b"KMSB");
        self.keys
            .lock()
            .unwrap()
            .insert(blob.clone(), (key, context.clone()));
        Ok(CachedDataKey::new(
            key_name.to_owned(),
            "11111111-2222-4333-8444-555555555555".to_owned(),
            1,
            SecretSlice::from(key.to_vec()),
            blob,
        ))
    }

    async fn decrypt_data_key(
        &self,
        ciphertext: &[u8],
        context: &Context,
    ) -> Result<CachedDataKey> {
        self.decrypted.fetch_add(1, Ordering::SeqCst);
        self.wait().await;
        let found = self.keys.lock().unwrap().get(ciphertext).cloned();
        match found {
            Some((key, made_with)) if made_with == *context => Ok(CachedDataKey::new(
                "fake".to_owned(),
                "11111111-2222-4333-8444-555555555555".to_owned(),
                1,
                SecretSlice::from(key.to_vec()),
                ciphertext.to_vec(),
            )),
            Some(_) => Err(api_error("decryption_failed")),
            None => Err(api_error("invalid_ciphertext")),
        }
    }
}
