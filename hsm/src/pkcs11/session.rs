//! A logged-in token with a pool of sessions, and the rules for retrying after a lost login,
//! session or token.
//!
//! # Why sessions are never closed on drop
//!
//! Sessions here are opened with cryptoki's `open_rw_session_no_drop`, and closed explicitly
//! while their handle is known to be valid. PKCS#11 lets a module give the number of a closed
//! session to a new one: SoftHSM2 2.6.1 numbers sessions upwards, but starts again at 1 after
//! the module is initialised again. Closing or using a stale `Session` value could then hit
//! another thread's new session. So a reconnect runs while no operation has a session (see
//! [`Token::reconnect`]), and the stale `Session` values that it discards are dropped without
//! a call.

use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use cryptoki::error::{Error as CryptokiError, RvError};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::{Slot, TokenInfo};
use cryptoki::types::AuthPin;

use super::registry::{self, Module};
use crate::Error;
use crate::error::call;

/// Maximum number of idle sessions kept open for reuse.
///
/// Callers never wait for a free session: a caller that finds the pool empty opens a new one. After
/// a burst, sessions beyond this count are closed when they are returned.
const MAX_IDLE_SESSIONS: usize = 16;

/// Outcome of one attempt at a PKCS#11 operation that did not succeed.
#[derive(Debug)]
pub(super) enum Failure {
    /// The process is no longer logged in to the token. The operation is retried once after
    /// logging in again.
    LoggedOut(CryptokiError),
    /// The session, the token or the module's initialisation is gone. The operation is
    /// retried once after reconnecting.
    Disconnected(CryptokiError),
    /// The operation failed for good.
    Fail(Error),
}

impl Failure {
    /// Classifies an error from a PKCS#11 call by its return code alone.
    pub(super) fn from_call(error: CryptokiError) -> Failure {
        match error {
            CryptokiError::Pkcs11(rv, _) if is_disconnect(rv) => Failure::Disconnected(error),
            CryptokiError::Pkcs11(RvError::UserNotLoggedIn, _) => Failure::LoggedOut(error),
            other => Failure::Fail(Error::Pkcs11 { source: other }),
        }
    }

    /// Classifies an error from an operation on `session`, which was logged in when the
    /// operation started.
    ///
    /// A logout does not always surface as CKR_USER_NOT_LOGGED_IN: a token may report a private
    /// object found before the logout as CKR_OBJECT_HANDLE_INVALID, or fail with
    /// CKR_GENERAL_ERROR. So any failure on a session that is no longer in a user state is a
    /// lost login too.
    pub(super) fn from_operation(session: &Session, error: CryptokiError) -> Failure {
        match Failure::from_call(error) {
            Failure::Fail(Error::Pkcs11 { source }) => match is_logged_in(session) {
                Ok(true) => Failure::Fail(Error::Pkcs11 { source }),
                Ok(false) | Err(Failure::LoggedOut(_)) => Failure::LoggedOut(source),
                Err(Failure::Disconnected(_)) => Failure::Disconnected(source),
                Err(Failure::Fail(_)) => Failure::Fail(Error::Pkcs11 { source }),
            },
            other => other,
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Fail(error)
    }
}

/// Returns true for return codes after which reconnecting may help: the session was closed,
/// the token went away, or other code in the process finalised the module.
fn is_disconnect(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::DeviceRemoved
            | RvError::DeviceError
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::SlotIdInvalid
            | RvError::CryptokiNotInitialized
    )
}

/// Maps an error from a PKCS#11 call made outside any operation, such as a slot query.
pub(super) fn error_from_call(token: &str, error: CryptokiError) -> Error {
    match Failure::from_call(error) {
        Failure::Disconnected(source) | Failure::LoggedOut(source) => Error::TokenUnreachable {
            token: token.to_owned(),
            source,
        },
        Failure::Fail(error) => error,
    }
}

/// Mechanisms of the token that the root of trust can use, read once when it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mechanisms {
    /// CKM_AES_GCM.
    pub(super) gcm: bool,
    /// CKM_AES_KEY_WRAP_PAD.
    pub(super) key_wrap_pad: bool,
    /// CKM_AES_KEY_GEN.
    pub(super) key_gen: bool,
}

/// Current slot of the token, and the number of reconnects.
#[derive(Debug, Clone, Copy)]
struct Connection {
    slot: Slot,
    /// Number of reconnects so far. A thread that saw an operation fail at one generation
    /// reconnects only if no other thread reconnected since.
    generation: u64,
}

