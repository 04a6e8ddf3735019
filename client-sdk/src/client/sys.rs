//! System endpoints: status, init, unseal, seal, root tokens and the PKCS#11 root key.

use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};

use super::{Client, Request};
use crate::error::Result;
use crate::types::{GeneratedRoot, InitOutput, RootKeyRotation, Status};

#[derive(Serialize)]
struct InitRequest {
    shares: u8,
    threshold: u8,
    allow_single_share: bool,
}

#[derive(Serialize)]
struct UnsealRequest<'a> {
    #[serde(serialize_with = "serialize_share")]
    share: &'a SecretString,
}

#[derive(Serialize)]
struct GenerateRootRequest<'a> {
    shares: Vec<&'a str>,
}

#[derive(Serialize)]
struct RotateRootKeyRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key_label: Option<&'a str>,
}

#[derive(Serialize)]
struct UnsealResetRequest {
    reset: bool,
}

fn serialize_share<S: Serializer>(share: &&SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(share.expose_secret())
}

impl Client {
    /// Reads the seal state. Needs no token and is retried on transient errors.
    pub async fn status(&self) -> Result<Status> {
        let request = Request::get("/v1/sys/status".into()).unauthenticated();
        self.send(request).await
    }

    /// Initializes the daemon: makes `shares` unseal shares of which `threshold` unseal it,
    /// and a root token. Needs no token.
    ///
    /// A threshold of 1 is rejected unless `allow_single_share` is true. The shares and the
    /// root token are returned only this once. With a Shamir root the daemon stays sealed
    /// afterwards; with a PKCS#11 root it is unsealed, and the shares are recovery shares.
    pub async fn init(
        &self,
        shares: u8,
        threshold: u8,
        allow_single_share: bool,
    ) -> Result<InitOutput> {
        let body = InitRequest {
            shares,
            threshold,
            allow_single_share,
        };
        let request = Request::post("/v1/sys/init".into())
            .unauthenticated()
            .json(&body)?;
        self.send(request).await
    }

    /// Submits one unseal share and returns the new status. Needs no token.
    ///
    /// Not retried: a repeat of a share that arrived would fail with `duplicate_share`.
    pub async fn unseal(&self, share: &SecretString) -> Result<Status> {
        let body = UnsealRequest { share };
        let request = Request::post("/v1/sys/unseal".into())
            .unauthenticated()
            .json(&body)?;
        self.send(request).await
    }

    /// Discards the shares submitted so far towards the current unseal. Needs no token.
    pub async fn unseal_reset(&self) -> Result<Status> {
        let body = UnsealResetRequest { reset: true };
        let request = Request::post("/v1/sys/unseal".into())
            .unauthenticated()
            .json(&body)?;
        self.send(request).await
    }

    /// Mints a new root token from the threshold number of shares, for example after the
    /// root token was lost or revoked. Needs no token: the shares are the authorization.
    pub async fn generate_root(&self, shares: &[SecretString]) -> Result<GeneratedRoot> {
        let body = GenerateRootRequest {
            shares: shares.iter().map(|s| s.expose_secret()).collect(),
        };
        let request = Request::post("/v1/sys/generate-root".into())
            .unauthenticated()
            .json(&body)?;
        self.send(request).await
    }

    /// Seals the daemon, which zeroizes all key material in its memory. Root token only.
    pub async fn seal(&self) -> Result<Status> {
        self.send(Request::post("/v1/sys/seal".into())).await
    }

    /// Unseals a daemon whose root key is in a PKCS#11 token, after `seal`: the daemon
    /// unwraps its keyring with the token, so no share is sent. Root token only, so that
    /// no other caller can undo an emergency seal.
    pub async fn unseal_with_token(&self) -> Result<Status> {
        let request = Request::post("/v1/sys/unseal".into()).json(&serde_json::json!({}))?;
        self.send(request).await
    }

    /// Rotates the root key in the PKCS#11 token: the daemon creates the key object
    /// `key_label` (or one named after the time), wraps its keyring with it, and keeps the
    /// previous object until [`Client::remove_root_key`] removes it. Root token only.
    pub async fn rotate_root_key(&self, key_label: Option<&str>) -> Result<RootKeyRotation> {
        let request = Request::post("/v1/sys/root-key/rotate".into())
            .json(&RotateRootKeyRequest { key_label })?;
        self.send(request).await
    }

    /// Destroys a root key object that no longer wraps the keyring, such as the previous one
    /// after a rotation. Blobs are unaffected. Root token only.
    pub async fn remove_root_key(&self, key_label: &str) -> Result<()> {
        let label = crate::client::segment("key label", key_label)?;
        let path = format!("/v1/sys/root-key/objects/{label}");
        let _: serde::de::IgnoredAny = self.send(Request::delete(path)).await?;
        Ok(())
    }

    /// Makes the daemon close its sessions with the PKCS#11 token and log in again, for
    /// example after maintenance of the HSM. Root token only.
    pub async fn reconnect_hsm(&self) -> Result<()> {
        let request = Request::post("/v1/sys/hsm/reconnect".into()).idempotent();
        let _: serde::de::IgnoredAny = self.send(request).await?;
        Ok(())
    }
}
