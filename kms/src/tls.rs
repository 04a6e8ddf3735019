//! The TLS listener configuration: TLS 1.3 and 1.2 only, through rustls with the ring provider.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsSource;
use crate::error::Error;

/// Validity of generated certificates, in days.
const GENERATED_VALIDITY_DAYS: u64 = 825;

/// Builds the server configuration and returns the path of the generated CA, if any.
pub fn server_config(source: &TlsSource) -> Result<(ServerConfig, Option<PathBuf>), Error> {
    let (cert, key, ca) = match source {
        TlsSource::Files { cert, key } => (cert.clone(), key.clone(), None),
        TlsSource::Generated { dir } => {
            let ca = ensure_generated(dir)?;
            (dir.join("server.pem"), dir.join("server-key.pem"), Some(ca))
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .and_then(Iterator::collect)
        .map_err(|e| {
            Error::Tls(format!(
                "cannot read certificates from {}: {e}",
                cert.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(Error::Tls(format!(
            "{} holds no PEM certificate",
            cert.display()
        )));
    }
    let private_key = PrivateKeyDer::from_pem_file(&key).map_err(|e| {
        Error::Tls(format!(
            "cannot read a private key from {}: {e}",
            key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| {
            Error::Tls(format!(
                "{} and {} do not match: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    Ok((config, ca))
}

/// Creates a private CA and a server certificate for localhost in `dir` unless they exist, and
/// returns the CA certificate path. The CA key is never written, so it cannot issue more.
fn ensure_generated(dir: &Path) -> Result<PathBuf, Error> {
    let ca_path = dir.join("ca.pem");
    let cert_path = dir.join("server.pem");
    let key_path = dir.join("server-key.pem");
    if ca_path.exists() && cert_path.exists() && key_path.exists() {
        return Ok(ca_path);
    }
    fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;

    let not_before = std::time::SystemTime::now();
    let not_after = not_before + std::time::Duration::from_secs(86_400 * GENERATED_VALIDITY_DAYS);
    let tls = |e: rcgen::Error| Error::Tls(format!("generating certificates failed: {e}"));

    let ca_key = KeyPair::generate().map_err(tls)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kmsd private CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = not_before.into();
    ca_params.not_after = not_after.into();
    let ca_cert = ca_params.self_signed(&ca_key).map_err(tls)?;

    let server_key = KeyPair::generate().map_err(tls)?;
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let mut params = CertificateParams::new(names).map_err(tls)?;
    params.distinguished_name.push(DnType::CommonName, "kmsd");
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_cert = params.signed_by(&server_key, &issuer).map_err(tls)?;

    write_private(&key_path, server_key.serialize_pem().as_bytes())?;
    write_private(
        &cert_path,
        format!("{}{}", server_cert.pem(), ca_cert.pem()).as_bytes(),
    )?;
    write_private(&ca_path, ca_cert.pem().as_bytes())?;
    tracing::info!(ca = %ca_path.display(), "generated a private CA and a localhost certificate");
    Ok(ca_path)
}

/// Writes a file with mode 0600, replacing any previous one.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    file.write_all(bytes)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}
