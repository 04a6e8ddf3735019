//! Data keys and payloads: generate, encrypt, decrypt and rewrap.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use super::{
    AppState, Json, MAX_PLAINTEXT_BYTES, check_context, check_key_name, decode_base64, note,
};
use crate::auth::{Caller, Operation};
use crate::error::Error;
use crate::keyring::NamedKey;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/keys/{name}/datakey")
            .name("datakey.generate")
            .route(web::post().to(generate_data_key)),
    )
    .service(
        web::resource("/keys/{name}/encrypt")
            .name("encrypt")
            .route(web::post().to(encrypt)),
    )
    .service(
        web::resource("/decrypt")
            .name("decrypt")
            .route(web::post().to(decrypt)),
    )
    .service(
        web::resource("/rewrap")
            .name("rewrap")
            .route(web::post().to(rewrap)),
    );
}

fn default_bytes() -> u16 {
    32
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataKeyRequest {
    #[serde(default = "default_bytes")]
    bytes: u16,
    #[serde(default)]
    context: BTreeMap<String, String>,
    #[serde(default = "default_true")]
    include_plaintext: bool,
}

/// Looks up an enabled key by name for `operation`, recording it for the audit log.
fn key_for(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    name: &str,
    operation: Operation,
) -> Result<std::sync::Arc<NamedKey>, Error> {
    check_key_name(name)?;
    note(req, |f| f.key = Some(name.to_owned()));
    caller.authorize(operation, name)?;
    let key = state.core.keyring()?.by_name(name)?;
    key.ensure_enabled()?;
    Ok(key)
}

fn sealed_view(
    key: &NamedKey,
    version: u32,
    blob: &[u8],
) -> serde_json::Map<String, serde_json::Value> {
    let mut view = serde_json::Map::new();
    view.insert("key_name".into(), key.name.clone().into());
    view.insert("key_id".into(), key.id.to_string().into());
    view.insert("key_version".into(), version.into());
    view.insert("ciphertext".into(), STANDARD.encode(blob).into());
    view
}

async fn generate_data_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: Json<DataKeyRequest>,
) -> Result<HttpResponse, Error> {
    let body = body.into_inner();
    let key = key_for(&req, &state, &caller, &path, Operation::Generate)?;
    if !matches!(body.bytes, 16 | 24 | 32) {
        return Err(Error::InvalidRequest(format!(
            "bytes: {} is not 16, 24 or 32",
            body.bytes
        )));
    }
    check_context(&req, &body.context)?;
    let generated = key.generate_data_key(usize::from(body.bytes), &body.context)?;
    note(&req, |f| f.key_version = Some(generated.version));
    let mut view = sealed_view(&key, generated.version, &generated.blob);
    if body.include_plaintext {
        let encoded = zeroize::Zeroizing::new(STANDARD.encode(generated.plaintext.as_slice()));
        view.insert("plaintext".into(), encoded.as_str().into());
    }
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EncryptRequest {
    plaintext: String,
    #[serde(default)]
    context: BTreeMap<String, String>,
}

async fn encrypt(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: Json<EncryptRequest>,
) -> Result<HttpResponse, Error> {
    let body = body.into_inner();
    let key = key_for(&req, &state, &caller, &path, Operation::Encrypt)?;
    check_context(&req, &body.context)?;
    let plaintext = zeroize::Zeroizing::new(decode_base64("plaintext", &body.plaintext)?);
    if plaintext.len() > MAX_PLAINTEXT_BYTES {
        return Err(Error::InvalidRequest(format!(
            "plaintext: {} bytes, more than the maximum of {MAX_PLAINTEXT_BYTES}; encrypt larger \
             data locally with a data key",
            plaintext.len()
        )));
    }
    let (version, blob) = key.seal(&plaintext, &body.context)?;
    note(&req, |f| f.key_version = Some(version));
    Ok(HttpResponse::Ok().json(sealed_view(&key, version, &blob)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlobRequest {
    ciphertext: String,
    #[serde(default)]
    context: BTreeMap<String, String>,
}

/// A blob opened by [`open_blob`].
struct Opened {
    key: std::sync::Arc<NamedKey>,
    version: u32,
    plaintext: zeroize::Zeroizing<Vec<u8>>,
}

/// Decodes a blob, finds its key, checks `operation` and opens it.
fn open_blob(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    body: &BlobRequest,
    operation: Operation,
) -> Result<Opened, Error> {
    check_context(req, &body.context)?;
    let blob = decode_base64("ciphertext", &body.ciphertext)?;
    let (key, header, ciphertext) = state.core.resolve_blob(&blob)?;
    note(req, |f| {
        f.key = Some(key.name.clone());
        f.key_version = Some(header.key_version);
    });
    caller.authorize(operation, &key.name)?;
    let plaintext = key.open(&header, ciphertext, &body.context)?;
    Ok(Opened {
        key,
        version: header.key_version,
        plaintext,
    })
}

async fn decrypt(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    body: Json<BlobRequest>,
) -> Result<HttpResponse, Error> {
    let Opened {
        key,
        version,
        plaintext,
    } = open_blob(&req, &state, &caller, &body, Operation::Decrypt)?;
    let encoded = zeroize::Zeroizing::new(STANDARD.encode(plaintext.as_slice()));
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "key_name": key.name,
        "key_id": key.id.to_string(),
        "key_version": version,
        "plaintext": encoded.as_str(),
    })))
}

async fn rewrap(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    body: Json<BlobRequest>,
) -> Result<HttpResponse, Error> {
    let Opened { key, plaintext, .. } = open_blob(&req, &state, &caller, &body, Operation::Rewrap)?;
    let (version, blob) = key.seal(&plaintext, &body.context)?;
    note(&req, |f| f.key_version = Some(version));
    Ok(HttpResponse::Ok().json(sealed_view(&key, version, &blob)))
}
