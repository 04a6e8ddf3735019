//! Client library for `kmsd`, the envelope-encryption key management service.
//!
//! [`Client`] has one async method per endpoint of the HTTP API. It speaks only HTTPS (TLS 1.2
//! and 1.3, rustls with the ring provider) and trusts either the system roots or, when given,
//! only the CA certificate of the daemon.
//!
//! ```no_run
//! # async fn example() -> client_sdk::Result<()> {
//! use client_sdk::{ClientBuilder, Context, DataKeySize};
//! use secrecy::{ExposeSecret, SecretString};
//!
//! let client = ClientBuilder::new("https://127.0.0.1:8443")
//!     .ca_cert("/etc/kms/ca.pem")
//!     .token(SecretString::from(std::env::var("KMS_TOKEN").unwrap_or_default()))
//!     .build()?;
//!
//! let context = Context::from([("tenant".to_owned(), "clinic-7".to_owned())]);
//! let data_key =
//!     client.generate_data_key("patient-records", DataKeySize::Bytes32, &context, true).await?;
//! // Encrypt locally with the plaintext key, then store `data_key.ciphertext` with the data.
//! let again = client.decrypt(&data_key.ciphertext, &context).await?;
//! assert_eq!(again.plaintext.expose_secret().len(), 32);
//! # Ok(())
//! # }
//! ```
//!
//! Secrets (shares, tokens, data keys, plaintexts) are held in `secrecy` types that zeroize on
//! drop and print as redacted. The SDK logs through `tracing` at debug level: method, path,
//! status and retries, never a body or a header.

#![deny(missing_docs)]

mod b64;
mod builder;
pub mod cache;
mod client;
mod error;
pub mod field;
#[cfg(unix)]
pub mod folder;
mod retry;
pub mod stream;
mod types;

pub use builder::{ClientBuilder, DEFAULT_ADDR};
pub use client::Client;
pub use error::{Error, Result};
pub use retry::RetryPolicy;
pub use secrecy;
pub use types::{
    Ciphertext, Context, DataKey, DataKeySize, GeneratedRoot, InitOutput, Key, KeyState,
    KeyVersion, NewToken, Operation, Plaintext, PolicyRule, RootKeyRotation, Status, TokenInfo,
    UnknownOperation,
};
