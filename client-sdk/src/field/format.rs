//! Text and byte layout of a field value, format version 1, and the associated data that binds
//! it. docs/field-encryption.md specifies every byte. Keep the two in step.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::Error;

/// Length of every prefix, such as `f1r.`.
const PREFIX_LEN: usize = 4;
/// Form byte of a compact value, which carries a key reference.
const FORM_COMPACT: u8 = 0x01;
/// Form byte of a self-contained value, which carries the wrapped data key.
const FORM_SELF_CONTAINED: u8 = 0x02;
/// Length of a key reference.
pub(crate) const KEY_REF_LEN: usize = 8;
/// Length of an AES-GCM nonce.
pub(crate) const NONCE_LEN: usize = 12;
/// Length of an AES-GCM tag, and of an AES-SIV synthetic IV.
pub(crate) const TAG_LEN: usize = 16;
/// Largest wrapped data key that the 2-byte length field of a self-contained value can carry.
pub(crate) const MAX_WRAPPED_KEY_LEN: usize = u16::MAX as usize;

/// Cipher of a field value, named by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// AES-256-GCM with a random nonce: equal plaintexts give different values. Prefix `f1r.`.
    Randomized,
    /// AES-SIV: equal plaintexts with equal field name and record id give equal values under
    /// one data key, which allows equality lookups and reveals equality. Prefix `f1d.`.
    Deterministic,
}

impl Mode {
    /// Returns the prefix that starts every value of this mode.
    pub fn prefix(self) -> &'static str {
        match self {
            Mode::Randomized => "f1r.",
            Mode::Deterministic => "f1d.",
        }
    }

    /// Returns the length of the part after the header: nonce and tag, or synthetic IV.
    pub(crate) fn body_overhead(self) -> usize {
        match self {
            Mode::Randomized => NONCE_LEN + TAG_LEN,
            Mode::Deterministic => TAG_LEN,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Randomized => "randomized",
            Mode::Deterministic => "deterministic",
        })
    }
}

/// Way in which a field value names its data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Form {
    /// Value that carries the 8-byte reference of a data key that the application stores once.
    Compact,
    /// Value that carries the wrapped data key, so it decrypts with KMS access alone.
    SelfContained,
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Form::Compact => "compact",
            Form::SelfContained => "self-contained",
        })
    }
}

/// 8-byte reference of a data key, which compact values carry.
///
/// It is derived from the plaintext data key with HKDF-SHA256, so it stays the same when the
/// data key's ciphertext blob is rewrapped under a newer key version. It is not secret.
/// Display and [`FromStr`] use 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyRef([u8; KEY_REF_LEN]);

impl KeyRef {
    /// Creates a reference from its bytes, for example as stored in a database.
    pub fn from_bytes(bytes: [u8; KEY_REF_LEN]) -> Self {
        KeyRef(bytes)
    }

    /// Returns the bytes of the reference.
    pub fn to_bytes(self) -> [u8; KEY_REF_LEN] {
        self.0
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyRef({self})")
    }
}

impl FromStr for KeyRef {
    type Err = Error;

    /// Parses 16 hex digits, in either case.
    fn from_str(text: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidKeyRef {
            len: text.chars().count(),
        };
        if text.len() != 2 * KEY_REF_LEN || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        let mut bytes = [0; KEY_REF_LEN];
        for (index, byte) in bytes.iter_mut().enumerate() {
            let digits = &text[2 * index..2 * index + 2];
            *byte = u8::from_str_radix(digits, 16).map_err(|_| invalid())?;
        }
        Ok(KeyRef(bytes))
    }
}

/// Binding of a value besides its data key: a field name and an optional record id.
///
/// Decryption needs the same field name and record id, so a value copied into another column
/// or another row fails to decrypt. Use a field name unique in the database, such as
/// `patients.email`. Leave the record id out of columns searched by equality, because values
/// with different record ids never compare equal.
#[derive(Clone, Copy)]
pub struct FieldAad<'a> {
    field: &'a str,
    record_id: Option<&'a [u8]>,
}

impl<'a> FieldAad<'a> {
    /// Binds a value to a field name, without a record id.
    pub fn new(field: &'a str) -> Self {
        FieldAad {
            field,
            record_id: None,
        }
    }

    /// Binds the value to a record id too, such as a primary key.
    pub fn with_record_id(mut self, record_id: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        self.record_id = Some(record_id.as_ref());
        self
    }

    /// Returns the field name.
    pub fn field(&self) -> &str {
        self.field
    }

