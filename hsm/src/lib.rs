//! Roots of trust for `kmsd`.
//!
//! The root key sits at the top of the key hierarchy: it wraps the keyring key, which the daemon
//! stores wrapped in its database. This crate hides where the root key lives behind one trait,
//! [`RootOfTrust`], so the daemon wraps and unwraps the same way whatever the backend:
//!
//! - [`ShamirRoot`] keeps a 256-bit [`RootKey`] in memory. The key is split into shares with
//!   [`share::split`] when the service is initialised and rebuilt from a threshold of shares
//!   with [`share::UnsealProgress`] when it is unsealed. It wraps with AES-256-GCM.
//! - [`Pkcs11Root`] keeps the root key as an AES-256 key object inside a PKCS#11 token, which
//!   it never leaves. The token wraps with CKM_AES_GCM, or with CKM_AES_KEY_WRAP_PAD when it
//!   lacks GCM. See [`pkcs11`].
//!
//! Apart from the PKCS#11 module that [`Pkcs11Root`] loads, the crate performs no I/O beyond
//! reading random bytes from the operating system, and contains no HTTP or SQL code. Secrets
//! live in types that zeroize on drop and print as redacted in `Debug`, and no error message
//! contains key material, share text or a PIN.
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
pub mod pkcs11;
mod random;
mod secret;
mod shamir_root;
pub mod share;

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroizing;

/// The PKCS#11 wrapper whose types appear in [`Error`] sources and [`pkcs11::shared_context`].
pub use cryptoki;
pub use error::Error;
pub use pkcs11::{Pkcs11Config, Pkcs11Root, TokenSelector, TokenSummary};
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
    /// CKM_AES_GCM computed inside a PKCS#11 token, laid out like [`Mechanism::Aes256Gcm`].
    Pkcs11AesGcm,
    /// CKM_AES_KEY_WRAP_PAD (RFC 5649) computed inside a PKCS#11 token. The wrapped payload is
    /// `SHA-256(aad) || length of the key material (4 bytes, big-endian) || key material`,
    /// because the mechanism has no associated data input.
    Pkcs11AesKeyWrapPad,
}

impl Mechanism {
    /// Returns the stable name stored with wrapped blobs, such as `"aes-256-gcm"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Aes256Gcm => "aes-256-gcm",
            Mechanism::Pkcs11AesGcm => "pkcs11-aes-gcm",
            Mechanism::Pkcs11AesKeyWrapPad => "pkcs11-aes-key-wrap-pad",
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
            "pkcs11-aes-gcm" => Ok(Mechanism::Pkcs11AesGcm),
            "pkcs11-aes-key-wrap-pad" => Ok(Mechanism::Pkcs11AesKeyWrapPad),
            _ => Err(Error::UnknownMechanism {
                name: name.to_owned(),
            }),
        }
    }
}

/// Key material wrapped by a root of trust, with the mechanism and key needed to unwrap it.
///
/// The bytes are ciphertext, but `Debug` still prints only the mechanism, the key label and
/// the length, so that logs never carry wrapped keys.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// Algorithm that produced `bytes`.
    pub mechanism: Mechanism,
    /// Label of the PKCS#11 key object that wrapped `bytes`, so that blobs wrapped before a
    /// root key rotation still name their key. `None` for [`ShamirRoot`], which has one key.
    pub key_label: Option<String>,
    /// Wrapped key material in the layout of `mechanism`.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey")
            .field("mechanism", &self.mechanism)
            .field("key_label", &self.key_label)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Kind of backend behind a [`RootOfTrust`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RootKind {
    /// Root key held in memory after being rebuilt from Shamir shares.
    Shamir,
    /// Root key held as a key object inside a PKCS#11 token.
    Pkcs11,
}

impl RootKind {
    /// Returns the stable name of the kind, such as `"shamir"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RootKind::Shamir => "shamir",
            RootKind::Pkcs11 => "pkcs11",
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
            "pkcs11" => Ok(RootKind::Pkcs11),
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
    fn pkcs11_mechanism_names_round_trip() {
        let cases = [
            (Mechanism::Pkcs11AesGcm, "pkcs11-aes-gcm"),
            (Mechanism::Pkcs11AesKeyWrapPad, "pkcs11-aes-key-wrap-pad"),
        ];

        for (mechanism, name) in cases {
            assert_eq!(mechanism.as_str(), name);
            assert_eq!(name.parse::<Mechanism>().unwrap(), mechanism);
        }
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
        assert_eq!(RootKind::Pkcs11.as_str(), "pkcs11");
        assert_eq!("pkcs11".parse::<RootKind>().unwrap(), RootKind::Pkcs11);
        assert!(matches!(
            "PKCS11".parse::<RootKind>(),
            Err(Error::UnknownRootKind { .. })
        ));
    }

    #[test]
    fn wrapped_key_debug_shows_mechanism_and_length_only() {
        let wrapped = WrappedKey {
            mechanism: Mechanism::Pkcs11AesGcm,
            key_label: Some("root-2026".to_owned()),
            bytes: vec![0xab; 44],
        };

        let debug = format!("{wrapped:?}");

        assert_eq!(
            debug,
            "WrappedKey { mechanism: Pkcs11AesGcm, key_label: Some(\"root-2026\"), len: 44 }"
        );
    }
}