/// A token that this process is logged in to, with a pool of sessions on it.
///
/// PKCS#11 keeps one login state per process and token: logging in on one session logs in
/// every session, and closing the last session logs the process out. A `Token` therefore logs
/// in only when a session that it uses is not in a user state.
pub(super) struct Token {
    module: Module,
    /// Token label, for error messages.
    label: String,
    /// Token serial number, to find the token again after a reconnect.
    serial: String,
    pin: AuthPin,
    mechanisms: Mechanisms,
    /// Locked for reading by every attempt at an operation, for as long as it has a session,
    /// and for writing by a reconnect.
    connection: RwLock<Connection>,
    /// Return code of the first rejected login. Once set, no login is attempted again, so a
    /// PIN that was changed on the token cannot lock it through repeated retries. The lock is
    /// held during `C_Login`, so concurrent callers never send a PIN twice.
    pin_rejected: Mutex<Option<RvError>>,
    idle: Mutex<Vec<Session>>,
    /// A session that no operation uses, open from each login to the next reconnect. It keeps
    /// the process logged in while pooled sessions are closed, because closing the last
    /// session of a process logs it out.
    anchor: Mutex<Option<Session>>,
}

impl Token {
    /// Creates a token handle and logs in on its first session.
    ///
    /// The login is attempted even when the process is already logged in (by other code with
    /// sessions of its own), so that a wrong PIN is reported whenever the token checks it.
    /// A token that returns CKR_USER_ALREADY_LOGGED_IN without checking the PIN is accepted.
    pub(super) fn log_in(
        module: Module,
        slot: Slot,
        info: &TokenInfo,
        pin: AuthPin,
        mechanisms: Mechanisms,
    ) -> Result<Token, Error> {
        let token = Token {
            module,
            label: info.label().to_owned(),
            serial: info.serial_number().to_owned(),
            pin,
            mechanisms,
            connection: RwLock::new(Connection {
                slot,
                generation: 0,
            }),
            pin_rejected: Mutex::new(None),
            idle: Mutex::new(Vec::new()),
            anchor: Mutex::new(None),
        };
        let session = token
            .module
            .context
            .open_rw_session_no_drop(slot)
            .map_err(|error| error_from_call(&token.label, error))?;
        match token.login(&session, false) {
            Ok(()) => {
                *lock(&token.anchor) = Some(session);
                Ok(token)
            }
            Err(failure) => {
                discard(session, &failure);
                Err(token.final_error(failure))
            }
        }
    }

    /// Returns the token label.
    pub(super) fn label(&self) -> &str {
        &self.label
    }

    /// Returns the mechanisms found when the token was opened.
    pub(super) fn mechanisms(&self) -> Mechanisms {
        self.mechanisms
    }

    /// Returns the user PIN, for comparison with the PIN of another root of trust.
    pub(super) fn pin(&self) -> &AuthPin {
        &self.pin
    }

    /// Runs `operation` on a session, and once more if the first attempt lost its login, its
    /// session or the token.
    ///
    /// After [`Failure::LoggedOut`] the retry logs in first. After [`Failure::Disconnected`]
    /// the token reconnects before the retry. If the retry fails either way, the result is
    /// [`Error::TokenUnreachable`]. `operation` must be safe to repeat, so it looks up its key
    /// objects itself.
    pub(super) fn run<T>(
        &self,
        mut operation: impl FnMut(&Session) -> Result<T, Failure>,
    ) -> Result<T, Error> {
        let (first, generation) = self.attempt(false, &mut operation);
        let failure = match first {
            Ok(value) => return Ok(value),
            Err(Failure::Fail(error)) => return Err(error),
            Err(failure) => failure,
        };
        match &failure {
            Failure::Disconnected(error) => {
                tracing::warn!(
                    token = %self.label,
                    error = %call(error),
                    "PKCS#11 session or token lost; reconnecting and retrying once"
                );
                self.reconnect(Some(generation))?;
            }
            Failure::LoggedOut(error) => tracing::warn!(
                token = %self.label,
                error = %call(error),
                "PKCS#11 login lost; logging in again and retrying once"
            ),
            Failure::Fail(_) => {}
        }
        let (retry, _) = self.attempt(true, &mut operation);
        retry.map_err(|failure| self.final_error(failure))
    }

