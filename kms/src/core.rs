//! The daemon's state: sealed or unsealed, and the key operations on top of it.
//!
//! Calls that touch the store block; the HTTP layer runs them on the blocking pool. Calls on
//! the hot path (data keys, encrypt, decrypt, rewrap) use only the in-memory [`Keyring`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use hsm::{RootKey, RootOfTrust, ShamirRoot, Share, ShareSetId, UnsealProgress};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::auth::{self, TokenCache};
use crate::blob::Header;
use crate::error::Error;
use crate::keyring::{self, KeyState, KeyVersion, Keyring, KeyringKey, NamedKey, keyring_aad};
use crate::store::Store;
use crate::store::models::{KeyRow, KeyVersionRow, KeyringRow, SealConfigRow, TokenRow};

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Formats Unix seconds as RFC 3339.
pub fn rfc3339(seconds: i64) -> String {
    let time = UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    humantime::format_rfc3339_seconds(time).to_string()
}

/// What `GET /v1/sys/status` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub initialized: bool,
    pub sealed: bool,
    pub threshold: Option<u8>,
    pub shares: Option<u8>,
    pub progress: usize,
    pub root_of_trust: Option<&'static str>,
    pub version: &'static str,
}

/// What init returns, once.
pub struct InitOutput {
    pub shares: Vec<SecretString>,
    pub root_token: SecretString,
    pub root_token_accessor: String,
}

impl std::fmt::Debug for InitOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitOutput")
            .field("shares", &self.shares.len())
            .field("root_token_accessor", &self.root_token_accessor)
            .finish_non_exhaustive()
    }
}

/// The seal configuration once read from the store.
#[derive(Debug, Clone, Copy)]
struct SealParams {
    set_id: ShareSetId,
    shares: u8,
    threshold: u8,
}

#[derive(Debug, Default)]
struct SealState {
    params: Option<SealParams>,
    progress: Option<UnsealProgress>,
}

/// The daemon core shared by all request handlers.
#[derive(Debug)]
pub struct Core {
    store: Store,
    seal: Mutex<SealState>,
    keyring: RwLock<Option<Arc<Keyring>>>,
    /// Serialises key-management writes on this node, so rotations do not race.
    admin: Mutex<()>,
    tokens: TokenCache,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below leaves its data consistent at each step, so a panic in
    // another thread does not make the data unsafe to read.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn to_u8(value: i32, what: &'static str) -> Result<u8, Error> {
    u8::try_from(value)
        .map_err(|_| Error::StoreInvalid(format!("stored {what} {value} is out of range")))
}

fn to_u32(value: i32) -> Result<u32, Error> {
    u32::try_from(value)
        .map_err(|_| Error::StoreInvalid(format!("stored version {value} is negative")))
}

impl Core {
    /// Builds the core over an opened store; the daemon starts sealed.
    pub fn new(store: Store) -> Result<Core, Error> {
        let params = store
            .seal_config()?
            .map(|row| parse_seal_config(&row))
            .transpose()?;
        Ok(Core {
            store,
            seal: Mutex::new(SealState {
                params,
                progress: None,
            }),
            keyring: RwLock::new(None),
            admin: Mutex::new(()),
            tokens: TokenCache::default(),
        })
    }

    /// The store, for token lookups.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The token cache.
    pub fn token_cache(&self) -> &TokenCache {
        &self.tokens
    }

    /// Returns the unsealed keyring, or `Sealed`.
    pub fn keyring(&self) -> Result<Arc<Keyring>, Error> {
        let current = self
            .keyring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // The keyring guard is released before the seal lock is taken: unseal takes them in
        // the other order.
        match current {
            Some(keyring) => Ok(keyring),
            None if lock(&self.seal).params.is_none() => Err(Error::SealedUninitialized),
            None => Err(Error::Sealed),
        }
    }

