//! A private SoftHSM2 token for one test, and the `kmsd` settings that use it.
//!
//! SoftHSM2 reads the path of its config file from `SOFTHSM2_CONF` when a process initialises
//! the module. Each [`SoftHsm`] writes a config of its own in a temporary folder, with a token
//! folder beside it, and initialises one token there with `softhsm2-util`. Every process that
//! should see the token (`kmsd`, `kmsd migrate-seal`, `pkcs11-tool`) gets `SOFTHSM2_CONF` in
//! its environment, so tests with their own fixture run in parallel without sharing a token.
//!
//! The module is `/usr/lib/softhsm/libsofthsm2.so`, or the path in `SOFTHSM2_MODULE`. The
//! tools come from the `softhsm2` and `opensc` packages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

use crate::{Options, ROOT_OF_TRUST_ENV, binary};

/// The module path when `SOFTHSM2_MODULE` is not set, as Debian and Ubuntu install it.
const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The user PIN of every test token. Synthetic, and used on the command lines of the test
/// tools, which is acceptable only for a throwaway token.
pub const USER_PIN: &str = "e2e-user-pin-6148";

/// The security officer PIN of every test token.
const SO_PIN: &str = "e2e-so-pin-2093";

/// A SoftHSM2 token in a temporary folder of its own, removed on drop.
#[derive(Debug)]
pub struct SoftHsm {
    dir: TempDir,
    conf: PathBuf,
    module: PathBuf,
    label: String,
}

