//! Root of trust in a PKCS#11 token.
//!
//! [`Pkcs11Root`] keeps the root key as an AES-256 secret key object inside a token (an HSM,
//! or SoftHSM2 for development). The key is created with CKA_SENSITIVE true, so its value can
//! never be read in clear, and CKA_EXTRACTABLE false, so it cannot be wrapped out of the token.
//! Every wrap and unwrap runs inside the token.
//!
//! # Wrapped blobs
//!
//! - [`Mechanism::Pkcs11AesGcm`], used when the token supports CKM_AES_GCM:
//!   `iv (12 bytes) || ciphertext || tag (16 bytes)`, with a random IV for each blob and the
//!   associated data passed to the token.
//! - [`Mechanism::Pkcs11AesKeyWrapPad`], used only when the token lacks CKM_AES_GCM, or when a
//!   caller asks for it with [`Pkcs11Root::wrap_with`]: the RFC 5649 output of
//!   CKM_AES_KEY_WRAP_PAD over `SHA-256(aad) || length (4 bytes, big-endian) || key material`.
//!
//! Each [`WrappedKey`] carries the label of the key object that wrapped it. A root of trust
//! wraps with its current key label and unwraps with the label that the blob names, so blobs
//! wrapped before a root key rotation keep unwrapping until an admin destroys the old key
//! object.
//!
//! # One module, one login, many sessions
//!
//! PKCS#11 allows one `C_Initialize` per process and module (until `C_Finalize`), and keeps one
//! login state per process and token. So every root of trust in a process shares one
//! initialised module handle per module path (see [`shared_context`]), and one login and
//! session pool per token. A SoftHSM2 module reads `SOFTHSM2_CONF` in `C_Initialize`, so a
//! process uses the token folder that was configured when it first opened the module.
//!
//! Each operation takes a session from the pool, or opens one when the pool is empty, so
//! threads never share a session. The root of trust logs in once, when it is opened, and again
//! only after the process lost the login.
//!
//! # Recovery
//!
//! When a call fails because the login was lost (CKR_USER_NOT_LOGGED_IN), the operation is
//! retried once after logging in again. When the session or the token went away
//! (CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT,
//! CKR_DEVICE_ERROR, CKR_CRYPTOKI_NOT_INITIALIZED and similar), the root of trust reconnects
//! (see [`Pkcs11Root::reconnect`]) and retries once. If the retry fails the same way, the error
//! is [`Error::TokenUnreachable`] or [`Error::TokenAbsent`], for which
//! [`Error::is_unavailable`] is true.
//!
//! A PIN that the token rejected is never sent again by the process, so retries cannot lock
//! the token: see [`Error::WrongPin`].
//!
//! ```no_run
//! use hsm::{Pkcs11Config, Pkcs11Root, RootOfTrust, TokenSelector};
//!
//! # fn main() -> Result<(), hsm::Error> {
//! # let pin_from_env_or_file = String::new();
//! let root = Pkcs11Root::open(Pkcs11Config {
//!     module: "/usr/lib/softhsm/libsofthsm2.so".into(),
//!     token: TokenSelector::Label("kms".to_owned()),
//!     pin: pin_from_env_or_file.into(),
//!     key_label: "kms-root-1".to_owned(),
//! })?;
//! // At service initialisation: create the root key object if it does not exist yet.
//! root.ensure_key("kms-root-1")?;
//!
//! let wrapped = root.wrap(b"keyring key material", b"keyring v1")?;
//! let keyring_key = root.unwrap(&wrapped, b"keyring v1")?;
//! assert_eq!(keyring_key.as_slice(), b"keyring key material");
//! # Ok(())
//! # }
//! ```

mod close_all;
mod key;
mod registry;
mod session;
mod wrap;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use secrecy::SecretString;
use zeroize::Zeroizing;

pub use registry::shared_context;
use session::{Failure, Token};

use crate::{Error, Mechanism, RootKind, RootOfTrust, WrappedKey};

/// How to find the token in the module's slots.
///
/// Slot ids are not used because they are not stable: SoftHSM2, for one, assigns a new slot id
/// each time a token is initialised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSelector {
    /// Token label (the CK_TOKEN_INFO label, at most 32 bytes).
    Label(String),
    /// Token serial number.
    Serial(String),
}

impl TokenSelector {
    /// Returns the configured label or serial number.
    fn value(&self) -> &str {
        match self {
            TokenSelector::Label(value) | TokenSelector::Serial(value) => value,
        }
    }

    /// Returns true if a token with this label and serial number matches.
    fn matches(&self, label: &str, serial: &str) -> bool {
        match self {
            TokenSelector::Label(wanted) => wanted == label,
            TokenSelector::Serial(wanted) => wanted == serial,
        }
    }
}

