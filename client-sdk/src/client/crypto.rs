//! Data-key and payload endpoints: datakey, encrypt, decrypt and rewrap.

use serde::Serialize;

use super::{Client, Request, segment};
use crate::b64;
use crate::error::Result;
use crate::types::{Ciphertext, Context, DataKey, DataKeySize, Plaintext};

#[derive(Serialize)]
struct DataKeyRequest<'a> {
    bytes: u16,
    #[serde(skip_serializing_if = "Context::is_empty")]
    context: &'a Context,
    include_plaintext: bool,
}

#[derive(Serialize)]
struct EncryptRequest<'a> {
    #[serde(serialize_with = "b64::serialize_secret")]
    plaintext: &'a [u8],
    #[serde(skip_serializing_if = "Context::is_empty")]
    context: &'a Context,
}

#[derive(Serialize)]
struct BlobRequest<'a> {
    #[serde(serialize_with = "b64::serialize")]
    ciphertext: &'a [u8],
    #[serde(skip_serializing_if = "Context::is_empty")]
    context: &'a Context,
}

impl Client {
    /// Generates a data key under the latest version of key `name`. Needs `generate`.
    ///
    /// The plaintext data key is returned when `include_plaintext` is true. Not retried: a
    /// repeat after a lost response would make a second data key.
    pub async fn generate_data_key(
        &self,
        name: &str,
        size: DataKeySize,
        context: &Context,
        include_plaintext: bool,
    ) -> Result<DataKey> {
        let path = format!("/v1/keys/{}/datakey", segment("key name", name)?);
        let body = DataKeyRequest {
            bytes: size.bytes(),
            context,
            include_plaintext,
        };
        self.send(Request::post(path).json(&body)?).await
    }

    /// Encrypts at most 4096 bytes under the latest version of key `name`. Needs `encrypt`.
    ///
    /// Not retried, like data-key generation. Larger payloads should be encrypted locally
    /// with a data key.
    pub async fn encrypt(
        &self,
        name: &str,
        plaintext: &[u8],
        context: &Context,
    ) -> Result<Ciphertext> {
        let path = format!("/v1/keys/{}/encrypt", segment("key name", name)?);
        let body = EncryptRequest { plaintext, context };
        self.send(Request::post(path).json(&body)?).await
    }

    /// Decrypts a data-key or payload blob; the blob names its key and version. Needs
    /// `decrypt` on that key, and the context given at encryption. Retried on transient
    /// errors.
    pub async fn decrypt(&self, ciphertext: &[u8], context: &Context) -> Result<Plaintext> {
        let body = BlobRequest {
            ciphertext,
            context,
        };
        let request = Request::post("/v1/decrypt".into())
            .idempotent()
            .json(&body)?;
        self.send(request).await
    }

    /// Re-encrypts a blob under the latest version of its key with the same context, inside
    /// the daemon; the plaintext never leaves it. Needs `rewrap` on that key. Retried on
    /// transient errors.
    pub async fn rewrap(&self, ciphertext: &[u8], context: &Context) -> Result<Ciphertext> {
        let body = BlobRequest {
            ciphertext,
            context,
        };
        let request = Request::post("/v1/rewrap".into())
            .idempotent()
            .json(&body)?;
        self.send(request).await
    }
}
