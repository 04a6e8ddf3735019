//! A data-key cache that reuses data keys within limits, to save one KMS call per record.
//!
//! [`DataKeyCache::data_key_for_encrypt`] hands out one data key per (key name, encryption
//! context) until it reaches a limit: an age, a number of messages or a number of bytes. The
//! entry is then evicted and the next call generates a new data key. Callers that miss at the
//! same time share one `generate` call. [`DataKeyCache::data_key_for_decrypt`] keeps decrypted
//! data keys per (ciphertext blob, context) for the same age, so that records which share a
//! data key cost one `decrypt` call.
//!
//! ```no_run
//! # async fn example(client: client_sdk::Client) -> client_sdk::Result<()> {
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use client_sdk::Context;
//! use client_sdk::cache::{CacheLimits, DataKeyCache};
//!
//! let limits = CacheLimits::default()
//!     .with_max_age(Duration::from_secs(60))
//!     .with_max_messages(10_000);
//! let cache = DataKeyCache::new(Arc::new(client), limits)?;
//! let context = Context::from([("tenant".to_owned(), "clinic-7".to_owned())]);
//! let key = cache.data_key_for_encrypt("patient-records", &context, 512).await?;
//! // Encrypt up to 512 bytes with `key.plaintext()`, and store `key.ciphertext()` with them.
//! # Ok(())
//! # }
//! ```
//!
//! Reusing a data key trades isolation for fewer KMS calls: every record encrypted under one
//! cached key is exposed if that key leaks, and the KMS audit log records one `generate` for
//! all of them. Keep the limits as low as the call rate allows.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use secrecy::SecretSlice;
use tokio::time::Instant;

use self::table::{EntryId, Fresh, Reservation, Table, decrypt_entry_id, encrypt_entry_id, lock};
use crate::Client;
use crate::error::{Error, Result};
use crate::field::FieldKey;
use crate::types::{Context, DataKeySize};

/// KMS calls that the cache makes, so that tests and benchmarks can count or replace them.
///
/// [`Client`] implements it with `POST /v1/keys/{name}/datakey` (32-byte keys) and
/// `POST /v1/decrypt`.
pub trait DataKeySource: Send + Sync {
    /// Generates a new 32-byte data key under the latest version of key `key_name`, returning
    /// its plaintext and its ciphertext blob.
    fn new_data_key(
        &self,
        key_name: &str,
        context: &Context,
    ) -> impl Future<Output = Result<CachedDataKey>> + Send;

    /// Decrypts the ciphertext blob of a data key. The result carries `ciphertext` as its blob.
    fn decrypt_data_key(
        &self,
        ciphertext: &[u8],
        context: &Context,
    ) -> impl Future<Output = Result<CachedDataKey>> + Send;
}

impl DataKeySource for Client {
    async fn new_data_key(&self, key_name: &str, context: &Context) -> Result<CachedDataKey> {
        let data_key = self
            .generate_data_key(key_name, DataKeySize::Bytes32, context, true)
            .await?;
        let Some(plaintext) = data_key.plaintext else {
            // The request includes the plaintext, so a response without it is malformed.
            return Err(Error::Decode {
                request: format!("POST /v1/keys/{key_name}/datakey"),
                source: serde::de::Error::missing_field("plaintext"),
            });
        };
        Ok(CachedDataKey::new(
            data_key.key_name,
            data_key.key_id,
            data_key.key_version,
            plaintext,
            data_key.ciphertext,
        ))
    }

    async fn decrypt_data_key(
        &self,
        ciphertext: &[u8],
        context: &Context,
    ) -> Result<CachedDataKey> {
        let plaintext = self.decrypt(ciphertext, context).await?;
        Ok(CachedDataKey::new(
            plaintext.key_name,
            plaintext.key_id,
            plaintext.key_version,
            plaintext.plaintext,
            ciphertext.to_vec(),
        ))
    }
}

/// A data key as the cache stores and hands it out: the plaintext key, its ciphertext blob and
/// the key that wrapped it.
///
/// Clones share one allocation. The plaintext is zeroized when the last clone is dropped, which
/// happens once the cache has evicted the entry and no caller has the key any more.
#[derive(Clone)]
pub struct CachedDataKey(Arc<KeyMaterial>);

struct KeyMaterial {
    key_name: String,
    key_id: String,
    key_version: u32,
    plaintext: SecretSlice<u8>,
    ciphertext: Vec<u8>,
    /// Subkeys for field encryption, derived at first use. They live and die with the
    /// plaintext, so evicting the data key wipes them too.
    field_key: OnceLock<FieldKey>,
}

