//! The HTTP API under `/v1`: routes, the request middleware (request id, error bodies, audit)
//! and the validation shared by handlers. `docs/api.md` is the reference for clients.

mod crypto;
mod keys;
mod sys;
mod tokens;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::audit::{AuditLog, AuditRecord};
use crate::auth::{self, Caller};
use crate::blob::{MAX_CONTEXT_ENTRIES, MAX_CONTEXT_KEY_LEN, MAX_CONTEXT_VALUE_LEN};
use crate::core::{self, Core};
use crate::error::{Error, ErrorInfo, InternalCause};

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest plaintext accepted by the encrypt endpoint, in bytes.
pub const MAX_PLAINTEXT_BYTES: usize = 4096;
/// Prefix of every token; path segments with it are redacted from logs and audit records.
pub const TOKEN_PREFIX: &str = "kmst_";
/// How long a request body may take to arrive.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest key name.
pub const MAX_KEY_NAME_LEN: usize = 128;

/// State shared by every handler.
#[derive(Debug)]
pub struct AppState {
    pub core: Core,
    pub audit: AuditLog,
}

/// Audit fields that handlers fill in as they learn them.
#[derive(Debug, Clone, Default)]
pub struct AuditFields {
    /// Operation name when the route name alone does not tell it.
    pub operation: Option<&'static str>,
    pub accessor: Option<String>,
    /// Accessor of a token that the request created.
    pub created_accessor: Option<String>,
    pub key: Option<String>,
    pub key_version: Option<u32>,
    pub context_keys: Vec<String>,
}

/// Records audit fields on the request.
pub fn note(req: &HttpRequest, update: impl FnOnce(&mut AuditFields)) {
    let mut extensions = req.extensions_mut();
    if let Some(fields) = extensions.get_mut::<AuditFields>() {
        update(fields);
    }
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let path = web::PathConfig::default()
        .error_handler(|err, _req| Error::InvalidRequest(format!("invalid path: {err}")).into());
    // The middleware wraps an outer scope, so that requests outside `/v1` get a request id,
    // an error body and an audit record like every other request.
    cfg.app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
        .app_data(path)
        .service(
            web::scope("")
                .wrap(from_fn(request_context))
                .service(
                    web::scope("/v1")
                        .configure(sys::routes)
                        .configure(keys::routes)
                        .configure(crypto::routes)
                        .configure(tokens::routes)
                        .default_service(web::to(not_found)),
                )
                .default_service(web::to(not_found)),
        );
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, Error> {
    Err(Error::NotFound(truncate(req.path(), 256)))
}

/// A JSON object request body.
///
/// It replaces actix-web's `Json` extractor for two reasons. A struct must come from an
/// object, never from an array read by position. And a rejected body gets a message that
/// names the field and what it expects without repeating the value sent, which may be a
/// secret or a context value.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// Returns the parsed body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Json<T>, Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !is_json {
                return Err(Error::InvalidRequest(
                    "the body must be JSON with the header Content-Type: application/json"
                        .to_owned(),
                ));
            }
            let bytes = tokio::time::timeout(BODY_TIMEOUT, bytes)
                .await
                .map_err(|_| Error::BodyTimeout(BODY_TIMEOUT.as_secs()))?
                .map_err(|err| {
                    if err.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                        Error::PayloadTooLarge(MAX_BODY_BYTES)
                    } else {
                        Error::InvalidRequest("the request body could not be read".to_owned())
                    }
                })?;
            parse_body(&bytes).map(Json)
        })
    }
}

/// Parses a JSON object into `T`, with an error message that names the field.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::InvalidRequest(
            "the body must be a JSON object".to_owned(),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|err| Error::InvalidRequest(describe_body_error(&err)))?;
    deserializer.end().map_err(|err| {
        Error::InvalidRequest(format!(
            "malformed JSON body: {}",
            without_values(&err.to_string())
        ))
    })?;
    Ok(value)
}

