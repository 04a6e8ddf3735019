//! The crate's error type.

use std::fmt;
use std::path::PathBuf;

use cryptoki::context::Function;
use cryptoki::error::{Error as CryptokiError, RvError};

use crate::pkcs11::{TokenSelector, TokenSummary};
use crate::{Mechanism, RootKind};

/// Errors from roots of trust, root key generation and Shamir splitting and combining.
///
/// Share text errors have their own type, [`crate::share::ShareError`], because they are
/// reported to the admin who typed the share. No message contains key material, share text or
/// a PIN. Errors from a PKCS#11 call name the function and the return code, as in
/// `C_Decrypt: CKR_DEVICE_REMOVED`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The wrapped key did not authenticate: the root key, the associated data or the wrapped
    /// bytes differ from those used to wrap it.
    #[error(
        "unwrapping key material failed: the root key, the associated data or the wrapped bytes \
         do not match; check that the service was unsealed with shares of the right share set \
         or opened the right PKCS#11 token, and that the stored blob is intact"
    )]
    UnwrapFailed,

    /// The wrapping mechanism rejected the input because the key material or the associated
    /// data exceeds its length limits.
    #[error(
        "wrapping key material failed: {plaintext_len} bytes of key material with \
         {aad_len} bytes of associated data exceed the length limits of the wrapping mechanism"
    )]
    WrapFailed {
        /// Length of the key material in bytes.
        plaintext_len: usize,
        /// Length of the associated data in bytes.
        aad_len: usize,
    },

    /// The share count and threshold do not satisfy `1 <= threshold <= shares <= 255`.
    #[error(
        "invalid share count: threshold {threshold} with {shares} shares; choose values with \
         1 <= threshold <= shares <= 255"
    )]
    InvalidShareCount {
        /// Requested number of shares.
        shares: u8,
        /// Requested number of shares needed to rebuild the key.
        threshold: u8,
    },

    /// Combining was requested before the threshold of shares was collected.
    #[error(
        "not enough shares to rebuild the root key: {collected} of {threshold} collected; \
         provide the remaining shares and try again"
    )]
    NotEnoughShares {
        /// Number of distinct shares collected.
        collected: usize,
        /// Number of shares the share set needs.
        threshold: u8,
    },

    /// The operating system's random number generator failed.
    #[error("reading random bytes from the operating system failed")]
    Random(#[from] getrandom::Error),

    /// The secret sharing library rejected a split or a combination.
    ///
    /// The inner type does not implement `std::error::Error`, so it is shown in the message
    /// instead of being returned as the source.
    #[error("shamir secret sharing failed: {0}")]
    Shamir(vsss_rs::Error),

    /// A mechanism name that this version does not support.
    #[error(
        "unknown wrapping mechanism {name:?}; this version supports \"aes-256-gcm\", \
         \"pkcs11-aes-gcm\" and \"pkcs11-aes-key-wrap-pad\""
    )]
    UnknownMechanism {
        /// The name that was parsed.
        name: String,
    },

    /// A root of trust kind name that this version does not support.
    #[error("unknown root of trust kind {name:?}; this version supports \"shamir\" and \"pkcs11\"")]
    UnknownRootKind {
        /// The name that was parsed.
        name: String,
    },

    /// The wrapped key was produced by a mechanism that this root of trust does not use.
    #[error(
        "the wrapped key uses mechanism {mechanism}, which a {root} root of trust cannot \
         unwrap; unseal with the root of trust that wrapped it"
    )]
    MechanismMismatch {
        /// Mechanism named by the wrapped key.
        mechanism: Mechanism,
        /// Kind of the root of trust that was asked to unwrap it.
        root: RootKind,
    },

    /// A PKCS#11 wrapped key does not name the key object that wrapped it.
    #[error(
        "the wrapped key uses mechanism {mechanism} but names no PKCS#11 key object; the stored \
         blob is incomplete, so restore its key label from a backup of the key store"
    )]
    MissingKeyLabel {
        /// Mechanism named by the wrapped key.
        mechanism: Mechanism,
    },

    /// The PKCS#11 module file does not exist or cannot be read.
    #[error(
        "PKCS#11 module {} not found or not readable; install the token's PKCS#11 library \
         or fix the module path",
        .path.display()
    )]
    ModuleNotFound {
        /// Configured module path.
        path: PathBuf,
        /// Error from resolving or opening the path.
        source: std::io::Error,
    },

    /// The module file exists but could not be loaded as a PKCS#11 library.
    #[error(
        "{} is not a PKCS#11 module: {}; point the module path at the token vendor's PKCS#11 \
         shared library",
        .path.display(),
        call(.source)
    )]
    NotPkcs11Module {
        /// Configured module path.
        path: PathBuf,
        /// Error from loading the library or looking up its function list.
        source: CryptokiError,
    },

    /// `C_Initialize` failed for the module.
    #[error(
        "initialising PKCS#11 module {} failed: {}; for SoftHSM2, check that SOFTHSM2_CONF \
         names a config file whose directories.tokendir exists and is writable",
        .path.display(),
        call(.source)
    )]
    ModuleInitFailed {
        /// Configured module path.
        path: PathBuf,
        /// Error from `C_Initialize`.
        source: CryptokiError,
    },

    /// No token in the module matches the configured label or serial number.
    #[error(
        "no PKCS#11 token with {selector} in module {}; tokens found: {}; initialise the token \
         (for SoftHSM2: softhsm2-util --init-token --free --label LABEL) or fix the configured \
         token label or serial number",
        .module.display(),
        list_tokens(.tokens)
    )]
    TokenNotFound {
        /// Configured token label or serial number.
        selector: TokenSelector,
        /// Configured module path.
        module: PathBuf,
        /// Every slot with a token that the module reports, as `softhsm2-util --show-slots`
        /// lists them.
        tokens: Vec<TokenSummary>,
    },

    /// Several tokens match the configured label or serial number.
    #[error(
        "several PKCS#11 tokens match {selector} (serial numbers {serials:?}); select the token \
         by a unique label or by serial number"
    )]
    AmbiguousToken {
        /// Configured token label or serial number.
        selector: TokenSelector,
        /// Serial numbers of the matching tokens.
        serials: Vec<String>,
    },

    /// The token rejected the user PIN.
    ///
    /// A rejected PIN is never sent to the token again by this process: not by the root of
    /// trust that sent it, and not by a later [`crate::Pkcs11Root::open`] with the same PIN.
    /// So retries cannot lock the token.
    #[error("{}", wrong_pin(.token, .source))]
    WrongPin {
        /// Label of the token.
        token: String,
        /// Error from `C_Login`, or `None` when the token rejected the same PIN earlier in
        /// this process and it was not sent again.
        source: Option<CryptokiError>,
    },

    /// The token locked its user PIN after too many failed logins.
    #[error(
        "the user PIN of PKCS#11 token {token:?} is locked after too many failed logins{}; \
         have the token's security officer set a new user PIN, configure it and start again",
        source.as_ref().map(|error| format!(" ({})", call(error))).unwrap_or_default()
    )]
    PinLocked {
        /// Label of the token.
        token: String,
        /// Error from `C_Login`, or `None` when the token's flags reported the lock before
        /// any login was attempted.
        source: Option<CryptokiError>,
    },

    /// Another root of trust in this process is logged in to the token with another PIN.
    #[error(
        "a root of trust in this process is already logged in to PKCS#11 token {token:?} with \
         a different user PIN; PKCS#11 keeps one login per process and token, so configure \
         the same PIN for both"
    )]
    PinMismatch {
        /// Label of the token.
        token: String,
    },

    /// A key label is empty.
    #[error("the PKCS#11 key label is empty; configure a non-empty key label")]
    EmptyKeyLabel,

    /// No secret key object with the label exists on the token.
    #[error(
        "key object {label:?} not found on PKCS#11 token {token:?}: restore it from the HSM \
         backup, or fix the configured key label; a new installation creates the key object \
         when the service is initialised"
    )]
    KeyMissing {
        /// Label of the key object.
        label: String,
        /// Label of the token.
        token: String,
    },

    /// More than one secret key object has the label.
    #[error(
        "{count} secret key objects have label {label:?} on PKCS#11 token {token:?}; give each \
         root key a unique label"
    )]
    DuplicateKey {
        /// Label of the key objects.
        label: String,
        /// Label of the token.
        token: String,
        /// Number of key objects found.
        count: usize,
    },

    /// The key object exists but an attribute makes it unfit to be a root key.
    #[error(
        "PKCS#11 key object {label:?} has {attribute} {found}, expected {expected}; a root key \
         must be a private AES-256 key that is, and always was, sensitive and not extractable, \
         so create a new key object under another label and rotate to it"
    )]
    WrongKeyAttribute {
        /// Label of the key object.
        label: String,
        /// Name of the attribute, such as `CKA_EXTRACTABLE`.
        attribute: &'static str,
        /// Value the root key needs.
        expected: &'static str,
        /// Value the token reported, or `unavailable`.
        found: String,
    },

    /// An admin asked to destroy the key object that the root of trust currently wraps with.
    #[error(
        "cannot destroy PKCS#11 key object {label:?}: it is the current root key; switch to \
         another key label first"
    )]
    KeyInUse {
        /// Label of the key object.
        label: String,
    },

    /// The token lacks a mechanism that the operation needs.
    #[error(
        "PKCS#11 token {token:?} does not support {mechanism}; use a token that supports \
         CKM_AES_GCM or CKM_AES_KEY_WRAP_PAD, and CKM_AES_KEY_GEN to create keys"
    )]
    MechanismNotSupported {
        /// Name of the mechanism, such as `CKM_AES_GCM`.
        mechanism: &'static str,
        /// Label of the token.
        token: String,
    },

    /// The token did not respond, or lost its sessions, even after one reconnect and retry, or
    /// did not respond while it was being opened.
    ///
    /// [`Error::is_unavailable`] returns true for this variant.
    #[error(
        "PKCS#11 token {token:?} unreachable: {}; check that the token is present and its \
         service is running, then retry",
        call(.source)
    )]
    TokenUnreachable {
        /// Label of the token.
        token: String,
        /// Error from the last PKCS#11 call.
        source: CryptokiError,
    },

    /// The token is no longer in any slot of the module, so reconnecting to it failed.
    ///
    /// [`Error::is_unavailable`] returns true for this variant.
    #[error(
        "PKCS#11 token {token:?} (serial number {serial:?}) is no longer present in module {}; \
         insert or restart the token; requests succeed again once it is back",
        .module.display()
    )]
    TokenAbsent {
        /// Label of the token.
        token: String,
        /// Serial number of the token.
        serial: String,
        /// Configured module path.
        module: PathBuf,
    },

    /// A PKCS#11 call failed for a reason not covered by another variant.
    #[error("PKCS#11 call failed: {}", call(.source))]
    Pkcs11 {
        /// Error from the PKCS#11 call.
        source: CryptokiError,
    },
}

