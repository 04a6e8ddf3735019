//! The unsealed keyring: keyring keys and every key version, unwrapped and held in memory.
//!
//! After unseal, data-key and payload operations use only this structure: no database read and
//! no call to the root of trust. Dropping the keyring zeroizes every AES key schedule in it,
//! because `aes-gcm` is built with its `zeroize` feature.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::blob::{self, Header, NONCE_LEN};
use crate::error::Error;

/// Length of every symmetric key this module handles: AES-256.
pub const KEY_LEN: usize = 32;

/// Whether a key or key version may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Enabled,
    Disabled,
}

impl KeyState {
    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "enabled",
            KeyState::Disabled => "disabled",
        }
    }

    /// Parses the stored spelling; anything else is treated as disabled, the safe reading.
    pub fn from_stored(text: &str) -> KeyState {
        if text == "enabled" {
            KeyState::Enabled
        } else {
            KeyState::Disabled
        }
    }
}

/// Fills `buf` from the operating system's random generator.
pub fn random_fill(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::fill(buf).map_err(|_| Error::Random)
}

/// Returns a fresh random 256-bit key in a zeroizing buffer.
pub fn random_key() -> Result<Zeroizing<[u8; KEY_LEN]>, Error> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    random_fill(key.as_mut())?;
    Ok(key)
}

fn cipher_from(key: &[u8]) -> Result<Aes256Gcm, Error> {
    Aes256Gcm::new_from_slice(key).map_err(|_| Error::Random)
}

/// An AES-256-GCM key that seals with a random nonce written before the ciphertext.
struct WrappingKey(Aes256Gcm);

impl WrappingKey {
    fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        random_fill(&mut nonce)?;
        let sealed = self
            .0
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| Error::Random)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (nonce, body) = sealed.split_first_chunk::<NONCE_LEN>()?;
        let plain = self
            .0
            .decrypt(&(*nonce).into(), Payload { msg: body, aad })
            .ok()?;
        Some(Zeroizing::new(plain))
    }
}

/// Associated data binding wrapped key material to its key id and version.
fn material_aad(key_id: Uuid, version: u32) -> Vec<u8> {
    let mut aad = b"kms-kek-v1".to_vec();
    aad.extend_from_slice(key_id.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

/// Associated data binding a wrapped keyring key to its version.
pub fn keyring_aad(version: u32) -> Vec<u8> {
    let mut aad = b"kms-keyring-v1".to_vec();
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

/// One unwrapped keyring key, which wraps and unwraps key-version material.
pub struct KeyringKey {
    version: u32,
    key: WrappingKey,
}

impl fmt::Debug for KeyringKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyringKey")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl KeyringKey {
    /// Builds a keyring key from unwrapped bytes.
    pub fn new(version: u32, key: &[u8]) -> Result<KeyringKey, Error> {
        Ok(KeyringKey {
            version,
            key: WrappingKey(cipher_from(key)?),
        })
    }

    /// The keyring version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Wraps the material of `key_id` version `version`.
    pub fn wrap_material(
        &self,
        key_id: Uuid,
        version: u32,
        material: &[u8],
    ) -> Result<Vec<u8>, Error> {
        self.key.seal(material, &material_aad(key_id, version))
    }

    /// Unwraps the material of `key_id` version `version`; `None` if it fails authentication.
    pub fn unwrap_material(
        &self,
        key_id: Uuid,
        version: u32,
        wrapped: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        self.key.open(wrapped, &material_aad(key_id, version))
    }
}

/// One version of a named key, unwrapped.
pub struct KeyVersion {
    pub version: u32,
    pub state: KeyState,
    pub created_at: i64,
    cipher: Aes256Gcm,
}

impl fmt::Debug for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyVersion")
            .field("version", &self.version)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl KeyVersion {
    /// Builds a version from unwrapped material.
    pub fn new(
        version: u32,
        state: KeyState,
        created_at: i64,
        material: &[u8],
    ) -> Result<Self, Error> {
        Ok(KeyVersion {
            version,
            state,
            created_at,
            cipher: cipher_from(material)?,
        })
    }
}

/// A data key fresh from [`NamedKey::generate_data_key`].
pub struct GeneratedDataKey {
    /// Key version that sealed the blob.
    pub version: u32,
    /// The data key, zeroized on drop.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The data key sealed under `version`.
    pub blob: Vec<u8>,
}

impl fmt::Debug for GeneratedDataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedDataKey")
            .field("version", &self.version)
            .field("plaintext", &"[redacted]")
            .field("blob_len", &self.blob.len())
            .finish()
    }
}

/// A named key and its versions. Values are immutable: a change builds a new `NamedKey`.
#[derive(Debug)]
pub struct NamedKey {
    pub id: Uuid,
    pub name: String,
    pub state: KeyState,
    pub created_at: i64,
    pub versions: BTreeMap<u32, Arc<KeyVersion>>,
}

impl NamedKey {
    /// The newest version, which new encryptions use.
    pub fn latest(&self) -> Option<&Arc<KeyVersion>> {
        self.versions.values().next_back()
    }