/// Describes a body error by field path and expectation. serde_json's own messages quote the
/// value they rejected, so only the expectation is kept from them.
fn describe_body_error(err: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let inner = err.inner();
    let message = without_values(&inner.to_string());
    match inner.classify() {
        serde_json::error::Category::Data => {
            let path = err.path().to_string();
            if path == "." {
                format!("invalid request body: {message}")
            } else {
                format!("field `{path}` is invalid: {message}")
            }
        }
        _ => format!("malformed JSON body: {message}"),
    }
}

/// Removes the quoted value from a serde message: `invalid type: string "x", expected u16`
/// becomes `expected u16`; integer types are spelled out with their range.
fn without_values(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    };
    let rejected_value = ["invalid type:", "invalid value:", "invalid length"]
        .iter()
        .any(|prefix| message.starts_with(prefix));
    if !rejected_value {
        return message.to_owned();
    }
    let expected = message
        .rfind(", expected ")
        .map_or("another value", |at| &message[at + 11..]);
    let expected = match expected {
        "u8" => "an integer from 0 to 255",
        "u16" => "an integer from 0 to 65535",
        "u32" => "an integer from 0 to 4294967295",
        "u64" => "an integer from 0 to 18446744073709551615",
        other => other,
    };
    format!("expected {expected}")
}

