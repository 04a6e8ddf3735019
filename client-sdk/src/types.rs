//! Response types of the HTTP API and the enums used in requests.
//!
//! Byte strings arrive as base64 and are decoded here. Secret values (shares, tokens, data keys
//! and plaintexts) are held in `secrecy` types, which zeroize on drop and print as redacted.
//! Times are RFC 3339 strings in UTC, as the daemon sends them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use secrecy::{SecretSlice, SecretString};
use serde::{Deserialize, Serialize};

use crate::b64;

/// An encryption context: string pairs bound to a ciphertext as associated data. Decryption
/// needs the same context that encryption used.
pub type Context = BTreeMap<String, String>;

/// Seal state of the daemon, returned by status, unseal and seal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Status {
    /// Whether `init` has run.
    pub initialized: bool,
    /// Whether the daemon is sealed and refuses key operations.
    pub sealed: bool,
    /// Number of shares needed to unseal; `None` before init.
    pub threshold: Option<u8>,
    /// Number of shares made at init; `None` before init.
    pub shares: Option<u8>,
    /// Number of distinct valid shares submitted towards the current unseal.
    pub progress: u32,
    /// Root of trust, `shamir` or `pkcs11`; `None` before init.
    pub root_of_trust: Option<String>,
    /// Daemon version.
    pub version: String,
}

/// Output of `init`: the unseal shares and the root token, which the daemon returns only once.
#[derive(Debug, Deserialize)]
#[non_exhaustive]
pub struct InitOutput {
    /// Unseal shares; store each one apart from the others.
    pub shares: Vec<SecretString>,
    /// Root token, allowed to do everything.
    pub root_token: SecretString,
    /// Accessor of the root token, which names it in the audit log; not secret.
    pub root_token_accessor: String,
}

/// The PKCS#11 key objects before and after `rotate_root_key`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct RootKeyRotation {
    /// Label of the key object that wraps the keyring from now on.
    pub key_label: String,
    /// Label of the key object that wrapped it before; it stays in the token until removed.
    pub previous_key_label: String,
}

/// A root token minted from the threshold number of shares by `generate_root`.
#[derive(Debug, Deserialize)]
#[non_exhaustive]
pub struct GeneratedRoot {
    /// The new root token, allowed to do everything.
    pub root_token: SecretString,
    /// Accessor of the new root token; not secret.
    pub root_token_accessor: String,
}

/// State of a key or of one key version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
#[non_exhaustive]
pub enum KeyState {
    /// Usable.
    Enabled,
    /// Every operation with the key gets `key_disabled`.
    Disabled,
    /// A state that this SDK version does not know, as the daemon spelled it.
    Other(String),
}

impl KeyState {
    /// Returns the API spelling of the state.
    pub fn as_str(&self) -> &str {
        match self {
            KeyState::Enabled => "enabled",
            KeyState::Disabled => "disabled",
            KeyState::Other(state) => state,
        }
    }
}

impl From<String> for KeyState {
    fn from(state: String) -> Self {
        match state.as_str() {
            "enabled" => KeyState::Enabled,
            "disabled" => KeyState::Disabled,
            _ => KeyState::Other(state),
        }
    }
}

impl From<KeyState> for String {
    fn from(state: KeyState) -> Self {
        state.as_str().to_owned()
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named key-encryption key and its versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Key {
    /// Key name.
    pub name: String,
    /// Key id, which ciphertext blobs carry.
    pub id: String,
    /// Key state.
    pub state: KeyState,
    /// Creation time.
    pub created_at: String,
    /// Version that new encryptions use.
    pub latest_version: u32,
    /// All versions, oldest first.
    pub versions: Vec<KeyVersion>,
}

/// One version of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KeyVersion {
    /// Version number, starting at 1.
    pub version: u32,
    /// Creation time.
    pub created_at: String,
    /// Version state.
    pub state: KeyState,
}

/// Length of a generated data key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataKeySize {
    /// 16 bytes (AES-128).
    Bytes16,
    /// 24 bytes (AES-192).
    Bytes24,
    /// 32 bytes (AES-256), the default.
    #[default]
    Bytes32,
}

impl DataKeySize {
    /// Returns the length in bytes.
    pub fn bytes(self) -> u16 {
        match self {
            DataKeySize::Bytes16 => 16,
            DataKeySize::Bytes24 => 24,
            DataKeySize::Bytes32 => 32,
        }
    }
}

impl TryFrom<u16> for DataKeySize {
    type Error = u16;