    /// Runs `operation` once on a pooled or new session, holding the connection for reading.
    /// Returns the result and the connection's generation.
    ///
    /// A session whose operation failed is not returned to the pool, because a failed call
    /// may leave an operation active or a temporary object behind in it.
    fn attempt<T>(
        &self,
        log_in_first: bool,
        operation: &mut impl FnMut(&Session) -> Result<T, Failure>,
    ) -> (Result<T, Failure>, u64) {
        let connection = read(&self.connection);
        let session = match self.check_out(connection.slot) {
            Ok(session) => session,
            Err(failure) => return (Err(failure), connection.generation),
        };
        let result = if log_in_first {
            self.ensure_logged_in(&session)
                .and_then(|()| operation(&session))
        } else {
            operation(&session)
        };
        match result {
            Ok(value) => {
                self.check_in(session);
                (Ok(value), connection.generation)
            }
            Err(failure) => {
                discard(session, &failure);
                (Err(failure), connection.generation)
            }
        }
    }

    /// Converts the failure of a last attempt into the error reported to the caller.
    fn final_error(&self, failure: Failure) -> Error {
        match failure {
            Failure::Fail(error) => error,
            Failure::LoggedOut(source) | Failure::Disconnected(source) => Error::TokenUnreachable {
                token: self.label.clone(),
                source,
            },
        }
    }

    /// Closes every session of the process on the token, finds the token again and logs in
    /// on a new session.
    ///
    /// With `seen` set, this is the reaction to a failure at that generation, and it does
    /// nothing if another thread reconnected since. The write lock waits for every attempt in
    /// flight to return its session, so the pool then holds every `Session` value of this
    /// token, and they can all be discarded after `C_CloseAllSessions` without any of them
    /// being used again.
    pub(super) fn reconnect(&self, seen: Option<u64>) -> Result<(), Error> {
        let mut connection = write(&self.connection);
        if seen.is_some_and(|seen| seen != connection.generation) {
            return Ok(());
        }
        // Counted before the work, so that threads that saw the same failure do not repeat a
        // reconnect that failed: their retries report the token as unreachable instead.
        connection.generation += 1;
        self.close_every_session(connection.slot);
        connection.slot = self.find_slot_again()?;

        let session = self
            .open_session(connection.slot)
            .map_err(|failure| self.final_error(failure))?;
        *lock(&self.anchor) = Some(session);
        tracing::info!(token = %self.label, "reconnected to PKCS#11 token");
        Ok(())
    }

    /// Closes every session of the process on `slot`, and discards the pool and the anchor.
    fn close_every_session(&self, slot: Slot) {
        let mut sessions = std::mem::take(&mut *lock(&self.idle));
        sessions.extend(lock(&self.anchor).take());
        match &self.module.close_all {
            Some(close_all) => {
                // The module returns an error when it was finalised or lost the token, and
                // then no session is left open. The discarded handles are closed either way,
                // and dropping them makes no call.
                if let Err(error) = close_all.call(slot) {
                    tracing::debug!(
                        token = %self.label,
                        error = %call(&error),
                        "closing sessions failed"
                    );
                }
                drop(sessions);
            }
            None => {
                for session in sessions {
                    if let Err(error) = session.close() {
                        tracing::debug!(
                            token = %self.label,
                            error = %call(&error),
                            "closing a session failed"
                        );
                    }
                }
            }
        }
    }

    /// Finds the slot of the token by serial number, calling `C_Initialize` again if other
    /// code in the process finalised the module.
    fn find_slot_again(&self) -> Result<Slot, Error> {
        let context = &self.module.context;
        let slots = match context.get_slots_with_token() {
            Err(CryptokiError::Pkcs11(RvError::CryptokiNotInitialized, _)) => {
                registry::initialize(context, &self.module.path)?;
                context.get_slots_with_token()
            }
            other => other,
        }
        .map_err(|error| error_from_call(&self.label, error))?;

        // A slot whose token cannot be read is skipped, as when the root of trust was opened.
        let mut unreadable = None;
        for slot in slots {
            match context.get_token_info(slot) {
                Ok(info) if info.serial_number() == self.serial => return Ok(slot),
                Ok(_) => {}
                Err(error) => {
                    unreadable.get_or_insert(error);
                }
            }
        }
        if let Some(error) = unreadable {
            return Err(error_from_call(&self.label, error));
        }
        Err(Error::TokenAbsent {
            token: self.label.clone(),
            serial: self.serial.clone(),
            module: self.module.path.clone(),
        })
    }

    /// Takes an idle session from the pool, or opens a new one.
    fn check_out(&self, slot: Slot) -> Result<Session, Failure> {
        let pooled = lock(&self.idle).pop();
        match pooled {
            Some(session) => Ok(session),
            None => self.open_session(slot),
        }
    }

