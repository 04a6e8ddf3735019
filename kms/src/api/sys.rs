//! `/v1/sys`: status, init, unseal, seal, root tokens, and the PKCS#11 root key.

use actix_web::{HttpResponse, web};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::{AppState, Json, blocking};
use crate::auth::Caller;
use crate::error::Error;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/sys/status")
            .name("sys.status")
            .route(web::get().to(status)),
    )
    .service(
        web::resource("/sys/init")
            .name("sys.init")
            .route(web::post().to(init)),
    )
    .service(
        web::resource("/sys/unseal")
            .name("sys.unseal")
            .route(web::post().to(unseal)),
    )
    .service(
        web::resource("/sys/seal")
            .name("sys.seal")
            .route(web::post().to(seal)),
    )
    .service(
        web::resource("/sys/generate-root")
            .name("sys.generate_root")
            .route(web::post().to(generate_root)),
    )
    .service(
        web::resource("/sys/root-key/rotate")
            .name("sys.root_key.rotate")
            .route(web::post().to(rotate_root_key)),
    )
    .service(
        web::resource("/sys/root-key/objects/{label}")
            .name("sys.root_key.destroy")
            .route(web::delete().to(destroy_root_key)),
    )
    .service(
        web::resource("/sys/hsm/reconnect")
            .name("sys.hsm.reconnect")
            .route(web::post().to(reconnect_token)),
    );
}

async fn status(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.core.status())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InitRequest {
    shares: u16,
    threshold: u16,
    #[serde(default)]
    allow_single_share: bool,
}

async fn init(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
    body: Json<InitRequest>,
) -> Result<HttpResponse, Error> {
    let InitRequest {
        shares,
        threshold,
        allow_single_share,
    } = body.into_inner();
    let shares = u8::try_from(shares)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            Error::InvalidRequest(format!("shares: {shares} is not between 1 and 255"))
        })?;
    let threshold = u8::try_from(threshold)
        .ok()
        .filter(|t| (1..=shares).contains(t))
        .ok_or_else(|| {
            Error::InvalidRequest(format!(
                "threshold: {threshold} is not between 1 and shares ({shares})"
            ))
        })?;
    if threshold == 1 && !allow_single_share {
        return Err(Error::InvalidRequest(
            "threshold: 1 lets any single share unseal the daemon; set allow_single_share \
             (kmsctl: --allow-single-share) if that is what you want"
                .to_owned(),
        ));
    }
    if threshold == 1 {
        tracing::warn!("initialized with threshold 1: any single share unseals the daemon");
    }
    let output = blocking(move || state.core.init(shares, threshold)).await?;
    super::note(&req, |f| {
        f.created_accessor = Some(output.root_token_accessor.clone());
    });
    tracing::info!(shares, threshold, "initialized");
    let shares: Vec<&str> = output.shares.iter().map(|s| s.expose_secret()).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "shares": shares,
        "root_token": output.root_token.expose_secret(),
        "root_token_accessor": output.root_token_accessor,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnsealRequest {
    share: Option<secrecy::SecretString>,
    #[serde(default)]
    reset: bool,
}

async fn unseal(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
    body: Json<UnsealRequest>,
) -> Result<HttpResponse, Error> {
    let UnsealRequest { share, reset } = body.into_inner();
    let status = match (share, reset) {
        (None, true) => blocking(move || state.core.unseal_reset()).await?,
        (Some(share), false) => {
            // Reconstruction and keyring unwrap read the store, so run off the async workers.
            let result = blocking(move || state.core.unseal(share.expose_secret())).await;
            if let Err(error) = &result {
                tracing::warn!(%error, "unseal share rejected");
            }
            result?
        }
        // A daemon with a PKCS#11 root, sealed by `operator seal`, unseals with its token.
        // It needs the root token, so that no other caller can undo an emergency seal.
        (None, false) => {
            if !state.core.unseals_with_token() {
                return Err(Error::InvalidRequest(
                    "give exactly one of share and reset: true".to_owned(),
                ));
            }
            let caller = <Caller as actix_web::FromRequest>::extract(&req).await?;
            caller.require_root("unseal with the PKCS#11 token")?;
            blocking(move || state.core.unseal_with_token()).await?
        }
        (Some(_), true) => {
            return Err(Error::InvalidRequest(
                "give exactly one of share and reset: true".to_owned(),
            ));
        }
    };
    Ok(HttpResponse::Ok().json(status))
}

async fn seal(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, Error> {
    caller.require_root("seal the daemon")?;
    Ok(HttpResponse::Ok().json(state.core.seal()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateRootRequest {
    shares: Vec<secrecy::SecretString>,
}

async fn generate_root(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
    body: Json<GenerateRootRequest>,
) -> Result<HttpResponse, Error> {
    let shares = body.into_inner().shares;
    if shares.is_empty() || shares.len() > 255 {
        return Err(Error::InvalidRequest(format!(
            "shares: {} given, expected 1 to 255",
            shares.len()
        )));
    }
    let result = blocking(move || state.core.generate_root(&shares)).await;
    if let Err(error) = &result {
        tracing::warn!(%error, "root token generation rejected");
    }
    let output = result?;
    super::note(&req, |f| {
        f.created_accessor = Some(output.root_token_accessor.clone());
    });
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "root_token": output.root_token.expose_secret(),
        "root_token_accessor": output.root_token_accessor,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateRootKeyRequest {
    #[serde(default)]
    key_label: Option<String>,
}

async fn rotate_root_key(
    state: web::Data<AppState>,
    caller: Caller,
    body: Json<RotateRootKeyRequest>,
) -> Result<HttpResponse, Error> {
    caller.require_root("rotate the root key")?;
    let label = body.into_inner().key_label;
    if let Some(label) = &label {
        check_object_label(label)?;
    }
    let rotation = blocking(move || state.core.rotate_root_key(label)).await?;
    Ok(HttpResponse::Ok().json(rotation))
}

async fn destroy_root_key(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    caller.require_root("remove a root key object")?;
    let label = path.into_inner();
    check_object_label(&label)?;
    let removed = label.clone();
    blocking(move || state.core.destroy_root_key(&label)).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "removed_key_label": removed })))
}

async fn reconnect_token(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, Error> {
    caller.require_root("reconnect to the PKCS#11 token")?;
    blocking(move || state.core.reconnect_token()).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "reconnected": true })))
}

/// Checks a PKCS#11 key object label: 1 to 64 printable ASCII characters.
fn check_object_label(label: &str) -> Result<(), Error> {
    let valid = (1..=64).contains(&label.len()) && label.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidRequest(
            "key_label: expected 1 to 64 printable ASCII characters without spaces".to_owned(),
        ))
    }
}