impl fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSelector::Label(label) => write!(f, "label {label:?}"),
            TokenSelector::Serial(serial) => write!(f, "serial number {serial:?}"),
        }
    }
}

/// A slot with a token, as [`Error::TokenNotFound`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSummary {
    /// Slot id. It can change when the token is initialised again.
    pub slot: u64,
    /// Token label, or `None` when the token in the slot is not initialised.
    pub label: Option<String>,
    /// Token serial number.
    pub serial: String,
}

impl fmt::Display for TokenSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.label {
            Some(label) => write!(
                f,
                "slot {} (label {label:?}, serial number {:?})",
                self.slot, self.serial
            ),
            None => write!(f, "slot {} (token not initialised)", self.slot),
        }
    }
}

/// Settings for opening a [`Pkcs11Root`].
///
/// `Debug` never prints the PIN.
pub struct Pkcs11Config {
    /// Path of the token vendor's PKCS#11 shared library.
    pub module: PathBuf,
    /// Token that contains the root key.
    pub token: TokenSelector,
    /// User PIN of the token.
    pub pin: SecretString,
    /// Label of the key object that wraps new blobs.
    pub key_label: String,
}

impl fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token", &self.token)
            .field("pin", &"[REDACTED]")
            .field("key_label", &self.key_label)
            .finish()
    }
}

/// Root of trust backed by an AES-256 key object in a PKCS#11 token.
///
/// Cloning is cheap: clones share the token's sessions and login, and the current key label,
/// so [`Pkcs11Root::set_key_label`] on one clone switches them all.
#[derive(Clone)]
pub struct Pkcs11Root {
    token: Arc<Token>,
    /// Label of the key object that wraps new blobs.
    key_label: Arc<RwLock<String>>,
}

impl Pkcs11Root {
    /// Loads the module, finds the token and logs in as the user.
    ///
    /// Opening does not look at the key object: call [`Pkcs11Root::ensure_key`] when the service
    /// is initialised, or [`Pkcs11Root::find_key`] to check an existing key at start.
    ///
    /// # Errors
    ///
    /// - [`Error::ModuleNotFound`], [`Error::NotPkcs11Module`] and
    ///   [`Error::ModuleInitFailed`] for the module.
    /// - [`Error::TokenNotFound`] and [`Error::AmbiguousToken`] for the token.
    /// - [`Error::MechanismNotSupported`] if the token supports neither CKM_AES_GCM nor
    ///   CKM_AES_KEY_WRAP_PAD.
    /// - [`Error::WrongPin`] or [`Error::PinLocked`] if the token rejects the login.
    /// - [`Error::PinMismatch`] if another root of trust in this process is logged in to the
    ///   token with a different PIN.
    pub fn open(config: Pkcs11Config) -> Result<Pkcs11Root, Error> {
        check_label(&config.key_label)?;
        let token = registry::open_token(&config.module, &config.token, config.pin)?;
        Ok(Pkcs11Root {
            token,
            key_label: Arc::new(RwLock::new(config.key_label)),
        })
    }

    /// Returns the label of the key object that wraps new blobs.
    pub fn key_label(&self) -> String {
        read(&self.key_label).clone()
    }

    /// Returns the label of the token.
    pub fn token_label(&self) -> &str {
        self.token.label()
    }

    /// Switches new wraps to the key object `label`, after checking it as
    /// [`Pkcs11Root::find_key`] does. Blobs wrapped before keep unwrapping with the key
    /// object that they name.
    ///
    /// This is the root key rotation: [`Pkcs11Root::ensure_key`] creates the new object, this
    /// method switches to it, the caller wraps again everything that the old key wrapped, and
    /// [`Pkcs11Root::destroy_key`] finally removes the old object. The switch applies to every
    /// clone of this root of trust.
    pub fn set_key_label(&self, label: &str) -> Result<(), Error> {
        // Held during the check, so that destroy_key cannot remove the object in between.
        let mut current = write(&self.key_label);
        self.find_key(label)?;
        label.clone_into(&mut current);
        Ok(())
    }

    /// Returns the mechanism that [`RootOfTrust::wrap`] uses: CKM_AES_GCM if the token has it,
    /// CKM_AES_KEY_WRAP_PAD otherwise.
    pub fn wrap_mechanism(&self) -> Mechanism {
        if self.token.mechanisms().gcm {
            Mechanism::Pkcs11AesGcm
        } else {
            Mechanism::Pkcs11AesKeyWrapPad
        }
    }

