//! `/v1/tokens`: create, look up and revoke tokens.

use actix_web::{HttpResponse, web};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::{AppState, Json, blocking};
use crate::auth::{self, Caller, PolicyRule};
use crate::core::{now, rfc3339};
use crate::error::Error;
use crate::store::models::TokenRow;

/// Longest token lifetime: one year.
const MAX_TTL_SECONDS: u64 = 365 * 24 * 3600;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/tokens")
            .name("token.create")
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/tokens/self")
            .name("token.lookup_self")
            .route(web::get().to(lookup_self)),
    )
    .service(
        web::resource("/tokens/{accessor}")
            .name("token.lookup")
            .route(web::get().to(lookup)),
    )
    .service(
        web::resource("/tokens/{accessor}/revoke")
            .name("token.revoke")
            .route(web::post().to(revoke)),
    );
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    policy: Vec<PolicyRule>,
    ttl_seconds: u64,
    #[serde(default)]
    display_name: Option<String>,
}

/// Token info as the API shows it; never the token itself.
#[derive(Debug, Serialize)]
struct TokenView {
    accessor: String,
    display_name: Option<String>,
    root: bool,
    policy: serde_json::Value,
    created_at: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
}

impl From<&TokenRow> for TokenView {
    fn from(row: &TokenRow) -> Self {
        TokenView {
            accessor: row.accessor.clone(),
            display_name: row.display_name.clone(),
            root: row.is_root,
            policy: serde_json::from_str(&row.policy).unwrap_or(serde_json::Value::Null),
            created_at: rfc3339(row.created_at),
            expires_at: row.expires_at.map(rfc3339),
            revoked_at: row.revoked_at.map(rfc3339),
        }
    }
}

async fn create(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    body: Json<CreateRequest>,
) -> Result<HttpResponse, Error> {
    caller.require_root("create tokens")?;
    let CreateRequest {
        policy,
        ttl_seconds,
        display_name,
    } = body.into_inner();
    auth::validate_policy(&policy)?;
    if !(1..=MAX_TTL_SECONDS).contains(&ttl_seconds) {
        return Err(Error::InvalidRequest(format!(
            "ttl_seconds: {ttl_seconds} is not between 1 and {MAX_TTL_SECONDS} (one year)"
        )));
    }
    if display_name.as_ref().is_some_and(|n| n.len() > 128) {
        return Err(Error::InvalidRequest(
            "display_name: longer than 128 bytes".to_owned(),
        ));
    }
    let token = auth::mint_token()?;
    let created_at = now();
    let ttl = i64::try_from(ttl_seconds).unwrap_or(i64::MAX);
    let row = TokenRow {
        accessor: token.accessor.clone(),
        token_hash: token.hash.to_vec(),
        is_root: false,
        display_name,
        policy: serde_json::to_string(&policy)
            .map_err(|_| Error::InvalidRequest("policy: cannot be serialized".to_owned()))?,
        created_at,
        expires_at: Some(created_at.saturating_add(ttl)),
        revoked_at: None,
    };
    let stored = row.clone();
    blocking(move || state.core.store().insert_token(&stored)).await?;
    tracing::info!(accessor = %row.accessor, "token created");
    super::note(&req, |f| f.created_accessor = Some(row.accessor.clone()));
    let mut view = serde_json::to_value(TokenView::from(&row)).unwrap_or_default();
    if let Some(map) = view.as_object_mut() {
        map.insert("token".into(), token.secret.expose_secret().into());
    }
    Ok(HttpResponse::Created().json(view))
}

async fn lookup_self(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, Error> {
    let accessor = caller.accessor.clone();
    let row = blocking(move || state.core.store().token_by_accessor(&accessor)).await?;
    let row = row.ok_or_else(|| Error::TokenNotFound(caller.accessor.clone()))?;
    Ok(HttpResponse::Ok().json(TokenView::from(&row)))
}

async fn lookup(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    let accessor = path.into_inner();
    check_accessor(&accessor)?;
    if accessor != caller.accessor {
        caller.require_root("look up other tokens")?;
    }
    let wanted = accessor.clone();
    let row = blocking(move || state.core.store().token_by_accessor(&wanted)).await?;
    let row = row.ok_or(Error::TokenNotFound(accessor))?;
    Ok(HttpResponse::Ok().json(TokenView::from(&row)))
}

async fn revoke(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    let accessor = path.into_inner();
    check_accessor(&accessor)?;
    if accessor != caller.accessor {
        caller.require_root("revoke other tokens")?;
    }
    let wanted = accessor.clone();
    let core_state = state.clone();
    let row = blocking(move || core_state.core.store().revoke_token(&wanted, now())).await?;
    let row = row.ok_or_else(|| Error::TokenNotFound(accessor.clone()))?;
    state.core.token_cache().remove_accessor(&accessor);
    tracing::info!(%accessor, "token revoked");
    Ok(HttpResponse::Ok().json(TokenView::from(&row)))
}

/// Rejects a token given where its accessor belongs, without repeating it.
fn check_accessor(accessor: &str) -> Result<(), Error> {
    if accessor.starts_with(super::TOKEN_PREFIX) {
        return Err(Error::InvalidRequest(
            "accessor: this is a token, not an accessor; pass the accessor that `token create` \
             printed, and revoke this token now because it was sent in a URL"
                .to_owned(),
        ));
    }
    Ok(())
}
