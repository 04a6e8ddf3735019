//! [`Client`] and the request plumbing shared by the endpoint methods.
//!
//! The endpoint methods live in one submodule per API section.

mod crypto;
mod keys;
mod sys;
mod tokens;

use std::fmt;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::retry::RetryPolicy;

/// An async client for `kmsd`. Build it with [`crate::ClientBuilder`].
///
/// Cloning is cheap and shares the connection pool.
///
/// NOTE: the SDK zeroizes its own copies of tokens, shares and plaintexts, but the HTTP and
/// TLS layers below it keep copies in buffers that they free without zeroizing.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    authorization: Option<HeaderValue>,
    retry: RetryPolicy,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.base)
            .field("has_token", &self.authorization.is_some())
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub(crate) fn new(
        http: reqwest::Client,
        base: String,
        token: Option<SecretString>,
        retry: RetryPolicy,
    ) -> Result<Self> {
        let authorization = token.as_ref().map(bearer_header).transpose()?;
        Ok(Client {
            http,
            base,
            authorization,
            retry,
        })
    }

    /// Returns the daemon address without a trailing slash.
    pub fn addr(&self) -> &str {
        &self.base
    }

    /// Sends a request, retrying it when it is idempotent and fails transiently, and decodes
    /// the JSON response.
    pub(crate) async fn send<T: DeserializeOwned>(&self, request: Request) -> Result<T> {
        let label = format!("{} {}", request.method, request.path);
        let authorization = match (request.authenticated, &self.authorization) {
            (false, _) => None,
            (true, Some(header)) => Some(header),
            (true, None) => return Err(Error::MissingToken { request: label }),
        };
        let url = format!("{}{}", self.base, request.path);
        let attempts = if request.idempotent {
            self.retry.max_attempts.max(1)
        } else {
            1
        };

        let mut attempt = 1;
        loop {
            let result = self.send_once(&request, &url, authorization, &label).await;
            match result {
                Err(err) if attempt < attempts && err.is_transient() => {
                    let wait = self.retry.backoff(attempt);
                    tracing::debug!(
                        request = %label, attempt, wait_ms = wait.as_millis(), error = %err,
                        "retrying after a transient error"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn send_once<T: DeserializeOwned>(
        &self,
        request: &Request,
        url: &str,
        authorization: Option<&HeaderValue>,
        label: &str,
    ) -> Result<T> {
        let mut builder = self.http.request(request.method.clone(), url);
        if let Some(header) = authorization {
            builder = builder.header(AUTHORIZATION, header.clone());
        }
        if let Some(body) = &request.body {
            builder = builder
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }

        let transport = |source| Error::from_reqwest(label.to_owned(), &self.base, source);
        let response = builder.send().await.map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        tracing::debug!(request = %label, status = status.as_u16(), "response received");

        let result = if status.is_success() {
            serde_json::from_slice(&body).map_err(|source| Error::Decode {
                request: label.to_owned(),
                source,
            })
        } else {
            Err(Error::from_response(
                label.to_owned(),
                status.as_u16(),
                &body,
            ))
        };
        wipe(body);
        result
    }
}

/// One API request before it is sent.
pub(crate) struct Request {
    method: Method,
    path: String,
    authenticated: bool,
    idempotent: bool,
    body: Option<Bytes>,
}

impl Request {
    /// Creates a `GET` of an endpoint that needs a token. It changes nothing, so it is retried.
    pub(crate) fn get(path: String) -> Self {
        Request {
            method: Method::GET,
            path,
            authenticated: true,
            idempotent: true,
            body: None,
        }
    }

    /// Creates a `POST` of an endpoint that needs a token. It is sent once unless marked
    /// idempotent.
    pub(crate) fn post(path: String) -> Self {
        Request {
            method: Method::POST,
            path,
            authenticated: true,
            idempotent: false,
            body: None,
        }
    }

    /// Creates a `DELETE` of an endpoint that needs a token. It is sent once.
    pub(crate) fn delete(path: String) -> Self {
        Request {
            method: Method::DELETE,
            path,
            authenticated: true,
            idempotent: false,
            body: None,
        }
    }

    /// Marks an endpoint that works without a token.
    pub(crate) fn unauthenticated(mut self) -> Self {
        self.authenticated = false;
        self
    }

    /// Marks a request whose repetition changes nothing on the daemon.
    pub(crate) fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Sets the JSON body.
    ///
    /// The body may carry a share or a plaintext, so it is written into a buffer of exact size
    /// (no reallocation leaves a stray copy) that is zeroized when the last clone of the body
    /// is dropped.
    pub(crate) fn json(mut self, body: &impl Serialize) -> Result<Self> {
        let request = format!("{} {}", self.method, self.path);
        let encode = |source| Error::Encode {
            request: request.clone(),
            source,
        };
        let buffer = to_zeroizing_json(body).map_err(encode)?;
        self.body = Some(Bytes::from_owner(buffer));
        Ok(self)
    }
}

/// Serializes `value` into a buffer of exact size that is zeroized on drop, so that no
/// reallocation leaves a stray copy of a secret it carries.
pub(crate) fn to_zeroizing_json(
    value: &impl Serialize,
) -> std::result::Result<Zeroizing<Vec<u8>>, serde_json::Error> {
    let mut counter = ByteCounter(0);
    serde_json::to_writer(&mut counter, value)?;
    let mut buffer = Zeroizing::new(Vec::with_capacity(counter.0));
    serde_json::to_writer(&mut *buffer, value)?;
    Ok(buffer)
}

/// Counts the bytes written to it, to size a buffer before writing into it.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Builds the `Authorization: Bearer` header, marked sensitive so that the HTTP stack leaves it
/// out of its Debug output.
fn bearer_header(token: &SecretString) -> Result<HeaderValue> {
    let secret = token.expose_secret();
    let mut value = Zeroizing::new(String::with_capacity("Bearer ".len() + secret.len()));
    value.push_str("Bearer ");
    value.push_str(secret);
    let mut header = HeaderValue::from_str(&value).map_err(|_| Error::InvalidToken)?;
    header.set_sensitive(true);
    Ok(header)
}

/// Zeroizes a response body when no other reference to its buffer is left, which is the usual
/// case once the JSON is decoded. Response bodies may hold shares, tokens or plaintexts.
fn wipe(body: Bytes) {
    if let Ok(mut owned) = body.try_into_mut() {
        owned[..].zeroize();
    }
}

/// Checks one path segment (a key name or an accessor) and percent-encodes it.
///
/// Empty, `.` and `..` segments are rejected because URL parsing would drop them or climb a
/// level, and so send the request to another endpoint.
pub(crate) fn segment(name: &'static str, value: &str) -> Result<String> {
    if value.is_empty() || value == "." || value == ".." {
        return Err(Error::InvalidArgument {
            name,
            value: value.to_owned(),
            reason: "must not be empty, \".\" or \"..\"",
        });
    }
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_passes_key_names_through() {
        assert_eq!(
            segment("key name", "patient-records.v2_x").unwrap(),
            "patient-records.v2_x"
        );
    }

    #[test]
    fn segment_encodes_slashes_and_spaces() {
        assert_eq!(segment("key name", "a/../b c").unwrap(), "a%2F..%2Fb%20c");
        assert_eq!(segment("key name", "é").unwrap(), "%C3%A9");
    }

    #[test]
    fn segment_rejects_dot_segments() {
        for value in ["", ".", ".."] {
            let err = segment("key name", value).unwrap_err();
            assert!(
                matches!(err, Error::InvalidArgument { .. }),
                "{value:?}: {err}"
            );
        }
    }

    #[test]
    fn json_body_has_exact_size() {
        let request = Request::post("/v1/x".into())
            .json(&serde_json::json!({"a": "b"}))
            .unwrap();
        assert_eq!(request.body.as_deref(), Some(&br#"{"a":"b"}"#[..]));
    }

    #[test]
    fn bearer_header_is_sensitive() {
        let header = bearer_header(&SecretString::from("kms.tcanary")).unwrap();
        assert!(header.is_sensitive());
        assert!(!format!("{header:?}").contains("canary"));
    }

    #[test]
    fn bearer_header_rejects_newline() {
        let err = bearer_header(&SecretString::from("kms.t\nInjected: 1")).unwrap_err();
        assert!(matches!(err, Error::InvalidToken));
    }

    #[tokio::test]
    async fn missing_token_fails_before_sending() {
        let client = crate::ClientBuilder::new("https://127.0.0.1:9")
            .build()
            .unwrap();
        let err = client.list_keys().await.unwrap_err();

        assert!(matches!(err, Error::MissingToken { .. }), "{err:?}");
        assert!(err.to_string().contains("GET /v1/keys"), "{err}");
    }
}