    /// Creates an AES-256 root key object with `label` unless one exists. Returns true if it
    /// created the object.
    ///
    /// The new object is a token object that is private, sensitive (its value is never
    /// readable in clear), not extractable (it cannot be wrapped out of the token), not
    /// usable for derivation, and allowed to encrypt, decrypt, wrap and unwrap. An existing
    /// object is checked as [`Pkcs11Root::find_key`] does.
    ///
    /// NOTE: two processes that run this at the same moment for a new label can both create an
    /// object. Later calls then fail with [`Error::DuplicateKey`] until one is destroyed.
    pub fn ensure_key(&self, label: &str) -> Result<bool, Error> {
        check_label(label)?;
        let needs_wrap = self.wrap_mechanism() == Mechanism::Pkcs11AesKeyWrapPad;
        self.token.run(|session| {
            if let Some(key) = key::find(session, label, self.token.label())? {
                key::check(session, key, label, needs_wrap)?;
                return Ok(false);
            }
            if !self.token.mechanisms().key_gen {
                return Err(Failure::Fail(Error::MechanismNotSupported {
                    mechanism: "CKM_AES_KEY_GEN",
                    token: self.token.label().to_owned(),
                }));
            }
            key::generate(session, label)?;
            Ok(true)
        })
    }

    /// Finds the key object with `label` and checks that it is fit to be a root key.
    ///
    /// A root key is a private AES-256 key that is, and always was, sensitive and not
    /// extractable. It cannot be used for derivation, and it may encrypt and decrypt. When the
    /// token lacks CKM_AES_GCM, it must also be allowed to wrap and unwrap.
    ///
    /// # Errors
    ///
    /// [`Error::KeyMissing`], [`Error::DuplicateKey`], or [`Error::WrongKeyAttribute`] naming
    /// the first attribute with a wrong value.
    pub fn find_key(&self, label: &str) -> Result<(), Error> {
        check_label(label)?;
        let needs_wrap = self.wrap_mechanism() == Mechanism::Pkcs11AesKeyWrapPad;
        self.token.run(|session| {
            let key = key::require(session, label, self.token.label())?;
            key::check(session, key, label, needs_wrap)
        })
    }

    /// Destroys the secret key object with `label`. Returns false if there was none.
    ///
    /// Blobs wrapped by that object can never be unwrapped again, unless the object is
    /// restored from a backup of the token. Rejects with [`Error::KeyInUse`] the current key
    /// label of this root of trust and its clones. Other processes on the same token are not
    /// checked: switch them all to the new key label first.
    pub fn destroy_key(&self, label: &str) -> Result<bool, Error> {
        check_label(label)?;
        // Held during the call, so that set_key_label cannot switch to this label meanwhile.
        let current = read(&self.key_label);
        if label == *current {
            return Err(Error::KeyInUse {
                label: label.to_owned(),
            });
        }
        self.token
            .run(|session| key::destroy(session, label, self.token.label()))
    }

    /// Wraps with a chosen mechanism instead of the one that [`Pkcs11Root::wrap_mechanism`]
    /// picks, for example to use CKM_AES_KEY_WRAP_PAD on a token that also has CKM_AES_GCM.
    ///
    /// # Errors
    ///
    /// [`Error::MechanismNotSupported`] if the token lacks the mechanism, and
    /// [`Error::MechanismMismatch`] for a mechanism that is not a PKCS#11 one.
    pub fn wrap_with(
        &self,
        mechanism: Mechanism,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<WrappedKey, Error> {
        self.require_mechanism(mechanism)?;
        let label = self.key_label();
        let needs_wrap = mechanism == Mechanism::Pkcs11AesKeyWrapPad;
        let bytes = self.token.run(|session| {
            let key = key::require(session, &label, self.token.label())?;
            // Checked on every wrap, so that no new blob depends on a key that could leave the
            // token.
            key::check(session, key, &label, needs_wrap)?;
            if needs_wrap {
                wrap::key_wrap_pad_wrap(session, key, plaintext, aad)
            } else {
                wrap::gcm_encrypt(session, key, plaintext, aad)
            }
        })?;
        Ok(WrappedKey {
            mechanism,
            key_label: Some(label),
            bytes,
        })
    }

    /// Closes every session that this process has on the token with `C_CloseAllSessions`,
    /// then connects again and logs in. This is the admin's "reconnect" action, and the step
    /// that operations take by themselves after a lost session or token.
    ///
    /// The call waits until operations in flight have finished, and operations that start
    /// meanwhile wait for it, so none of them fails because of it. Reconnecting calls
    /// `C_Initialize` again if other code in the process finalised the module, and finds the
    /// token again by serial number, because its slot id may have changed. Sessions that other
    /// code in the process opened on the token are closed too, and with the last session the
    /// process is logged out, as PKCS#11 specifies.
    ///
    /// # Errors
    ///
    /// [`Error::TokenAbsent`] if the token is no longer in the module, and the errors of
    /// [`Pkcs11Root::open`] for the login.
    pub fn reconnect(&self) -> Result<(), Error> {
        self.token.reconnect(None)
    }

    /// Fails unless `mechanism` is a PKCS#11 mechanism that the token supports.
    fn require_mechanism(&self, mechanism: Mechanism) -> Result<(), Error> {
        let mechanisms = self.token.mechanisms();
        let (supported, name) = match mechanism {
            Mechanism::Pkcs11AesGcm => (mechanisms.gcm, "CKM_AES_GCM"),
            Mechanism::Pkcs11AesKeyWrapPad => (mechanisms.key_wrap_pad, "CKM_AES_KEY_WRAP_PAD"),
            Mechanism::Aes256Gcm => {
                return Err(Error::MechanismMismatch {
                    mechanism,
                    root: RootKind::Pkcs11,
                });
            }
        };
        if !supported {
            return Err(Error::MechanismNotSupported {
                mechanism: name,
                token: self.token.label().to_owned(),
            });
        }
        Ok(())
    }
}

impl RootOfTrust for Pkcs11Root {
    fn kind(&self) -> RootKind {
        RootKind::Pkcs11
    }