    /// Returns the record id, if any.
    pub fn record_id(&self) -> Option<&[u8]> {
        self.record_id
    }

    /// Checks what the encoding needs: a field name, and lengths that fit in 32 bits.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let invalid = |reason| Err(Error::InvalidFieldAad { reason });
        if self.field.is_empty() {
            return invalid("the field name must not be empty");
        }
        if u32::try_from(self.field.len()).is_err() {
            return invalid("the field name must be shorter than 4 GiB");
        }
        if self
            .record_id
            .is_some_and(|id| u32::try_from(id.len()).is_err())
        {
            return invalid("the record id must be shorter than 4 GiB");
        }
        Ok(())
    }

    /// Appends the encoding: the field name and the record id, each after its length, with a
    /// presence byte that distinguishes an absent record id from an empty one.
    fn encode_into(&self, out: &mut Vec<u8>) {
        push_with_length(out, self.field.as_bytes());
        match self.record_id {
            None => out.push(0x00),
            Some(id) => {
                out.push(0x01);
                push_with_length(out, id);
            }
        }
    }
}

impl fmt::Debug for FieldAad<'_> {
    /// Shows the record id's length only: a record id may be an identifier such as a patient
    /// number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FieldAad")
            .field("field", &self.field)
            .field("record_id_len", &self.record_id.map(<[u8]>::len))
            .finish()
    }
}

/// Appends a 4-byte big-endian length and the bytes. [`FieldAad::validate`] has checked that
/// the length fits.
fn push_with_length(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Builds the associated data of a value: prefix, header, then field name and record id.
pub(crate) fn associated_data(mode: Mode, header: &[u8], aad: &FieldAad<'_>) -> Vec<u8> {
    let record_len = aad.record_id.map_or(0, |id| 4 + id.len());
    let len = PREFIX_LEN + header.len() + 4 + aad.field.len() + 1 + record_len;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(mode.prefix().as_bytes());
    out.extend_from_slice(header);
    aad.encode_into(&mut out);
    out
}

/// Appends the header of a value: the form byte, then the key reference (compact) or the
/// wrapped data key after its 2-byte length (self-contained).
pub(crate) fn push_header(out: &mut Vec<u8>, form: Form, key_ref: KeyRef, wrapped_key: &[u8]) {
    match form {
        Form::Compact => {
            out.push(FORM_COMPACT);
            out.extend_from_slice(&key_ref.0);
        }
        Form::SelfContained => {
            // FieldKey::new rejects longer wrapped keys.
            let len = u16::try_from(wrapped_key.len()).unwrap_or(u16::MAX);
            out.push(FORM_SELF_CONTAINED);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(wrapped_key);
        }
    }
}

/// Returns the header length of a value.
pub(crate) fn header_len(form: Form, wrapped_key_len: usize) -> usize {
    match form {
        Form::Compact => 1 + KEY_REF_LEN,
        Form::SelfContained => 1 + 2 + wrapped_key_len,
    }
}

/// Writes the text of a value: prefix and unpadded URL-safe base64 of the payload.
pub(crate) fn encode(mode: Mode, payload: &[u8]) -> String {
    let mut text = String::with_capacity(PREFIX_LEN + payload.len().div_ceil(3) * 4);
    text.push_str(mode.prefix());
    URL_SAFE_NO_PAD.encode_string(payload, &mut text);
    text
}

/// Location of a value's data key.
pub(crate) enum KeyLocator<'a> {
    /// A compact value's key reference.
    Ref(KeyRef),
    /// A self-contained value's wrapped data key.
    Wrapped(&'a [u8]),
}

/// A value split into its parts.
pub(crate) struct Decoded {
    mode: Mode,
    form: Form,
    payload: Vec<u8>,
    header_len: usize,
}

impl Decoded {
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// Returns where the value's data key is: a reference, or the wrapped key itself.
    pub(crate) fn locator(&self) -> KeyLocator<'_> {
        match self.form {
            Form::Compact => {
                let mut bytes = [0; KEY_REF_LEN];
                bytes.copy_from_slice(&self.payload[1..self.header_len]);
                KeyLocator::Ref(KeyRef(bytes))
            }
            Form::SelfContained => KeyLocator::Wrapped(&self.payload[3..self.header_len]),
        }
    }

    /// Returns the key reference of a compact value.
    pub(crate) fn key_ref(&self) -> Option<KeyRef> {
        match self.locator() {
            KeyLocator::Ref(key_ref) => Some(key_ref),
            KeyLocator::Wrapped(_) => None,
        }
    }

    /// Returns the header: form byte and key reference or wrapped key.
    pub(crate) fn header(&self) -> &[u8] {
        &self.payload[..self.header_len]
    }

    /// Returns what follows the header: nonce, ciphertext and tag, or synthetic IV and
    /// ciphertext. [`decode`] checked that it is at least [`Mode::body_overhead`] long.
    pub(crate) fn body(&self) -> &[u8] {
        &self.payload[self.header_len..]
    }
}

