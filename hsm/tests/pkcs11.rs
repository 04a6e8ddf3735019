//! Tests of the PKCS#11 root of trust against a real SoftHSM2.
//!
//! # One process and one token folder per test
//!
//! SoftHSM2 reads the path of its config file from `SOFTHSM2_CONF` in `C_Initialize`, and the
//! module stays initialised with that config while the process uses it. Since Rust 2024,
//! setting an environment variable in a running process also needs `unsafe`. So each SoftHSM2
//! test works in two processes:
//!
//! 1. In the normal test run, the test creates a temporary folder with a token folder and a
//!    `softhsm2.conf` of its own, and initialises one token there with `softhsm2-util`. Then it
//!    runs this test binary again as a child process, restricted to that one test, with
//!    `SOFTHSM2_CONF` set.
//! 2. In the child process, the same test function finds `HSM_PKCS11_TEST_CHILD` set and runs
//!    its body against the token.
//!
//! No two tests share a token folder or a process, so they run in parallel, and a test that
//! finalises the module or closes every session affects no other test.
//!
//! The module is `/usr/lib/softhsm/libsofthsm2.so`, or the path in `SOFTHSM2_MODULE`.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use std::env;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use hsm::cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use hsm::cryptoki::error::{Error as CryptokiError, RvError};
use hsm::cryptoki::mechanism::Mechanism as CkMechanism;
use hsm::cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use hsm::cryptoki::session::{Session, UserType};
use hsm::cryptoki::slot::Slot;
use hsm::cryptoki::types::{AuthPin, Ulong};
use hsm::pkcs11::shared_context;
use hsm::{
    Error, Mechanism, Pkcs11Config, Pkcs11Root, RootKind, RootOfTrust, TokenSelector, WrappedKey,
};
use tracing_subscriber::util::SubscriberInitExt;

/// Set in the child process that runs one test body; its value is the token label.
const CHILD_MARKER: &str = "HSM_PKCS11_TEST_CHILD";
const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const USER_PIN: &str = "user-pin-4821";
const WRONG_PIN: &str = "wrong-pin-5512";
const SO_PIN: &str = "so-pin-7730";
const KEYRING_KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const AAD: &[u8] = b"keyring:v1";

fn module_path() -> PathBuf {
    env::var_os("SOFTHSM2_MODULE").map_or_else(|| DEFAULT_MODULE.into(), PathBuf::from)
}

/// Writes a SoftHSM2 config with its own token folder under `dir`, and returns its path.
fn write_softhsm_conf(dir: &Path) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    let text = format!(
        "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
        tokens.display()
    );
    std::fs::write(&conf, text).unwrap();
    conf
}

/// Initialises a token labelled `label` in the first free slot of the config `conf`.
fn init_token(conf: &Path, label: &str) {
    let output = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label])
        .args(["--pin", USER_PIN, "--so-pin", SO_PIN])
        .env("SOFTHSM2_CONF", conf)
        .output()
        .unwrap_or_else(|error| {
            panic!("running softhsm2-util failed ({error}); install the softhsm2 package")
        });
    assert!(
        output.status.success(),
        "softhsm2-util --init-token failed for {label}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The SoftHSM2 token of one test, seen from the child process.
struct TestToken {
    module: PathBuf,
    label: String,
}

impl TestToken {
    fn config(&self, pin: &str, key_label: &str) -> Pkcs11Config {
        Pkcs11Config {
            module: self.module.clone(),
            token: TokenSelector::Label(self.label.clone()),
            pin: pin.into(),
            key_label: key_label.to_owned(),
        }
    }

    /// Opens a root of trust with the right PIN and creates its key object.
    fn root(&self, key_label: &str) -> Pkcs11Root {
        let root = Pkcs11Root::open(self.config(USER_PIN, key_label)).unwrap();
        root.ensure_key(key_label).unwrap();
        root
    }

    fn context(&self) -> Pkcs11 {
        shared_context(&self.module).unwrap()
    }

    fn slot(&self) -> Slot {
        let context = self.context();
        context
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|slot| context.get_token_info(*slot).unwrap().label() == self.label)
            .unwrap()
    }

    fn serial(&self) -> String {
        let info = self.context().get_token_info(self.slot()).unwrap();
        info.serial_number().to_owned()
    }

    /// Opens a session of the test's own on the token, logged in as the user. Drop it before
    /// the root of trust reconnects, which closes every session of the process.
    fn session(&self) -> Session {
        let session = self.context().open_rw_session(self.slot()).unwrap();
        let pin = AuthPin::from(USER_PIN);
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CryptokiError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(error) => panic!("login for the test session failed: {error}"),
        }
        session
    }

    /// Returns every secret key object with `label`.
    fn find_keys(&self, session: &Session, label: &str) -> Vec<ObjectHandle> {
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        session.find_objects(&template).unwrap()
    }
}