    fn wrap(&self, plaintext: &[u8], aad: &[u8]) -> Result<WrappedKey, Error> {
        self.wrap_with(self.wrap_mechanism(), plaintext, aad)
    }

    fn unwrap(&self, wrapped: &WrappedKey, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.require_mechanism(wrapped.mechanism)?;
        let label = wrapped.key_label.as_deref().ok_or(Error::MissingKeyLabel {
            mechanism: wrapped.mechanism,
        })?;
        let key_wrap_pad = wrapped.mechanism == Mechanism::Pkcs11AesKeyWrapPad;
        self.token.run(|session| {
            let key = key::require(session, label, self.token.label())?;
            if key_wrap_pad {
                wrap::key_wrap_pad_unwrap(session, key, &wrapped.bytes, aad)
            } else {
                wrap::gcm_decrypt(session, key, &wrapped.bytes, aad)
            }
        })
    }
}

impl fmt::Debug for Pkcs11Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Root")
            .field("token", &self.token)
            .field("key_label", &self.key_label())
            .field("mechanism", &self.wrap_mechanism())
            .finish()
    }
}

/// Rejects an empty key label, which would match key objects that have no label.
fn check_label(label: &str) -> Result<(), Error> {
    if label.is_empty() {
        return Err(Error::EmptyKeyLabel);
    }
    Ok(())
}

/// Locks for reading, ignoring poisoning: a label stays valid if a holder panicked.
fn read(label: &RwLock<String>) -> RwLockReadGuard<'_, String> {
    label.read().unwrap_or_else(PoisonError::into_inner)
}

/// Locks for writing, ignoring poisoning: a label stays valid if a holder panicked.
fn write(label: &RwLock<String>) -> RwLockWriteGuard<'_, String> {
    label.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_hides_pin() {
        let config = Pkcs11Config {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token: TokenSelector::Label("kms".to_owned()),
            pin: "pin-9f3a71".into(),
            key_label: "kms-root-1".to_owned(),
        };

        let debug = format!("{config:?} {config:#?}");

        assert!(!debug.contains("pin-9f3a71"));
        assert!(debug.contains("[REDACTED]"));
        assert!(debug.contains("kms-root-1"));
    }

    #[test]
    fn token_selector_matches_label_or_serial() {
        let by_label = TokenSelector::Label("kms".to_owned());
        let by_serial = TokenSelector::Serial("0a1b".to_owned());

        assert!(by_label.matches("kms", "0a1b"));
        assert!(!by_label.matches("kms2", "0a1b"));
        assert!(by_serial.matches("other", "0a1b"));
        assert!(!by_serial.matches("0a1b", "ffff"));
        assert_eq!(by_label.to_string(), "label \"kms\"");
        assert_eq!(by_serial.to_string(), "serial number \"0a1b\"");
    }

    #[test]
    fn token_summary_shows_slot_label_and_serial() {
        let initialised = TokenSummary {
            slot: 7,
            label: Some("kms".to_owned()),
            serial: "0a1b".to_owned(),
        };
        let free = TokenSummary {
            slot: 8,
            label: None,
            serial: String::new(),
        };

        assert_eq!(
            initialised.to_string(),
            "slot 7 (label \"kms\", serial number \"0a1b\")"
        );
        assert_eq!(free.to_string(), "slot 8 (token not initialised)");
    }
}
