//! Recovery slots: age wrapping, identity files, and decryption with no `kmsd`.

use age::secrecy::ExposeSecret;

use super::*;

#[test]
fn recovery_identity_decrypts_file() {
    let plaintext = pattern(3 * SMALL_LEN + 7);
    let file = encrypt(&plaintext, SMALL);
    let header = read_header(&mut file.as_slice()).unwrap();

    let recovered = header.unwrap_recovery(&[identity()]).unwrap();

    let stored_context = header.context().clone();
    assert_eq!(
        decrypt_with(&file, &recovered, &stored_context).unwrap(),
        plaintext
    );
}

#[test]
fn recovery_slot_is_age_file() {
    let slot = match recovery_slot_for(&key()) {
        KeySlot::Recovery(slot) => slot,
        other => panic!("{other:?}"),
    };

    assert_eq!(slot.recipient(), RECIPIENT);
    assert!(
        slot.age_file()
            .starts_with(b"age-encryption.org/v1\n-> X25519 ")
    );
    // The age crate itself, with no SDK code, returns the raw file key.
    let secret = identity().to_secret_string();
    let age_identity: age::x25519::Identity = secret.expose_secret().parse().unwrap();
    let raw = age::decrypt(&age_identity, slot.age_file()).unwrap();
    assert_eq!(raw, [0x42; 32]);
}

#[test]
fn identity_matches_recipient() {
    assert_eq!(identity().recipient().to_string(), RECIPIENT);
    let debug = format!("{:?}", identity());
    assert_eq!(
        debug,
        format!("RecoveryIdentity {{ recipient: \"{RECIPIENT}\" }}")
    );
}

#[test]
fn other_identity_is_no_matching_identity() {
    let file = encrypt(b"data", SMALL);
    let header = read_header(&mut file.as_slice()).unwrap();
    let stranger = RecoveryIdentity::generate();

    let err = header.unwrap_recovery(&[stranger]).unwrap_err();

    assert!(
        matches!(&err, Error::NoMatchingIdentity { recipients } if recipients == &[RECIPIENT]),
        "{err:?}"
    );
    assert!(err.to_string().contains(RECIPIENT), "{err}");
}

#[test]
fn second_identity_in_list_is_tried() {
    let file = encrypt(b"data", SMALL);
    let header = read_header(&mut file.as_slice()).unwrap();

    let key = header
        .unwrap_recovery(&[RecoveryIdentity::generate(), identity()])
        .unwrap();

    assert_eq!(decrypt_with(&file, &key, &context()).unwrap(), b"data");
}

#[test]
fn missing_recovery_slot_is_reported() {
    let mut writer = EncryptingWriter::new(
        Vec::new(),
        &key(),
        &context(),
        vec![kms_slot(1)],
        options(SMALL),
    )
    .unwrap();
    writer.write_all(b"data").unwrap();
    let file = writer.finish().unwrap();
    let header = read_header(&mut file.as_slice()).unwrap();

    let err = header.unwrap_recovery(&[identity()]).unwrap_err();
    assert!(matches!(err, Error::NoRecoverySlot), "{err:?}");
}

#[test]
fn foreign_recovery_slot_fails_commitment() {
    // A slot that opens, but wraps a key other than this file's.
    let slots = vec![kms_slot(1), recovery_slot_for(&other_key())];
    let writer =
        EncryptingWriter::new(Vec::new(), &key(), &context(), slots, options(SMALL)).unwrap();
    let file = writer.finish().unwrap();
    let header = read_header(&mut file.as_slice()).unwrap();

    let err = header.unwrap_recovery(&[identity()]).unwrap_err();
    assert!(matches!(err, Error::CommitmentMismatch), "{err:?}");
}

#[test]
fn damaged_recovery_slot_is_skipped() {
    let KeySlot::Recovery(good) = recovery_slot_for(&key()) else {
        unreachable!()
    };
    let mut age_file = good.age_file().to_vec();
    let last = age_file.len() - 1;
    age_file[last] ^= 1;
    let damaged = KeySlot::Recovery(RecoverySlot::from_parts(RECIPIENT.to_owned(), age_file));

    let only_damaged = vec![damaged.clone()];
    let writer =
        EncryptingWriter::new(Vec::new(), &key(), &context(), only_damaged, options(SMALL))
            .unwrap();
    let file = writer.finish().unwrap();
    let header = read_header(&mut file.as_slice()).unwrap();
    let err = header.unwrap_recovery(&[identity()]).unwrap_err();
    assert!(matches!(err, Error::RecoverySlotDamaged { .. }), "{err:?}");

    let damaged_then_good = vec![damaged, KeySlot::Recovery(good)];
    let writer = EncryptingWriter::new(
        Vec::new(),
        &key(),
        &context(),
        damaged_then_good,
        options(SMALL),
    )
    .unwrap();
    let file = writer.finish().unwrap();
    let header = read_header(&mut file.as_slice()).unwrap();
    let key = header.unwrap_recovery(&[identity()]).unwrap();
    assert_eq!(decrypt_with(&file, &key, &context()).unwrap(), b"");
}

#[test]
fn identity_file_allows_comments() {
    let text = format!(
        "# created: 2026-01-01T00:00:00Z\n# public key: {RECIPIENT}\n\n{IDENTITY}\n\n{}\n",
        RecoveryIdentity::generate()
            .to_secret_string()
            .expose_secret()
    );

    let identities = parse_identity_file(&text).unwrap();

    assert_eq!(identities.len(), 2);
    assert_eq!(identities[0].recipient().to_string(), RECIPIENT);
}

#[test]
fn identity_file_error_omits_content() {
    let text = format!("# comment\n{IDENTITY}\nAGE-SECRET-KEY-1NOTAKEY\n");
    let err = parse_identity_file(&text).unwrap_err();

    assert!(matches!(err, Error::InvalidIdentity { line: 3 }), "{err:?}");
    assert!(!err.to_string().contains("NOTAKEY"), "{err}");

    let recipient_line = parse_identity_file(RECIPIENT).unwrap_err();
    assert!(
        matches!(recipient_line, Error::InvalidIdentity { line: 1 }),
        "{recipient_line:?}"
    );

    let empty = parse_identity_file("# only a comment\n\n").unwrap_err();
    assert!(matches!(empty, Error::NoIdentities), "{empty:?}");
}

#[test]
fn recipient_parse_rejects_identity_and_garbage() {
    assert_eq!(
        parse_recipient(&format!(" {RECIPIENT}\n"))
            .unwrap()
            .to_string(),
        RECIPIENT
    );
    for bad in [IDENTITY, "age1", "ssh-ed25519 AAAA", ""] {
        let err = parse_recipient(bad).unwrap_err();
        assert!(
            matches!(err, Error::InvalidRecipient { .. }),
            "{bad}: {err:?}"
        );
    }
    let secret_given = parse_recipient(IDENTITY).unwrap_err().to_string();
    assert!(!secret_given.contains(&IDENTITY[16..]), "{secret_given}");
    assert!(secret_given.contains("secret identity"), "{secret_given}");
}
