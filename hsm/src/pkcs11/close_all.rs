//! `C_CloseAllSessions`, the one PKCS#11 function that this crate needs and cryptoki 0.12 does
//! not wrap.
//!
//! This is the only module of the crate with `unsafe` code. It loads the module file a second
//! time, which the dynamic loader turns into a reference to the copy that cryptoki already
//! loaded, reads the module's function list and keeps the `C_CloseAllSessions` pointer.
#![allow(
    unsafe_code,
    reason = "calls a PKCS#11 function that cryptoki does not wrap"
)]

use std::fmt;
use std::path::Path;
use std::ptr;

use cryptoki::context::Function;
use cryptoki::error::{Error as CryptokiError, Rv};
use cryptoki::slot::Slot;
use cryptoki_sys::{CK_FUNCTION_LIST, CK_RV, CK_SLOT_ID};

/// The module's `C_CloseAllSessions`, with the library reference that keeps it loaded.
pub(super) struct CloseAllSessions {
    /// Keeps the library mapped while `function` may be called.
    _library: cryptoki_sys::Pkcs11,
    function: unsafe extern "C" fn(CK_SLOT_ID) -> CK_RV,
}

impl CloseAllSessions {
    /// Looks up `C_CloseAllSessions` in the module at `path`.
    ///
    /// Call this only after cryptoki has loaded the same file, so that no library initialiser
    /// runs here for the first time.
    pub(super) fn load(path: &Path) -> Result<CloseAllSessions, CryptokiError> {
        // SAFETY: loading a library runs its initialisers. cryptoki loaded this file already,
        // so the loader only takes another reference to the mapped copy and runs none of them.
        let library =
            unsafe { cryptoki_sys::Pkcs11::new(path) }.map_err(CryptokiError::LibraryLoading)?;
        let get_function_list = library
            .C_GetFunctionList
            .as_ref()
            .map_err(|_| CryptokiError::MissingSymbol("C_GetFunctionList"))?;

        let mut list: *mut CK_FUNCTION_LIST = ptr::null_mut();
        // SAFETY: C_GetFunctionList takes a pointer to a function list pointer and writes the
        // address of the module's function list there. `list` is such a pointer and outlives
        // the call.
        let rv = unsafe { get_function_list(&mut list) };
        Rv::from(rv).into_result(Function::GetFunctionList)?;

        // SAFETY: after CKR_OK, `list` is null or points to the module's function list, which
        // the module keeps for as long as it is loaded, and `library` keeps it loaded.
        let function = unsafe { list.as_ref() }
            .and_then(|list| list.C_CloseAllSessions)
            .ok_or(CryptokiError::NullFunctionPointer)?;
        Ok(CloseAllSessions {
            _library: library,
            function,
        })
    }

    /// Closes every session that this process has on `slot`.
    ///
    /// Session handles of the slot become invalid, including those that `cryptoki::Session`
    /// values still contain. The caller must make sure that no such value is used or closed
    /// afterwards, because the module may hand out the same handle numbers again.
    pub(super) fn call(&self, slot: Slot) -> Result<(), CryptokiError> {
        // SAFETY: `function` is the module's C_CloseAllSessions, which takes a slot id by value
        // and touches no memory of the caller. `self._library` keeps it loaded. The module was
        // initialised with OS locking, so it may be called from any thread.
        let rv = unsafe { (self.function)(CK_SLOT_ID::from(slot)) };
        Rv::from(rv).into_result(Function::CloseAllSessions)
    }
}

impl fmt::Debug for CloseAllSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseAllSessions").finish_non_exhaustive()
    }
}
