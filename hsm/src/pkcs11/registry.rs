//! Process-wide registries of initialised PKCS#11 modules and logged-in tokens.
//!
//! `C_Initialize` may run only once per process for a module (until `C_Finalize`), and PKCS#11
//! keeps one login state per process and token. Every [`super::Pkcs11Root`] in the process
//! therefore shares one [`Module`] per module file and one [`Token`] per token.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CryptokiError, RvError};
use cryptoki::mechanism::MechanismType;
use cryptoki::slot::{Slot, TokenInfo};
use cryptoki::types::AuthPin;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::close_all::CloseAllSessions;
use super::session::{Mechanisms, Token, error_from_call, lock};
use super::{TokenSelector, TokenSummary};
use crate::Error;

/// An initialised PKCS#11 module.
#[derive(Debug, Clone)]
pub(super) struct Module {
    /// Canonical path of the module file.
    pub(super) path: PathBuf,
    pub(super) context: Pkcs11,
    /// `C_CloseAllSessions`, or `None` if the module's function list lacks it.
    pub(super) close_all: Option<Arc<CloseAllSessions>>,
}

/// Initialised modules, keyed by canonical path. Entries are never removed: `C_Finalize` is
/// never called, because other code in the process may still use the module.
static MODULES: Mutex<BTreeMap<PathBuf, Module>> = Mutex::new(BTreeMap::new());

/// State of one token in this process, keyed by module path and token serial number.
#[derive(Default)]
struct TokenEntry {
    /// The logged-in token while at least one root of trust uses it.
    token: Weak<Token>,
    /// PINs that the token rejected. They are never sent to the token again.
    rejected_pins: Vec<AuthPin>,
}

/// Tokens with an open root of trust or a rejected PIN.
static TOKENS: Mutex<BTreeMap<(PathBuf, String), TokenEntry>> = Mutex::new(BTreeMap::new());

/// Returns the process's initialised handle for the PKCS#11 module at `module`, loading the
/// library and calling `C_Initialize` with OS locking on first use.
///
/// Every root of trust on the module uses this handle, and so can other code in the process
/// that needs sessions of its own (tests, admin tools). A process must not fork after the first
/// call, because PKCS#11 modules do not survive a fork.
///
/// # Errors
///
/// [`Error::ModuleNotFound`] if the file does not exist or cannot be read,
/// [`Error::NotPkcs11Module`] if it is not a PKCS#11 library, and [`Error::ModuleInitFailed`]
/// if `C_Initialize` fails. A failed initialisation is not cached, so a later call retries it.
pub fn shared_context(module: &Path) -> Result<Pkcs11, Error> {
    Ok(load_module(module)?.context)
}

/// Returns the initialised module at `module`, loading it on first use.
pub(super) fn load_module(module: &Path) -> Result<Module, Error> {
    let path = canonical_module_path(module)?;
    let mut modules = lock(&MODULES);
    if let Some(loaded) = modules.get(&path) {
        return Ok(loaded.clone());
    }

    let context = Pkcs11::new(&path).map_err(|source| Error::NotPkcs11Module {
        path: module.to_owned(),
        source,
    })?;
    initialize(&context, module)?;
    // A module without C_CloseAllSessions still works: reconnecting then closes the pooled
    // sessions one by one.
    let close_all = CloseAllSessions::load(&path).ok().map(Arc::new);
    let loaded = Module {
        path: path.clone(),
        context,
        close_all,
    };
    modules.insert(path, loaded.clone());
    Ok(loaded)
}

/// Calls `C_Initialize` with OS locking. A module that other code in the process initialised
/// already is usable through `context` too, so CKR_CRYPTOKI_ALREADY_INITIALIZED is success.
pub(super) fn initialize(context: &Pkcs11, module: &Path) -> Result<(), Error> {
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CryptokiError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(()),
        Err(source) => Err(Error::ModuleInitFailed {
            path: module.to_owned(),
            source,
        }),
    }
}

/// Resolves symbolic links, so that two spellings of one module share one handle.
fn canonical_module_path(module: &Path) -> Result<PathBuf, Error> {
    let not_found = |source| Error::ModuleNotFound {
        path: module.to_owned(),
        source,
    };
    let path = module.canonicalize().map_err(not_found)?;
    // Opening the file reports a missing read permission as such, rather than as a message
    // from the dynamic loader.
    std::fs::File::open(&path).map_err(not_found)?;
    Ok(path)
}