    /// Reports the seal status.
    pub fn status(&self) -> Status {
        let sealed = self
            .keyring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none();
        let state = lock(&self.seal);
        Status {
            initialized: state.params.is_some(),
            sealed,
            threshold: state.params.map(|p| p.threshold),
            shares: state.params.map(|p| p.shares),
            progress: state.progress.as_ref().map_or(0, UnsealProgress::count),
            root_of_trust: state.params.map(|_| hsm::RootKind::Shamir.as_str()),
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    /// Creates the root key, splits it into shares, and stores the keyring key wrapped by it.
    pub fn init(&self, shares: u8, threshold: u8) -> Result<InitOutput, Error> {
        let mut state = lock(&self.seal);
        if state.params.is_some() {
            return Err(Error::AlreadyInitialized);
        }
        let root_key = RootKey::generate()?;
        let set_id = ShareSetId::generate()?;
        let split = hsm::split(&root_key, shares, threshold, set_id)?;
        let root = ShamirRoot::new(root_key);

        let keyring_key = keyring::random_key()?;
        let wrapped = root.wrap(keyring_key.as_ref(), &keyring_aad(1))?;
        let token = auth::mint_token()?;
        let created_at = now();
        let config = SealConfigRow {
            id: 1,
            root_kind: hsm::RootKind::Shamir.as_str().to_owned(),
            share_set_id: set_id.to_string(),
            shares: i32::from(shares),
            threshold: i32::from(threshold),
            created_at,
        };
        let keyring_row = KeyringRow {
            version: 1,
            mechanism: wrapped.mechanism.as_str().to_owned(),
            wrapped_key: wrapped.bytes,
            created_at,
        };
        let token_row = root_token_row(&token, created_at);
        self.store.initialize(&config, &keyring_row, &token_row)?;
        state.params = Some(SealParams {
            set_id,
            shares,
            threshold,
        });
        Ok(InitOutput {
            shares: split.iter().map(Share::encode).collect(),
            root_token: token.secret,
            root_token_accessor: token.accessor,
        })
    }

    /// Adds one share; at the threshold, rebuilds the root key and unseals.
    pub fn unseal(&self, share_text: &str) -> Result<Status, Error> {
        let mut state = lock(&self.seal);
        let params = state.params.ok_or(Error::NotInitialized)?;
        if self
            .keyring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
        {
            drop(state);
            return Ok(self.status());
        }
        let share = Share::parse(share_text)?;
        let progress = state
            .progress
            .get_or_insert_with(|| UnsealProgress::new(params.set_id, params.threshold));
        progress.add(share)?;
        if progress.is_complete() {
            let root_key = progress.combine();
            state.progress = None;
            let keyring = match root_key {
                Ok(key) => self.open_keyring(Arc::new(ShamirRoot::new(key))),
                Err(error) => {
                    tracing::warn!(%error, "combining shares failed");
                    Err(Error::UnsealFailed)
                }
            }?;
            *self.keyring.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(keyring));
            tracing::info!("unsealed");
        }
        drop(state);
        Ok(self.status())
    }

    /// Mints a new root token for an admin who presents the threshold number of shares.
    ///
    /// The shares are checked the way unseal checks them, and the rebuilt key must open the
    /// stored keyring key. Works sealed or unsealed; the daemon's state does not change.
    pub fn generate_root(&self, shares: &[SecretString]) -> Result<InitOutput, Error> {
        let params = lock(&self.seal).params.ok_or(Error::NotInitialized)?;
        let mut progress = UnsealProgress::new(params.set_id, params.threshold);
        for share in shares {
            progress.add(Share::parse(share.expose_secret())?)?;
        }
        if !progress.is_complete() {
            return Err(Error::InvalidRequest(format!(
                "shares: {} valid shares given, {} needed",
                progress.count(),
                params.threshold
            )));
        }
        let root = ShamirRoot::new(progress.combine().map_err(|_| Error::UnsealFailed)?);
        let first = self
            .store
            .keyring_versions()?
            .into_iter()
            .next()
            .ok_or_else(|| Error::StoreInvalid("the key store has no keyring key".to_owned()))?;
        let version = to_u32(first.version)?;
        let wrapped = wrapped_from_row(first)?;
        if root.unwrap(&wrapped, &keyring_aad(version)).is_err() {
            return Err(Error::UnsealFailed);
        }
        let token = auth::mint_token()?;
        self.store.insert_token(&root_token_row(&token, now()))?;
        tracing::warn!(accessor = %token.accessor, "a new root token was generated from shares");
        Ok(InitOutput {
            shares: Vec::new(),
            root_token: token.secret,
            root_token_accessor: token.accessor,
        })
    }

    /// Discards unseal progress.
    pub fn unseal_reset(&self) -> Result<Status, Error> {
        {
            let mut state = lock(&self.seal);
            if state.params.is_none() {
                return Err(Error::NotInitialized);
            }
            state.progress = None;
        }
        Ok(self.status())
    }

    /// Drops every unwrapped key; the memory is zeroized as the last references go.
    pub fn seal(&self) -> Status {
        let previous = self
            .keyring
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        lock(&self.seal).progress = None;
        self.tokens.clear();
        if previous.is_some() {
            tracing::info!("sealed");
        }
        drop(previous);
        self.status()
    }

    /// Unwraps the keyring keys with `root` and every key version with them.
    fn open_keyring(&self, root: Arc<dyn RootOfTrust>) -> Result<Keyring, Error> {
        let mut keyring_keys = BTreeMap::new();
        for row in self.store.keyring_versions()? {
            let version = to_u32(row.version)?;
            let wrapped = wrapped_from_row(row)?;
            let key = root.unwrap(&wrapped, &keyring_aad(version)).map_err(|error| {
                tracing::warn!(%error, version, "the reconstructed root key did not open the keyring");
                Error::UnsealFailed
            })?;
            keyring_keys.insert(version, KeyringKey::new(version, &key)?);
        }
        if keyring_keys.is_empty() {
            return Err(Error::StoreInvalid(
                "the key store has no keyring key".to_owned(),
            ));
        }
        let keyring = Keyring::new(root, keyring_keys);
        for (key_row, version_rows) in self.store.load_keys()? {
            keyring.insert(build_named_key(&keyring, &key_row, &version_rows)?);
        }
        Ok(keyring)
    }

    /// Creates a key with one version.
    pub fn create_key(&self, name: &str) -> Result<Arc<NamedKey>, Error> {
        let keyring = self.keyring()?;
        let _admin = lock(&self.admin);
        if keyring.by_name(name).is_ok() {
            return Err(Error::KeyExists(name.to_owned()));
        }
        let id = Uuid::new_v4();
        let created_at = now();
        let (version_row, version) = new_version_row(&keyring, id, 1, created_at)?;
        let key_row = KeyRow {
            id: id.to_string(),
            name: name.to_owned(),
            state: KeyState::Enabled.as_str().to_owned(),
            created_at,
        };
        self.store.create_key(&key_row, &version_row)?;
        tracing::info!(key = name, key_id = %id, "key created");
        Ok(keyring.insert(NamedKey {
            id,
            name: name.to_owned(),
            state: KeyState::Enabled,
            created_at,
            versions: BTreeMap::from([(1, Arc::new(version))]),
        }))
    }

    /// Adds a version to a key; new encryptions use it.
    pub fn rotate_key(&self, name: &str) -> Result<Arc<NamedKey>, Error> {
        let keyring = self.keyring()?;
        let _admin = lock(&self.admin);
        let current = keyring.by_name(name)?;
        let next = current.latest_version() + 1;
        let (row, version) = new_version_row(&keyring, current.id, next, now())?;
        self.store.add_key_version(&row)?;
        let mut versions = current.versions.clone();
        versions.insert(next, Arc::new(version));
        tracing::info!(key = name, key_version = next, "key rotated");
        Ok(keyring.insert(NamedKey {
            id: current.id,
            name: current.name.clone(),
            state: current.state,
            created_at: current.created_at,
            versions,
        }))
    }

    /// Enables or disables a key.
    pub fn set_key_state(&self, name: &str, state: KeyState) -> Result<Arc<NamedKey>, Error> {
        let keyring = self.keyring()?;
        let _admin = lock(&self.admin);
        let current = keyring.by_name(name)?;
        self.store
            .set_key_state(&current.id.to_string(), state.as_str())?;
        tracing::info!(key = name, state = state.as_str(), "key state changed");
        Ok(keyring.insert(NamedKey {
            id: current.id,
            name: current.name.clone(),
            state,
            created_at: current.created_at,
            versions: current.versions.clone(),
        }))
    }

    /// Finds the key a blob names, before any authorization or decryption.
    pub fn resolve_blob<'b>(
        &self,
        blob: &'b [u8],
    ) -> Result<(Arc<NamedKey>, Header, &'b [u8]), Error> {
        let keyring = self.keyring()?;
        let (header, body) = Header::parse(blob)?;
        let key = keyring.by_id(header.key_id)?;
        Ok((key, header, body))
    }
}

