//! [`ClientBuilder`]: address, trust roots, token, timeouts and retries.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::{ClientConfig, RootCertStore};
use rustls_platform_verifier::BuilderVerifierExt as _;
use secrecy::SecretString;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;

/// Default address of a local `kmsd`.
pub const DEFAULT_ADDR: &str = "https://127.0.0.1:8443";

/// Builds a [`Client`].
///
/// ```no_run
/// # async fn example() -> client_sdk::Result<()> {
/// use client_sdk::ClientBuilder;
/// use secrecy::SecretString;
///
/// let token = SecretString::from(std::env::var("KMS_TOKEN").unwrap_or_default());
/// let client = ClientBuilder::new("https://kms.internal:8443")
///     .ca_cert("/etc/kms/ca.pem")
///     .token(token)
///     .build()?;
/// let status = client.status().await?;
/// println!("sealed: {}", status.sealed);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    addr: String,
    ca_cert: Option<PathBuf>,
    token: Option<SecretString>,
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
}

impl ClientBuilder {
    /// Starts a builder for the daemon at `addr`, an `https://host:port` URL.
    pub fn new(addr: impl Into<String>) -> Self {
        ClientBuilder {
            addr: addr.into(),
            ca_cert: None,
            token: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }

    /// Trusts only the CA certificates in this PEM file instead of the system roots.
    pub fn ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(path.into());
        self
    }

    /// Sets the token sent as `Authorization: Bearer` on every endpoint that needs one.
    pub fn token(mut self, token: SecretString) -> Self {
        self.token = Some(token);
        self
    }

    /// Sets the limit for a whole request, from connecting to reading the body; 30 s by
    /// default. Each retry gets the full limit again.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the limit for opening a TCP connection; 10 s by default.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the retry policy for idempotent requests; see [`RetryPolicy`].
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Checks the address, loads the trust roots and builds the client.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidAddress`] for an address that is not `https://host[:port]`.
    /// - [`Error::CaFile`], [`Error::CaFileEmpty`] or [`Error::CaCertificateRejected`] for an
    ///   unreadable, empty or unusable CA file.
    /// - [`Error::InvalidToken`] for a token that cannot go in a header.
    /// - [`Error::TlsSetup`] or [`Error::HttpClient`] when TLS or the HTTP client cannot be set
    ///   up.
    pub fn build(self) -> Result<Client> {
        let base = normalize_addr(&self.addr)?;
        let tls = tls_config(self.ca_cert.as_deref())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(concat!("kms-client-sdk/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| Error::HttpClient { source })?;
        Client::new(http, base, self.token, self.retry)
    }
}

/// Checks that `addr` is an `https` URL with a host and nothing after the path, and returns it
/// without a trailing slash so that API paths can be appended.
fn normalize_addr(addr: &str) -> Result<String> {
    let invalid = |reason| Error::InvalidAddress {
        addr: addr.to_owned(),
        reason,
    };
    let url = reqwest::Url::parse(addr)
        .map_err(|_| invalid("not a URL: write it as https://host:port"))?;
    if url.scheme() != "https" {
        return Err(invalid(
            "kmsd serves HTTPS only: write it as https://host:port",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host: write it as https://host:port"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // The user info may hold a password, so the error shows the address without it.
        let mut redacted = url.clone();
        let _ = redacted.set_username("");
        let _ = redacted.set_password(None);
        return Err(Error::InvalidAddress {
            addr: redacted.into(),
            reason: "user info is not allowed: pass the token separately",
        });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a query or fragment is not allowed"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Builds the rustls configuration: ring, TLS 1.2 and 1.3 only, and either the CA file as the
/// only trust anchor or the platform verifier with the system roots.
fn tls_config(ca_cert: Option<&Path>) -> Result<ClientConfig> {
    install_default_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|source| Error::TlsSetup { source })?;

    let mut config = match ca_cert {
        Some(path) => builder
            .with_root_certificates(load_roots(path)?)
            .with_no_client_auth(),
        None => builder
            .with_platform_verifier()
            .map_err(|source| Error::TlsSetup { source })?
            .with_no_client_auth(),
    };
    // The HTTP client speaks HTTP/1.1 only (no `http2` feature), so offer only that.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Installs ring as the process-wide rustls provider, once, unless another one is installed.
///
/// The client configuration names ring itself, so this is for other rustls users in the same
/// process: rustls panics on `ClientConfig::builder()` when more than one provider is compiled
/// in and none is installed.
fn install_default_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means another provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Reads every `CERTIFICATE` block of a PEM file into a root store.
fn load_roots(path: &Path) -> Result<RootCertStore> {
    let file_error = |source| Error::CaFile {
        path: path.to_owned(),
        source,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(file_error)? {
        let cert = cert.map_err(file_error)?;
        roots
            .add(cert)
            .map_err(|source| Error::CaCertificateRejected {
                path: path.to_owned(),
                source,
            })?;
    }
    if roots.is_empty() {
        return Err(Error::CaFileEmpty {
            path: path.to_owned(),
        });
    }
    Ok(roots)
}

#[cfg(test)]
mod tests;
