//! [`FieldKey`] and the value format, without a cache.

use secrecy::ExposeSecret;

use super::*;

const SIZES: [usize; 9] = [0, 1, 15, 16, 17, 64, 1000, 65_536, 1 << 20];

fn aad() -> FieldAad<'static> {
    FieldAad::new("patients.notes").with_record_id("8d3e5a")
}

/// Length of unpadded base64 of `len` bytes.
fn base64_len(len: usize) -> usize {
    (4 * len).div_ceil(3)
}

#[test]
fn round_trip_is_byte_for_byte() {
    let key = field_key(7);
    for (mode, form) in MODES_AND_FORMS {
        for size in SIZES {
            let plaintext: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let value = key.encrypt(mode, form, &plaintext, &aad()).unwrap();
            let decrypted = key.decrypt(&value, &aad()).unwrap();

            assert!(value.starts_with(mode.prefix()), "{mode} {form} {size}");
            assert_eq!(
                decrypted.as_slice(),
                plaintext.as_slice(),
                "{mode} {form} {size}"
            );
        }
    }
}

#[test]
fn every_altered_byte_is_rejected() {
    let key = field_key(7);
    for (mode, form) in MODES_AND_FORMS {
        let value = key.encrypt(mode, form, b"HIV+", &aad()).unwrap();
        let original = payload(&value);
        for index in 0..original.len() {
            for mask in [0x01, 0x80] {
                let mut altered = original.clone();
                altered[index] ^= mask;
                let result = key.decrypt(&with_payload(&value, &altered), &aad());
                assert!(
                    result.is_err(),
                    "{mode} {form}: byte {index} ^ {mask:#04x} was accepted"
                );
            }
        }
    }
}

#[test]
fn every_truncation_is_rejected() {
    let key = field_key(7);
    for (mode, form) in MODES_AND_FORMS {
        let value = key.encrypt(mode, form, b"HIV+", &aad()).unwrap();
        let original = payload(&value);
        for len in 0..original.len() {
            let result = key.decrypt(&with_payload(&value, &original[..len]), &aad());
            assert!(result.is_err(), "{mode} {form}: {len} bytes were accepted");
        }
    }
}

#[test]
fn wrong_field_name_is_rejected() {
    let key = field_key(7);
    for (mode, form) in MODES_AND_FORMS {
        let value = key.encrypt(mode, form, b"x", &aad()).unwrap();
        let other = FieldAad::new("patients.name").with_record_id("8d3e5a");
        let err = key.decrypt(&value, &other).unwrap_err();

        assert!(
            matches!(&err, Error::AuthenticationFailed { field, with_record_id: true }
                if field == "patients.name"),
            "{mode} {form}: {err:?}"
        );
    }
}

#[test]
fn wrong_record_id_is_rejected() {
    let key = field_key(7);
    let with_id = aad();
    let other_id = FieldAad::new("patients.notes").with_record_id("8d3e5b");
    let empty_id = FieldAad::new("patients.notes").with_record_id("");
    let no_id = FieldAad::new("patients.notes");
    for (mode, form) in MODES_AND_FORMS {
        let bound = key.encrypt(mode, form, b"x", &with_id).unwrap();
        let unbound = key.encrypt(mode, form, b"x", &no_id).unwrap();

        for (value, wrong) in [
            (&bound, other_id),
            (&bound, no_id),
            (&unbound, with_id),
            (&unbound, empty_id),
        ] {
            let err = key.decrypt(value, &wrong).unwrap_err();
            assert!(
                matches!(err, Error::AuthenticationFailed { .. }),
                "{mode} {form} {wrong:?}: {err:?}"
            );
        }
    }
}

#[test]
fn wrong_key_is_rejected() {
    let key = field_key(7);
    let other = field_key(8);
    for (mode, form) in MODES_AND_FORMS {
        let value = key.encrypt(mode, form, b"x", &aad()).unwrap();
        let err = other.decrypt(&value, &aad()).unwrap_err();

        match form {
            Form::Compact => assert!(
                matches!(err, Error::WrongKeyReference { expected, found }
                    if expected == other.key_ref() && found == key.key_ref()),
                "{mode}: {err:?}"
            ),
            _ => assert!(
                matches!(err, Error::AuthenticationFailed { .. }),
                "{mode}: {err:?}"
            ),
        }
    }
}

#[test]
fn swapped_mode_letter_is_rejected() {
    let key = field_key(7);
    for (mode, form) in MODES_AND_FORMS {
        let value = key
            .encrypt(mode, form, b"a long enough plaintext", &aad())
            .unwrap();
        let letter = if mode == Mode::Randomized {
            "f1d."
        } else {
            "f1r."
        };
        let swapped = format!("{letter}{}", &value[4..]);
        let err = key.decrypt(&swapped, &aad()).unwrap_err();

        assert!(
            matches!(err, Error::AuthenticationFailed { .. }),
            "{mode} {form}: {err:?}"
        );
    }
}

