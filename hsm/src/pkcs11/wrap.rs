//! Wrapping and unwrapping with a root key object, by CKM_AES_GCM or CKM_AES_KEY_WRAP_PAD.
//!
//! Both run inside the token: the root key is only ever named by its object handle.

use cryptoki::context::Function;
use cryptoki::error::{Error as CryptokiError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::Ulong;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::session::Failure;
use crate::{Error, random};

/// Length of the random GCM IV that starts each blob.
const IV_LEN: usize = 12;
/// Length of the GCM tag that ends each blob.
const TAG_LEN: usize = 16;
/// GCM tag length in bits, as CK_GCM_PARAMS takes it.
const TAG_BITS: u64 = 128;
/// Length of the SHA-256 digest of the associated data that starts each AES-KWP payload.
const AAD_DIGEST_LEN: usize = 32;
/// Length of the big-endian key material length that follows the digest in an AES-KWP payload.
const LENGTH_LEN: usize = 4;
/// AES-KWP pads its input to a multiple of this many bytes.
const KWP_BLOCK_LEN: usize = 8;

/// Encrypts `plaintext` with CKM_AES_GCM under `key`. Returns `iv || ciphertext || tag`.
///
/// The 96-bit IV is random for each call, from the operating system. With random IVs, one key
/// must wrap far fewer than 2^32 blobs, which holds for keyring keys wrapped once per rotation.
/// NOTE: some HSMs in FIPS mode generate the GCM IV themselves and reject one from the caller.
/// This code supports only tokens that accept the caller's IV, as SoftHSM2 does.
pub(super) fn gcm_encrypt(
    session: &Session,
    key: ObjectHandle,
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, Failure> {
    let mut iv = [0u8; IV_LEN];
    random::fill(&mut iv)?;
    let mut iv_param = iv;
    let too_long = || Error::WrapFailed {
        plaintext_len: plaintext.len(),
        aad_len: aad.len(),
    };
    let params =
        GcmParams::new(&mut iv_param, aad, Ulong::from(TAG_BITS)).map_err(|_| too_long())?;

    let sealed = session
        .encrypt(&Mechanism::AesGcm(params), key, plaintext)
        .map_err(|error| Failure::from_operation(session, error))?;
    if sealed.len() != plaintext.len() + TAG_LEN {
        return Err(Failure::Fail(Error::Pkcs11 {
            source: CryptokiError::Pkcs11(RvError::GeneralError, Function::Encrypt),
        }));
    }

    let mut blob = Vec::with_capacity(IV_LEN + sealed.len());
    blob.extend_from_slice(&iv);
    blob.extend_from_slice(&sealed);
    Ok(blob)
}

/// Decrypts a blob from [`gcm_encrypt`]. A wrong key, wrong `aad` or tampered bytes give
/// [`Error::UnwrapFailed`].
pub(super) fn gcm_decrypt(
    session: &Session,
    key: ObjectHandle,
    blob: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let (iv, sealed) = blob.split_at_checked(IV_LEN).ok_or(Error::UnwrapFailed)?;
    if sealed.len() < TAG_LEN {
        return Err(Failure::Fail(Error::UnwrapFailed));
    }
    let mut iv_param = [0u8; IV_LEN];
    iv_param.copy_from_slice(iv);
    let params = GcmParams::new(&mut iv_param, aad, Ulong::from(TAG_BITS))
        .map_err(|_| Error::UnwrapFailed)?;

    session
        .decrypt(&Mechanism::AesGcm(params), key, sealed)
        .map(Zeroizing::new)
        .map_err(|error| unwrap_failure(session, error))
}

/// Wraps `SHA-256(aad) || u32 length (big-endian) || plaintext` with CKM_AES_KEY_WRAP_PAD
/// (RFC 5649) under `key`.
///
/// AES-KWP authenticates its whole payload but has no associated data input, so the digest of
/// `aad` inside the payload binds it. The length is there because a token may return the
/// payload with its zero padding: SoftHSM2 2.6.1 unwraps a 39-byte payload into a 40-byte
/// object. The output is deterministic: wrapping the same key material with the same `aad`
/// twice gives the same blob.
///
/// The payload enters the token as a temporary session object (a generic secret that is
/// extractable, so that `C_WrapKey` accepts it), which is destroyed before returning.
pub(super) fn key_wrap_pad_wrap(
    session: &Session,
    key: ObjectHandle,
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, Failure> {
    let length = u32::try_from(plaintext.len()).map_err(|_| Error::WrapFailed {
        plaintext_len: plaintext.len(),
        aad_len: aad.len(),
    })?;
    let mut payload = Vec::with_capacity(AAD_DIGEST_LEN + LENGTH_LEN + plaintext.len());
    payload.extend_from_slice(&Sha256::digest(aad));
    payload.extend_from_slice(&length.to_be_bytes());
    payload.extend_from_slice(plaintext);
    let mut template = temporary_secret_template();
    template.push(Attribute::Value(payload));

    let created = session.create_object(&template);
    // The template contains the key material, so it is cleared as soon as the token has it.
    for attribute in &mut template {
        if let Attribute::Value(value) = attribute {
            value.zeroize();
        }
    }
    let temporary = created.map_err(|error| Failure::from_operation(session, error))?;

    let wrapped = session.wrap_key(&Mechanism::AesKeyWrapPad, key, temporary);
    destroy_temporary(session, temporary)?;
    wrapped.map_err(|error| Failure::from_operation(session, error))
}

/// Unwraps a blob from [`key_wrap_pad_wrap`] and checks the digest of `aad`. A wrong key,
/// wrong `aad` or tampered bytes give [`Error::UnwrapFailed`].
///
/// The token unwraps into a temporary session object that is not sensitive, so that its value
/// can be read, and destroys it before returning.
///
/// NOTE: cryptoki 0.12 reads CKA_VALUE through a buffer of its own that it drops without
/// zeroizing, so a copy of the key material may stay in freed heap memory. The GCM path has no
/// such copy.
pub(super) fn key_wrap_pad_unwrap(
    session: &Session,
    key: ObjectHandle,
    blob: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let temporary = session
        .unwrap_key(
            &Mechanism::AesKeyWrapPad,
            key,
            blob,
            &temporary_secret_template(),
        )
        .map_err(|error| unwrap_failure(session, error))?;
    let read = session.get_attributes(temporary, &[AttributeType::Value]);
    destroy_temporary(session, temporary)?;

    // A token that withholds CKA_VALUE of this non-sensitive, extractable object leaves it out
    // of the result, which is reported as the return code such a refusal would have.
    let withheld = Error::Pkcs11 {
        source: CryptokiError::Pkcs11(RvError::AttributeSensitive, Function::GetAttributeValue),
    };
    let payload = read
        .map_err(|error| Failure::from_operation(session, error))?
        .into_iter()
        .find_map(|attribute| match attribute {
            Attribute::Value(value) => Some(Zeroizing::new(value)),
            _ => None,
        })
        .ok_or(withheld)?;

    parse_payload(&payload, aad)
        .map(|plaintext| Zeroizing::new(plaintext.to_vec()))
        .ok_or(Failure::Fail(Error::UnwrapFailed))
}

/// Returns the key material of an unwrapped AES-KWP payload, or `None` unless its digest
/// matches `aad` and its length field matches the bytes that follow, up to zero padding that
/// the token left in place.
fn parse_payload<'a>(payload: &'a [u8], aad: &[u8]) -> Option<&'a [u8]> {
    let (digest, rest) = payload.split_at_checked(AAD_DIGEST_LEN)?;
    if !bool::from(digest.ct_eq(&Sha256::digest(aad))) {
        return None;
    }
    let (length, rest) = rest.split_first_chunk::<LENGTH_LEN>()?;
    let length = usize::try_from(u32::from_be_bytes(*length)).ok()?;
    let (plaintext, padding) = rest.split_at_checked(length)?;
    let padded_len = AAD_DIGEST_LEN + LENGTH_LEN + length;
    let expected_padding = padded_len.next_multiple_of(KWP_BLOCK_LEN) - padded_len;
    let padding_ok = padding.is_empty()
        || (padding.len() == expected_padding && padding.iter().all(|&byte| byte == 0));
    padding_ok.then_some(plaintext)
}

/// Attributes of the temporary object that carries key material into or out of the token:
/// a session object (gone when the session closes), private, readable and extractable.
fn temporary_secret_template() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ]
}

