//! Standard base64 with padding, the encoding of every byte string in the HTTP API, as serde
//! helpers. Helpers for secret bytes zeroize every intermediate string and buffer.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::{Deserialize, Deserializer, Serializer, de};
use zeroize::Zeroizing;

/// Message for a secret that is not valid base64. The decoder's own message names the offending
/// byte, which would put part of the secret into an error.
const SECRET_DECODE_FAILED: &str = "invalid base64 in a secret field";

/// Serializes public bytes (a ciphertext blob) as base64.
pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&STANDARD.encode(bytes))
}

/// Serializes secret bytes (a plaintext) as base64 through a zeroizing buffer.
pub(crate) fn serialize_secret<S: Serializer>(
    bytes: &[u8],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let encoded = Zeroizing::new(STANDARD.encode(bytes));
    serializer.serialize_str(&encoded)
}

/// Deserializes public bytes from base64.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let encoded = String::deserialize(deserializer)?;
    STANDARD.decode(encoded).map_err(de::Error::custom)
}

/// Deserializes secret bytes from base64; the base64 text is zeroized on drop.
pub(crate) fn deserialize_secret<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<SecretSlice<u8>, D::Error> {
    let encoded = SecretString::deserialize(deserializer)?;
    decode_secret(encoded.expose_secret()).map_err(|_| de::Error::custom(SECRET_DECODE_FAILED))
}

/// Deserializes optional secret bytes; an absent field or `null` gives `None`.
pub(crate) fn deserialize_secret_opt<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SecretSlice<u8>>, D::Error> {
    let encoded = Option::<SecretString>::deserialize(deserializer)?;
    encoded
        .map(|text| decode_secret(text.expose_secret()))
        .transpose()
        .map_err(|_| de::Error::custom(SECRET_DECODE_FAILED))
}

/// Decodes base64 into secret bytes. The error names an input byte, so callers must not show
/// it for secret input.
fn decode_secret(encoded: &str) -> Result<SecretSlice<u8>, base64::DecodeError> {
    let decoded = Zeroizing::new(STANDARD.decode(encoded)?);
    // `decode` may leave spare capacity, and `From<Vec>` would then reallocate without
    // zeroizing the old buffer. Copying into an exact-size Vec keeps the only other copy in
    // the zeroizing buffer above.
    Ok(SecretSlice::from(decoded.to_vec()))
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Blob {
        #[serde(serialize_with = "serialize", deserialize_with = "deserialize")]
        ciphertext: Vec<u8>,
    }

    #[derive(Deserialize)]
    struct Plain {
        #[serde(default, deserialize_with = "deserialize_secret_opt")]
        plaintext: Option<SecretSlice<u8>>,
    }

    #[test]
    fn bytes_round_trip_as_padded_base64() {
        let blob = Blob {
            ciphertext: vec![0xfb, 0xff, 0x01, 0x02],
        };
        let json = serde_json::to_string(&blob).unwrap();
        assert_eq!(json, r#"{"ciphertext":"+/8BAg=="}"#);

        let back: Blob = serde_json::from_str(&json).unwrap();
        assert_eq!(back.ciphertext, blob.ciphertext);
    }

    #[test]
    fn unpadded_base64_is_rejected() {
        let result = serde_json::from_str::<Blob>(r#"{"ciphertext":"+/8BAg"}"#);
        assert!(result.is_err());
    }

    #[test]
    fn url_safe_alphabet_is_rejected() {
        let result = serde_json::from_str::<Blob>(r#"{"ciphertext":"-_8BAg=="}"#);
        assert!(result.is_err());
    }

    #[test]
    fn secret_bytes_decode() {
        let plain: Plain = serde_json::from_str(r#"{"plaintext":"AAECAw=="}"#).unwrap();
        let bytes = plain.plaintext.unwrap();
        assert_eq!(bytes.expose_secret(), &[0, 1, 2, 3]);
    }

    #[test]
    fn absent_or_null_secret_is_none() {
        let absent: Plain = serde_json::from_str("{}").unwrap();
        assert!(absent.plaintext.is_none());

        let null: Plain = serde_json::from_str(r#"{"plaintext":null}"#).unwrap();
        assert!(null.plaintext.is_none());
    }

    #[test]
    fn invalid_secret_base64_is_rejected() {
        let result = serde_json::from_str::<Plain>(r#"{"plaintext":"not base64!"}"#);
        assert!(result.is_err());
    }
}