#[test]
fn deterministic_values_repeat_only_for_equal_inputs() {
    let key = field_key(7);
    let other_key = field_key(8);
    for form in [Form::Compact, Form::SelfContained] {
        let encrypt = |key: &FieldKey, plaintext: &[u8], aad: &FieldAad<'_>| {
            key.encrypt(Mode::Deterministic, form, plaintext, aad)
                .unwrap()
        };
        let value = encrypt(&key, b"ada@example.org", &aad());

        assert_eq!(value, encrypt(&key, b"ada@example.org", &aad()));
        assert_ne!(value, encrypt(&key, b"ada@example.com", &aad()));
        assert_ne!(
            value,
            encrypt(&key, b"ada@example.org", &FieldAad::new("patients.email"))
        );
        assert_ne!(
            value,
            encrypt(&key, b"ada@example.org", &aad().with_record_id("8d3e5b"))
        );
        assert_ne!(value, encrypt(&other_key, b"ada@example.org", &aad()));
    }
}

#[test]
fn randomized_values_never_repeat() {
    let key = field_key(7);
    for form in [Form::Compact, Form::SelfContained] {
        let values: std::collections::HashSet<String> = (0..100)
            .map(|_| {
                key.encrypt(Mode::Randomized, form, b"ada@example.org", &aad())
                    .unwrap()
            })
            .collect();
        assert_eq!(values.len(), 100, "{form}");
    }
}

#[test]
fn compact_overhead_is_at_most_40_bytes() {
    let key = field_key(7);
    let lengths = (0..=300).chain([4096, 65_537]);
    for len in lengths {
        let plaintext = vec![0x61; len];
        for (mode, payload_overhead) in [(Mode::Randomized, 37), (Mode::Deterministic, 25)] {
            let value = key
                .encrypt(mode, Form::Compact, &plaintext, &aad())
                .unwrap();

            assert_eq!(
                payload(&value).len(),
                len + payload_overhead,
                "{mode} {len}"
            );
            assert_eq!(
                value.len(),
                4 + base64_len(len + payload_overhead),
                "{mode} {len}"
            );
            assert!(
                value.len() <= base64_len(len + 40),
                "{mode} {len}: {} characters is more than base64 of the plaintext plus 40 bytes",
                value.len()
            );
        }
    }
}

#[test]
fn compact_64_byte_value_length() {
    let key = field_key(7);
    let plaintext = [0x61; 64];
    let randomized = key
        .encrypt(Mode::Randomized, Form::Compact, &plaintext, &aad())
        .unwrap();
    let deterministic = key
        .encrypt(Mode::Deterministic, Form::Compact, &plaintext, &aad())
        .unwrap();

    assert_eq!(randomized.len(), 139);
    assert_eq!(deterministic.len(), 123);
}

#[test]
fn self_contained_overhead_includes_the_blob() {
    let key = field_key(7);
    for (mode, overhead) in [(Mode::Randomized, 117), (Mode::Deterministic, 105)] {
        let value = key
            .encrypt(mode, Form::SelfContained, b"abc", &aad())
            .unwrap();
        assert_eq!(payload(&value).len(), 3 + overhead, "{mode}");
    }
}

#[test]
fn key_reference_survives_a_new_blob() {
    let key = field_key(7);
    let rewrapped = FieldKey::new(&SecretSlice::from(vec![7; 32]), &blob(9)).unwrap();
    let value = key
        .encrypt(Mode::Randomized, Form::Compact, b"x", &aad())
        .unwrap();

    assert_eq!(key.key_ref(), rewrapped.key_ref());
    assert_eq!(rewrapped.decrypt(&value, &aad()).unwrap().as_slice(), b"x");
}

#[test]
fn malformed_values_get_specific_errors() {
    let key = field_key(7);
    let value = key
        .encrypt(Mode::Randomized, Form::Compact, b"abc", &aad())
        .unwrap();
    let body = payload(&value);
    let mut unknown_form = body.clone();
    unknown_form[0] = 0x03;
    let mut zero_length = vec![0x02, 0x00, 0x00];
    zero_length.extend_from_slice(&body[1..]);

    type Check = fn(&Error) -> bool;
    let cases: [(String, Check); 9] = [
        (String::new(), |e| matches!(e, Error::UnknownPrefix)),
        ("f1x.AAAA".into(), |e| matches!(e, Error::UnknownPrefix)),
        ("F1R.AAAA".into(), |e| matches!(e, Error::UnknownPrefix)),
        (format!("f12r.{}", &value[4..]), |e| {
            matches!(e, Error::UnsupportedVersion { version: 12 })
        }),
        (format!("{value}="), |e| matches!(e, Error::InvalidBase64)),
        (format!("{value} "), |e| matches!(e, Error::InvalidBase64)),
        ("f1r.".into(), |e| {
            matches!(e, Error::Truncated { len: 0, min: 37 })
        }),
        (with_payload(&value, &unknown_form), |e| {
            matches!(e, Error::UnknownForm { byte: 0x03 })
        }),
        (with_payload(&value, &zero_length), |e| {
            matches!(e, Error::InvalidWrappedKeyLength { len: 0 })
        }),
    ];
    for (text, expected) in cases {
        let err = key.decrypt(&text, &aad()).unwrap_err();
        assert!(expected(&err), "{text:?}: {err:?}");
    }
}

