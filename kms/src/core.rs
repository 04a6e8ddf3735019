//! The daemon's state: sealed or unsealed, and the key operations on top of it.
//!
//! Calls that touch the store block; the HTTP layer runs them on the blocking pool. Calls on
//! the hot path (data keys, encrypt, decrypt, rewrap) use only the in-memory [`Keyring`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use hsm::{
    Pkcs11Root, RootKey, RootKind, RootOfTrust, ShamirRoot, Share, ShareSetId, UnsealProgress,
    WrappedKey,
};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::auth::{self, TokenCache};
use crate::blob::Header;
use crate::error::Error;
use crate::keyring::{self, KeyState, KeyVersion, Keyring, KeyringKey, NamedKey, keyring_aad};
use crate::store::models::{KeyRow, KeyVersionRow, KeyringRow, SealConfigRow, TokenRow};
use crate::store::{RootColumns, Store};

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

/// Associated data of the recovery check, which proves that recovery shares rebuild the
/// recovery key of a PKCS#11 root.
const RECOVERY_CHECK_AAD: &[u8] = b"kms recovery check v1";

/// The root of trust that the daemon was started with.
#[derive(Debug, Clone)]
pub enum RootSetting {
    /// The root key is rebuilt from Shamir shares at unseal.
    Shamir,
    /// The root key is a key object in a PKCS#11 token, which unseals the daemon at start.
    /// The root's current key label is the one that init creates.
    Pkcs11(Pkcs11Root),
}

impl RootSetting {
    fn kind(&self) -> RootKind {
        match self {
            RootSetting::Shamir => RootKind::Shamir,
            RootSetting::Pkcs11(_) => RootKind::Pkcs11,
        }
    }
}

/// The seal configuration once read from the store.
#[derive(Debug, Clone)]
struct SealParams {
    kind: RootKind,
    set_id: ShareSetId,
    shares: u8,
    threshold: u8,
    /// With a PKCS#11 root: the key object that wraps new keyring versions.
    root_key_label: Option<String>,
    /// With a PKCS#11 root: the check that recovery shares are right.
    recovery_check: Option<Vec<u8>>,
}

