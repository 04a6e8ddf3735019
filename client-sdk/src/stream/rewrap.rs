//! Replacing the key slots of an encrypted file in place, safe against crashes.
//!
//! The header reserves two slot copies of equal size. Readers use the valid copy with the
//! higher generation. A rewrap:
//!
//! 1. writes the new slots, at the next generation, into the copy not in use, and syncs the
//!    file. The copy in use is not touched, so a crash during this step leaves a new copy
//!    that is either complete (readers take it) or fails its checksum (readers keep the old);
//! 2. overwrites the old copy with zeros and syncs again, so the old wrapped key does not stay
//!    in the file. A crash here leaves the new copy in use, with or without the old one.
//!
//! This relies on a write to one byte range leaving the bytes outside that range unchanged
//! even when power fails during the write. The two copies are adjacent, so a device that can
//! corrupt a whole sector it was writing could damage the end of the copy in use. Readers then
//! reject the file with [`Error::SlotCopiesDamaged`] rather than use a damaged slot. The body
//! is never written.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use super::error::{Error, Result};
use super::header::{Header, read_header};
use super::slots::KeySlot;

/// Replaces the key slots of the encrypted file at `path` and returns its new header.
///
/// Use it after a key rotation: pass the slots of [`Header::slots`] with the `kmsd` slot
/// replaced by the result of [`Client::rewrap`](crate::Client::rewrap), and other slots kept.
/// The body and the commitment stay as they are. The new slots must fit in the slot area the
/// file reserved ([`Error::SlotAreaFull`] otherwise), and the file is locked against other
/// rewraps meanwhile ([`Error::FileBusy`]). An empty `slots` is rejected with
/// [`Error::InvalidKeySlot`].
///
/// This function has no file key, so it cannot check that the new slots wrap the file key: a
/// wrong slot makes the file undecryptable through it. Unwrap the new slot and call
/// [`Header::check_key`] first when the slot comes from anything other than `kmsd`'s rewrap.
///
/// NOTE: the zeros written over the old slot copy may not erase it from the storage device
/// (SSD remapping, snapshots, backups of the file).
pub fn rewrap_file(path: &Path, slots: Vec<KeySlot>) -> Result<Header> {
    if slots.is_empty() {
        return Err(Error::InvalidKeySlot {
            reason: "a rewrap with no slots would leave no way to unwrap the file key; pass at \
                     least one slot"
                .to_owned(),
        });
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|err| Error::file("open", path, err))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(Error::FileBusy {
                path: path.to_owned(),
            });
        }
        Err(TryLockError::Error(err)) => return Err(Error::file("lock", path, err)),
    }
    let header = read_header(&mut &file)?;
    let plan = RewrapPlan::new(&header, slots)?;
    plan.write_new_copy(&file, path)?;
    plan.erase_old_copy(&file, path)?;
    // Dropping the file handle releases the lock.
    Ok(plan.header)
}

/// Writes of one rewrap, computed before any of them happens.
#[derive(Debug)]
pub(crate) struct RewrapPlan {
    /// Header as it reads after the rewrap.
    pub(crate) header: Header,
    pub(crate) new_offset: u64,
    pub(crate) new_copy: Vec<u8>,
    pub(crate) old_offset: u64,
}

impl RewrapPlan {
    pub(crate) fn new(current: &Header, slots: Vec<KeySlot>) -> Result<Self> {
        let next = current.with_slots(slots)?;
        let new_copy = next.encode_active_copy()?;
        let offsets = current.copy_offsets();
        Ok(RewrapPlan {
            new_offset: offsets[next.active_copy()] as u64,
            old_offset: offsets[current.active_copy()] as u64,
            new_copy,
            header: next,
        })
    }

    /// Step 1: writes the new copy where no reader looks yet, and syncs it.
    pub(crate) fn write_new_copy(&self, file: &File, path: &Path) -> Result<()> {
        write_at(file, path, self.new_offset, &self.new_copy)?;
        file.sync_data()
            .map_err(|err| Error::file("sync", path, err))
    }

    /// Step 2: zeroes the old copy, which readers no longer use, and syncs it.
    pub(crate) fn erase_old_copy(&self, file: &File, path: &Path) -> Result<()> {
        let zeros = vec![0; self.new_copy.len()];
        write_at(file, path, self.old_offset, &zeros)?;
        file.sync_data()
            .map_err(|err| Error::file("sync", path, err))
    }
}

fn write_at(mut file: &File, path: &Path, offset: u64, bytes: &[u8]) -> Result<()> {
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.write_all(bytes))
        .map_err(|err| Error::file("write to", path, err))
}