/// Destroys a temporary object. If that fails, the operation fails too, and the session is
/// closed instead of returning to the pool, which destroys its session objects.
fn destroy_temporary(session: &Session, object: ObjectHandle) -> Result<(), Failure> {
    session
        .destroy_object(object)
        .map_err(|error| Failure::from_operation(session, error))
}

/// Classifies an error from `C_Decrypt` or `C_UnwrapKey`.
///
/// SoftHSM2 2.6.1 returns CKR_GENERAL_ERROR both for a failed GCM tag check and for a failed
/// AES-KWP integrity check, so in an unwrap that code means "did not authenticate", unless the
/// session lost its login or its token meanwhile.
fn unwrap_failure(session: &Session, error: CryptokiError) -> Failure {
    match Failure::from_operation(session, error) {
        Failure::Fail(Error::Pkcs11 {
            source:
                CryptokiError::Pkcs11(
                    RvError::GeneralError
                    | RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    | RvError::WrappedKeyInvalid
                    | RvError::WrappedKeyLenRange
                    | RvError::DataInvalid
                    | RvError::DataLenRange,
                    _,
                ),
        }) => Failure::Fail(Error::UnwrapFailed),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(aad: &[u8], length: u32, rest: &[u8]) -> Vec<u8> {
        let mut payload = Sha256::digest(aad).to_vec();
        payload.extend_from_slice(&length.to_be_bytes());
        payload.extend_from_slice(rest);
        payload
    }

    #[test]
    fn parse_payload_accepts_exact_and_zero_padded() {
        let exact = payload(b"aad", 7, b"seven b");
        let padded = payload(b"aad", 7, b"seven b\0\0\0\0\0");

        assert_eq!(parse_payload(&exact, b"aad"), Some(&b"seven b"[..]));
        assert_eq!(parse_payload(&padded, b"aad"), Some(&b"seven b"[..]));
    }

    #[test]
    fn parse_payload_rejects_mismatches() {
        let cases = [
            ("wrong aad", payload(b"other", 7, b"seven b"), b"aad"),
            ("length too long", payload(b"aad", 8, b"seven b"), b"aad"),
            (
                "padding not zero",
                payload(b"aad", 7, b"seven b\0\0\0\0\x01"),
                b"aad",
            ),
            (
                "too much padding",
                payload(b"aad", 7, b"seven b\0\0\0\0\0\0"),
                b"aad",
            ),
            ("no length", Sha256::digest(b"aad").to_vec(), b"aad"),
        ];

        for (case, payload, aad) in cases {
            assert_eq!(parse_payload(&payload, aad), None, "{case}");
        }
    }
}