/// The PKCS#11 key object that wraps the keyring after a root key rotation, and the one
/// before it, which stays in the token until an admin removes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RootKeyRotation {
    pub key_label: String,
    pub previous_key_label: String,
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
    root: RootSetting,
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
    /// Builds the core over an opened store. With a Shamir root the daemon starts sealed;
    /// with a PKCS#11 root and an initialized store, the token unseals it here.
    ///
    /// Fails when the store was initialized with the other kind of root, naming the
    /// migration that moves it.
    pub fn new(store: Store, root: RootSetting) -> Result<Core, Error> {
        let params = store
            .seal_config()?
            .map(|row| parse_seal_config(&row))
            .transpose()?;
        if let Some(params) = &params {
            check_root_kind(params.kind, root.kind())?;
        }
        let initialized = params.is_some();
        let core = Core {
            store,
            root,
            seal: Mutex::new(SealState {
                params,
                progress: None,
            }),
            keyring: RwLock::new(None),
            admin: Mutex::new(()),
            tokens: TokenCache::default(),
        };
        if initialized && core.root.kind() == RootKind::Pkcs11 {
            core.unseal_with_token()?;
        }
        Ok(core)
    }

    /// Unseals with the PKCS#11 token: unwraps the keyring with the key objects that its rows
    /// name. Does nothing when the daemon is unsealed.
    pub fn unseal_with_token(&self) -> Result<Status, Error> {
        let RootSetting::Pkcs11(root) = &self.root else {
            return Err(Error::InvalidRequest(
                "give exactly one of share and reset: true".to_owned(),
            ));
        };
        let state = lock(&self.seal);
        let params = state.params.clone().ok_or(Error::NotInitialized)?;
        if self.is_unsealed() {
            drop(state);
            return Ok(self.status());
        }
        let label = params.root_key_label.as_deref().ok_or_else(|| {
            Error::StoreInvalid("the seal configuration names no PKCS#11 key object".to_owned())
        })?;
        root.set_key_label(label)?;
        let keyring = self.open_keyring(Arc::new(root.clone()))?;
        *self.keyring.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(keyring));
        tracing::info!(
            token = root.token_label(),
            key_label = label,
            "unsealed by the PKCS#11 token"
        );
        drop(state);
        Ok(self.status())
    }

    /// Returns whether the daemon runs with a PKCS#11 root, which unseals without shares.
    pub fn unseals_with_token(&self) -> bool {
        matches!(self.root, RootSetting::Pkcs11(_))
    }

    fn is_unsealed(&self) -> bool {
        self.keyring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
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
        let params = state.params.as_ref();
        Status {
            initialized: params.is_some(),
            sealed,
            threshold: params.map(|p| p.threshold),
            shares: params.map(|p| p.shares),
            progress: state.progress.as_ref().map_or(0, UnsealProgress::count),
            root_of_trust: params.map(|p| p.kind.as_str()),
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    /// Creates the root key and stores the keyring key wrapped by it.
    ///
    /// With a Shamir root, the root key is split into the returned shares and the daemon stays
    /// sealed. With a PKCS#11 root, the token creates the root key object unless it exists,
    /// a random recovery key is split into the returned shares instead, and the token unseals
    /// the daemon at once.
    pub fn init(&self, shares: u8, threshold: u8) -> Result<InitOutput, Error> {
        let mut state = lock(&self.seal);
        if state.params.is_some() {
            return Err(Error::AlreadyInitialized);
        }
        let split_key = RootKey::generate()?;
        let set_id = ShareSetId::generate()?;
        let split = hsm::split(&split_key, shares, threshold, set_id)?;
        let shamir = ShamirRoot::new(split_key);
        let keyring_key = keyring::random_key()?;
        let (wrapped, root_key_label, recovery_check) = match &self.root {
            RootSetting::Shamir => {
                let wrapped = shamir.wrap(keyring_key.as_ref(), &keyring_aad(1))?;
                (wrapped, None, None)
            }
            RootSetting::Pkcs11(root) => {
                let label = root.key_label();
                if root.ensure_key(&label)? {
                    tracing::info!(token = root.token_label(), key_label = %label, "root key object created");
                }
                let wrapped = root.wrap(keyring_key.as_ref(), &keyring_aad(1))?;
                (wrapped, Some(label), Some(recovery_check(&shamir)?))
            }
        };

        let token = auth::mint_token()?;
        let created_at = now();
        let config = SealConfigRow {
            id: 1,
            root_kind: self.root.kind().as_str().to_owned(),
            share_set_id: set_id.to_string(),
            shares: i32::from(shares),
            threshold: i32::from(threshold),
            created_at,
            root_key_label: root_key_label.clone(),
            recovery_check: recovery_check.clone(),
        };
        let keyring_row = keyring_row(1, wrapped, created_at);
        let token_row = root_token_row(&token, created_at);
        self.store.initialize(&config, &keyring_row, &token_row)?;
        state.params = Some(SealParams {
            kind: self.root.kind(),
            set_id,
            shares,
            threshold,
            root_key_label,
            recovery_check,
        });
        drop(state);
        if self.root.kind() == RootKind::Pkcs11 {
            self.unseal_with_token()?;
        }
        Ok(InitOutput {
            shares: split.iter().map(Share::encode).collect(),
            root_token: token.secret,
            root_token_accessor: token.accessor,
        })
    }

    /// Adds one share; at the threshold, rebuilds the root key and unseals.
    pub fn unseal(&self, share_text: &str) -> Result<Status, Error> {
        let mut state = lock(&self.seal);
        let params = state.params.clone().ok_or(Error::NotInitialized)?;
        if params.kind == RootKind::Pkcs11 {
            drop(state);
            return Err(Error::InvalidRequest(
                "share: the PKCS#11 token unseals this daemon, so it takes no shares; \
                 send the unseal request without a share"
                    .to_owned(),
            ));
        }
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
    /// The shares are checked the way unseal checks them. The rebuilt key must open the stored
    /// keyring key (Shamir root) or match the recovery check (PKCS#11 root). Works sealed or
    /// unsealed; the daemon's state does not change.
    pub fn generate_root(&self, shares: &[SecretString]) -> Result<InitOutput, Error> {
        let params = lock(&self.seal)
            .params
            .clone()
            .ok_or(Error::NotInitialized)?;
        rebuild_checked(&self.store, &params, shares)?;
        let token = auth::mint_token()?;
        self.store.insert_token(&root_token_row(&token, now()))?;
        tracing::warn!(accessor = %token.accessor, "a new root token was generated from shares");
        Ok(InitOutput {
            shares: Vec::new(),
            root_token: token.secret,
            root_token_accessor: token.accessor,
        })
    }

    /// Rotates the root key of a PKCS#11 root: creates the key object `new_label` in the token
    /// (default `kms-root-<unix seconds>-<8 random hex digits>`), wraps every keyring version with it, and switches
    /// to it in one store transaction. The previous object stays in the token until
    /// [`Core::destroy_root_key`] removes it.
    pub fn rotate_root_key(&self, new_label: Option<String>) -> Result<RootKeyRotation, Error> {
        let root = self.token_root("rotate")?;
        self.keyring()?;
        let _admin = lock(&self.admin);
        let params = lock(&self.seal)
            .params
            .clone()
            .ok_or(Error::NotInitialized)?;
        let previous = root.key_label();
        // The random part keeps two rotations within one second apart.
        let label = new_label.unwrap_or_else(|| {
            let suffix = Uuid::new_v4().simple().to_string();
            format!("kms-root-{}-{}", now(), &suffix[..8])
        });
        if label == previous {
            return Err(Error::InvalidRequest(format!(
                "key_label: {label:?} already wraps the keyring; choose a new label"
            )));
        }
        if root.ensure_key(&label)? {
            tracing::info!(key_label = %label, "root key object created");
        }

        let mut opened = Vec::new();
        for row in self.store.keyring_versions()? {
            let version = to_u32(row.version)?;
            let key = root.unwrap(&wrapped_from_row(&row)?, &keyring_aad(version))?;
            opened.push((row, key));
        }
        root.set_key_label(&label)?;
        let replaced = opened
            .iter()
            .map(|(row, key)| {
                let wrapped = root.wrap(key, &keyring_aad(to_u32(row.version)?))?;
                Ok(keyring_row(row.version, wrapped, row.created_at))
            })
            .collect::<Result<Vec<_>, Error>>()
            .and_then(|rows| {
                let columns = RootColumns {
                    kind: RootKind::Pkcs11,
                    key_label: Some(label.clone()),
                    recovery_check: params.recovery_check.clone(),
                };
                self.store.replace_root(&columns, &rows)
            });
        if let Err(error) = replaced {
            // The store still names the previous key object, so new wraps must use it too.
            if let Err(restore) = root.set_key_label(&previous) {
                tracing::error!(%restore, key_label = %previous, "switching back to the previous root key failed");
            }
            return Err(error);
        }

        lock(&self.seal).params = Some(SealParams {
            root_key_label: Some(label.clone()),
            ..params
        });
        tracing::info!(key_label = %label, previous_key_label = %previous, "root key rotated");
        Ok(RootKeyRotation {
            key_label: label,
            previous_key_label: previous,
        })
    }

    /// Destroys a PKCS#11 root key object that no keyring version uses any more.
    pub fn destroy_root_key(&self, label: &str) -> Result<(), Error> {
        let root = self.token_root("remove")?;
        let _admin = lock(&self.admin);
        if root.key_label() == label || self.store.root_key_label_in_use(label)? {
            return Err(Error::InvalidRequest(format!(
                "key_label: {label:?} still wraps the keyring; rotate the root key first"
            )));
        }
        if !root.destroy_key(label)? {
            return Err(Error::KeyObjectNotFound(label.to_owned()));
        }
        tracing::warn!(key_label = %label, "root key object destroyed");
        Ok(())
    }

    /// Closes every session on the PKCS#11 token and logs in again.
    pub fn reconnect_token(&self) -> Result<(), Error> {
        let root = self.token_root("reconnect")?;
        root.reconnect()?;
        tracing::info!(
            token = root.token_label(),
            "reconnected to the PKCS#11 token"
        );
        Ok(())
    }

    /// Returns the PKCS#11 root, or an error naming `action` for a Shamir root.
    fn token_root(&self, action: &str) -> Result<&Pkcs11Root, Error> {
        match &self.root {
            RootSetting::Pkcs11(root) => Ok(root),
            RootSetting::Shamir => Err(Error::InvalidRequest(format!(
                "cannot {action} a PKCS#11 root key: this daemon's root key is split into \
                 Shamir shares (start it with --seal pkcs11 after `kmsd migrate-seal`)"
            ))),
        }
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
            let wrapped = wrapped_from_row(&row)?;
            let key = match root.unwrap(&wrapped, &keyring_aad(version)) {
                Ok(key) => key,
                Err(error) if root.kind() == RootKind::Shamir => {
                    tracing::warn!(%error, version, "the reconstructed root key did not open the keyring");
                    return Err(Error::UnsealFailed);
                }
                Err(error) => return Err(error.into()),
            };
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

/// Rebuilds the wrapped keyring key of a stored row, with the mechanism and key object that
/// wrapped it.
fn wrapped_from_row(row: &KeyringRow) -> Result<WrappedKey, Error> {
    let mechanism = row.mechanism.parse().map_err(|_| {
        Error::StoreInvalid(format!(
            "keyring version {} has an unknown mechanism",
            row.version
        ))
    })?;
    Ok(WrappedKey {
        mechanism,
        key_label: row.key_label.clone(),
        bytes: row.wrapped_key.clone(),
    })
}

/// The stored row of keyring version `version`.
fn keyring_row(version: i32, wrapped: WrappedKey, created_at: i64) -> KeyringRow {
    KeyringRow {
        version,
        mechanism: wrapped.mechanism.as_str().to_owned(),
        wrapped_key: wrapped.bytes,
        created_at,
        key_label: wrapped.key_label,
    }
}

/// Computes the recovery check of a PKCS#11 root: the AES-GCM tag of empty plaintext under
/// the recovery key, which authenticates only under the same key.
fn recovery_check(recovery: &ShamirRoot) -> Result<Vec<u8>, Error> {
    Ok(recovery.wrap(&[], RECOVERY_CHECK_AAD)?.bytes)
}

/// Rebuilds the key that `shares` split and checks it: against the keyring for a Shamir
/// root, against the recovery check for a PKCS#11 root.
fn rebuild_checked(
    store: &Store,
    params: &SealParams,
    shares: &[SecretString],
) -> Result<ShamirRoot, Error> {
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
    let root = ShamirRoot::new(progress.combine().map_err(|_| Error::SharesRejected)?);
    let matches = match &params.recovery_check {
        Some(check) => {
            let wrapped = WrappedKey {
                mechanism: hsm::Mechanism::Aes256Gcm,
                key_label: None,
                bytes: check.clone(),
            };
            root.unwrap(&wrapped, RECOVERY_CHECK_AAD).is_ok()
        }
        None => {
            let first = store
                .keyring_versions()?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    Error::StoreInvalid("the key store has no keyring key".to_owned())
                })?;
            let version = to_u32(first.version)?;
            root.unwrap(&wrapped_from_row(&first)?, &keyring_aad(version))
                .is_ok()
        }
    };
    if !matches {
        return Err(Error::SharesRejected);
    }
    Ok(root)
}

/// Moves the root of trust of an initialized store between Shamir shares and the PKCS#11
/// token `token`, keeping the keyring keys, and so every key and blob, as they are.
///
/// `shares` are the threshold number of shares of the store's share set. Moving to the token,
/// they are the unseal shares, and the key they rebuild becomes the recovery key, so the same
/// shares become the recovery shares. Moving back, they are the recovery shares, and the
/// recovery key becomes the Shamir root key, so the same shares unseal. The change is one
/// store transaction; run it with the daemon stopped.
pub fn migrate_root(
    store: &Store,
    to: RootKind,
    token: &Pkcs11Root,
    shares: &[SecretString],
) -> Result<(), Error> {
    let row = store.seal_config()?.ok_or(Error::NotInitialized)?;
    let params = parse_seal_config(&row)?;
    if params.kind == to {
        return Err(Error::InvalidRequest(format!(
            "to: the root of trust is {} already, so there is nothing to migrate",
            to.as_str()
        )));
    }
    let shamir = rebuild_checked(store, &params, shares)?;
    let (from, into): (&dyn RootOfTrust, &dyn RootOfTrust) = match to {
        RootKind::Pkcs11 => {
            let label = token.key_label();
            if token.ensure_key(&label)? {
                tracing::info!(key_label = %label, "root key object created");
            }
            (&shamir, token)
        }
        RootKind::Shamir => {
            let label = params.root_key_label.as_deref().ok_or_else(|| {
                Error::StoreInvalid("the seal configuration names no PKCS#11 key object".to_owned())
            })?;
            token.set_key_label(label)?;
            (token, &shamir)
        }
    };
    let mut rows = Vec::new();
    for row in store.keyring_versions()? {
        let aad = keyring_aad(to_u32(row.version)?);
        let key = from.unwrap(&wrapped_from_row(&row)?, &aad)?;
        rows.push(keyring_row(
            row.version,
            into.wrap(&key, &aad)?,
            row.created_at,
        ));
    }
    let columns = match to {
        RootKind::Pkcs11 => RootColumns {
            kind: to,
            key_label: Some(token.key_label()),
            recovery_check: Some(recovery_check(&shamir)?),
        },
        RootKind::Shamir => RootColumns {
            kind: to,
            key_label: None,
            recovery_check: None,
        },
    };
    store.replace_root(&columns, &rows)?;
    tracing::info!(
        to = to.as_str(),
        keyring_versions = rows.len(),
        "root of trust migrated"
    );
    Ok(())
}

/// Fails when the store's root of trust differs from the configured one.
fn check_root_kind(stored: RootKind, configured: RootKind) -> Result<(), Error> {
    let reason = match (stored, configured) {
        (RootKind::Shamir, RootKind::Pkcs11) => {
            "the key store was initialized with Shamir shares: start without --seal pkcs11, or \
             move the root key into the token first with `kmsd migrate-seal --to pkcs11`"
        }
        (RootKind::Pkcs11, RootKind::Shamir) => {
            "the key store's root key is in a PKCS#11 token: start with --seal pkcs11 and the \
             token settings, or move it back first with `kmsd migrate-seal --to shamir`"
        }
        _ => return Ok(()),
    };
    Err(Error::Config {
        setting: "seal (--seal, KMS_SEAL)",
        reason: reason.to_owned(),
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
    let kind = row.root_kind.parse().map_err(|_| {
        Error::StoreInvalid(format!(
            "stored root of trust {:?} is unknown",
            row.root_kind
        ))
    })?;
    Ok(SealParams {
        kind,
        set_id,
        shares: to_u8(row.shares, "share count")?,
        threshold: to_u8(row.threshold, "threshold")?,
        root_key_label: row.root_key_label.clone(),
        recovery_check: row.recovery_check.clone(),
    })
}
