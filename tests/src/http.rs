//! A raw HTTPS client for requests that the SDK cannot send: malformed bodies, unknown fields,
//! missing tokens, and reading the `x-request-id` header of every response.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};

/// Sends requests to one daemon and returns status, request id and body as they arrived.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    base: String,
}

/// One response.
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// The `x-request-id` header, when present.
    pub request_id: Option<String>,
    /// The body parsed as JSON, or `Null` when it is empty or not JSON.
    pub body: serde_json::Value,
}

impl fmt::Debug for Reply {
    /// Shows status, request id and error code only: success bodies may carry secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("request_id", &self.request_id)
            .field("code", &self.code())
            .finish_non_exhaustive()
    }
}

impl Reply {
    /// Returns the `error.code` of an error body.
    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    /// Returns the `error.message` of an error body, or an empty string.
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }

    /// Returns the `error.request_id` of an error body.
    pub fn body_request_id(&self) -> Option<&str> {
        self.body["error"]["request_id"].as_str()
    }

    /// Asserts an error response with this status and code, and returns its message.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> &str {
        assert_eq!(
            (self.status, self.code()),
            (status, Some(code)),
            "unexpected response; message: {}",
            self.message()
        );
        self.message()
    }
}

/// Builds a rustls client configuration that trusts only the CA in `ca_pem` and offers only
/// `versions`.
pub fn tls_config(ca_pem: &Path, versions: &[&'static SupportedProtocolVersion]) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).expect("read CA file") {
        roots
            .add(cert.expect("parse CA PEM"))
            .expect("add CA to root store");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

impl Http {
    /// Creates a client for `base` (such as `https://127.0.0.1:40123`) that trusts `ca_pem`.
    pub fn new(base: &str, ca_pem: &Path) -> Http {
        Http::with_tls(base, tls_config(ca_pem, rustls::ALL_VERSIONS))
    }

    /// Creates a client with a prepared TLS configuration.
    pub fn with_tls(base: &str, tls: ClientConfig) -> Http {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build HTTP client");
        Http {
            client,
            base: base.to_owned(),
        }
    }

    /// Sends a `GET`.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::GET, path, token, None).await
    }

    /// Sends a `GET` with one extra header, such as a malformed `Authorization`.
    pub async fn get_with_header(&self, path: &str, name: &str, value: &str) -> Reply {
        let request = self
            .client
            .get(format!("{}{path}", self.base))
            .header(name, value);
        read_reply(request.send().await)
            .await
            .unwrap_or_else(|err| panic!("request to {path} failed: {err}"))
    }

    /// Sends a `POST` with a JSON body.
    pub async fn post(&self, path: &str, token: Option<&str>, body: &serde_json::Value) -> Reply {
        let bytes = serde_json::to_vec(body).expect("encode JSON body");
        self.send(Method::POST, path, token, Some(("application/json", bytes)))
            .await
    }

    /// Sends a request with an optional body and content type, exactly as given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Reply {
        self.try_send(method, path, token, body)
            .await
            .unwrap_or_else(|err| panic!("request to {path} failed: {err}"))
    }

    /// Sends a request and returns the transport error instead of panicking on it.
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Reply, reqwest::Error> {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some((content_type, bytes)) = body {
            if !content_type.is_empty() {
                request = request.header(reqwest::header::CONTENT_TYPE, content_type);
            }
            request = request.body(bytes);
        }
        read_reply(request.send().await).await
    }
}

async fn read_reply(
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<Reply, reqwest::Error> {
    let response = response?;
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let bytes = response.bytes().await?;
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok(Reply {
        status,
        request_id,
        body,
    })
}
