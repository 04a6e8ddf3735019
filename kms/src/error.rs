//! The daemon's error type and its one mapping to HTTP statuses and stable error codes.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use uuid::Uuid;

use crate::blob::BlobError;

/// Everything that can go wrong in the daemon. Messages never contain key material, shares,
/// tokens, plaintext or encryption-context values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting has a value the daemon cannot use.
    #[error("invalid setting {setting}: {reason}")]
    Config {
        setting: &'static str,
        reason: String,
    },
    /// The request body or a parameter is malformed or out of range.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A share was rejected before reconstruction.
    #[error("share rejected: {0}")]
    Share(#[from] hsm::ShareError),
    /// The submitted shares combined to a key that does not open the keyring.
    #[error(
        "the submitted shares do not reconstruct the root key, so unseal progress was reset: \
         submit the threshold number of shares again and check that none was altered"
    )]
    UnsealFailed,
    /// Shares presented to generate a root token or to migrate the root of trust rebuilt a
    /// key that is not the one of this init.
    #[error(
        "the submitted shares do not reconstruct the key of this key store: check that each \
         share comes from its init and that none was altered"
    )]
    SharesRejected,
    /// Unseal was called before init.
    #[error("the daemon is not initialized: run `kmsctl operator init` first")]
    NotInitialized,
    /// Init was called twice.
    #[error("the daemon is already initialized: unseal it with the shares from the first init")]
    AlreadyInitialized,
    /// A key operation arrived while the daemon holds no keys.
    #[error("the daemon is sealed: unseal it with `kmsctl operator unseal`")]
    Sealed,
    /// The daemon is not initialized and a key operation arrived.
    #[error("the daemon is not initialized, so it holds no keys: run `kmsctl operator init`")]
    SealedUninitialized,
    /// A ciphertext blob could not be parsed.
    #[error("invalid ciphertext: {0}")]
    Blob(#[from] BlobError),
    /// Authentication of a blob failed.
    #[error(
        "decryption failed: the ciphertext was altered, or the encryption context differs \
         from the one given at encryption"
    )]
    DecryptionFailed,
    /// No usable token.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The token's policy does not allow the operation.
    #[error("permission denied: this token may not {operation} key {key:?}")]
    PermissionDenied {
        operation: &'static str,
        key: String,
    },
    /// The root token is needed.
    #[error("permission denied: only the root token may {0}")]
    RootRequired(&'static str),
    /// No key of that name.
    #[error("key {0:?} not found: list keys with `kmsctl key list`")]
    KeyNotFound(String),
    /// A blob names a key id this store does not have.
    #[error("the ciphertext names key id {0}, which this key store does not have")]
    KeyIdNotFound(Uuid),
    /// A blob names a version the key does not have.
    #[error("key {key:?} has no version {version}")]
    KeyVersionNotFound { key: String, version: u32 },
    /// No token with that accessor.
    #[error("no token has accessor {0:?}")]
    TokenNotFound(String),
    /// No PKCS#11 key object has the label.
    #[error(
        "PKCS#11 key object {0:?} not found on the token: list the objects with \
         `pkcs11-tool --list-objects --type secrkey --login`"
    )]
    KeyObjectNotFound(String),
    /// No route matched.
    #[error("no endpoint at {0}: see docs/api.md for the routes")]
    NotFound(String),
    /// The route exists with another method.
    #[error("method not allowed for this endpoint")]
    MethodNotAllowed,
    /// A key of that name exists.
    #[error("key {0:?} already exists: choose another name or rotate the existing key")]
    KeyExists(String),
    /// The key is disabled.
    #[error("key {0:?} is disabled: enable it with `kmsctl key enable {0}`")]
    KeyDisabled(String),
    /// Two writers raced on the same state.
    #[error("conflict: {0}; retry the request")]
    Conflict(&'static str),
    /// The request body did not arrive in time.
    #[error("the request body did not arrive within {0} s: send it at once")]
    BodyTimeout(u64),
    /// The body exceeds the size limit.
    #[error("request body exceeds the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// The audit record could not be written in time, so the request was refused.
    #[error("the audit log could not record this request in time, so it was refused: {0}")]
    AuditUnavailable(&'static str),
    /// A database query failed.
    #[error("database query failed")]
    Database(#[from] diesel::result::Error),
    /// No database connection could be had.
    #[error("database connection failed")]
    Pool(#[from] diesel::r2d2::PoolError),
    /// Building the pool failed at start.
    #[error("database pool could not be built")]
    PoolBuild(#[from] diesel::r2d2::Error),
    /// Migrations failed at start.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// The store holds a value this build cannot use.
    #[error("the key store holds invalid data: {0}")]
    StoreInvalid(String),
    /// The root of trust failed. Its messages name the fix and carry no secret.
    #[error(transparent)]
    Hsm(#[from] hsm::Error),
    /// Stored key material failed to unwrap with a keyring key that did unwrap.
    #[error("stored key material for key {0:?} failed authentication: the key store is damaged")]
    CorruptKeyMaterial(String),
    /// The operating system random generator failed.
    #[error("random number generator failed")]
    Random,
    /// A file or socket operation failed.
    #[error("{context}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// TLS set-up failed.
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    /// A blocking task was cancelled (the runtime is shutting down).
    #[error("a background task was cancelled")]
    Cancelled,
}

impl Error {
    /// The HTTP status and the stable machine-readable code for this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use hsm::ShareError as S;
        match self {
            Error::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Error::Share(S::ForeignShare { .. }) => (StatusCode::BAD_REQUEST, "foreign_share"),
            Error::Share(S::DuplicateShare { .. }) => (StatusCode::BAD_REQUEST, "duplicate_share"),
            Error::Share(_) => (StatusCode::BAD_REQUEST, "invalid_share"),
            Error::UnsealFailed => (StatusCode::BAD_REQUEST, "unseal_failed"),
            Error::SharesRejected => (StatusCode::BAD_REQUEST, "shares_rejected"),
            Error::Hsm(hsm::Error::InvalidShareCount { .. }) => {
                (StatusCode::BAD_REQUEST, "invalid_request")
            }
            Error::NotInitialized => (StatusCode::BAD_REQUEST, "not_initialized"),
            Error::Blob(_) => (StatusCode::BAD_REQUEST, "invalid_ciphertext"),
            Error::DecryptionFailed => (StatusCode::BAD_REQUEST, "decryption_failed"),
            Error::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Error::PermissionDenied { .. } | Error::RootRequired(_) => {
                (StatusCode::FORBIDDEN, "permission_denied")
            }
            Error::KeyNotFound(_) | Error::KeyIdNotFound(_) => {
                (StatusCode::NOT_FOUND, "key_not_found")
            }
            Error::KeyVersionNotFound { .. } => (StatusCode::NOT_FOUND, "key_version_not_found"),
            Error::TokenNotFound(_) => (StatusCode::NOT_FOUND, "token_not_found"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::KeyObjectNotFound(_) => (StatusCode::NOT_FOUND, "key_object_not_found"),
            Error::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Error::AlreadyInitialized => (StatusCode::CONFLICT, "already_initialized"),
            Error::KeyExists(_) => (StatusCode::CONFLICT, "key_exists"),
            Error::KeyDisabled(_) => (StatusCode::CONFLICT, "key_disabled"),
            Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Error::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Error::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Error::Sealed | Error::SealedUninitialized => {
                (StatusCode::SERVICE_UNAVAILABLE, "sealed")
            }
            Error::AuditUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
            Error::Hsm(error) if error.is_unavailable() => {
                (StatusCode::SERVICE_UNAVAILABLE, "hsm_unavailable")
            }
            Error::Hsm(_) => (StatusCode::INTERNAL_SERVER_ERROR, "hsm_error"),
            Error::Config { .. }
            | Error::Database(_)
            | Error::Pool(_)
            | Error::PoolBuild(_)
            | Error::Migration(_)
            | Error::StoreInvalid(_)
            | Error::CorruptKeyMaterial(_)
            | Error::Random
            | Error::Io { .. }
            | Error::Tls(_)
            | Error::Cancelled => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// Wraps an I/O error with a message that names the file or socket.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// The code and client-facing message of an error response, kept in the response extensions
/// so that the request middleware can add the request id and write the audit record.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub code: &'static str,
    pub message: String,
}

impl actix_web::ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code) = self.status_and_code();
        // A 5xx body stays generic; the cause chain goes to the log under the request id.
        let message = if status.is_server_error() && code == "internal" {
            "internal error: the server log has the cause under this request id".to_owned()
        } else {
            self.to_string()
        };
        let mut response = HttpResponse::build(status).finish();
        response
            .extensions_mut()
            .insert(ErrorInfo { code, message });
        response
            .extensions_mut()
            .insert(InternalCause(error_chain(self)));
        response
    }
}

/// The full cause chain of a server-side error, logged by the middleware and never sent.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

/// Joins an error and its sources with `: `.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // Variants that print their source in their own message would repeat it.
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