/// A random 128-bit request id in hex.
fn new_request_id() -> String {
    let mut id = [0u8; 16];
    // Fall back to a time-based id if the random generator fails; the id is not a secret.
    if crate::keyring::random_fill(&mut id).is_err() {
        id[..8].copy_from_slice(&core::now().to_be_bytes());
    }
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Replaces each path segment that starts like a token, so that a token pasted where an
/// accessor belongs reaches neither the log nor the audit record.
fn redact_tokens(path: &str) -> String {
    if !path.contains(TOKEN_PREFIX) {
        return path.to_owned();
    }
    path.split('/')
        .map(|segment| {
            if segment.starts_with(TOKEN_PREFIX) {
                "kmst_[redacted]"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Gives each request an id, writes its audit record, and turns error responses into the
/// JSON error body. The response is released only after the audit record is written.
async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let request_id = new_request_id();
    let method = req.method().to_string();
    let path = redact_tokens(&truncate(req.path(), 256));
    let span = tracing::info_span!("request", %request_id, %method, %path);
    // The request runs as its own task, so that it finishes and writes its audit record even
    // when the client drops the connection: blocking store work that changed state keeps
    // running on the blocking pool either way.
    let task = finish_request(req, next, request_id, method, path).instrument(span);
    actix_web::rt::spawn(task)
        .await
        .map_err(|_| actix_web::error::ErrorInternalServerError("the request task failed"))?
}

async fn finish_request(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    request_id: String,
    method: String,
    path: String,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let remote_addr = req.peer_addr().map(|a| a.ip().to_string());
    let audit = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.audit.clone());
    if let Some(Err(error)) = audit.as_ref().map(AuditLog::admit) {
        // Refused before it runs, so the request has no effect.
        let operation = route_operation(req.resource_map().match_name(req.path()), req.method());
        let record = AuditRecord {
            time: core::rfc3339(core::now()),
            request_id: request_id.clone(),
            operation,
            method,
            path,
            outcome: "audit_unavailable".to_owned(),
            status: StatusCode::SERVICE_UNAVAILABLE.as_u16(),
            remote_addr,
            ..AuditRecord::default()
        };
        if let Some(log) = &audit {
            log.record_refusal(&record);
        }
        tracing::warn!(%error, "request rejected because the audit log is unavailable");
        let mut response = error_body(
            &error.to_string(),
            "audit_unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            &request_id,
        );
        insert_request_id(&mut response, &request_id);
        return Ok(req.into_response(response));
    }
    req.extensions_mut().insert(AuditFields::default());

    let response = next.call(req).await?;
    let status = response.status();
    let fields = response
        .request()
        .extensions()
        .get::<AuditFields>()
        .cloned()
        .unwrap_or_default();
    let operation = match fields.operation {
        Some(operation) => operation.to_owned(),
        None => route_operation(response.request().match_name(), response.request().method()),
    };
    let info = error_info(&response);
    // A 503 (sealed, token unreachable) is a state of the daemon that its status and the
    // audit log already show, so only faults of the daemon itself are logged as errors.
    if let Some(cause) = response.response().extensions().get::<InternalCause>() {
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(cause = %cause.0, %operation, "request failed");
        } else if status.is_server_error() {
            tracing::debug!(cause = %cause.0, %operation, "request unavailable");
        }
    }
    if status.is_client_error() {
        tracing::debug!(code = info.as_ref().map_or("", |i| i.code), %operation, "request rejected");
    }

    let record = AuditRecord {
        time: core::rfc3339(core::now()),
        request_id: request_id.clone(),
        accessor: fields.accessor,
        created_accessor: fields.created_accessor,
        operation,
        method,
        path,
        key: fields.key,
        key_version: fields.key_version,
        context_keys: fields.context_keys,
        outcome: info.as_ref().map_or("ok", |i| i.code).to_owned(),
        status: status.as_u16(),
        remote_addr,
    };
    let audited = match &audit {
        Some(log) => log.record(&record).await,
        None => Err(Error::AuditUnavailable("no audit log is configured")),
    };
    let (request, response) = response.into_parts();
    let mut response = match (audited, info) {
        (Err(error), _) => {
            tracing::error!(%error, "request ran but its audit record was not confirmed");
            let message = format!(
                "the request was carried out, but its audit record was not confirmed ({error}); \
                 check the audit device before retrying"
            );
            error_body(
                &message,
                "audit_unavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                &request_id,
            )
        }
        (Ok(()), Some(info)) => error_body(&info.message, info.code, status, &request_id),
        (Ok(()), None) => response.map_into_boxed_body(),
    };
    insert_request_id(&mut response, &request_id);
    Ok(ServiceResponse::new(request, response))
}

fn insert_request_id(response: &mut HttpResponse<BoxBody>, request_id: &str) {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response
            .headers_mut()
            .insert(header::HeaderName::from_static("x-request-id"), value);
    }
}

/// The operation a route performs, from its name and, where one resource serves two
/// operations, its method.
fn route_operation(name: Option<&str>, method: &actix_web::http::Method) -> String {
    match (name, method) {
        (Some("key.create"), &actix_web::http::Method::GET) => "key.list".to_owned(),
        (Some(name), _) => name.to_owned(),
        (None, _) => "unknown".to_owned(),
    }
}

/// The error code and message of a response: ours, or one derived from the status of errors
/// raised inside actix-web (unknown method, for example).
fn error_info<B>(response: &ServiceResponse<B>) -> Option<ErrorInfo> {
    if let Some(info) = response.response().extensions().get::<ErrorInfo>() {
        return Some(info.clone());
    }
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "method not allowed for this endpoint: see docs/api.md",
        ),
        StatusCode::NOT_FOUND => ("not_found", "no such endpoint: see docs/api.md"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body is too large"),
        s if s.is_client_error() => ("invalid_request", "the request could not be processed"),
        _ => (
            "internal",
            "internal error: the server log has the cause under this request id",
        ),
    };
    Some(ErrorInfo {
        code,
        message: message.to_owned(),
    })
}

fn error_body(
    message: &str,
    code: &str,
    status: StatusCode,
    request_id: &str,
) -> HttpResponse<BoxBody> {
    let body = serde_json::json!({
        "error": { "code": code, "message": message, "request_id": request_id }
    });
    HttpResponse::build(status).json(body)
}