/// The wrapped keyring key of a stored row, with the mechanism that wrapped it.
fn wrapped_from_row(row: KeyringRow) -> Result<hsm::WrappedKey, Error> {
    let mechanism = row.mechanism.parse().map_err(|_| {
        Error::StoreInvalid(format!(
            "keyring version {} has an unknown mechanism",
            row.version
        ))
    })?;
    Ok(hsm::WrappedKey {
        mechanism,
        bytes: row.wrapped_key,
    })
}

/// The stored row of a root token: no expiry and an empty policy, because root skips policy.
fn root_token_row(token: &auth::NewToken, created_at: i64) -> TokenRow {
    TokenRow {
        accessor: token.accessor.clone(),
        token_hash: token.hash.to_vec(),
        is_root: true,
        display_name: Some("root".to_owned()),
        policy: "[]".to_owned(),
        created_at,
        expires_at: None,
        revoked_at: None,
    }
}

fn new_version_row(
    keyring: &Keyring,
    id: Uuid,
    version: u32,
    created_at: i64,
) -> Result<(KeyVersionRow, KeyVersion), Error> {
    let wrapping = keyring
        .latest_keyring_key()
        .ok_or_else(|| Error::StoreInvalid("the keyring has no key".to_owned()))?;
    let material = keyring::random_key()?;
    let wrapped = wrapping.wrap_material(id, version, material.as_ref())?;
    let stored_version = i32::try_from(version)
        .map_err(|_| Error::Conflict("the key has reached the maximum number of versions"))?;
    let stored_keyring = i32::try_from(wrapping.version())
        .map_err(|_| Error::StoreInvalid("keyring version out of range".to_owned()))?;
    let row = KeyVersionRow {
        key_id: id.to_string(),
        version: stored_version,
        keyring_version: stored_keyring,
        wrapped_material: wrapped,
        state: KeyState::Enabled.as_str().to_owned(),
        created_at,
    };
    let key_version = KeyVersion::new(version, KeyState::Enabled, created_at, material.as_ref())?;
    Ok((row, key_version))
}

