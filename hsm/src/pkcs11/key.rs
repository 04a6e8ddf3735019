//! Root key objects on the token: lookup, creation, attribute checks and destruction.
//!
//! Two attributes keep the root key inside the token, and they mean different things:
//!
//! - CKA_SENSITIVE true: the key value can never be read in clear, so `C_GetAttributeValue`
//!   on CKA_VALUE fails.
//! - CKA_EXTRACTABLE false: the key cannot be wrapped out of the token under another key, so
//!   `C_WrapKey` with it as the key to wrap fails with CKR_KEY_UNEXTRACTABLE.
//!
//! A sensitive key that is extractable can still leave the token encrypted under a key the
//! caller chooses, and then be decrypted outside. A root key needs both, and must have had
//! both since it was created (CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE true).

use cryptoki::context::Function;
use cryptoki::error::{Error as CryptokiError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::Ulong;

use super::session::{Failure, is_logged_in};
use crate::Error;

/// Length of a root key in bytes (AES-256).
const KEY_LEN: u64 = 32;

/// Finds the token key object with `label`, or `None` if there is none.
///
/// Private objects are invisible to a session that is not logged in, so an empty result from
/// a logged-out session is reported as a lost login rather than as a missing key.
pub(super) fn find(
    session: &Session,
    label: &str,
    token: &str,
) -> Result<Option<ObjectHandle>, Failure> {
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Token(true),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let mut objects = session
        .find_objects(&template)
        .map_err(|error| Failure::from_operation(session, error))?;

    match objects.len() {
        // The token hides private objects instead of failing, so the code is the one that a
        // call needing the login would return.
        0 if !is_logged_in(session)? => Err(Failure::LoggedOut(CryptokiError::Pkcs11(
            RvError::UserNotLoggedIn,
            Function::FindObjects,
        ))),
        0 | 1 => Ok(objects.pop()),
        count => Err(Failure::Fail(Error::DuplicateKey {
            label: label.to_owned(),
            token: token.to_owned(),
            count,
        })),
    }
}

/// Finds the key object with `label`, failing with [`Error::KeyMissing`] if there is none.
pub(super) fn require(
    session: &Session,
    label: &str,
    token: &str,
) -> Result<ObjectHandle, Failure> {
    find(session, label, token)?.ok_or_else(|| {
        Failure::Fail(Error::KeyMissing {
            label: label.to_owned(),
            token: token.to_owned(),
        })
    })
}

/// Generates an AES-256 root key object with `label` that never leaves the token.
pub(super) fn generate(session: &Session, label: &str) -> Result<ObjectHandle, Failure> {
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(Ulong::from(KEY_LEN)),
        Attribute::Label(label.as_bytes().to_vec()),
        // Stored on the token, and usable only after the user logs in.
        Attribute::Token(true),
        Attribute::Private(true),
        // Never readable in clear.
        Attribute::Sensitive(true),
        // Cannot be wrapped out of the token under another key.
        Attribute::Extractable(false),
        // Deriving could produce an extractable key from this one.
        Attribute::Derive(false),
        // Least privilege: a wrapping key has no use for MACs.
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(true),
        Attribute::Unwrap(true),
    ];
    session
        .generate_key(&Mechanism::AesKeyGen, &template)
        .map_err(|error| Failure::from_operation(session, error))
}

/// One boolean attribute that a root key must have, with its required value.
struct RequiredFlag {
    attribute: AttributeType,
    name: &'static str,
    value: bool,
}

/// Boolean attributes checked on every root key, in the order of the checks. CKA_WRAP and
/// CKA_UNWRAP are checked only when the token wraps with CKM_AES_KEY_WRAP_PAD, see [`check`].
///
/// The token sets CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE itself. They stay false for a
/// key that was readable or extractable at some time, even after it was made sensitive and not
/// extractable, because it may have been copied out meanwhile.
const REQUIRED_FLAGS: [RequiredFlag; 8] = [
    RequiredFlag {
        attribute: AttributeType::Private,
        name: "CKA_PRIVATE",
        value: true,
    },
    RequiredFlag {
        attribute: AttributeType::Sensitive,
        name: "CKA_SENSITIVE",
        value: true,
    },
    RequiredFlag {
        attribute: AttributeType::Extractable,
        name: "CKA_EXTRACTABLE",
        value: false,
    },
    RequiredFlag {
        attribute: AttributeType::AlwaysSensitive,
        name: "CKA_ALWAYS_SENSITIVE",
        value: true,
    },
    RequiredFlag {
        attribute: AttributeType::NeverExtractable,
        name: "CKA_NEVER_EXTRACTABLE",
        value: true,
    },
    RequiredFlag {
        attribute: AttributeType::Derive,
        name: "CKA_DERIVE",
        value: false,
    },
    RequiredFlag {
        attribute: AttributeType::Encrypt,
        name: "CKA_ENCRYPT",
        value: true,
    },
    RequiredFlag {
        attribute: AttributeType::Decrypt,
        name: "CKA_DECRYPT",
        value: true,
    },
];