impl FromRequest for Caller {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or(Error::Unauthenticated("server misconfiguration"))?;
            let token = bearer_token(&req)?;
            let hash = auth::hash_token(token);
            let now = core::now();
            if let Some(caller) = state.core.token_cache().get(&hash, now) {
                note(&req, |f| f.accessor = Some(caller.accessor.clone()));
                return Ok(caller);
            }
            let revocations = state.core.token_cache().revocations();
            let lookup = Arc::clone(&state);
            let row = blocking(move || lookup.core.store().token_by_hash(&hash)).await?;
            let row = row.ok_or(Error::Unauthenticated("unknown token: check KMS_TOKEN"))?;
            note(&req, |f| f.accessor = Some(row.accessor.clone()));
            let caller = auth::caller_from_row(&row, &hash, now)?;
            state
                .core
                .token_cache()
                .insert(hash, caller.clone(), revocations);
            Ok(caller)
        })
    }
}

fn bearer_token(req: &HttpRequest) -> Result<&str, Error> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(Error::Unauthenticated(
            "missing token: send Authorization: Bearer <token>",
        ))?;
    let text = value
        .to_str()
        .map_err(|_| Error::Unauthenticated("the Authorization header is not ASCII"))?;
    text.strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(Error::Unauthenticated(
            "the Authorization header must be `Bearer <token>`",
        ))
}

/// Runs blocking store work on the blocking pool.
pub async fn blocking<T, F>(work: F) -> Result<T, Error>
where
    F: FnOnce() -> Result<T, Error> + Send + 'static,
    T: Send + 'static,
{
    // Carry the request span over, so logs from the store work keep the request id.
    let span = tracing::Span::current();
    web::block(move || span.in_scope(work))
        .await
        .map_err(|_| Error::Cancelled)?
}

/// Returns whether `name` is a valid key name.
pub fn valid_key_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_KEY_NAME_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Returns whether `stem` could start a valid key name (used for policy patterns).
pub fn valid_key_name_prefix(stem: &str) -> bool {
    valid_key_name(stem)
}

/// Fails with 400 unless `name` is a valid key name.
pub fn check_key_name(name: &str) -> Result<(), Error> {
    if valid_key_name(name) {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "name: {:?} is not a valid key name: use 1 to {MAX_KEY_NAME_LEN} characters from \
             A-Z, a-z, 0-9, '.', '_' and '-', starting with a letter or digit",
            truncate(name, 64)
        )))
    }
}

/// Decodes a base64 field, naming it in the error.
pub fn decode_base64(field: &str, value: &str) -> Result<Vec<u8>, Error> {
    STANDARD
        .decode(value)
        .map_err(|e| Error::InvalidRequest(format!("{field}: invalid base64 ({e})")))
}

/// Checks an encryption context's limits and records its keys for the audit log.
pub fn check_context(req: &HttpRequest, context: &BTreeMap<String, String>) -> Result<(), Error> {
    if context.len() > MAX_CONTEXT_ENTRIES {
        return Err(Error::InvalidRequest(format!(
            "context: {} entries, more than the maximum of {MAX_CONTEXT_ENTRIES}",
            context.len()
        )));
    }
    for (key, value) in context {
        if key.is_empty() || key.len() > MAX_CONTEXT_KEY_LEN {
            return Err(Error::InvalidRequest(format!(
                "context: key {:?} must be 1 to {MAX_CONTEXT_KEY_LEN} bytes",
                truncate(key, 64)
            )));
        }
        if value.len() > MAX_CONTEXT_VALUE_LEN {
            return Err(Error::InvalidRequest(format!(
                "context: the value of {key:?} is longer than {MAX_CONTEXT_VALUE_LEN} bytes"
            )));
        }
    }
    note(req, |f| f.context_keys = context.keys().cloned().collect());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_follow_the_documented_pattern() {
        assert!(valid_key_name("patient-records"));
        assert!(valid_key_name("a"));
        assert!(valid_key_name("A.b_c-9"));
        assert!(!valid_key_name(""));
        assert!(!valid_key_name("-leading"));
        assert!(!valid_key_name("has space"));
        assert!(!valid_key_name("slash/name"));
        assert!(!valid_key_name(&"a".repeat(129)));
        assert!(valid_key_name(&"a".repeat(128)));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