/// Returns the token for `selector`, logging in with `pin` unless a root of trust in this
/// process already did.
///
/// A second root of trust for a logged-in token shares its sessions. Its PIN is compared in
/// constant time with the PIN of the first, because the token would not check it again. A PIN
/// that the token rejected before is rejected here without a login attempt.
pub(super) fn open_token(
    module_path: &Path,
    selector: &TokenSelector,
    pin: AuthPin,
) -> Result<Arc<Token>, Error> {
    let module = load_module(module_path)?;
    let (slot, info) = find_slot(&module.context, selector, module_path)?;
    let label = info.label().to_owned();

    // The registry stays locked during the login, so that two roots opened at once for the
    // same token cannot both log in, and a rejected PIN is recorded before anyone retries it.
    let mut tokens = lock(&TOKENS);
    tokens.retain(|_, entry| entry.token.strong_count() > 0 || !entry.rejected_pins.is_empty());
    let key = (module.path.clone(), info.serial_number().to_owned());
    let entry = tokens.entry(key).or_default();
    if entry
        .rejected_pins
        .iter()
        .any(|rejected| same_pin(rejected, &pin))
    {
        return Err(Error::WrongPin {
            token: label,
            source: None,
        });
    }
    if let Some(token) = entry.token.upgrade() {
        if !same_pin(token.pin(), &pin) {
            return Err(Error::PinMismatch { token: label });
        }
        return Ok(token);
    }
    if info.user_pin_locked() {
        return Err(Error::PinLocked {
            token: label,
            source: None,
        });
    }

    let mechanisms = query_mechanisms(&module.context, slot, &label)?;
    match Token::log_in(module, slot, &info, pin.clone(), mechanisms) {
        Ok(token) => {
            let token = Arc::new(token);
            entry.token = Arc::downgrade(&token);
            Ok(token)
        }
        Err(error) => {
            if let Error::WrongPin { .. } | Error::PinLocked { .. } = error {
                entry.rejected_pins.push(pin);
            }
            Err(error)
        }
    }
}

/// Records that the token with `serial` in the module at the canonical path `module_path`
/// rejected `pin` after it was opened, for example because the PIN was changed on the token.
///
/// Must not be called while `TOKENS` is locked, as it is during [`open_token`].
pub(super) fn remember_rejected_pin(module_path: &Path, serial: &str, pin: &AuthPin) {
    let mut tokens = lock(&TOKENS);
    let entry = tokens
        .entry((module_path.to_owned(), serial.to_owned()))
        .or_default();
    if !entry.rejected_pins.iter().any(|known| same_pin(known, pin)) {
        entry.rejected_pins.push(pin.clone());
    }
}

/// Compares two PINs in constant time for equal lengths.
fn same_pin(first: &AuthPin, second: &AuthPin) -> bool {
    let first = first.expose_secret().as_bytes();
    let second = second.expose_secret().as_bytes();
    bool::from(first.ct_eq(second))
}

/// Finds the slot whose token matches `selector`.
///
/// Slot ids are not stable: SoftHSM2 assigns a new one each time a token is initialised, so
/// tokens are found by label or serial number only. A slot whose token information cannot be
/// read (SoftHSM2 returns CKR_GENERAL_ERROR for a token that another process is initialising)
/// is skipped, and its error is returned only if no other token matches.
fn find_slot(
    context: &Pkcs11,
    selector: &TokenSelector,
    module: &Path,
) -> Result<(Slot, TokenInfo), Error> {
    let unreachable = |error| error_from_call(selector.value(), error);
    let mut tokens = Vec::new();
    let mut matches = Vec::new();
    let mut unreadable = None;
    for slot in context.get_slots_with_token().map_err(unreachable)? {
        let info = match context.get_token_info(slot) {
            Ok(info) => info,
            Err(error) => {
                unreadable.get_or_insert(error);
                continue;
            }
        };
        let initialised = info.token_initialized();
        tokens.push(TokenSummary {
            slot: slot.id(),
            label: initialised.then(|| info.label().to_owned()),
            serial: info.serial_number().to_owned(),
        });
        if initialised && selector.matches(info.label(), info.serial_number()) {
            matches.push((slot, info));
        }
    }
    if let (true, Some(error)) = (matches.is_empty(), unreadable) {
        return Err(unreachable(error));
    }

    if matches.len() > 1 {
        return Err(Error::AmbiguousToken {
            selector: selector.clone(),
            serials: matches
                .iter()
                .map(|(_, info)| info.serial_number().to_owned())
                .collect(),
        });
    }
    matches.pop().ok_or_else(|| Error::TokenNotFound {
        selector: selector.clone(),
        module: module.to_owned(),
        tokens,
    })
}

/// Reads the token's mechanism list and checks that it can wrap with GCM or AES-KWP.
fn query_mechanisms(context: &Pkcs11, slot: Slot, label: &str) -> Result<Mechanisms, Error> {
    let list = context
        .get_mechanism_list(slot)
        .map_err(|error| error_from_call(label, error))?;
    let mechanisms = Mechanisms {
        gcm: list.contains(&MechanismType::AES_GCM),
        key_wrap_pad: list.contains(&MechanismType::AES_KEY_WRAP_PAD),
        key_gen: list.contains(&MechanismType::AES_KEY_GEN),
    };
    if !mechanisms.gcm && !mechanisms.key_wrap_pad {
        return Err(Error::MechanismNotSupported {
            mechanism: "CKM_AES_GCM or CKM_AES_KEY_WRAP_PAD",
            token: label.to_owned(),
        });
    }
    Ok(mechanisms)
}