impl CachedDataKey {
    /// Creates a cached data key from the parts that the KMS returns.
    pub fn new(
        key_name: String,
        key_id: String,
        key_version: u32,
        plaintext: SecretSlice<u8>,
        ciphertext: Vec<u8>,
    ) -> Self {
        CachedDataKey(Arc::new(KeyMaterial {
            key_name,
            key_id,
            key_version,
            plaintext,
            ciphertext,
            field_key: OnceLock::new(),
        }))
    }

    /// Returns the name of the key that wrapped the data key.
    pub fn key_name(&self) -> &str {
        &self.0.key_name
    }

    /// Returns the id of the key that wrapped the data key.
    pub fn key_id(&self) -> &str {
        &self.0.key_id
    }

    /// Returns the version of the key that wrapped the data key.
    pub fn key_version(&self) -> u32 {
        self.0.key_version
    }

    /// Returns the plaintext data key.
    pub fn plaintext(&self) -> &SecretSlice<u8> {
        &self.0.plaintext
    }

    /// Returns the data key's ciphertext blob, to store next to the data it encrypts.
    pub fn ciphertext(&self) -> &[u8] {
        &self.0.ciphertext
    }

    /// Returns the field-encryption subkeys of this data key, deriving them at first use.
    pub(crate) fn field_key(&self) -> Result<&FieldKey, crate::field::Error> {
        if let Some(key) = self.0.field_key.get() {
            return Ok(key);
        }
        // Two callers may derive at once. The loser's copy is dropped, and zeroized, here.
        let key = FieldKey::new(&self.0.plaintext, &self.0.ciphertext)?;
        Ok(self.0.field_key.get_or_init(|| key))
    }

    /// Returns a weak handle, so tests can check that the key material was dropped.
    #[cfg(test)]
    pub(crate) fn downgrade(&self) -> std::sync::Weak<impl Sized + use<>> {
        Arc::downgrade(&self.0)
    }
}

impl fmt::Debug for CachedDataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedDataKey")
            .field("key_name", &self.0.key_name)
            .field("key_id", &self.0.key_id)
            .field("key_version", &self.0.key_version)
            .field("plaintext", &self.0.plaintext)
            .field("ciphertext_len", &self.0.ciphertext.len())
            .finish()
    }
}

/// Limits on how long and how much one cached data key is used.
///
/// The defaults are 5 minutes, 2^32 messages, no byte limit and 1024 entries per table. The
/// message default is the largest number of random 96-bit nonces that NIST SP 800-38D allows
/// under one AES-GCM key. Lower it to shrink what one leaked data key exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    max_age: Duration,
    max_messages: u64,
    max_bytes: u64,
    max_entries: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            max_age: Duration::from_secs(300),
            max_messages: 1 << 32,
            max_bytes: u64::MAX,
            max_entries: 1024,
        }
    }
}

impl CacheLimits {
    /// Sets how long a data key is used after the KMS returned it, for encryption and
    /// decryption alike. Must not be zero.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Sets how many messages (calls of `data_key_for_encrypt`) one data key encrypts. Must be
    /// at least 1.
    pub fn with_max_messages(mut self, max_messages: u64) -> Self {
        self.max_messages = max_messages;
        self
    }

    /// Sets how many plaintext bytes one data key encrypts, summed over its messages. Must be
    /// at least 1.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Sets the maximum number of entries in each of the two tables (encryption and
    /// decryption). Must be at least 1.
    pub fn with_max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// Returns the maximum age of a data key.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// Returns the maximum number of messages per data key.
    pub fn max_messages(&self) -> u64 {
        self.max_messages
    }

