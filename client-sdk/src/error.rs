//! The SDK error type and the parser for `kmsd` error bodies.

use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the SDK.
///
/// No variant carries a token, share, key or plaintext, so every message is safe to log.
/// Variants with a cause leave it out of their own message; walk
/// [`std::error::Error::source`] to print it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `kmsd` rejected the request with an error body (see the error table of the HTTP API).
    #[error("{message} (HTTP {status}, code {code}{})", RequestIdSuffix(request_id.as_deref()))]
    Api {
        /// HTTP status code.
        status: u16,
        /// Stable machine-readable error code, such as `sealed` or `key_not_found`.
        code: String,
        /// Human-readable message from the daemon.
        message: String,
        /// Request id under which the daemon logged the failure, when it sent one.
        request_id: Option<String>,
    },

    /// The server returned an error status without a `kmsd` error body, which usually means
    /// that a proxy or another service responded.
    #[error(
        "{request} returned HTTP {status} without a kmsd error body: \
         check that the address points at kmsd"
    )]
    UnexpectedStatus {
        /// Method and path of the request, such as `GET /v1/keys`.
        request: String,
        /// HTTP status code.
        status: u16,
    },

    /// The request could not be sent or its response could not be read.
    #[error("cannot send {request} to {addr}")]
    Transport {
        /// Method and path of the request.
        request: String,
        /// Base address of the daemon.
        addr: String,
        /// Underlying HTTP error.
        #[source]
        source: reqwest::Error,
    },

    /// The connection or the whole request took longer than the configured timeout.
    #[error("{request} to {addr} timed out")]
    Timeout {
        /// Method and path of the request.
        request: String,
        /// Base address of the daemon.
        addr: String,
        /// Underlying HTTP error.
        #[source]
        source: reqwest::Error,
    },

    /// The TLS handshake failed, for example because the server certificate is not trusted.
    #[error("TLS handshake with {addr} failed")]
    Tls {
        /// Base address of the daemon.
        addr: String,
        /// Error that rustls reported.
        #[source]
        source: rustls::Error,
    },

    /// The CA certificate file could not be read or is not valid PEM.
    #[error("cannot read CA certificate file {}", path.display())]
    CaFile {
        /// Path of the CA certificate file.
        path: PathBuf,
        /// Read or PEM parse error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },

    /// The CA certificate file holds no `CERTIFICATE` PEM block.
    #[error("CA certificate file {} contains no PEM CERTIFICATE block", path.display())]
    CaFileEmpty {
        /// Path of the CA certificate file.
        path: PathBuf,
    },

    /// A certificate in the CA file could not be used as a trust anchor.
    #[error("CA certificate file {} contains an unusable certificate", path.display())]
    CaCertificateRejected {
        /// Path of the CA certificate file.
        path: PathBuf,
        /// Error that rustls reported for the certificate.
        #[source]
        source: rustls::Error,
    },

    /// The TLS configuration could not be built, for example because the system roots could
    /// not be loaded.
    #[error("cannot set up TLS")]
    TlsSetup {
        /// Error that rustls reported.
        #[source]
        source: rustls::Error,
    },

    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    HttpClient {
        /// Underlying HTTP error.
        #[source]
        source: reqwest::Error,
    },

    /// The daemon address is not an `https://host:port` URL.
    #[error("invalid daemon address {addr:?}: {reason}")]
    InvalidAddress {
        /// Address as given.
        addr: String,
        /// Reason the address was rejected.
        reason: &'static str,
    },

    /// The endpoint needs a token and the client has none.
    #[error("{request} needs a token, but the client has none: set one with ClientBuilder::token")]
    MissingToken {
        /// Method and path of the request.
        request: String,
    },

    /// The token contains bytes that an HTTP header cannot carry.
    #[error(
        "the token contains characters that are not allowed in an HTTP header: check its value"
    )]
    InvalidToken,

    /// An argument was rejected before any request was sent.
    #[error("invalid {name} {value:?}: {reason}")]
    InvalidArgument {
        /// Name of the argument, such as `key name`.
        name: &'static str,
        /// Value as given; never a secret.
        value: String,
        /// Reason the value was rejected.
        reason: &'static str,
    },

    /// A request body could not be encoded as JSON.
    #[error("cannot encode the body of {request}")]
    Encode {
        /// Method and path of the request.
        request: String,
        /// JSON encode error.
        #[source]
        source: serde_json::Error,
    },

    /// A success response did not have the expected shape.
    #[error("cannot decode the response to {request}")]
    Decode {
        /// Method and path of the request.
        request: String,
        /// JSON or base64 decode error.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Returns the `kmsd` error code (such as `sealed`) of an [`Error::Api`], else `None`.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Returns the HTTP status of an error response, else `None`.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::UnexpectedStatus { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Returns the daemon's request id of an [`Error::Api`], when the daemon sent one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Error::Api { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// Returns whether a retry of an idempotent request may succeed.
    ///
    /// Transport errors (a refused or reset connection), timeouts and HTTP 502, 503 and 504
    /// count as transient. TLS errors do not, because an untrusted certificate stays untrusted.
    /// A 503 with the code `sealed` or `audit_unavailable` does not either. The first needs an
    /// operator to unseal. The second means that the daemon rejected the request on purpose, so
    /// retrying would only add load while the audit log is failing.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Timeout { .. } => true,
            Error::UnexpectedStatus { status, .. } => matches!(status, 502..=504),
            Error::Api { status, code, .. } => {
                matches!(status, 502..=504) && code != "sealed" && code != "audit_unavailable"
            }
            _ => false,
        }
    }

    /// Builds the error for a failed send or body read, telling TLS failures and timeouts
    /// apart from other transport errors.
    pub(crate) fn from_reqwest(request: String, addr: &str, source: reqwest::Error) -> Self {
        let source = source.without_url();
        if let Some(tls) = find_rustls_error(&source) {
            return Error::Tls {
                addr: addr.to_owned(),
                source: tls,
            };
        }
        let addr = addr.to_owned();
        if source.is_timeout() {
            Error::Timeout {
                request,
                addr,
                source,
            }
        } else {
            Error::Transport {
                request,
                addr,
                source,
            }
        }
    }

    /// Builds the error for a non-success response from its status and body.
    pub(crate) fn from_response(request: String, status: u16, body: &[u8]) -> Self {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(ErrorBody { error }) => Error::Api {
                status,
                code: error.code,
                message: error.message,
                request_id: error.request_id,
            },
            Err(_) => Error::UnexpectedStatus { request, status },
        }
    }
}