#[test]
fn errors_do_not_echo_the_value() {
    let key = field_key(7);
    let legacy = "f2r.Jane Roe, born 1961-04-02";
    for text in [legacy, "Jane Roe, born 1961-04-02", "f1r.Jane Roe"] {
        let message = key.decrypt(text, &aad()).unwrap_err().to_string();
        assert!(!message.contains("Jane"), "{message}");
    }
}

#[test]
fn empty_field_name_is_rejected() {
    let key = field_key(7);
    let err = key
        .encrypt(Mode::Randomized, Form::Compact, b"x", &FieldAad::new(""))
        .unwrap_err();

    assert!(matches!(err, Error::InvalidFieldAad { .. }), "{err:?}");
}

#[test]
fn field_key_rejects_bad_lengths() {
    let short = FieldKey::new(&SecretSlice::from(vec![7; 16]), &blob(7)).unwrap_err();
    let empty_blob = FieldKey::new(&SecretSlice::from(vec![7; 32]), &[]).unwrap_err();
    let long_blob = FieldKey::new(&SecretSlice::from(vec![7; 32]), &vec![0; 65_536]).unwrap_err();

    assert!(
        matches!(short, Error::InvalidKeyLength { len: 16 }),
        "{short:?}"
    );
    assert!(
        matches!(empty_blob, Error::InvalidWrappedKeyLength { len: 0 }),
        "{empty_blob:?}"
    );
    assert!(
        matches!(long_blob, Error::InvalidWrappedKeyLength { len: 65_536 }),
        "{long_blob:?}"
    );
}

#[test]
fn data_key_without_plaintext_is_rejected() {
    let data_key: crate::DataKey = serde_json::from_str(
        r#"{"key_name": "k", "key_id": "id", "key_version": 1, "ciphertext": "S01TQg=="}"#,
    )
    .unwrap();
    let err = FieldKey::from_data_key(&data_key).unwrap_err();

    assert!(matches!(err, Error::MissingPlaintext), "{err:?}");
}

#[test]
fn key_ref_text_round_trips() {
    let key_ref = KeyRef::from_bytes([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);

    assert_eq!(key_ref.to_string(), "0123456789abcdef");
    assert_eq!("0123456789ABCDEF".parse::<KeyRef>().unwrap(), key_ref);
    for bad in [
        "",
        "0123456789abcde",
        "0123456789abcdefa",
        "0123456789abcdeg",
        "+123456789abcdef",
    ] {
        let err = bad.parse::<KeyRef>().unwrap_err();
        assert!(
            matches!(err, Error::InvalidKeyRef { .. }),
            "{bad:?}: {err:?}"
        );
    }
    let err = "0123456789abcdé".parse::<KeyRef>().unwrap_err();
    assert!(matches!(err, Error::InvalidKeyRef { len: 15 }), "{err:?}");
}

#[test]
fn inspect_reads_mode_form_and_key() {
    let key = field_key(7);
    let compact = key
        .encrypt(Mode::Deterministic, Form::Compact, b"x", &aad())
        .unwrap();
    let self_contained = key
        .encrypt(Mode::Randomized, Form::SelfContained, b"x", &aad())
        .unwrap();

    let info = inspect(&compact).unwrap();
    assert_eq!(info.mode(), Mode::Deterministic);
    assert_eq!(info.form(), Form::Compact);
    assert_eq!(info.key_ref(), Some(key.key_ref()));
    assert_eq!(info.wrapped_key(), None);

    let info = inspect(&self_contained).unwrap();
    assert_eq!(info.mode(), Mode::Randomized);
    assert_eq!(info.form(), Form::SelfContained);
    assert_eq!(info.key_ref(), None);
    assert_eq!(info.wrapped_key(), Some(key.ciphertext()));
}

#[test]
fn debug_output_has_no_key_material() {
    let plaintext = SecretSlice::from(vec![0x5a; 32]);
    let key = FieldKey::new(&plaintext, &blob(7)).unwrap();
    let key_debug = format!("{key:?}");
    let aad_debug = format!("{:?}", aad());
    let stored_debug = format!("{:?}", key.stored_key());

    assert!(
        key_debug.contains(&key.key_ref().to_string()),
        "{key_debug}"
    );
    assert!(!key_debug.contains("90, 90"), "{key_debug}");
    assert!(!key_debug.contains("5a5a"), "{key_debug}");
    assert!(!aad_debug.contains("8d3e5a"), "{aad_debug}");
    assert!(aad_debug.contains("record_id_len: Some(6)"), "{aad_debug}");
    assert!(
        stored_debug.contains("ciphertext_len: 86"),
        "{stored_debug}"
    );
    assert_eq!(plaintext.expose_secret().len(), 32);
}