impl Error {
    /// Returns true when the root of trust is temporarily unreachable, so that the request may
    /// succeed later without any change of configuration (HTTP 503 rather than 500).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Error::TokenUnreachable { .. } | Error::TokenAbsent { .. }
        )
    }
}

/// Formats a cryptoki error as `C_Function: CKR_CODE` when it comes from a PKCS#11 call, and
/// with cryptoki's own message otherwise.
pub(crate) fn call(error: &CryptokiError) -> CallText<'_> {
    CallText(error)
}

/// Display adapter returned by [`call`].
pub(crate) struct CallText<'a>(&'a CryptokiError);

impl fmt::Display for CallText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            CryptokiError::Pkcs11(rv, function) => {
                write!(f, "{}: {}", function_name(*function), return_code_name(*rv))
            }
            other => write!(f, "{other}"),
        }
    }
}

/// Formats the message of [`Error::WrongPin`].
fn wrong_pin(token: &str, source: &Option<CryptokiError>) -> String {
    let fix = "correct the configured user PIN and start again";
    match source {
        Some(error) => format!(
            "PKCS#11 token {token:?} rejected the user PIN ({}); the PIN is not tried again, \
             so that retries cannot lock the token; {fix}",
            call(error)
        ),
        None => format!(
            "PKCS#11 token {token:?} rejected this user PIN earlier in this process, so it is \
             not sent again, so that retries cannot lock the token; {fix}"
        ),
    }
}

