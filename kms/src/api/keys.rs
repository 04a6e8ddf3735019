//! `/v1/keys`: create, list, show, rotate, disable and enable named keys.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::{AppState, Json, blocking, check_key_name, note};
use crate::auth::{Caller, Operation};
use crate::core::rfc3339;
use crate::error::Error;
use crate::keyring::{KeyState, NamedKey};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/keys")
            .name("key.create")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        web::resource("/keys/{name}")
            .name("key.show")
            .route(web::get().to(show)),
    )
    .service(
        web::resource("/keys/{name}/rotate")
            .name("key.rotate")
            .route(web::post().to(rotate)),
    )
    .service(
        web::resource("/keys/{name}/disable")
            .name("key.disable")
            .route(web::post().to(disable)),
    )
    .service(
        web::resource("/keys/{name}/enable")
            .name("key.enable")
            .route(web::post().to(enable)),
    );
}

/// The key object of the API.
#[derive(Debug, Serialize)]
pub struct KeyView {
    name: String,
    id: String,
    state: &'static str,
    created_at: String,
    latest_version: u32,
    versions: Vec<VersionView>,
}

#[derive(Debug, Serialize)]
struct VersionView {
    version: u32,
    created_at: String,
    state: &'static str,
}

impl From<&NamedKey> for KeyView {
    fn from(key: &NamedKey) -> Self {
        KeyView {
            name: key.name.clone(),
            id: key.id.to_string(),
            state: key.state.as_str(),
            created_at: rfc3339(key.created_at),
            latest_version: key.latest_version(),
            versions: key
                .versions
                .values()
                .map(|v| VersionView {
                    version: v.version,
                    created_at: rfc3339(v.created_at),
                    state: v.state.as_str(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    name: String,
}

async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    body: Json<CreateRequest>,
) -> Result<HttpResponse, Error> {
    let name = body.into_inner().name;
    check_key_name(&name)?;
    note(&req, |f| f.key = Some(name.clone()));
    caller.authorize(Operation::Manage, &name)?;
    let key = blocking(move || state.core.create_key(&name)).await?;
    note(&req, |f| f.key_version = Some(key.latest_version()));
    Ok(HttpResponse::Created().json(KeyView::from(key.as_ref())))
}

async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, Error> {
    note(&req, |f| f.operation = Some("key.list"));
    let keyring = state.core.keyring()?;
    let keys: Vec<KeyView> = keyring
        .all()
        .iter()
        .filter(|k| caller.allows(Operation::Describe, &k.name))
        .map(|k| KeyView::from(k.as_ref()))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "keys": keys })))
}

fn named(req: &HttpRequest, path: &web::Path<String>) -> Result<String, Error> {
    let name = path.as_str().to_owned();
    check_key_name(&name)?;
    note(req, |f| f.key = Some(name.clone()));
    Ok(name)
}

async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    let name = named(&req, &path)?;
    caller.authorize(Operation::Describe, &name)?;
    let key = state.core.keyring()?.by_name(&name)?;
    Ok(HttpResponse::Ok().json(KeyView::from(key.as_ref())))
}

async fn rotate(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    let name = named(&req, &path)?;
    caller.authorize(Operation::Manage, &name)?;
    let key = blocking(move || state.core.rotate_key(&name)).await?;
    note(&req, |f| f.key_version = Some(key.latest_version()));
    Ok(HttpResponse::Ok().json(KeyView::from(key.as_ref())))
}

async fn set_state(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    target: KeyState,
) -> Result<HttpResponse, Error> {
    let name = named(&req, &path)?;
    caller.authorize(Operation::Manage, &name)?;
    let key = blocking(move || state.core.set_key_state(&name, target)).await?;
    Ok(HttpResponse::Ok().json(KeyView::from(key.as_ref())))
}

async fn disable(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    set_state(req, state, caller, path, KeyState::Disabled).await
}

async fn enable(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    set_state(req, state, caller, path, KeyState::Enabled).await
}
