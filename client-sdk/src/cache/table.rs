//! The two tables of the data-key cache: entries keyed by a hash, their limits and eviction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::{CacheLimits, CachedDataKey};
use crate::types::Context;

/// Locks a table. A panic while the lock was held cannot leave a table inconsistent (every
/// change is one map operation), so a poisoned lock is used as it is.
pub(super) fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

/// SHA-256 of what identifies an entry, so that lookups neither allocate nor keep contexts.
pub(super) type EntryId = [u8; 32];

pub(super) fn encrypt_entry_id(key_name: &str, context: &Context) -> EntryId {
    let mut hash = Sha256::new();
    hash.update(b"encrypt\0");
    update_with_length(&mut hash, key_name.as_bytes());
    update_with_context(&mut hash, context);
    hash.finalize().into()
}

pub(super) fn decrypt_entry_id(ciphertext: &[u8], context: &Context) -> EntryId {
    let mut hash = Sha256::new();
    hash.update(b"decrypt\0");
    update_with_length(&mut hash, ciphertext);
    update_with_context(&mut hash, context);
    hash.finalize().into()
}

/// Hashes a byte string after its length, so that two strings cannot run into each other.
fn update_with_length(hash: &mut Sha256, bytes: &[u8]) {
    // Lengths of key names, contexts and blobs are far below 2^64.
    hash.update((bytes.len() as u64).to_be_bytes());
    hash.update(bytes);
}

fn update_with_context(hash: &mut Sha256, context: &Context) {
    hash.update((context.len() as u64).to_be_bytes());
    for (key, value) in context {
        update_with_length(hash, key.as_bytes());
        update_with_length(hash, value.as_bytes());
    }
}

/// A data key and the time the KMS returned it, from which its age counts.
pub(super) struct Fresh {
    key: CachedDataKey,
    created: Instant,
}

impl Fresh {
    pub(super) fn now(key: CachedDataKey) -> Self {
        Fresh {
            key,
            created: Instant::now(),
        }
    }
}

/// One cache entry: a data key, or the fetch of one in flight, and its use so far.
struct Entry {
    slot: Arc<OnceCell<Fresh>>,
    messages: u64,
    bytes: u64,
    last_used: Instant,
}

impl Entry {
    /// Returns whether one more use fits the limits. `usage` is `None` in the decryption table,
    /// where only the age counts.
    fn admits(
        &self,
        fresh: &Fresh,
        usage: Option<u64>,
        now: Instant,
        limits: &CacheLimits,
    ) -> bool {
        if now.saturating_duration_since(fresh.created) >= limits.max_age {
            return false;
        }
        let Some(bytes) = usage else {
            return true;
        };
        self.messages < limits.max_messages
            && self
                .bytes
                .checked_add(bytes)
                .is_some_and(|total| total <= limits.max_bytes)
    }

    /// Orders entries for eviction, lowest first: a pending entry that no caller waits on (a
    /// fetch that was cancelled), a key, and a fetch in progress.
    fn eviction_class(&self) -> u8 {
        if self.slot.initialized() {
            1
        } else if Arc::strong_count(&self.slot) == 1 {
            0
        } else {
            2
        }
    }

    /// Counts one use, and returns whether the key has now reached a usage limit.
    fn count(&mut self, usage: Option<u64>, now: Instant, limits: &CacheLimits) -> bool {
        self.last_used = now;
        let Some(bytes) = usage else {
            return false;
        };
        self.messages += 1;
        self.bytes += bytes;
        self.messages >= limits.max_messages || self.bytes >= limits.max_bytes
    }
}

pub(super) enum Reservation {
    /// Cached key within its limits, whose use is already counted.
    Ready(CachedDataKey),
    /// A slot to fill, or being filled by another caller.
    Pending(Arc<OnceCell<Fresh>>),
}

#[derive(Default)]
pub(super) struct Table {
    entries: HashMap<EntryId, Entry>,
}

impl Table {
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Drops every entry.
    pub(super) fn clear(&mut self) {
        self.entries.clear();
    }