/// Runs `body` against a fresh token labelled `name`, in a child process of this binary that
/// runs only the test `name`, with a token folder of its own. `name` must be the name of the
/// calling test function, and at most 32 bytes long, because it is also the token label.
fn with_token(name: &str, body: impl FnOnce(&TestToken)) {
    if let Some(label) = env::var_os(CHILD_MARKER) {
        body(&TestToken {
            module: module_path(),
            label: label.into_string().unwrap(),
        });
        return;
    }

    assert!(name.len() <= 32, "token labels are at most 32 bytes");
    let module = module_path();
    assert!(
        module.is_file(),
        "SoftHSM2 is not installed: {} not found; install the softhsm2 package or set \
         SOFTHSM2_MODULE to the module path",
        module.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let conf = write_softhsm_conf(dir.path());
    init_token(&conf, name);

    let output = Command::new(env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env("SOFTHSM2_CONF", &conf)
        .env(CHILD_MARKER, name)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Shown with --nocapture, like the output of a test that runs in this process.
    print!("{stdout}");
    assert!(
        output.status.success(),
        "test {name} failed in its child process:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "the child process ran no test named {name}:\n{stdout}"
    );
}

/// Log output shared between the capturing subscriber and the test.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `body` with every log event of this thread, down to trace level, captured, and returns
/// the log text.
fn capture_log(body: impl FnOnce()) -> String {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let guard = subscriber.set_default();
    body();
    drop(guard);
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

fn assert_unwrap_failed(result: Result<impl Sized, Error>, case: &str) {
    match result {
        Err(Error::UnwrapFailed) => {}
        Err(other) => panic!("{case}: expected UnwrapFailed, got {other:?}"),
        Ok(_) => panic!("{case}: unwrap succeeded"),
    }
}

/// Generates an AES key object on the token with `label` and `value_len` bytes, plus
/// `attributes`.
fn generate_token_key(
    session: &Session,
    label: &str,
    value_len: u64,
    attributes: &[Attribute],
) -> ObjectHandle {
    let mut template = vec![
        Attribute::Token(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::ValueLen(Ulong::from(value_len)),
    ];
    template.extend_from_slice(attributes);
    session
        .generate_key(&CkMechanism::AesKeyGen, &template)
        .unwrap()
}

#[test]
fn gcm_wrap_round_trip() {
    with_token("gcm_wrap_round_trip", |token| {
        let root = Pkcs11Root::open(token.config(USER_PIN, "root-1")).unwrap();
        assert!(root.ensure_key("root-1").unwrap(), "first call creates");
        assert!(!root.ensure_key("root-1").unwrap(), "second call finds");

        let first = root.wrap(KEYRING_KEY, AAD).unwrap();
        let second = root.wrap(KEYRING_KEY, AAD).unwrap();
        let unwrapped = root.unwrap(&first, AAD).unwrap();

        assert_eq!(root.kind(), RootKind::Pkcs11);
        assert_eq!(root.wrap_mechanism(), Mechanism::Pkcs11AesGcm);
        assert_eq!(first.mechanism, Mechanism::Pkcs11AesGcm);
        assert_eq!(first.key_label.as_deref(), Some("root-1"));
        assert_eq!(first.bytes.len(), 12 + KEYRING_KEY.len() + 16);
        assert_ne!(first.bytes, second.bytes, "each wrap uses a fresh IV");
        assert_eq!(unwrapped.as_slice(), KEYRING_KEY);
    });
}

#[test]
fn gcm_wrap_works_as_trait_object() {
    with_token("gcm_wrap_works_as_trait_object", |token| {
        let root: Arc<dyn RootOfTrust> = Arc::new(token.root("root-1"));

        let empty = root.wrap(b"", AAD).unwrap();
        let wrapped = root.wrap(KEYRING_KEY, b"").unwrap();

        assert!(root.unwrap(&empty, AAD).unwrap().is_empty());
        assert_eq!(root.unwrap(&wrapped, b"").unwrap().as_slice(), KEYRING_KEY);
    });
}

#[test]
fn gcm_unwrap_rejects_tampering() {
    with_token("gcm_unwrap_rejects_tampering", |token| {
        let root = token.root("root-1");
        root.ensure_key("other").unwrap();
        let wrapped = root.wrap(KEYRING_KEY, AAD).unwrap();

        assert_unwrap_failed(root.unwrap(&wrapped, b"keyring:v2"), "wrong aad");
        assert_unwrap_failed(root.unwrap(&wrapped, b""), "empty aad");
        for position in 0..wrapped.bytes.len() {
            let mut tampered = wrapped.clone();
            tampered.bytes[position] ^= 0x01;
            assert_unwrap_failed(root.unwrap(&tampered, AAD), &format!("byte {position}"));
        }
        for len in [0, 11, 12, 27, 28, wrapped.bytes.len() - 1] {
            let mut truncated = wrapped.clone();
            truncated.bytes.truncate(len);
            assert_unwrap_failed(root.unwrap(&truncated, AAD), &format!("length {len}"));
        }
        let mut other_key = wrapped.clone();
        other_key.key_label = Some("other".to_owned());
        assert_unwrap_failed(root.unwrap(&other_key, AAD), "other key object");
        assert_eq!(root.unwrap(&wrapped, AAD).unwrap().as_slice(), KEYRING_KEY);
    });
}

#[test]
fn unwrap_rejects_foreign_blobs() {
    with_token("unwrap_rejects_foreign_blobs", |token| {
        let root = token.root("root-1");
        let wrapped = root.wrap(KEYRING_KEY, AAD).unwrap();

        let shamir = WrappedKey {
            mechanism: Mechanism::Aes256Gcm,
            ..wrapped.clone()
        };
        let unlabelled = WrappedKey {
            key_label: None,
            ..wrapped.clone()
        };

        assert!(matches!(
            root.unwrap(&shamir, AAD),
            Err(Error::MechanismMismatch {
                root: RootKind::Pkcs11,
                ..
            })
        ));
        assert!(matches!(
            root.unwrap(&unlabelled, AAD),
            Err(Error::MissingKeyLabel { .. })
        ));
    });
}

#[test]
fn key_wrap_pad_round_trip() {
    with_token("key_wrap_pad_round_trip", |token| {
        let root = token.root("root-1");

        let wrapped = root
            .wrap_with(Mechanism::Pkcs11AesKeyWrapPad, KEYRING_KEY, AAD)
            .unwrap();
        let again = root
            .wrap_with(Mechanism::Pkcs11AesKeyWrapPad, KEYRING_KEY, AAD)
            .unwrap();
        let unwrapped = root.unwrap(&wrapped, AAD).unwrap();
        let odd = root
            .wrap_with(Mechanism::Pkcs11AesKeyWrapPad, b"seven b", AAD)
            .unwrap();

        assert_eq!(wrapped.mechanism, Mechanism::Pkcs11AesKeyWrapPad);
        assert_eq!(wrapped.key_label.as_deref(), Some("root-1"));
        // RFC 5649: the 68-byte payload (digest, length and key) padded to 72 bytes, plus one
        // 8-byte integrity block.
        assert_eq!(wrapped.bytes.len(), 80);
        assert_eq!(wrapped.bytes, again.bytes, "AES-KWP is deterministic");
        assert_eq!(unwrapped.as_slice(), KEYRING_KEY);
        // The 43-byte payload is padded to 48 bytes, which the token may return on unwrap.
        assert_eq!(odd.bytes.len(), 56);
        assert_eq!(root.unwrap(&odd, AAD).unwrap().as_slice(), b"seven b");
    });
}

#[test]
fn key_wrap_pad_rejects_tampering() {
    with_token("key_wrap_pad_rejects_tampering", |token| {
        let root = token.root("root-1");
        let wrapped = root
            .wrap_with(Mechanism::Pkcs11AesKeyWrapPad, KEYRING_KEY, AAD)
            .unwrap();

        assert_unwrap_failed(root.unwrap(&wrapped, b"keyring:v2"), "wrong aad");
        assert_unwrap_failed(root.unwrap(&wrapped, b""), "empty aad");
        for position in 0..wrapped.bytes.len() {
            let mut tampered = wrapped.clone();
            tampered.bytes[position] ^= 0x01;
            assert_unwrap_failed(root.unwrap(&tampered, AAD), &format!("byte {position}"));
        }
        let mut truncated = wrapped.clone();
        truncated.bytes.truncate(wrapped.bytes.len() - 8);
        assert_unwrap_failed(root.unwrap(&truncated, AAD), "truncated");
        assert_eq!(root.unwrap(&wrapped, AAD).unwrap().as_slice(), KEYRING_KEY);
    });
}

#[test]
fn ensure_key_sets_attributes() {
    with_token("ensure_key_sets_attributes", |token| {
        let root = token.root("root-1");
        root.find_key("root-1").unwrap();
        let session = token.session();
        let keys = token.find_keys(&session, "root-1");
        assert_eq!(keys.len(), 1);
        let key = keys[0];

        let attributes = session
            .get_attributes(
                key,
                &[
                    AttributeType::Token,
                    AttributeType::Private,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::KeyType,
                    AttributeType::ValueLen,
                    AttributeType::Encrypt,
                    AttributeType::Decrypt,
                    AttributeType::Wrap,
                    AttributeType::Unwrap,
                    AttributeType::Derive,
                    AttributeType::AlwaysSensitive,
                    AttributeType::NeverExtractable,
                ],
            )
            .unwrap();
        let expected = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(Ulong::from(32)),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
            Attribute::Derive(false),
            Attribute::AlwaysSensitive(true),
            Attribute::NeverExtractable(true),
        ];
        for attribute in expected {
            assert!(attributes.contains(&attribute), "{attribute:?} missing");
        }

        // Sensitive: the value is never returned in clear. cryptoki leaves it out of the result.
        let value = session
            .get_attributes(key, &[AttributeType::Value])
            .unwrap();
        assert!(value.is_empty(), "CKA_VALUE was readable");

        // Not extractable: the token rejects wrapping it under a key that the caller controls.
        let wrapping = session
            .generate_key(
                &CkMechanism::AesKeyGen,
                &[
                    Attribute::Token(false),
                    Attribute::ValueLen(Ulong::from(32)),
                    Attribute::Wrap(true),
                ],
            )
            .unwrap();
        let exported = session.wrap_key(&CkMechanism::AesKeyWrapPad, wrapping, key);
        assert!(
            matches!(
                exported,
                Err(CryptokiError::Pkcs11(RvError::KeyUnextractable, _))
            ),
            "C_WrapKey of the root key returned {exported:?}"
        );
    });
}

#[test]
fn key_is_reused_after_reopen() {
    with_token("key_is_reused_after_reopen", |token| {
        let first = Pkcs11Root::open(token.config(USER_PIN, "root-1")).unwrap();
        assert!(first.ensure_key("root-1").unwrap());
        let wrapped = first.wrap(KEYRING_KEY, AAD).unwrap();
        // The last root of trust closes its sessions, which logs the process out.
        drop(first);

        let second = Pkcs11Root::open(token.config(USER_PIN, "root-1")).unwrap();
        let created = second.ensure_key("root-1").unwrap();
        let unwrapped = second.unwrap(&wrapped, AAD).unwrap();

        assert!(!created, "the second open found the existing key");
        assert_eq!(unwrapped.as_slice(), KEYRING_KEY);
        let session = token.session();
        assert_eq!(token.find_keys(&session, "root-1").len(), 1);
    });
}

#[test]
fn ensure_key_rejects_weak_keys() {
    with_token("ensure_key_rejects_weak_keys", |token| {
        let root = token.root("root-1");
        let session = token.session();
        let cases = [
            (
                "extractable",
                Attribute::Extractable(true),
                "CKA_EXTRACTABLE",
            ),
            (
                "not-sensitive",
                Attribute::Sensitive(false),
                "CKA_SENSITIVE",
            ),
            ("public", Attribute::Private(false), "CKA_PRIVATE"),
            ("no-decrypt", Attribute::Decrypt(false), "CKA_DECRYPT"),
            ("derivable", Attribute::Derive(true), "CKA_DERIVE"),
        ];

        for (label, weakness, attribute_name) in cases {
            let mut template = vec![Attribute::Encrypt(true)];
            for default in [
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Decrypt(true),
                Attribute::Derive(false),
            ] {
                if default.attribute_type() != weakness.attribute_type() {
                    template.push(default);
                }
            }
            template.push(weakness);
            generate_token_key(&session, label, 32, &template);

            let error = root.ensure_key(label).unwrap_err();
            let Error::WrongKeyAttribute { attribute, .. } = error else {
                panic!("{label}: expected WrongKeyAttribute, got {error:?}");
            };
            assert_eq!(attribute, attribute_name, "{label}");
            let message = error.to_string();
            assert!(message.contains(attribute_name), "{message}");
            assert!(message.contains("create a new key object"), "{message}");
            assert!(matches!(
                root.set_key_label(label),
                Err(Error::WrongKeyAttribute { .. })
            ));
        }
        assert_eq!(root.key_label(), "root-1");
    });
}

#[test]
fn key_once_extractable_is_rejected() {
    with_token("key_once_extractable_is_rejected", |token| {
        let root = token.root("root-1");
        let session = token.session();
        let key = generate_token_key(
            &session,
            "was-extractable",
            32,
            &[
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::Derive(false),
            ],
        );
        // PKCS#11 allows CKA_EXTRACTABLE to change from true to false, but not the reverse.
        session
            .update_attributes(key, &[Attribute::Extractable(false)])
            .unwrap();

        let error = root.find_key("was-extractable").unwrap_err();

        assert!(
            matches!(
                error,
                Error::WrongKeyAttribute {
                    attribute: "CKA_NEVER_EXTRACTABLE",
                    ..
                }
            ),
            "{error:?}"
        );
    });
}

#[test]
fn find_key_rejects_short_key() {
    with_token("find_key_rejects_short_key", |token| {
        let root = token.root("root-1");
        let session = token.session();
        generate_token_key(
            &session,
            "aes-128",
            16,
            &[
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
            ],
        );

        let error = root.find_key("aes-128").unwrap_err();

        let Error::WrongKeyAttribute {
            attribute, found, ..
        } = error
        else {
            panic!("expected WrongKeyAttribute, got {error:?}");
        };
        assert_eq!(attribute, "CKA_VALUE_LEN");
        assert_eq!(found, "16");
    });
}

#[test]
fn missing_key_names_the_fix() {
    with_token("missing_key_names_the_fix", |token| {
        let root = Pkcs11Root::open(token.config(USER_PIN, "root-1")).unwrap();

        let found = root.find_key("root-1").unwrap_err();
        let wrapped = root.wrap(KEYRING_KEY, AAD).unwrap_err();

        let Error::KeyMissing {
            ref label,
            token: ref token_label,
        } = found
        else {
            panic!("expected KeyMissing, got {found:?}");
        };
        assert_eq!(label, "root-1");
        assert_eq!(token_label, "missing_key_names_the_fix");
        assert_eq!(
            found.to_string(),
            "key object \"root-1\" not found on PKCS#11 token \"missing_key_names_the_fix\": \
             restore it from the HSM backup, or fix the configured key label; a new \
             installation creates the key object when the service is initialised"
        );
        assert!(matches!(wrapped, Error::KeyMissing { .. }), "{wrapped:?}");
        assert!(!found.is_unavailable());
    });
}

#[test]
fn wrong_pin_is_not_retried() {
    with_token("wrong_pin_is_not_retried", |token| {
        let first = Pkcs11Root::open(token.config(WRONG_PIN, "root-1")).unwrap_err();
        let second = Pkcs11Root::open(token.config(WRONG_PIN, "root-1")).unwrap_err();

        // The first attempt reached C_Login. The second was rejected without a login, which is
        // the only way to get WrongPin without a source.
        let Error::WrongPin { ref source, .. } = first else {
            panic!("expected WrongPin, got {first:?}");
        };
        assert!(
            matches!(
                source,
                Some(CryptokiError::Pkcs11(RvError::PinIncorrect, _))
            ),
            "{source:?}"
        );
        assert!(
            matches!(second, Error::WrongPin { source: None, .. }),
            "{second:?}"
        );
        for error in [&first, &second] {
            let message = format!("{error} {error:?}");
            assert!(!message.contains(WRONG_PIN), "{message}");
            assert!(!message.contains(USER_PIN), "{message}");
            assert!(!error.is_unavailable());
        }
        let message = first.to_string();
        assert!(message.contains("C_Login: CKR_PIN_INCORRECT"), "{message}");
        assert!(message.contains("not tried again"), "{message}");

        let info = token.context().get_token_info(token.slot()).unwrap();
        assert!(!info.user_pin_locked());
        let root = token.root("root-1");
        let wrapped = root.wrap(KEYRING_KEY, AAD).unwrap();
        assert_eq!(root.unwrap(&wrapped, AAD).unwrap().as_slice(), KEYRING_KEY);
    });
}

#[test]
fn second_root_with_other_pin_fails() {
    with_token("second_root_with_other_pin_fails", |token| {
        let first = token.root("root-1");

        let second = Pkcs11Root::open(token.config(WRONG_PIN, "root-1"));
        let same = Pkcs11Root::open(token.config(USER_PIN, "root-1")).unwrap();

        assert!(
            matches!(second, Err(Error::PinMismatch { .. })),
            "{second:?}"
        );
        let wrapped = first.wrap(KEYRING_KEY, AAD).unwrap();
        assert_eq!(same.unwrap(&wrapped, AAD).unwrap().as_slice(), KEYRING_KEY);
    });
}

#[test]
fn changed_pin_is_not_retried() {
    with_token("changed_pin_is_not_retried", |token| {
        let root = token.root("root-1");
        let wrapped = root.wrap(KEYRING_KEY, AAD).unwrap();
        let session = token.session();
        session
            .set_pin(&AuthPin::from(USER_PIN), &AuthPin::from("new-pin-3390"))
            .unwrap();
        drop(session);

        // Reconnecting logs in again with the PIN that the root was opened with, which is now
        // wrong. Later operations must not send it again.
        let reconnected = root.reconnect();
        let first = root.unwrap(&wrapped, AAD);
        let second = root.wrap(KEYRING_KEY, AAD);
        let reopened = Pkcs11Root::open(token.config(USER_PIN, "root-1"));

        assert!(
            matches!(
                reconnected,
                Err(Error::WrongPin {
                    source: Some(CryptokiError::Pkcs11(RvError::PinIncorrect, _)),
                    ..
                })
            ),
            "{reconnected:?}"
        );
        assert!(
            matches!(first, Err(Error::WrongPin { source: None, .. })),
            "{first:?}"
        );
        assert!(
            matches!(second, Err(Error::WrongPin { source: None, .. })),
            "{second:?}"
        );
        assert!(
            matches!(reopened, Err(Error::WrongPin { source: None, .. })),
            "{reopened:?}"
        );
        let info = token.context().get_token_info(token.slot()).unwrap();
        assert!(!info.user_pin_locked());
    });
}

#[test]
fn token_not_found_by_label() {
    with_token("token_not_found_by_label", |token| {
        let mut config = token.config(USER_PIN, "root-1");
        config.token = TokenSelector::Label("no-such-token".to_owned());

        let error = Pkcs11Root::open(config).unwrap_err();

        let Error::TokenNotFound { ref tokens, .. } = error else {
            panic!("expected TokenNotFound, got {error:?}");
        };
        let listed: Vec<Option<&str>> = tokens.iter().map(|t| t.label.as_deref()).collect();
        // SoftHSM2 always offers one more slot with an uninitialised token.
        assert_eq!(listed, [Some("token_not_found_by_label"), None]);
        assert_eq!(tokens[0].serial, token.serial());
        let message = error.to_string();
        assert!(message.contains("label \"no-such-token\""), "{message}");
        assert!(
            message.contains(&format!(
                "(label \"token_not_found_by_label\", serial number \"{}\")",
                token.serial()
            )),
            "{message}"
        );
        assert!(message.contains("softhsm2-util --init-token"), "{message}");
    });
}

#[test]
fn token_not_found_by_serial() {
    with_token("token_not_found_by_serial", |token| {
        let mut config = token.config(USER_PIN, "root-1");
        config.token = TokenSelector::Serial("0000000000000000".to_owned());

        let error = Pkcs11Root::open(config).unwrap_err();

        assert!(
            matches!(error, Error::TokenNotFound { .. }),
            "expected TokenNotFound, got {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("serial number \"0000000000000000\""),
            "{message}"
        );
        assert!(message.contains("token_not_found_by_serial"), "{message}");
    });
}

#[test]
fn token_found_by_serial() {
    with_token("token_found_by_serial", |token| {
        let mut config = token.config(USER_PIN, "root-1");
        config.token = TokenSelector::Serial(token.serial());

        let root = Pkcs11Root::open(config).unwrap();

        assert_eq!(root.token_label(), "token_found_by_serial");
        assert!(root.ensure_key("root-1").unwrap());
    });
}

/// Builds a config that loads `module`, for tests that fail before any token is opened.
fn module_config(module: PathBuf) -> Pkcs11Config {
    Pkcs11Config {
        module,
        token: TokenSelector::Label("kms".to_owned()),
        pin: USER_PIN.into(),
        key_label: "root-1".to_owned(),
    }
}

#[test]
fn missing_module_is_reported() {
    let config = module_config("/nonexistent/libpkcs11-missing.so".into());

    let error = Pkcs11Root::open(config).unwrap_err();

    assert!(matches!(error, Error::ModuleNotFound { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("PKCS#11 module /nonexistent/libpkcs11-missing.so not found"),
        "{message}"
    );
    assert!(message.contains("fix the module path"), "{message}");
}

#[test]
fn non_library_module_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libnot-a-module.so");
    std::fs::write(&path, "this is a text file, not a shared library\n").unwrap();
    let config = module_config(path.clone());

    let error = Pkcs11Root::open(config).unwrap_err();

    assert!(matches!(error, Error::NotPkcs11Module { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("{} is not a PKCS#11 module", path.display())),
        "{message}"
    );
}

#[test]
fn key_rotation_keeps_old_blobs() {
    with_token("key_rotation_keeps_old_blobs", |token| {
        let root = token.root("root-1");
        let clone = root.clone();
        let old_blob = root.wrap(KEYRING_KEY, AAD).unwrap();

        assert!(root.ensure_key("root-2").unwrap());
        root.set_key_label("root-2").unwrap();
        let new_blob = clone.wrap(KEYRING_KEY, AAD).unwrap();

        assert_eq!(clone.key_label(), "root-2", "clones share the key label");
        assert_eq!(new_blob.key_label.as_deref(), Some("root-2"));
        assert_eq!(root.unwrap(&old_blob, AAD).unwrap().as_slice(), KEYRING_KEY);
        assert!(matches!(
            root.destroy_key("root-2"),
            Err(Error::KeyInUse { ref label }) if label == "root-2"
        ));
        assert!(matches!(
            root.set_key_label("root-3"),
            Err(Error::KeyMissing { .. })
        ));
        assert_eq!(root.key_label(), "root-2");

        assert!(root.destroy_key("root-1").unwrap());
        assert!(!root.destroy_key("root-1").unwrap());

        let error = root.unwrap(&old_blob, AAD).unwrap_err();
        assert!(
            matches!(error, Error::KeyMissing { ref label, .. } if label == "root-1"),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("restore it from the HSM backup"),
            "{error}"
        );
        assert_eq!(root.unwrap(&new_blob, AAD).unwrap().as_slice(), KEYRING_KEY);
    });
}

#[test]
fn logged_out_session_recovers() {
    with_token("logged_out_session_recovers", |token| {
        let root = token.root("root-1");
        let wrapped = root.wrap(KEYRING_KEY, AAD).unwrap();

        // C_Logout logs the whole process out, so every pooled session of the root too.
        let mut unwrapped = None;
        let mut rewrapped = None;
        let log = capture_log(|| {
            token.session().logout().unwrap();
            unwrapped = Some(root.unwrap(&wrapped, AAD).unwrap());
            token.session().logout().unwrap();
            rewrapped = Some(root.wrap(KEYRING_KEY, AAD).unwrap());
        });
        let (unwrapped, rewrapped) = (unwrapped.unwrap(), rewrapped.unwrap());

        assert_eq!(
            log.matches("PKCS#11 login lost; logging in again and retrying once")
                .count(),
            2,
            "{log}"
        );
        assert!(!log.contains(USER_PIN), "{log}");
        assert_eq!(unwrapped.as_slice(), KEYRING_KEY);
        assert_eq!(
            root.unwrap(&rewrapped, AAD).unwrap().as_slice(),
            KEYRING_KEY
        );
    });
}

#[test]
fn reconnect_closes_all_sessions() {
    with_token("reconnect_closes_all_sessions", |token| {
        let root = token.root("root-1");
        let wrapped = root.wrap(KEYRING_KEY, AAD).unwrap();
        // A session that the root of trust does not manage. It is opened without close-on-drop,
        // because after the reconnect its handle number may belong to a new session.
        let context = token.context();
        let own = context.open_rw_session_no_drop(token.slot()).unwrap();
        let objects_before = own
            .find_objects(&[Attribute::Label(b"root-1".to_vec())])
            .unwrap();

        root.reconnect().unwrap();
        let unwrapped = root.unwrap(&wrapped, AAD).unwrap();

        assert_eq!(objects_before.len(), 1, "the test session was logged in");
        assert_eq!(unwrapped.as_slice(), KEYRING_KEY);
        // C_CloseAllSessions closed the test's session too. SoftHSM2 2.6.1 numbers sessions
        // upwards until the module is initialised again, so no new session took its handle.
        let info = own.get_session_info();
        assert!(
            matches!(
                info,
                Err(CryptokiError::Pkcs11(RvError::SessionHandleInvalid, _))
            ),
            "{info:?}"
        );
        drop(own);
    });
}

#[test]
fn finalized_module_recovers() {
    with_token("finalized_module_recovers", |token| {
        let root = token.root("root-1");
        let wrapped = root.wrap(KEYRING_KEY, AAD).unwrap();

        // Other code in the process finalises the module: every call now returns
        // CKR_CRYPTOKI_NOT_INITIALIZED until the root of trust initialises it again.
        let context = token.context();
        context.clone().finalize().unwrap();
        let mut unwrapped = None;
        let finalized_log = capture_log(|| unwrapped = Some(root.unwrap(&wrapped, AAD).unwrap()));

        // The module restarts behind the root's back: pooled session handles are invalid.
        context.clone().finalize().unwrap();
        context
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        let mut rewrapped = None;
        let restarted_log = capture_log(|| rewrapped = Some(root.wrap(KEYRING_KEY, AAD).unwrap()));
        let (unwrapped, rewrapped) = (unwrapped.unwrap(), rewrapped.unwrap());

        assert!(
            finalized_log.contains("CKR_CRYPTOKI_NOT_INITIALIZED"),
            "{finalized_log}"
        );
        assert!(
            restarted_log.contains("CKR_SESSION_HANDLE_INVALID"),
            "{restarted_log}"
        );
        for log in [&finalized_log, &restarted_log] {
            assert!(log.contains("reconnected to PKCS#11 token"), "{log}");
            assert!(!log.contains(USER_PIN), "{log}");
        }
        assert_eq!(unwrapped.as_slice(), KEYRING_KEY);
        assert_eq!(
            root.unwrap(&rewrapped, AAD).unwrap().as_slice(),
            KEYRING_KEY
        );
    });
}

/// Wraps and unwraps distinct key material with distinct associated data, `rounds` times or
/// until `stop` is set, whichever comes later, and checks every result byte for byte.
fn wrap_unwrap_rounds(root: &Pkcs11Root, worker: u8, rounds: u32, stop: &AtomicBool) -> u32 {
    let mut done = 0u32;
    while done < rounds || !stop.load(Ordering::SeqCst) {
        let plaintext: Vec<u8> = (0..32u8)
            .map(|i| i ^ worker ^ done.to_le_bytes()[0])
            .collect();
        let aad = format!("worker {worker} round {done}");
        let wrapped = root.wrap(&plaintext, aad.as_bytes()).unwrap();
        let unwrapped = root.unwrap(&wrapped, aad.as_bytes()).unwrap();
        assert_eq!(unwrapped.as_slice(), plaintext.as_slice());
        assert_unwrap_failed(root.unwrap(&wrapped, b"other"), "wrong aad");
        done += 1;
    }
    done
}

#[test]
fn concurrent_wrap_unwrap() {
    with_token("concurrent_wrap_unwrap", |token| {
        let root = Arc::new(token.root("root-1"));
        let stop = Arc::new(AtomicBool::new(true));

        let workers: Vec<_> = (0..8u8)
            .map(|worker| {
                let (root, stop) = (Arc::clone(&root), Arc::clone(&stop));
                thread::spawn(move || wrap_unwrap_rounds(&root, worker, 50, &stop))
            })
            .collect();
        let rounds: Vec<u32> = workers.into_iter().map(|w| w.join().unwrap()).collect();

        assert_eq!(rounds, [50; 8]);
    });
}

#[test]
fn reconnect_during_concurrent_use() {
    with_token("reconnect_during_concurrent_use", |token| {
        let root = Arc::new(token.root("root-1"));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Arc::new(Barrier::new(9));

        let workers: Vec<_> = (0..8u8)
            .map(|worker| {
                let (root, stop, start) =
                    (Arc::clone(&root), Arc::clone(&stop), Arc::clone(&start));
                thread::spawn(move || {
                    start.wait();
                    wrap_unwrap_rounds(&root, worker, 20, &stop)
                })
            })
            .collect();
        // Every worker runs from before the first reconnect until after the last one.
        start.wait();
        for _ in 0..20 {
            root.reconnect().unwrap();
            thread::yield_now();
        }
        stop.store(true, Ordering::SeqCst);
        let rounds: Vec<u32> = workers.into_iter().map(|w| w.join().unwrap()).collect();

        assert!(rounds.iter().all(|&count| count >= 20), "{rounds:?}");
        let wrapped = root.wrap(KEYRING_KEY, AAD).unwrap();
        assert_eq!(root.unwrap(&wrapped, AAD).unwrap().as_slice(), KEYRING_KEY);
    });
}

#[test]
fn empty_key_label_is_rejected() {
    with_token("empty_key_label_is_rejected", |token| {
        let root = token.root("root-1");

        assert!(matches!(root.ensure_key(""), Err(Error::EmptyKeyLabel)));
        assert!(matches!(root.find_key(""), Err(Error::EmptyKeyLabel)));
        assert!(matches!(
            Pkcs11Root::open(token.config(USER_PIN, "")),
            Err(Error::EmptyKeyLabel)
        ));
    });
}

#[test]
fn root_debug_hides_pin() {
    with_token("root_debug_hides_pin", |token| {
        let root = token.root("root-1");

        let debug = format!("{root:?} {root:#?}");

        assert!(!debug.contains(USER_PIN), "{debug}");
        assert!(debug.contains("root-1"), "{debug}");
        assert!(debug.contains("root_debug_hides_pin"), "{debug}");
    });
}