    /// Converts 16, 24 or 32; any other length is returned as the error.
    fn try_from(bytes: u16) -> Result<Self, u16> {
        match bytes {
            16 => Ok(DataKeySize::Bytes16),
            24 => Ok(DataKeySize::Bytes24),
            32 => Ok(DataKeySize::Bytes32),
            other => Err(other),
        }
    }
}

/// A generated data key.
#[derive(Deserialize)]
#[non_exhaustive]
pub struct DataKey {
    /// Name of the key that wrapped the data key.
    pub key_name: String,
    /// Id of that key.
    pub key_id: String,
    /// Version of that key.
    pub key_version: u32,
    /// Data key in plaintext; `None` when the request asked for no plaintext.
    #[serde(default, deserialize_with = "b64::deserialize_secret_opt")]
    pub plaintext: Option<SecretSlice<u8>>,
    /// Data key as a ciphertext blob, for storage next to the data.
    #[serde(deserialize_with = "b64::deserialize")]
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("key_name", &self.key_name)
            .field("key_id", &self.key_id)
            .field("key_version", &self.key_version)
            .field("plaintext", &self.plaintext)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// A ciphertext blob returned by encrypt and rewrap.
#[derive(Clone, Deserialize)]
#[non_exhaustive]
pub struct Ciphertext {
    /// Name of the key that encrypted the blob.
    pub key_name: String,
    /// Id of that key.
    pub key_id: String,
    /// Version of that key.
    pub key_version: u32,
    /// The blob.
    #[serde(deserialize_with = "b64::deserialize")]
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Ciphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ciphertext")
            .field("key_name", &self.key_name)
            .field("key_id", &self.key_id)
            .field("key_version", &self.key_version)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// Output of decrypt: a data key or a payload plaintext.
#[derive(Debug, Deserialize)]
#[non_exhaustive]
pub struct Plaintext {
    /// Name of the key that the blob named.
    pub key_name: String,
    /// Id of that key.
    pub key_id: String,
    /// Version of that key.
    pub key_version: u32,
    /// Decrypted bytes.
    #[serde(deserialize_with = "b64::deserialize_secret")]
    pub plaintext: SecretSlice<u8>,
}

/// An operation that a policy rule can allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Operation {
    /// Generate data keys.
    Generate,
    /// Encrypt payloads.
    Encrypt,
    /// Decrypt blobs of the key.
    Decrypt,
    /// Rewrap blobs of the key.
    Rewrap,
    /// Show the key and list it.
    Describe,
    /// Create, rotate, disable and enable the key.
    Manage,
}

impl Operation {
    /// Every operation, in the order of the API reference.
    pub const ALL: [Operation; 6] = [
        Operation::Generate,
        Operation::Encrypt,
        Operation::Decrypt,
        Operation::Rewrap,
        Operation::Describe,
        Operation::Manage,
    ];

    /// Returns the API spelling of the operation.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Generate => "generate",
            Operation::Encrypt => "encrypt",
            Operation::Decrypt => "decrypt",
            Operation::Rewrap => "rewrap",
            Operation::Describe => "describe",
            Operation::Manage => "manage",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`Operation::from_str`]: the name is not an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown operation {0:?}: expected one of generate, encrypt, decrypt, rewrap, describe, manage"
)]
pub struct UnknownOperation(pub String);

impl FromStr for Operation {
    type Err = UnknownOperation;

    fn from_str(name: &str) -> Result<Self, UnknownOperation> {
        Operation::ALL
            .into_iter()
            .find(|operation| operation.as_str() == name)
            .ok_or_else(|| UnknownOperation(name.to_owned()))
    }
}

/// One policy rule: the operations it allows on the keys whose names match a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRule {
    /// Key names, each optionally ending in `*` to match every name with that prefix; `*`
    /// alone matches every key.
    pub keys: Vec<String>,
    /// Allowed operations.
    pub operations: Vec<Operation>,
}

/// Token information; never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenInfo {
    /// Accessor, which names the token in the audit log and in lookup and revoke; not secret.
    pub accessor: String,
    /// Display name given at creation.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Whether this is the root token, which may do everything.
    pub root: bool,
    /// Policy rules; empty for the root token.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub policy: Vec<PolicyRule>,
    /// Creation time.
    pub created_at: String,
    /// Expiry time; `None` for a token that does not expire, such as the root token.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Revocation time; `None` while the token is not revoked.
    #[serde(default)]
    pub revoked_at: Option<String>,
}

/// A newly created token and its information.
#[derive(Debug, Deserialize)]
#[non_exhaustive]
pub struct NewToken {
    /// The token, returned only this once.
    pub token: SecretString,
    /// Token information.
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// Reads a JSON `null` policy as an empty list.
fn null_as_empty<'de, D>(deserializer: D) -> Result<Vec<PolicyRule>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests;