/// Splits a value into its parts and checks its lengths. Authenticates nothing.
pub(crate) fn decode(value: &str) -> Result<Decoded, Error> {
    let mode = match value.get(..PREFIX_LEN) {
        Some("f1r.") => Mode::Randomized,
        Some("f1d.") => Mode::Deterministic,
        _ => return Err(prefix_error(value)),
    };
    let payload = URL_SAFE_NO_PAD
        .decode(&value[PREFIX_LEN..])
        .map_err(|_| Error::InvalidBase64)?;

    let body_min = mode.body_overhead();
    let truncated = |min| Error::Truncated {
        len: payload.len(),
        min,
    };
    let (form, header_len) = match payload.first() {
        None => return Err(truncated(header_len(Form::Compact, 0) + body_min)),
        Some(&FORM_COMPACT) => (Form::Compact, header_len(Form::Compact, 0)),
        Some(&FORM_SELF_CONTAINED) => {
            let Some(&[high, low]) = payload.get(1..3) else {
                return Err(truncated(header_len(Form::SelfContained, 1) + body_min));
            };
            let wrapped_len = usize::from(u16::from_be_bytes([high, low]));
            if wrapped_len == 0 {
                return Err(Error::InvalidWrappedKeyLength { len: 0 });
            }
            let len = header_len(Form::SelfContained, wrapped_len);
            (Form::SelfContained, len)
        }
        Some(&byte) => return Err(Error::UnknownForm { byte }),
    };
    if payload.len() < header_len + body_min {
        return Err(truncated(header_len + body_min));
    }

    Ok(Decoded {
        mode,
        form,
        payload,
        header_len,
    })
}

/// Chooses the error for a value without a known prefix. A prefix of the shape `f<digits><mode
/// letter>.` with a version other than 1 gets [`Error::UnsupportedVersion`], so that values from
/// a newer SDK are reported as such. Nothing of the value goes into the error but that number.
fn prefix_error(value: &str) -> Error {
    let Some(rest) = value.strip_prefix('f') else {
        return Error::UnknownPrefix;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let tail = &rest.as_bytes()[digits..];
    let shaped = (1..=4).contains(&digits)
        && matches!(tail, [letter, b'.', ..] if letter.is_ascii_lowercase());
    match rest[..digits].parse::<u16>() {
        Ok(version) if shaped && version != 1 => Error::UnsupportedVersion { version },
        _ => Error::UnknownPrefix,
    }
}

/// Parts of a value that can be read without its key, for example to find the data key that a
/// compact value references.
#[derive(Clone, PartialEq, Eq)]
pub struct ValueInfo {
    mode: Mode,
    form: Form,
    key_ref: Option<KeyRef>,
    wrapped_key: Option<Vec<u8>>,
}

impl ValueInfo {
    /// Returns the mode that the prefix names.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Returns the form.
    pub fn form(&self) -> Form {
        self.form
    }

    /// Returns the data key reference of a compact value.
    pub fn key_ref(&self) -> Option<KeyRef> {
        self.key_ref
    }

    /// Returns the wrapped data key (a `kmsd` ciphertext blob) of a self-contained value.
    pub fn wrapped_key(&self) -> Option<&[u8]> {
        self.wrapped_key.as_deref()
    }
}

impl fmt::Debug for ValueInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValueInfo")
            .field("mode", &self.mode)
            .field("form", &self.form)
            .field("key_ref", &self.key_ref)
            .field("wrapped_key_len", &self.wrapped_key.as_ref().map(Vec::len))
            .finish()
    }
}

/// Reads the mode, form and data key of a value without decrypting or authenticating it.
///
/// Use it to find which data key a compact value needs. Nothing it returns is authenticated
/// until the value is decrypted.
pub fn inspect(value: &str) -> Result<ValueInfo, Error> {
    let decoded = decode(value)?;
    Ok(ValueInfo {
        mode: decoded.mode,
        form: decoded.form,
        key_ref: decoded.key_ref(),
        wrapped_key: match decoded.locator() {
            KeyLocator::Ref(_) => None,
            KeyLocator::Wrapped(wrapped) => Some(wrapped.to_vec()),
        },
    })
}