/// Formats the token list of [`Error::TokenNotFound`].
fn list_tokens(tokens: &[TokenSummary]) -> String {
    if tokens.is_empty() {
        return "none".to_owned();
    }
    let items: Vec<String> = tokens.iter().map(ToString::to_string).collect();
    items.join(", ")
}

/// Returns the C name of a PKCS#11 function, such as `C_Decrypt`.
///
/// cryptoki's `Debug` output is the C name without its prefix (`Decrypt`, `InitPIN`).
fn function_name(function: Function) -> String {
    format!("C_{function:?}")
}

/// Returns the C name of a PKCS#11 return code, such as `CKR_DEVICE_REMOVED`.
///
/// cryptoki names each code in camel case (`DeviceRemoved`), so the C name is rebuilt by
/// splitting at capitals. Codes outside the standard list are shown in hex.
fn return_code_name(rv: RvError) -> String {
    match rv {
        RvError::VendorDefined(code) => format!("CKR_VENDOR_DEFINED+{code:#x}"),
        RvError::UnknownErrorCode(code) => format!("unknown return code {code:#x}"),
        known => {
            let camel = format!("{known:?}");
            let mut name = String::from("CKR");
            for character in camel.chars() {
                if character.is_ascii_uppercase() {
                    name.push('_');
                }
                name.push(character.to_ascii_uppercase());
            }
            name
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_text_names_function_and_return_code() {
        let error = CryptokiError::Pkcs11(RvError::DeviceRemoved, Function::Decrypt);

        assert_eq!(call(&error).to_string(), "C_Decrypt: CKR_DEVICE_REMOVED");
    }

    #[test]
    fn return_code_name_matches_c_names() {
        let cases = [
            (RvError::GeneralError, "CKR_GENERAL_ERROR"),
            (RvError::PinIncorrect, "CKR_PIN_INCORRECT"),
            (RvError::SessionHandleInvalid, "CKR_SESSION_HANDLE_INVALID"),
            (RvError::KeyUnextractable, "CKR_KEY_UNEXTRACTABLE"),
            (
                RvError::CryptokiAlreadyInitialized,
                "CKR_CRYPTOKI_ALREADY_INITIALIZED",
            ),
        ];

        for (rv, expected) in cases {
            assert_eq!(return_code_name(rv), expected);
        }
    }

    #[test]
    fn function_name_keeps_c_spelling() {
        assert_eq!(function_name(Function::InitPIN), "C_InitPIN");
        assert_eq!(function_name(Function::UnwrapKey), "C_UnwrapKey");
    }

    #[test]
    fn token_unreachable_is_unavailable() {
        let unreachable = Error::TokenUnreachable {
            token: "kms".to_owned(),
            source: CryptokiError::Pkcs11(RvError::DeviceRemoved, Function::Decrypt),
        };
        let absent = Error::TokenAbsent {
            token: "kms".to_owned(),
            serial: "0a1b".to_owned(),
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
        };
        let other = Error::Pkcs11 {
            source: CryptokiError::Pkcs11(RvError::DeviceRemoved, Function::Decrypt),
        };

        assert!(unreachable.is_unavailable());
        assert!(absent.is_unavailable());
        assert!(!other.is_unavailable());
        assert!(!Error::UnwrapFailed.is_unavailable());
        assert!(
            unreachable
                .to_string()
                .contains("C_Decrypt: CKR_DEVICE_REMOVED")
        );
    }

    #[test]
    fn wrong_pin_says_it_is_not_retried() {
        let rejected = Error::WrongPin {
            token: "kms".to_owned(),
            source: Some(CryptokiError::Pkcs11(
                RvError::PinIncorrect,
                Function::Login,
            )),
        };
        let earlier = Error::WrongPin {
            token: "kms".to_owned(),
            source: None,
        };

        assert_eq!(
            rejected.to_string(),
            "PKCS#11 token \"kms\" rejected the user PIN (C_Login: CKR_PIN_INCORRECT); the PIN \
             is not tried again, so that retries cannot lock the token; correct the configured \
             user PIN and start again"
        );
        assert!(earlier.to_string().contains("not sent again"));
        assert!(!rejected.is_unavailable());
    }

    #[test]
    fn token_not_found_lists_tokens() {
        let error = Error::TokenNotFound {
            selector: TokenSelector::Label("kms".to_owned()),
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            tokens: vec![
                TokenSummary {
                    slot: 1_839_203_417,
                    label: Some("kms-dev".to_owned()),
                    serial: "6cb1e2f3ad3a7a59".to_owned(),
                },
                TokenSummary {
                    slot: 1,
                    label: None,
                    serial: String::new(),
                },
            ],
        };

        let message = error.to_string();

        assert!(
            message.contains(
                "tokens found: slot 1839203417 (label \"kms-dev\", serial number \
                 \"6cb1e2f3ad3a7a59\"), slot 1 (token not initialised);"
            ),
            "{message}"
        );
        assert!(message.starts_with("no PKCS#11 token with label \"kms\" in module "));
    }
}
