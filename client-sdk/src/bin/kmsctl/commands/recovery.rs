//! `kmsctl recovery keygen`: offline recovery keys for files and backups.

use std::fs::{self, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::SystemTime;

use client_sdk::secrecy::ExposeSecret;
use client_sdk::stream::RecoveryIdentity;
use serde::Serialize;
use zeroize::Zeroizing;

use super::print;
use crate::cli::{Format, RecoveryCommand};
use crate::messages::CliError;
use crate::output;

pub fn run(format: Format, command: RecoveryCommand) -> Result<(), CliError> {
    match command {
        RecoveryCommand::Keygen { output } => keygen(format, output.as_deref()),
    }
}

/// Output of `recovery keygen`: the public key and the path of the identity file.
#[derive(Serialize)]
struct Generated<'a> {
    recipient: &'a str,
    identity_file: Option<&'a Path>,
}

fn keygen(format: Format, path: Option<&Path>) -> Result<(), CliError> {
    // Checked before the key exists, so that a mistake costs nothing.
    if path.is_none() && io::stdout().is_terminal() {
        return Err(CliError::StdoutIsTerminal {
            what: "a secret identity",
        });
    }
    let identity = RecoveryIdentity::generate();
    let recipient = identity.recipient().to_string();
    let text = identity_file_text(&identity, &recipient);

    let Some(path) = path else {
        // The identity is the output, so the public key goes to stderr, as age-keygen does.
        output::raw(text.as_bytes())?;
        eprintln!("Public key: {recipient}");
        return Ok(());
    };
    write_new_file(path, text.as_bytes())?;
    let generated = Generated {
        recipient: &recipient,
        identity_file: Some(path),
    };
    print(format, &generated, |generated| {
        output::line(generated.recipient)
    })
}

/// Builds the identity file in the layout that `age-keygen` writes, which `age -d -i` reads.
fn identity_file_text(identity: &RecoveryIdentity, recipient: &str) -> Zeroizing<String> {
    let created = humantime::format_rfc3339_seconds(SystemTime::now());
    let secret = identity.to_secret_string();
    let mut text = Zeroizing::new(String::with_capacity(256));
    text.push_str("# created: ");
    text.push_str(&created.to_string());
    text.push_str("\n# public key: ");
    text.push_str(recipient);
    text.push('\n');
    text.push_str(secret.expose_secret());
    text.push('\n');
    text
}

/// Creates `path` with mode 0600 and writes `bytes`. An existing file is never replaced, and
/// a failed write removes the new file.
fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => CliError::OutputExists {
                path: path.to_owned(),
            },
            _ => CliError::WriteFile {
                path: path.to_owned(),
                source,
            },
        })?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(source) = written {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(CliError::WriteFile {
            path: path.to_owned(),
            source,
        });
    }
    Ok(())
}
