//! Key endpoints: create, list, show, rotate, disable and enable.

use serde::{Deserialize, Serialize};

use super::{Client, Request, segment};
use crate::error::Result;
use crate::types::Key;

#[derive(Serialize)]
struct CreateKeyRequest<'a> {
    name: &'a str,
}

#[derive(Deserialize)]
struct KeyList {
    keys: Vec<Key>,
}

impl Client {
    /// Creates a key named `name`, which must match `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`.
    /// Needs the `manage` operation.
    pub async fn create_key(&self, name: &str) -> Result<Key> {
        let request = Request::post("/v1/keys".into()).json(&CreateKeyRequest { name })?;
        self.send(request).await
    }

    /// Lists the keys that the token may describe, sorted by name.
    pub async fn list_keys(&self) -> Result<Vec<Key>> {
        let list: KeyList = self.send(Request::get("/v1/keys".into())).await?;
        Ok(list.keys)
    }

    /// Shows one key. Needs the `describe` operation.
    pub async fn get_key(&self, name: &str) -> Result<Key> {
        let path = format!("/v1/keys/{}", segment("key name", name)?);
        self.send(Request::get(path)).await
    }

    /// Adds a version to a key; new encryptions then use it. Needs `manage`.
    pub async fn rotate_key(&self, name: &str) -> Result<Key> {
        self.key_action(name, "rotate").await
    }

    /// Disables a key: every operation with it then fails with `key_disabled`. Needs `manage`.
    pub async fn disable_key(&self, name: &str) -> Result<Key> {
        self.key_action(name, "disable").await
    }

    /// Enables a disabled key. Needs `manage`.
    pub async fn enable_key(&self, name: &str) -> Result<Key> {
        self.key_action(name, "enable").await
    }

    async fn key_action(&self, name: &str, action: &str) -> Result<Key> {
        let path = format!("/v1/keys/{}/{action}", segment("key name", name)?);
        self.send(Request::post(path)).await
    }
}