    /// Returns the maximum number of plaintext bytes per data key.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Returns the maximum number of entries per table.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    fn validate(&self) -> Result<()> {
        let invalid = |name, value: String, reason| Error::InvalidArgument {
            name,
            value,
            reason,
        };
        if self.max_age.is_zero() {
            return Err(invalid(
                "cache max_age",
                "0s".into(),
                "must be longer than zero",
            ));
        }
        if self.max_messages == 0 {
            return Err(invalid(
                "cache max_messages",
                "0".into(),
                "must be at least 1",
            ));
        }
        if self.max_bytes == 0 {
            return Err(invalid("cache max_bytes", "0".into(), "must be at least 1"));
        }
        if self.max_entries == 0 {
            return Err(invalid(
                "cache max_entries",
                "0".into(),
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// A cache of data keys in front of a [`DataKeySource`], usually a [`Client`].
///
/// Entries live in memory only. A data key is dropped, and its plaintext zeroized, when it
/// reaches a limit, when room is needed for another entry, on [`DataKeyCache::clear`] and when
/// the cache is dropped. Callers that still have a clone of it keep it until they finish.
///
/// NOTE: an entry past its maximum age that no caller requests again stays in memory until a miss
/// makes room, or until [`DataKeyCache::purge_expired`] runs. Call that from a timer to bound how
/// long key material outlives its age.
pub struct DataKeyCache<S = Client> {
    source: Arc<S>,
    limits: CacheLimits,
    encrypt: Mutex<Table>,
    decrypt: Mutex<Table>,
}

impl<S> fmt::Debug for DataKeyCache<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKeyCache")
            .field("limits", &self.limits)
            .field("encrypt_entries", &lock(&self.encrypt).len())
            .field("decrypt_entries", &lock(&self.decrypt).len())
            .finish_non_exhaustive()
    }
}

impl<S: DataKeySource> DataKeyCache<S> {
    /// Creates an empty cache. Fails with [`Error::InvalidArgument`] when a limit is zero.
    pub fn new(source: Arc<S>, limits: CacheLimits) -> Result<Self> {
        limits.validate()?;
        Ok(DataKeyCache {
            source,
            limits,
            encrypt: Mutex::new(Table::default()),
            decrypt: Mutex::new(Table::default()),
        })
    }

    /// Returns the limits.
    pub fn limits(&self) -> CacheLimits {
        self.limits
    }

    /// Returns the source of data keys.
    pub fn source(&self) -> &Arc<S> {
        &self.source
    }

    /// Returns a data key to encrypt one message of `bytes_to_encrypt` bytes under key
    /// `key_name` and `context`, and counts the message against the key's limits.
    ///
    /// The key comes from the cache while it is younger than the maximum age and this message
    /// keeps it within the message and byte limits. Otherwise the entry is evicted and a new
    /// data key is generated. Callers that miss at the same time wait for one shared
    /// `generate` call. A message larger than the byte limit gets a data key of its own that
    /// is not cached.
    ///
    /// When the KMS call fails, the error goes to the caller that made the call, and the next
    /// waiting caller makes its own attempt.
    pub async fn data_key_for_encrypt(
        &self,
        key_name: &str,
        context: &Context,
        bytes_to_encrypt: u64,
    ) -> Result<CachedDataKey> {
        if bytes_to_encrypt > self.limits.max_bytes {
            return self.source.new_data_key(key_name, context).await;
        }
        let id = encrypt_entry_id(key_name, context);
        let usage = Some(bytes_to_encrypt);
        let generate = || async {
            let key = self.source.new_data_key(key_name, context).await?;
            Ok(Fresh::now(key))
        };
        self.get_or_fetch(&self.encrypt, id, usage, generate).await
    }

    /// Returns the decrypted data key of a ciphertext blob, from the cache when the same blob
    /// and context were decrypted less than the maximum age ago.
    ///
    /// Callers that miss at the same time wait for one shared `decrypt` call. Decryption counts
    /// against no message or byte limit.
    pub async fn data_key_for_decrypt(
        &self,
        ciphertext: &[u8],
        context: &Context,
    ) -> Result<CachedDataKey> {
        let id = decrypt_entry_id(ciphertext, context);
        let decrypt = || async {
            let key = self.source.decrypt_data_key(ciphertext, context).await?;
            Ok(Fresh::now(key))
        };
        self.get_or_fetch(&self.decrypt, id, None, decrypt).await
    }

    /// Drops every entry whose data key is older than the maximum age.
    pub fn purge_expired(&self) {
        let now = Instant::now();
        for table in [&self.encrypt, &self.decrypt] {
            lock(table).remove_expired(now, &self.limits);
        }
    }

    /// Drops every entry, so that the next calls go to the KMS.
    pub fn clear(&self) {
        lock(&self.encrypt).clear();
        lock(&self.decrypt).clear();
    }

    /// Takes a usable key from `table`, or joins or starts the fetch of a new one.
    ///
    /// `usage` is the byte count of a message to count against the entry's limits, or `None`
    /// for the decryption table, which counts nothing.
    async fn get_or_fetch<F, Fut>(
        &self,
        table: &Mutex<Table>,
        id: EntryId,
        usage: Option<u64>,
        fetch: F,
    ) -> Result<CachedDataKey>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Fresh>>,
    {
        loop {
            let slot = match lock(table).reserve(id, usage, Instant::now(), &self.limits) {
                Reservation::Ready(key) => return Ok(key),
                Reservation::Pending(slot) => slot,
            };
            if let Err(err) = slot.get_or_try_init(&fetch).await {
                lock(table).forget_failed(id, &slot);
                return Err(err);
            }

            // Other callers may have used the new key up, or evicted it, while this one
            // waited. Then the loop starts over with the entry that replaced it.
            let claim = lock(table).claim(id, &slot, usage, Instant::now(), &self.limits);
            if let Some(key) = claim {
                return Ok(key);
            }
        }
    }

    /// Returns the number of entries in the encryption and decryption tables.
    #[cfg(test)]
    pub(crate) fn entry_counts(&self) -> (usize, usize) {
        (lock(&self.encrypt).len(), lock(&self.decrypt).len())
    }
}

mod table;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;