    /// Returns a usable cached key and counts the use, or the pending slot to wait on. An
    /// entry past a limit is replaced by a new pending one.
    pub(super) fn reserve(
        &mut self,
        id: EntryId,
        usage: Option<u64>,
        now: Instant,
        limits: &CacheLimits,
    ) -> Reservation {
        if let Some(entry) = self.entries.get(&id) {
            match entry.slot.get() {
                None => return Reservation::Pending(Arc::clone(&entry.slot)),
                Some(fresh) if entry.admits(fresh, usage, now, limits) => {
                    let key = fresh.key.clone();
                    self.count_use(id, usage, now, limits);
                    return Reservation::Ready(key);
                }
                Some(_) => {
                    self.entries.remove(&id);
                }
            }
        }

        self.make_room(now, limits);
        let slot = Arc::new(OnceCell::new());
        let entry = Entry {
            slot: Arc::clone(&slot),
            messages: 0,
            bytes: 0,
            last_used: now,
        };
        self.entries.insert(id, entry);
        Reservation::Pending(slot)
    }

    /// Takes the key that `slot` now contains if the entry still uses that slot and admits one
    /// more use, and counts it. Otherwise the caller must reserve again.
    pub(super) fn claim(
        &mut self,
        id: EntryId,
        slot: &Arc<OnceCell<Fresh>>,
        usage: Option<u64>,
        now: Instant,
        limits: &CacheLimits,
    ) -> Option<CachedDataKey> {
        let entry = self.entries.get(&id)?;
        if !Arc::ptr_eq(&entry.slot, slot) {
            return None;
        }
        let fresh = slot.get()?;
        if !entry.admits(fresh, usage, now, limits) {
            self.entries.remove(&id);
            return None;
        }
        let key = fresh.key.clone();
        self.count_use(id, usage, now, limits);
        Some(key)
    }

    /// Counts one use of an entry, and evicts the entry when the use reached a limit, so that
    /// a used-up key does not stay in memory until the next call.
    fn count_use(&mut self, id: EntryId, usage: Option<u64>, now: Instant, limits: &CacheLimits) {
        let used_up = self
            .entries
            .get_mut(&id)
            .is_some_and(|entry| entry.count(usage, now, limits));
        if used_up {
            self.entries.remove(&id);
        }
    }

    /// Removes the pending entry of a fetch that failed, unless another caller still waits on
    /// it and will make its own attempt. Without this, every failed fetch (a bad blob, a
    /// denied key) would leave a dead entry that takes room from usable keys.
    pub(super) fn forget_failed(&mut self, id: EntryId, slot: &Arc<OnceCell<Fresh>>) {
        let Some(entry) = self.entries.get(&id) else {
            return;
        };
        // Callers clone the slot only under the table lock, which this caller holds, so a
        // count of two (the entry and this caller) means that no other caller waits on it.
        let idle = Arc::strong_count(slot) <= 2;
        if Arc::ptr_eq(&entry.slot, slot) && !slot.initialized() && idle {
            self.entries.remove(&id);
        }
    }

    /// Evicts entries until one more fits: first the expired keys, then pending entries that
    /// no caller waits on, then the least recently used key, and a fetch that callers wait on
    /// only when nothing else is left. Scans the table, which is bounded by `max_entries`, and
    /// runs only on a miss.
    fn make_room(&mut self, now: Instant, limits: &CacheLimits) {
        if self.entries.len() < limits.max_entries {
            return;
        }
        self.remove_expired(now, limits);
        while self.entries.len() >= limits.max_entries {
            let victim = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| (entry.eviction_class(), entry.last_used))
                .map(|(id, _)| *id);
            match victim {
                Some(id) => self.entries.remove(&id),
                None => return,
            };
        }
    }

    pub(super) fn remove_expired(&mut self, now: Instant, limits: &CacheLimits) {
        self.entries.retain(|_, entry| match entry.slot.get() {
            Some(fresh) => now.saturating_duration_since(fresh.created) < limits.max_age,
            None => true,
        });
    }
}