    /// The latest version number, or 0 for a key with no versions (which the store never holds).
    pub fn latest_version(&self) -> u32 {
        self.latest().map_or(0, |v| v.version)
    }

    /// Fails with [`Error::KeyDisabled`] unless the key is enabled.
    pub fn ensure_enabled(&self) -> Result<(), Error> {
        match self.state {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(Error::KeyDisabled(self.name.clone())),
        }
    }

    /// Seals `plaintext` under the latest version with `context` bound as associated data.
    pub fn seal(
        &self,
        plaintext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<(u32, Vec<u8>), Error> {
        let mut nonce = [0u8; NONCE_LEN];
        random_fill(&mut nonce)?;
        self.seal_with_nonce(nonce, plaintext, context)
    }

    /// Seals with a caller-chosen nonce; only [`NamedKey::seal`] and the test vectors call it,
    /// because a repeated nonce under one key breaks GCM.
    pub(crate) fn seal_with_nonce(
        &self,
        nonce: [u8; NONCE_LEN],
        plaintext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<(u32, Vec<u8>), Error> {
        self.ensure_enabled()?;
        let version = self
            .latest()
            .ok_or_else(|| Error::KeyNotFound(self.name.clone()))?;
        let header = Header {
            key_id: self.id,
            key_version: version.version,
            nonce,
        }
        .encode();
        let aad = blob::associated_data(&header, context);
        let sealed = version
            .cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::Random)?;
        let mut out = Vec::with_capacity(header.len() + sealed.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&sealed);
        Ok((version.version, out))
    }

    /// Generates a data key of `bytes` random bytes and seals it under the latest version.
    pub fn generate_data_key(
        &self,
        bytes: usize,
        context: &BTreeMap<String, String>,
    ) -> Result<GeneratedDataKey, Error> {
        let mut plaintext = Zeroizing::new(vec![0u8; bytes]);
        random_fill(&mut plaintext)?;
        let (version, blob) = self.seal(&plaintext, context)?;
        Ok(GeneratedDataKey {
            version,
            plaintext,
            blob,
        })
    }

    /// Opens a blob whose header names this key.
    pub fn open(
        &self,
        header: &Header,
        ciphertext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.ensure_enabled()?;
        let version =
            self.versions
                .get(&header.key_version)
                .ok_or_else(|| Error::KeyVersionNotFound {
                    key: self.name.clone(),
                    version: header.key_version,
                })?;
        let aad = blob::associated_data(&header.encode(), context);
        let plain = version
            .cipher
            .decrypt(
                &header.nonce.into(),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::DecryptionFailed)?;
        Ok(Zeroizing::new(plain))
    }
}

#[derive(Default)]
struct KeyMaps {
    by_name: HashMap<String, Arc<NamedKey>>,
    by_id: HashMap<Uuid, Arc<NamedKey>>,
}

/// Everything an unsealed daemon holds in memory.
pub struct Keyring {
    root: Arc<dyn hsm::RootOfTrust>,
    keyring_keys: BTreeMap<u32, KeyringKey>,
    keys: RwLock<KeyMaps>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: BTreeSet<String> = self.read().by_name.keys().cloned().collect();
        f.debug_struct("Keyring")
            .field("root", &self.root)
            .field(
                "keyring_versions",
                &self.keyring_keys.keys().collect::<Vec<_>>(),
            )
            .field("keys", &names)
            .finish()
    }
}