const WRAP_FLAGS: [RequiredFlag; 2] = [
    RequiredFlag {
        attribute: AttributeType::Wrap,
        name: "CKA_WRAP",
        value: true,
    },
    RequiredFlag {
        attribute: AttributeType::Unwrap,
        name: "CKA_UNWRAP",
        value: true,
    },
];

/// Checks that the key object is an AES-256 key that stays in the token and can encrypt and
/// decrypt, and also wrap and unwrap when `needs_wrap` is set.
///
/// `C_GetAttributeValue` leaves out attributes that the token will not reveal instead of
/// failing, so a missing attribute is reported as `unavailable` rather than passing.
pub(super) fn check(
    session: &Session,
    key: ObjectHandle,
    label: &str,
    needs_wrap: bool,
) -> Result<(), Failure> {
    let flags: Vec<&RequiredFlag> = REQUIRED_FLAGS
        .iter()
        .chain(WRAP_FLAGS.iter().filter(|_| needs_wrap))
        .collect();
    let mut query = vec![AttributeType::KeyType, AttributeType::ValueLen];
    query.extend(flags.iter().map(|flag| flag.attribute));
    let attributes = session
        .get_attributes(key, &query)
        .map_err(|error| Failure::from_operation(session, error))?;

    let wrong = |attribute, expected, found: String| {
        Failure::Fail(Error::WrongKeyAttribute {
            label: label.to_owned(),
            attribute,
            expected,
            found,
        })
    };

    let key_type = attributes.iter().find_map(|attribute| match attribute {
        Attribute::KeyType(key_type) => Some(*key_type),
        _ => None,
    });
    if key_type != Some(KeyType::AES) {
        return Err(wrong("CKA_KEY_TYPE", "CKK_AES", describe(key_type)));
    }

    let value_len = attributes.iter().find_map(|attribute| match attribute {
        Attribute::ValueLen(len) => Some(u64::from(*len)),
        _ => None,
    });
    if value_len != Some(KEY_LEN) {
        return Err(wrong("CKA_VALUE_LEN", "32", describe(value_len)));
    }

    for flag in flags {
        let found = attributes
            .iter()
            .find(|attribute| attribute.attribute_type() == flag.attribute)
            .and_then(flag_value);
        if found != Some(flag.value) {
            let expected = if flag.value { "true" } else { "false" };
            return Err(wrong(flag.name, expected, describe(found)));
        }
    }
    Ok(())
}

/// Returns the value of a boolean attribute.
fn flag_value(attribute: &Attribute) -> Option<bool> {
    match attribute {
        Attribute::Private(value)
        | Attribute::Sensitive(value)
        | Attribute::Extractable(value)
        | Attribute::AlwaysSensitive(value)
        | Attribute::NeverExtractable(value)
        | Attribute::Derive(value)
        | Attribute::Encrypt(value)
        | Attribute::Decrypt(value)
        | Attribute::Wrap(value)
        | Attribute::Unwrap(value) => Some(*value),
        _ => None,
    }
}

/// Formats an attribute value for an error message, or `unavailable` if the token left it out.
fn describe<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "unavailable".to_owned(), |value| value.to_string())
}

/// Destroys the key object with `label`. Returns false if there is none.
pub(super) fn destroy(session: &Session, label: &str, token: &str) -> Result<bool, Failure> {
    let Some(key) = find(session, label, token)? else {
        return Ok(false);
    };
    session
        .destroy_object(key)
        .map_err(|error| Failure::from_operation(session, error))?;
    Ok(true)
}
