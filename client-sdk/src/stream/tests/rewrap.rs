//! Rewrapping key slots in place, and the states a crash can leave behind.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::super::rewrap::RewrapPlan;
use super::super::slots::COPY_HEAD_LEN;
use super::*;

/// Writes an encrypted file of `plaintext` into a new folder and returns both.
fn encrypted_file(plaintext: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("data.kmsf");
    fs::write(&path, encrypt(plaintext, SMALL)).unwrap();
    (folder, path)
}

fn header_of(path: &Path) -> Header {
    read_header(&mut File::open(path).unwrap()).unwrap()
}

fn rotated_slots() -> Vec<KeySlot> {
    let mut slots = slots();
    slots[0] = kms_slot(4);
    slots
}

/// Asserts that the file reads with `slots` in use and decrypts to `plaintext`.
fn assert_reads(path: &Path, slots: &[KeySlot], plaintext: &[u8], case: &str) {
    let file = fs::read(path).unwrap();
    let header = read_header(&mut file.as_slice()).unwrap();
    assert_eq!(header.slots(), slots, "{case}");
    assert_eq!(decrypt(&file).unwrap(), plaintext, "{case}");
}

#[test]
fn rewrap_then_decrypt() {
    let plaintext = pattern(3 * SMALL_LEN + 7);
    let (_folder, path) = encrypted_file(&plaintext);
    let before = fs::read(&path).unwrap();
    let header_len = header_of(&path).encoded_len();

    let header = rewrap_file(&path, rotated_slots()).unwrap();

    assert_eq!(header.slot_generation(), 2);
    assert_eq!(header.kms_slot().unwrap().key_version(), 4);
    assert_eq!(header_of(&path), header);
    assert_reads(&path, &rotated_slots(), &plaintext, "after one rewrap");
    let after = fs::read(&path).unwrap();
    assert_eq!(after.len(), before.len());
    assert_eq!(
        after[header_len..],
        before[header_len..],
        "the body was rewritten"
    );
    let key = header.unwrap_recovery(&[identity()]).unwrap();
    assert_eq!(decrypt_with(&after, &key, &context()).unwrap(), plaintext);
}

#[test]
fn rewrap_alternates_slot_copies() {
    let plaintext = pattern(100);
    let (_folder, path) = encrypted_file(&plaintext);
    let original = header_of(&path);
    let [first, second] = original.copy_offsets();
    let area = original.slot_area_len() as usize;

    for generation in 2..6 {
        let slots = vec![kms_slot(generation as u32)];
        let header = rewrap_file(&path, slots.clone()).unwrap();
        assert_eq!(header.slot_generation(), generation);
        assert_reads(
            &path,
            &slots,
            &plaintext,
            &format!("generation {generation}"),
        );

        let file = fs::read(&path).unwrap();
        let (in_use, erased) = if generation % 2 == 0 {
            (second, first)
        } else {
            (first, second)
        };
        assert_eq!(header.copy_offsets()[header.active_copy()], in_use);
        assert!(
            file[erased..erased + area].iter().all(|b| *b == 0),
            "old copy kept"
        );
        assert!(!file[in_use..in_use + area].iter().all(|b| *b == 0));
    }
}

#[test]
fn rewrap_keeps_unknown_slots_given_back() {
    let plaintext = pattern(10);
    let unknown = KeySlot::decode(9, b"slot of a later version").unwrap();
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("data.kmsf");
    let slots = vec![kms_slot(1), unknown.clone()];
    let mut writer =
        EncryptingWriter::new(Vec::new(), &key(), &context(), slots, options(SMALL)).unwrap();
    writer.write_all(&plaintext).unwrap();
    fs::write(&path, writer.finish().unwrap()).unwrap();

    // A caller swaps the kmsd slot and passes the rest back unchanged.
    let mut new_slots = header_of(&path).slots().to_vec();
    new_slots[0] = kms_slot(2);
    rewrap_file(&path, new_slots).unwrap();

    let header = header_of(&path);
    assert_eq!(header.slots(), [kms_slot(2), unknown]);
    assert_eq!(header.slots()[1].kind(), "unknown");
    assert_eq!(header.slots()[1].slot_type(), 9);
}

#[test]
fn rewrap_rejects_slots_beyond_reserved_area() {
    let plaintext = pattern(100);
    let (_folder, path) = encrypted_file(&plaintext);
    let before = fs::read(&path).unwrap();
    let big = KmsSlot::new(KEY_ID, 9, vec![1; DEFAULT_SLOT_AREA_LEN as usize]).unwrap();

    let err = rewrap_file(&path, vec![KeySlot::Kms(big)]).unwrap_err();

    assert!(
        matches!(err, Error::SlotAreaFull { available: 2048, needed } if needed > 2048),
        "{err:?}"
    );
    assert_eq!(
        fs::read(&path).unwrap(),
        before,
        "a failed rewrap changed the file"
    );
}