impl Keyring {
    /// Builds a keyring from unwrapped keyring keys; keys are added with [`Keyring::insert`].
    pub fn new(
        root: Arc<dyn hsm::RootOfTrust>,
        keyring_keys: BTreeMap<u32, KeyringKey>,
    ) -> Keyring {
        Keyring {
            root,
            keyring_keys,
            keys: RwLock::new(KeyMaps::default()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeyMaps> {
        // A panic while holding the lock cannot leave the maps half-updated (each update is
        // two inserts of complete values), so a poisoned lock is still safe to use.
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The root of trust that wraps the keyring keys.
    pub fn root(&self) -> &Arc<dyn hsm::RootOfTrust> {
        &self.root
    }

    /// The newest keyring key, which wraps new key material.
    pub fn latest_keyring_key(&self) -> Option<&KeyringKey> {
        self.keyring_keys.values().next_back()
    }

    /// The keyring key of `version`.
    pub fn keyring_key(&self, version: u32) -> Option<&KeyringKey> {
        self.keyring_keys.get(&version)
    }

    /// Adds or replaces a named key.
    pub fn insert(&self, key: NamedKey) -> Arc<NamedKey> {
        let key = Arc::new(key);
        let mut maps = self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        maps.by_name.insert(key.name.clone(), Arc::clone(&key));
        maps.by_id.insert(key.id, Arc::clone(&key));
        key
    }

    /// Looks a key up by name.
    pub fn by_name(&self, name: &str) -> Result<Arc<NamedKey>, Error> {
        self.read()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| Error::KeyNotFound(name.to_owned()))
    }

    /// Looks a key up by id.
    pub fn by_id(&self, id: Uuid) -> Result<Arc<NamedKey>, Error> {
        self.read()
            .by_id
            .get(&id)
            .cloned()
            .ok_or(Error::KeyIdNotFound(id))
    }

    /// Returns every key, sorted by name.
    pub fn all(&self) -> Vec<Arc<NamedKey>> {
        let mut keys: Vec<_> = self.read().by_name.values().cloned().collect();
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_key() -> NamedKey {
        let material = [7u8; KEY_LEN];
        let version = KeyVersion::new(1, KeyState::Enabled, 0, &material).unwrap();
        NamedKey {
            id: Uuid::from_bytes([1; 16]),
            name: "sample".to_owned(),
            state: KeyState::Enabled,
            created_at: 0,
            versions: BTreeMap::from([(1, Arc::new(version))]),
        }
    }

    fn context(value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("tenant".to_owned(), value.to_owned())])
    }

    #[test]
    fn seal_open_round_trips() {
        let key = sample_key();
        let (version, blob) = key.seal(b"canary", &context("a")).unwrap();
        assert_eq!(version, 1);
        let (header, body) = Header::parse(&blob).unwrap();
        assert_eq!(
            key.open(&header, body, &context("a")).unwrap().as_slice(),
            b"canary"
        );
    }

    #[test]
    fn open_rejects_wrong_context() {
        let key = sample_key();
        let (_, blob) = key.seal(b"canary", &context("a")).unwrap();
        let (header, body) = Header::parse(&blob).unwrap();
        assert!(matches!(
            key.open(&header, body, &context("b")),
            Err(Error::DecryptionFailed)
        ));
    }

    #[test]
    fn open_rejects_every_flipped_byte() {
        let key = sample_key();
        let (_, blob) = key.seal(b"canary", &BTreeMap::new()).unwrap();
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            let result = Header::parse(&bad)
                .map_err(Error::from)
                .and_then(|(header, body)| {
                    if header.key_id != key.id {
                        return Err(Error::KeyIdNotFound(header.key_id));
                    }
                    key.open(&header, body, &BTreeMap::new())
                });
            assert!(result.is_err(), "flipped byte {i} was accepted");
        }
    }

    #[test]
    fn material_unwrap_is_bound_to_key_and_version() {
        let keyring_key = KeyringKey::new(1, &[9u8; KEY_LEN]).unwrap();
        let id = Uuid::from_bytes([3; 16]);
        let wrapped = keyring_key.wrap_material(id, 2, &[5u8; KEY_LEN]).unwrap();
        assert_eq!(
            keyring_key
                .unwrap_material(id, 2, &wrapped)
                .unwrap()
                .as_slice(),
            &[5u8; 32]
        );
        assert!(keyring_key.unwrap_material(id, 3, &wrapped).is_none());
        assert!(
            keyring_key
                .unwrap_material(Uuid::from_bytes([4; 16]), 2, &wrapped)
                .is_none()
        );
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Opens a vector's blob the way the decrypt endpoint does and returns the error code.
    fn open_vector(
        key: &NamedKey,
        blob: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, &'static str> {
        let code = |e: Error| e.status_and_code().1;
        let (header, body) = Header::parse(blob).map_err(|e| code(e.into()))?;
        if header.key_id != key.id {
            return Err("key_not_found");
        }
        key.open(&header, body, context)
            .map(|p| p.to_vec())
            .map_err(code)
    }

    #[test]
    fn blob_vectors_match_byte_for_byte() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/blob");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "txt") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let fields: BTreeMap<&str, &str> =
                text.lines().filter_map(|l| l.split_once(": ")).collect();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let version: u32 = fields["key_version"].parse().unwrap();
            let material = hex(fields["key_material"]);
            let key_version = KeyVersion::new(version, KeyState::Enabled, 0, &material).unwrap();
            let key = NamedKey {
                id: Uuid::parse_str(fields["key_id"]).unwrap(),
                name: "vector".to_owned(),
                state: KeyState::Enabled,
                created_at: 0,
                versions: BTreeMap::from([(version, Arc::new(key_version))]),
            };
            let context: BTreeMap<String, String> =
                serde_json::from_str(fields["context"]).unwrap();
            let plaintext = hex(fields["plaintext"]);
            let blob = hex(fields["blob"]);
            let result = open_vector(&key, &blob, &context);
            match fields["expect"] {
                "ok" => {
                    assert_eq!(result.as_deref(), Ok(plaintext.as_slice()), "{name}");
                    let (header, _) = Header::parse(&blob).unwrap();
                    let (_, resealed) = key
                        .seal_with_nonce(header.nonce, &plaintext, &context)
                        .unwrap();
                    assert_eq!(resealed, blob, "{name}: sealing again gave other bytes");
                }
                code => assert_eq!(result, Err(code), "{name}"),
            }
            checked += 1;
        }
        assert!(
            checked >= 10,
            "only {checked} vectors found in {}",
            dir.display()
        );
    }

    #[test]
    fn debug_shows_no_key_bytes() {
        let text = format!("{:?}", sample_key());
        assert!(!text.contains("7, 7"), "{text}");
        assert!(text.contains("sample"));
    }
}