/// Walks the source chain for a rustls error. hyper-rustls wraps it in one or more
/// `io::Error`s, whose `source()` skips the wrapped error, so the walk descends into an
/// `io::Error` with `get_ref` instead.
fn find_rustls_error(error: &(dyn StdError + 'static)) -> Option<rustls::Error> {
    let mut current = Some(error);
    while let Some(err) = current {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls.clone());
        }
        current = match err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(wrapped) => Some(wrapped),
            None => err.source(),
        };
    }
    None
}

/// Formats `, request id X` when the daemon sent a request id.
struct RequestIdSuffix<'a>(Option<&'a str>);

impl fmt::Display for RequestIdSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => write!(f, ", request id {id}"),
            None => Ok(()),
        }
    }
}

/// `{"error": {...}}`, the body of every `kmsd` error response.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
    #[serde(default)]
    request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_parses_into_api_error() {
        let body = br#"{"error": {"code": "sealed", "message": "the daemon is sealed",
            "request_id": "6f1c"}}"#;
        let err = Error::from_response("POST /v1/decrypt".into(), 503, body);

        assert_eq!(err.code(), Some("sealed"));
        assert_eq!(err.status(), Some(503));
        assert_eq!(err.request_id(), Some("6f1c"));
        assert_eq!(
            err.to_string(),
            "the daemon is sealed (HTTP 503, code sealed, request id 6f1c)"
        );
    }

    #[test]
    fn error_body_without_request_id_parses() {
        let body = br#"{"error": {"code": "key_not_found", "message": "no key named x"}}"#;
        let err = Error::from_response("GET /v1/keys/x".into(), 404, body);

        assert_eq!(err.code(), Some("key_not_found"));
        assert_eq!(err.request_id(), None);
        assert_eq!(
            err.to_string(),
            "no key named x (HTTP 404, code key_not_found)"
        );
    }

    #[test]
    fn non_json_error_body_is_unexpected_status() {
        let err = Error::from_response("GET /v1/keys".into(), 502, b"<html>Bad Gateway</html>");

        assert!(matches!(err, Error::UnexpectedStatus { status: 502, .. }));
        assert_eq!(err.code(), None);
        assert_eq!(err.status(), Some(502));
    }

    #[test]
    fn sealed_and_audit_unavailable_are_not_transient() {
        for code in ["sealed", "audit_unavailable"] {
            let body = format!(r#"{{"error": {{"code": "{code}", "message": "m"}}}}"#);
            let err = Error::from_response("GET /v1/keys".into(), 503, body.as_bytes());
            assert!(!err.is_transient(), "{code} must not be retried");
        }
    }

    #[test]
    fn gateway_errors_are_transient() {
        for status in [502, 503, 504] {
            let err = Error::from_response("GET /v1/keys".into(), status, b"");
            assert!(err.is_transient(), "HTTP {status} should be retried");
        }
        let err = Error::from_response("GET /v1/keys".into(), 500, b"");
        assert!(!err.is_transient(), "HTTP 500 must not be retried");
    }

    #[test]
    fn rustls_error_is_found_inside_nested_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, tls.clone());
        let outer = std::io::Error::other(inner);

        assert_eq!(find_rustls_error(&outer), Some(tls));
    }

    #[test]
    fn io_error_without_rustls_error_is_not_tls() {
        let err =
            std::io::Error::other(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(find_rustls_error(&err), None);
    }

    #[test]
    fn client_errors_are_not_transient() {
        let body = br#"{"error": {"code": "permission_denied", "message": "m"}}"#;
        let err = Error::from_response("GET /v1/keys".into(), 403, body);

        assert!(!err.is_transient());
    }
}