#[test]
fn rewrap_of_locked_file_is_busy() {
    let (_folder, path) = encrypted_file(&pattern(100));
    let holder = File::open(&path).unwrap();
    holder.lock().unwrap();

    let err = rewrap_file(&path, rotated_slots()).unwrap_err();
    assert!(matches!(err, Error::FileBusy { .. }), "{err:?}");

    holder.unlock().unwrap();
    rewrap_file(&path, rotated_slots()).unwrap();
}

#[test]
fn rewrap_rejects_other_files() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("notes.txt");
    fs::write(&path, b"plain notes, not encrypted").unwrap();

    let err = rewrap_file(&path, rotated_slots()).unwrap_err();
    assert!(matches!(err, Error::BadMagic { .. }), "{err:?}");
    assert_eq!(fs::read(&path).unwrap(), b"plain notes, not encrypted");

    let missing = rewrap_file(&folder.path().join("missing"), rotated_slots()).unwrap_err();
    assert!(
        matches!(missing, Error::File { action: "open", .. }),
        "{missing:?}"
    );
}

fn open_rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

fn write_at(file: &mut File, offset: u64, bytes: &[u8]) {
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(bytes).unwrap();
}

/// A crash during step 1 leaves part of the new copy written, in any order of sectors:
/// readers keep the old slots.
#[test]
fn crash_during_copy_keeps_old_slots() {
    let plaintext = pattern(SMALL_LEN + 1);
    let (_folder, path) = encrypted_file(&plaintext);
    let pristine = fs::read(&path).unwrap();
    let plan = RewrapPlan::new(&header_of(&path), rotated_slots()).unwrap();
    let len = plan.new_copy.len();
    let used = COPY_HEAD_LEN
        + rotated_slots()
            .iter()
            .map(|slot| 5 + slot.encode_body().len())
            .sum::<usize>();

    // Prefixes cut at every field boundary and inside the slots.
    let mut cuts: Vec<(usize, usize)> = [0, 1, 31, 32, 40, 44, 45, used / 2, used - 1]
        .into_iter()
        .map(|end| (0, end))
        .collect();
    // Later parts written before earlier ones, as a disk may order them.
    cuts.extend([(32, len), (512, len), (1, used), (44, used)]);

    for (start, end) in cuts {
        fs::write(&path, &pristine).unwrap();
        let mut file = open_rw(&path);
        write_at(
            &mut file,
            plan.new_offset + start as u64,
            &plan.new_copy[start..end],
        );
        drop(file);

        assert_reads(
            &path,
            &slots(),
            &plaintext,
            &format!("new copy bytes {start}..{end}"),
        );
    }
}

/// A crash after step 1 finished, or inside step 2, leaves the new slots in use.
#[test]
fn crash_after_copy_uses_new_slots() {
    let plaintext = pattern(SMALL_LEN + 1);
    let (_folder, path) = encrypted_file(&plaintext);
    let pristine = fs::read(&path).unwrap();
    let plan = RewrapPlan::new(&header_of(&path), rotated_slots()).unwrap();
    let len = plan.new_copy.len();

    for erased in [0, 1, 32, 44, 100, len / 2, len - 1, len] {
        fs::write(&path, &pristine).unwrap();
        let mut file = open_rw(&path);
        write_at(&mut file, plan.new_offset, &plan.new_copy);
        write_at(&mut file, plan.old_offset, &vec![0; erased]);
        drop(file);

        assert_reads(
            &path,
            &rotated_slots(),
            &plaintext,
            &format!("{erased} bytes erased"),
        );
    }
}

/// Runs the steps of `rewrap_file` up to the first and stops, then checks that a later rewrap
/// starts from that state and still works.
#[test]
fn rewrap_after_interrupted_rewrap() {
    let plaintext = pattern(100);
    let (_folder, path) = encrypted_file(&plaintext);
    let plan = RewrapPlan::new(&header_of(&path), rotated_slots()).unwrap();
    plan.write_new_copy(&open_rw(&path), &path).unwrap();
    assert_eq!(header_of(&path).slot_generation(), 2);

    let third = vec![kms_slot(5)];
    let header = rewrap_file(&path, third.clone()).unwrap();

    assert_eq!(header.slot_generation(), 3);
    assert_reads(&path, &third, &plaintext, "after the second rewrap");
}

#[test]
fn rewrap_to_wrong_key_fails_commitment() {
    let plaintext = pattern(100);
    let (_folder, path) = encrypted_file(&plaintext);
    rewrap_file(&path, vec![recovery_slot_for(&other_key())]).unwrap();
    let header = header_of(&path);

    let err = header.unwrap_recovery(&[identity()]).unwrap_err();
    assert!(matches!(err, Error::CommitmentMismatch), "{err:?}");
    assert!(header.check_key(&key()).is_ok());
    assert!(matches!(
        header.check_key(&other_key()),
        Err(Error::CommitmentMismatch)
    ));
}

#[test]
fn rewrap_rejects_empty_slot_list() {
    let (_folder, path) = encrypted_file(&pattern(100));
    let before = fs::read(&path).unwrap();

    let err = rewrap_file(&path, Vec::new()).unwrap_err();

    assert!(matches!(err, Error::InvalidKeySlot { .. }), "{err:?}");
    assert_eq!(fs::read(&path).unwrap(), before);
}