fn build_named_key(
    keyring: &Keyring,
    row: &KeyRow,
    version_rows: &[KeyVersionRow],
) -> Result<NamedKey, Error> {
    let id = Uuid::parse_str(&row.id)
        .map_err(|_| Error::StoreInvalid(format!("key {:?} has an invalid id", row.name)))?;
    let mut versions = BTreeMap::new();
    for v in version_rows {
        let version = to_u32(v.version)?;
        let wrapping = keyring
            .keyring_key(to_u32(v.keyring_version)?)
            .ok_or_else(|| Error::CorruptKeyMaterial(row.name.clone()))?;
        let material = wrapping
            .unwrap_material(id, version, &v.wrapped_material)
            .ok_or_else(|| Error::CorruptKeyMaterial(row.name.clone()))?;
        let state = KeyState::from_stored(&v.state);
        versions.insert(
            version,
            Arc::new(KeyVersion::new(version, state, v.created_at, &material)?),
        );
    }
    Ok(NamedKey {
        id,
        name: row.name.clone(),
        state: KeyState::from_stored(&row.state),
        created_at: row.created_at,
        versions,
    })
}

fn parse_seal_config(row: &SealConfigRow) -> Result<SealParams, Error> {
    let set_id = row
        .share_set_id
        .parse()
        .map_err(|_| Error::StoreInvalid("stored share set id is invalid".to_owned()))?;
    Ok(SealParams {
        set_id,
        shares: to_u8(row.shares, "share count")?,
        threshold: to_u8(row.threshold, "threshold")?,
    })
}