    /// Returns a session to the pool, or closes it if the pool is full.
    fn check_in(&self, session: Session) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE_SESSIONS {
            idle.push(session);
            return;
        }
        drop(idle);
        close(session);
    }

    /// Opens a read-write session and logs in if the process is not logged in to the token.
    fn open_session(&self, slot: Slot) -> Result<Session, Failure> {
        let session = self
            .module
            .context
            .open_rw_session_no_drop(slot)
            .map_err(Failure::from_call)?;
        match self.ensure_logged_in(&session) {
            Ok(()) => Ok(session),
            Err(failure) => {
                discard(session, &failure);
                Err(failure)
            }
        }
    }

    /// Logs in on `session` unless the process is logged in already.
    ///
    /// A PIN that the token rejects here is also recorded in the registry, so that a later
    /// [`super::Pkcs11Root::open`] with the same PIN does not send it again either.
    fn ensure_logged_in(&self, session: &Session) -> Result<(), Failure> {
        if is_logged_in(session)? {
            return Ok(());
        }
        let result = self.login(session, true);
        if let Err(Failure::Fail(
            Error::WrongPin {
                source: Some(_), ..
            }
            | Error::PinLocked {
                source: Some(_), ..
            },
        )) = &result
        {
            registry::remember_rejected_pin(&self.module.path, &self.serial, &self.pin);
        }
        result
    }

    /// Logs the user in on `session`, unless a login on this token was already rejected.
    ///
    /// With `skip_if_logged_in`, the session state is checked again once the lock is held,
    /// because another thread may have logged in meanwhile. Then the token receives one `C_Login`
    /// per lost login, not one per waiting thread.
    fn login(&self, session: &Session, skip_if_logged_in: bool) -> Result<(), Failure> {
        let mut rejected = lock(&self.pin_rejected);
        if let Some(rv) = *rejected {
            return Err(Failure::Fail(self.pin_error(rv, None)));
        }
        if skip_if_logged_in && is_logged_in(session)? {
            return Ok(());
        }
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(CryptokiError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(error @ CryptokiError::Pkcs11(rv, _)) if is_pin_rejection(rv) => {
                *rejected = Some(rv);
                Err(Failure::Fail(self.pin_error(rv, Some(error))))
            }
            Err(error) => Err(Failure::from_call(error)),
        }
    }

    /// Builds the error for a rejected login.
    fn pin_error(&self, rv: RvError, source: Option<CryptokiError>) -> Error {
        let token = self.label.clone();
        if rv == RvError::PinLocked {
            Error::PinLocked { token, source }
        } else {
            Error::WrongPin { token, source }
        }
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        let mut sessions = std::mem::take(&mut *lock(&self.idle));
        sessions.extend(lock(&self.anchor).take());
        for session in sessions {
            close(session);
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("label", &self.label)
            .field("serial", &self.serial)
            .field("module", &self.module.path)
            .field("mechanisms", &self.mechanisms)
            .finish_non_exhaustive()
    }
}

/// Drops a session whose attempt failed.
///
/// After [`Failure::Disconnected`] the handle may be invalid already, and the module may give
/// its number to a new session of another thread, so it is dropped without a call. The
/// reconnect that follows closes it if it is still open. Any other session is closed.
fn discard(session: Session, failure: &Failure) {
    if let Failure::Disconnected(_) = failure {
        drop(session);
    } else {
        close(session);
    }
}

/// Closes a session that is valid and ours. An error leaves nothing to clean up, so it is only
/// logged.
fn close(session: Session) {
    if let Err(error) = session.close() {
        tracing::debug!(error = %call(&error), "closing a PKCS#11 session failed");
    }
}

/// Returns true for login return codes that mean the PIN itself was rejected.
fn is_pin_rejection(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::PinIncorrect
            | RvError::PinInvalid
            | RvError::PinLenRange
            | RvError::PinExpired
            | RvError::PinLocked
    )
}

/// Returns true if `session` is in a user state (the process is logged in to the token).
pub(super) fn is_logged_in(session: &Session) -> Result<bool, Failure> {
    let info = session.get_session_info().map_err(Failure::from_call)?;
    Ok(matches!(
        info.session_state(),
        SessionState::RoUser | SessionState::RwUser
    ))
}

/// Locks a mutex, ignoring poisoning: every value guarded here stays valid if a holder panics.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read(connection: &RwLock<Connection>) -> RwLockReadGuard<'_, Connection> {
    connection.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(connection: &RwLock<Connection>) -> RwLockWriteGuard<'_, Connection> {
    connection.write().unwrap_or_else(PoisonError::into_inner)
}
