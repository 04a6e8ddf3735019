//! Roots of trust for `kmsd`.
//!
//! The root key sits at the top of the key hierarchy: it wraps the keyring key, which the daemon
//! stores wrapped in its database. This crate hides where the root key lives behind one trait,
//! [`RootOfTrust`], so the daemon wraps and unwraps the same way whatever the backend:
//!
//! - [`ShamirRoot`] keeps a 256-bit [`RootKey`] in memory. The key is split into shares with
//!   [`share::split`] when the service is initialised and rebuilt from a threshold of shares
//!   with [`share::UnsealProgress`] when it is unsealed. It wraps with AES-256-GCM.
//!
//! The crate performs no I/O beyond reading random bytes from the operating system, and knows
//! nothing of HTTP or SQL. Secrets live in types that zeroize on drop and print as redacted in
//! `Debug`; no error message contains key material or share text.
//!
//! ```
//! use hsm::share::{self, ShareSetId, UnsealProgress};
//! use hsm::{RootKey, RootOfTrust, ShamirRoot};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Initialise: split a fresh root key into 3 shares, any 2 of which rebuild it.
//! let root_key = RootKey::generate()?;
//! let set_id = ShareSetId::generate()?;
//! let shares = share::split(&root_key, 3, 2, set_id)?;
//! let wrapped = ShamirRoot::new(root_key).wrap(b"keyring key material", b"keyring v1")?;
//!
//! // Unseal: admins type their shares; two of them are enough.
//! let mut progress = UnsealProgress::new(set_id, 2);
//! for text in shares.iter().take(2).map(|share| share.encode()) {
//!     use secrecy::ExposeSecret;
//!     progress.add(share::Share::parse(text.expose_secret())?)?;
//! }
//! let root = ShamirRoot::new(progress.combine()?);
//! let keyring_key = root.unwrap(&wrapped, b"keyring v1")?;
//! assert_eq!(keyring_key.as_slice(), b"keyring key material");
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod error;
mod random;
mod secret;
mod shamir_root;
pub mod share;

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroizing;

pub use error::Error;
pub use secret::RootKey;
pub use shamir_root::ShamirRoot;
pub use share::{Share, ShareError, ShareSetId, UnsealProgress, split};

/// Algorithm that produced a [`WrappedKey`].
///
/// The daemon stores [`Mechanism::as_str`] next to each wrapped blob, so the names are part of
/// the storage format and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// AES-256-GCM computed in process: `nonce (12 bytes) || ciphertext || tag (16 bytes)`.
    Aes256Gcm,
}

impl Mechanism {
    /// Returns the stable name stored with wrapped blobs, such as `"aes-256-gcm"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Aes256Gcm => "aes-256-gcm",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mechanism {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "aes-256-gcm" => Ok(Mechanism::Aes256Gcm),
            _ => Err(Error::UnknownMechanism {
                name: name.to_owned(),
            }),
        }
    }
}

/// Key material wrapped by a root of trust, with the mechanism needed to unwrap it.
///
/// The bytes are ciphertext, but `Debug` still prints only the mechanism and the length, so
/// that logs never carry wrapped keys.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// Algorithm that produced `bytes`.
    pub mechanism: Mechanism,
    /// Wrapped key material in the layout of `mechanism`.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey")
            .field("mechanism", &self.mechanism)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Kind of backend behind a [`RootOfTrust`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RootKind {
    /// Root key held in memory after being rebuilt from Shamir shares.
    Shamir,
}

impl RootKind {
    /// Returns the stable name of the kind, such as `"shamir"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RootKind::Shamir => "shamir",
        }
    }
}

impl fmt::Display for RootKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RootKind {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "shamir" => Ok(RootKind::Shamir),
            _ => Err(Error::UnknownRootKind {
                name: name.to_owned(),
            }),
        }
    }
}

/// Backend that contains the root key and wraps key material with it.
///
/// The daemon keeps one `Arc<dyn RootOfTrust>` while unsealed, so implementations must be
/// shareable between threads. `Debug` implementations must not print key material.
pub trait RootOfTrust: Send + Sync + fmt::Debug {
    /// Returns the kind of backend.
    fn kind(&self) -> RootKind;

    /// Wraps key material (the keyring key) with the root key, binding `aad`.
    ///
    /// The same `aad` must be passed to [`RootOfTrust::unwrap`].
    fn wrap(&self, plaintext: &[u8], aad: &[u8]) -> Result<WrappedKey, Error>;

    /// Unwraps key material wrapped by [`RootOfTrust::wrap`].
    ///
    /// A wrong root key, wrong `aad` or tampered bytes give [`Error::UnwrapFailed`].
    fn unwrap(&self, wrapped: &WrappedKey, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_name_round_trips() {
        let mechanism = Mechanism::Aes256Gcm;

        assert_eq!(mechanism.as_str(), "aes-256-gcm");
        assert_eq!(mechanism.to_string(), "aes-256-gcm");
        assert_eq!("aes-256-gcm".parse::<Mechanism>().unwrap(), mechanism);
    }

    #[test]
    fn mechanism_rejects_unknown_name() {
        let error = "AES-256-GCM".parse::<Mechanism>().unwrap_err();

        assert!(matches!(error, Error::UnknownMechanism { ref name } if name == "AES-256-GCM"));
        assert!(error.to_string().contains("\"AES-256-GCM\""));
    }

    #[test]
    fn root_kind_name_round_trips() {
        assert_eq!(RootKind::Shamir.as_str(), "shamir");
        assert_eq!(RootKind::Shamir.to_string(), "shamir");
        assert_eq!("shamir".parse::<RootKind>().unwrap(), RootKind::Shamir);
        assert!(matches!(
            "pkcs11".parse::<RootKind>(),
            Err(Error::UnknownRootKind { .. })
        ));
    }

    #[test]
    fn wrapped_key_debug_shows_mechanism_and_length_only() {
        let wrapped = WrappedKey {
            mechanism: Mechanism::Aes256Gcm,
            bytes: vec![0xab; 44],
        };

        let debug = format!("{wrapped:?}");

        assert_eq!(debug, "WrappedKey { mechanism: Aes256Gcm, len: 44 }");
    }
}