impl SoftHsm {
    /// Writes a SoftHSM2 config with its own token folder and initialises a token labelled
    /// `label` (at most 32 characters) with [`USER_PIN`].
    pub fn new(label: &str) -> SoftHsm {
        let dir = tempfile::Builder::new()
            .prefix("kms-e2e-softhsm-")
            .tempdir()
            .expect("temp dir for the token");
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).expect("create the token folder");
        let conf = dir.path().join("softhsm2.conf");
        let text = format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        );
        std::fs::write(&conf, text).expect("write softhsm2.conf");
        let module = std::env::var_os("SOFTHSM2_MODULE")
            .map_or_else(|| PathBuf::from(DEFAULT_MODULE), PathBuf::from);
        assert!(
            module.exists(),
            "the SoftHSM2 module {} is missing: install the softhsm2 package or set \
             SOFTHSM2_MODULE",
            module.display()
        );

        let hsm = SoftHsm {
            dir,
            conf,
            module,
            label: label.to_owned(),
        };
        let output = hsm
            .softhsm2_util()
            .args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", SO_PIN, "--pin", USER_PIN])
            .output()
            .expect("run softhsm2-util; install the softhsm2 package");
        assert!(
            output.status.success(),
            "softhsm2-util --init-token failed for token {label:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        hsm
    }

    /// Returns the path of the PKCS#11 module.
    pub fn module(&self) -> &Path {
        &self.module
    }

    /// Returns the token label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Returns the path of the SoftHSM2 config file, the value of `SOFTHSM2_CONF`.
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// Returns the token's serial number, as `softhsm2-util --show-slots` prints it.
    pub fn serial(&self) -> String {
        let output = self
            .softhsm2_util()
            .arg("--show-slots")
            .output()
            .expect("run softhsm2-util --show-slots");
        let text = String::from_utf8_lossy(&output.stdout);
        // Each token lists its serial number a few lines before its label.
        let mut serial = None;
        for line in text.lines().map(str::trim) {
            if let Some(value) = line.strip_prefix("Serial number:") {
                serial = Some(value.trim().to_owned());
            }
            if line.strip_prefix("Label:").map(str::trim) == Some(self.label.as_str()) {
                return serial.expect("a serial number before the label");
            }
        }
        panic!("softhsm2-util lists no token {:?}:\n{text}", self.label);
    }

    /// Returns the environment of a process that uses the token: `SOFTHSM2_CONF`, and `pin` in
    /// `KMS_PKCS11_PIN`.
    pub fn env_with_pin(&self, pin: &str) -> Vec<(String, String)> {
        vec![
            ("SOFTHSM2_CONF".to_owned(), self.conf.display().to_string()),
            ("KMS_PKCS11_PIN".to_owned(), pin.to_owned()),
        ]
    }

    /// Returns the `kmsd` flags that name the module and the token by label, without `--seal`,
    /// as `kmsd migrate-seal` takes them.
    pub fn token_args(&self) -> Vec<String> {
        vec![
            "--pkcs11-module".to_owned(),
            self.module.display().to_string(),
            "--pkcs11-token-label".to_owned(),
            self.label.clone(),
        ]
    }

    /// Returns daemon options for HSM mode with this token and the right PIN.
    pub fn options(&self) -> Options {
        self.options_with_pin(USER_PIN)
    }

    /// Returns daemon options for HSM mode with this token and `pin` in `KMS_PKCS11_PIN`.
    pub fn options_with_pin(&self, pin: &str) -> Options {
        let mut args = vec!["--seal".to_owned(), "pkcs11".to_owned()];
        args.extend(self.token_args());
        Options {
            args,
            env: self.env_with_pin(pin),
            ..Options::default()
        }
    }

    /// Writes `pin` as the first line of a file in the token's folder, readable by its owner
    /// only, and returns the path for `--pkcs11-pin-file`.
    pub fn pin_file(&self, pin: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.dir.path().join("user-pin");
        std::fs::write(&path, format!("{pin}\n")).expect("write the PIN file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400))
            .expect("make the PIN file private");
        path
    }

    /// Builds a `kmsd migrate-seal --to <to>` command for the key store in `data_dir` and this
    /// token, with the right PIN. The caller writes the shares to its stdin.
    pub fn migrate_seal(&self, data_dir: &Path, to: &str) -> Command {
        let mut command = Command::new(binary("kmsd"));
        command
            .args(["migrate-seal", "--to", to])
            .arg("--data-dir")
            .arg(data_dir)
            .args(self.token_args())
            .env_remove("KMS_CONFIG");
        for name in ROOT_OF_TRUST_ENV {
            command.env_remove(name);
        }
        command.envs(self.env_with_pin(USER_PIN));
        command
    }

    /// Returns the labels of the secret key objects on the token, sorted, as `pkcs11-tool`
    /// lists them after logging in.
    pub fn secret_key_labels(&self) -> Vec<String> {
        let output = self.pkcs11_tool(&["--list-objects", "--type", "secrkey"]);
        assert!(
            output.status.success(),
            "pkcs11-tool --list-objects failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout);
        let mut labels: Vec<String> = text
            .lines()
            .filter_map(|line| line.trim().strip_prefix("label:"))
            .map(|label| label.trim().to_owned())
            .collect();
        labels.sort_unstable();
        labels
    }

    /// Destroys the secret key object `label` with `pkcs11-tool`. Run it while no `kmsd` uses
    /// the token, because SoftHSM2 processes do not always see objects that another process
    /// removed.
    pub fn delete_secret_key(&self, label: &str) {
        let output = self.pkcs11_tool(&["--delete-object", "--type", "secrkey", "--label", label]);
        assert!(
            output.status.success(),
            "pkcs11-tool --delete-object failed for {label:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Runs `pkcs11-tool` logged in to the token with `args`.
    fn pkcs11_tool(&self, args: &[&str]) -> Output {
        Command::new("pkcs11-tool")
            .arg("--module")
            .arg(&self.module)
            .args(["--token-label", &self.label, "--login", "--pin", USER_PIN])
            .args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .stdin(Stdio::null())
            .output()
            .expect("run pkcs11-tool; install the opensc package")
    }

    fn softhsm2_util(&self) -> Command {
        let mut command = Command::new("softhsm2-util");
        command
            .env("SOFTHSM2_CONF", &self.conf)
            .stdin(Stdio::null());
        command
    }
}
