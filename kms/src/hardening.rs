//! Process hardening at start: no core dumps, and key memory kept out of swap where allowed.

use nix::sys::mman::{MlockAllFlags, mlockall};
use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};

/// Disables core dumps and, unless `disable_mlock`, locks all present and future memory.
///
/// `mlockall` with `MCL_FUTURE` makes later allocations fail once the locked total reaches
/// `RLIMIT_MEMLOCK`, so it is attempted only when that limit is unlimited or the process is
/// root; otherwise the daemon warns once and runs unlocked.
pub fn harden(disable_mlock: bool) {
    if let Err(error) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        tracing::warn!(%error, "could not disable core dumps (RLIMIT_CORE)");
    }
    if let Err(error) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(%error, "could not mark the process non-dumpable (PR_SET_DUMPABLE)");
    }
    if disable_mlock {
        tracing::warn!("memory locking is disabled: key material may be written to swap");
        return;
    }
    let unlimited =
        getrlimit(Resource::RLIMIT_MEMLOCK).is_ok_and(|(soft, _)| soft == RLIM_INFINITY);
    if !unlimited && !nix::unistd::geteuid().is_root() {
        tracing::warn!(
            "memory is not locked: RLIMIT_MEMLOCK is limited, so key material may be written \
             to swap; raise it (systemd: LimitMEMLOCK=infinity) or set --disable-mlock to \
             silence this warning"
        );
        return;
    }
    match mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE) {
        Ok(()) => tracing::debug!("process memory locked"),
        Err(error) => {
            tracing::warn!(%error, "mlockall failed: key material may be written to swap")
        }
    }
}
