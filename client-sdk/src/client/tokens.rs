//! Token endpoints: create, look up and revoke.

use std::time::Duration;

use serde::Serialize;

use super::{Client, Request, segment};
use crate::error::Result;
use crate::types::{NewToken, PolicyRule, TokenInfo};

#[derive(Serialize)]
struct CreateTokenRequest<'a> {
    policy: &'a [PolicyRule],
    ttl_seconds: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
}

impl Client {
    /// Creates a token with a policy and a time to live (whole seconds, rounded up; between
    /// 1 s and one year). Root token only.
    pub async fn create_token(
        &self,
        policy: &[PolicyRule],
        ttl: Duration,
        display_name: Option<&str>,
    ) -> Result<NewToken> {
        let ttl_seconds = ttl
            .as_secs()
            .saturating_add(u64::from(ttl.subsec_nanos() > 0));
        let body = CreateTokenRequest {
            policy,
            ttl_seconds,
            display_name,
        };
        self.send(Request::post("/v1/tokens".into()).json(&body)?)
            .await
    }

    /// Looks up the token of this client.
    pub async fn lookup_self(&self) -> Result<TokenInfo> {
        self.send(Request::get("/v1/tokens/self".into())).await
    }

    /// Looks up another token by its accessor. Root token only.
    pub async fn lookup_token(&self, accessor: &str) -> Result<TokenInfo> {
        let path = format!("/v1/tokens/{}", segment("accessor", accessor)?);
        self.send(Request::get(path)).await
    }

    /// Revokes a token by its accessor and returns its info with `revoked_at` set. Root token
    /// only, except that any token may revoke itself.
    pub async fn revoke_token(&self, accessor: &str) -> Result<TokenInfo> {
        let path = format!("/v1/tokens/{}/revoke", segment("accessor", accessor)?);
        self.send(Request::post(path)).await
    }
}
