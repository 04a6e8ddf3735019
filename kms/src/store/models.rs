//! Rows as stored. Wrapped key material is opaque here; nothing in this module is secret in clear.

use diesel::prelude::*;

use super::schema::{key_versions, keyring, keys, seal_config, tokens};

/// The seal configuration written by init.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = seal_config)]
pub struct SealConfigRow {
    pub id: i32,
    pub root_kind: String,
    pub share_set_id: String,
    pub shares: i32,
    pub threshold: i32,
    pub created_at: i64,
    /// Label of the PKCS#11 key object that wraps new keyring versions; `None` for Shamir.
    pub root_key_label: Option<String>,
    /// Proof that recovery shares rebuild the right key: an AES-GCM tag under the recovery
    /// key over empty plaintext. `None` for Shamir, whose shares are checked on the keyring.
    pub recovery_check: Option<Vec<u8>>,
}

/// One version of the keyring key, wrapped by the root of trust.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = keyring)]
pub struct KeyringRow {
    pub version: i32,
    pub mechanism: String,
    pub wrapped_key: Vec<u8>,
    pub created_at: i64,
    /// Label of the PKCS#11 key object that wrapped `wrapped_key`; `None` for Shamir.
    pub key_label: Option<String>,
}

/// A named key.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = keys)]
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub state: String,
    pub created_at: i64,
}

/// One version of a named key, its material wrapped by a keyring version.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = key_versions)]
pub struct KeyVersionRow {
    pub key_id: String,
    pub version: i32,
    pub keyring_version: i32,
    pub wrapped_material: Vec<u8>,
    pub state: String,
    pub created_at: i64,
}

/// An access token; `token_hash` is the SHA-256 of the token, never the token.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = tokens)]
pub struct TokenRow {
    pub accessor: String,
    pub token_hash: Vec<u8>,
    pub is_root: bool,
    pub display_name: Option<String>,
    pub policy: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}
