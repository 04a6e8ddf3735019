//! `kmsctl operator`: init, unseal, seal, status, root tokens and the PKCS#11 root key.

use client_sdk::secrecy::ExposeSecret;
use client_sdk::{Client, InitOutput, Status};
use serde::Serialize;

use super::print;
use crate::cli::{Format, OperatorCommand, RootKeyCommand};
use crate::messages::{self, CliError};
use crate::{input, output};

pub async fn run(
    client: &Client,
    format: Format,
    command: OperatorCommand,
) -> Result<(), CliError> {
    match command {
        OperatorCommand::Init {
            shares,
            threshold,
            allow_single_share,
        } => {
            let init = client.init(shares, threshold, allow_single_share).await?;
            // A PKCS#11 root unseals itself, so its shares are recovery shares.
            let recovery = client.status().await.ok().and_then(|s| s.root_of_trust)
                == Some("pkcs11".to_owned());
            print_init(format, &init, recovery)
        }
        OperatorCommand::Unseal { reset: true, .. } => {
            let status = client.unseal_reset().await?;
            print(format, &status, print_progress)
        }
        OperatorCommand::Unseal {
            reset: false,
            share,
        } => {
            // A PKCS#11 root unseals with the token, so no share is read.
            if share.is_none() && client.status().await?.root_of_trust.as_deref() == Some("pkcs11")
            {
                let status = client.unseal_with_token().await?;
                return print(format, &status, print_progress);
            }
            let share = input::read_share(share)?;
            let status = client.unseal(&share).await?;
            print(format, &status, print_progress)
        }
        OperatorCommand::Seal => {
            let status = client.seal().await?;
            print(format, &status, |_| output::line("sealed"))
        }
        OperatorCommand::GenerateRoot => {
            let threshold = client.status().await?.threshold.unwrap_or(1);
            let shares = input::read_shares(usize::from(threshold))?;
            let root = client.generate_root(&shares).await?;
            eprintln!("{}", messages::ROOT_TOKEN_WARNING);
            if format == Format::Json {
                return output::json(&serde_json::json!({
                    "root_token": root.root_token.expose_secret(),
                    "root_token_accessor": root.root_token_accessor,
                }));
            }
            output::fields(&[
                ("Root token", root.root_token.expose_secret()),
                ("Root token accessor", root.root_token_accessor.as_str()),
            ])
        }
        OperatorCommand::Status => {
            let status = client.status().await?;
            print(format, &status, print_status)
        }
        OperatorCommand::RootKey(RootKeyCommand::Rotate { label }) => {
            let rotation = client.rotate_root_key(label.as_deref()).await?;
            if format == Format::Json {
                return output::json(&serde_json::json!({
                    "key_label": rotation.key_label,
                    "previous_key_label": rotation.previous_key_label,
                }));
            }
            output::fields(&[
                ("Root key object", rotation.key_label.as_str()),
                ("Previous object", rotation.previous_key_label.as_str()),
            ])
        }
        OperatorCommand::RootKey(RootKeyCommand::Remove { label }) => {
            client.remove_root_key(&label).await?;
            output::line(&format!("removed root key object {label}"))
        }
        OperatorCommand::HsmReconnect => {
            client.reconnect_hsm().await?;
            output::line("reconnected to the PKCS#11 token")
        }
    }
}

/// Init output as JSON, borrowed so that the secrets are not copied.
#[derive(Serialize)]
struct InitJson<'a> {
    shares: Vec<&'a str>,
    root_token: &'a str,
    root_token_accessor: &'a str,
}

/// Warning of an init with a PKCS#11 root, whose shares only authorize root operations.
const RECOVERY_INIT_WARNING: &str = "\
WARNING: the recovery shares and the root token are shown only this once.
The PKCS#11 token unseals the daemon, so the shares do not; they mint a new root token
(`kmsctl operator generate-root`) and move the root key out of the token
(`kmsd migrate-seal --to shamir`). Store each share apart from the others, and keep the root
token offline.";

fn print_init(format: Format, init: &InitOutput, recovery: bool) -> Result<(), CliError> {
    let (warning, label) = if recovery {
        (RECOVERY_INIT_WARNING, "Recovery share")
    } else {
        (messages::INIT_WARNING, "Unseal share")
    };
    eprintln!("{warning}");
    let shares: Vec<&str> = init
        .shares
        .iter()
        .map(|share| share.expose_secret())
        .collect();
    if format == Format::Json {
        return output::json(&InitJson {
            shares,
            root_token: init.root_token.expose_secret(),
            root_token_accessor: &init.root_token_accessor,
        });
    }

    let labels: Vec<String> = (1..=shares.len()).map(|n| format!("{label} {n}")).collect();
    let mut rows: Vec<(&str, &str)> = labels
        .iter()
        .map(String::as_str)
        .zip(shares.iter().copied())
        .collect();
    rows.push(("Root token", init.root_token.expose_secret()));
    rows.push(("Root token accessor", &init.root_token_accessor));
    output::fields(&rows)
}

/// Prints `unsealed`, or `k of T` while shares are missing.
fn print_progress(status: &Status) -> Result<(), CliError> {
    if !status.sealed {
        return output::line("unsealed");
    }
    let threshold = output::or_dash(status.threshold);
    output::line(&format!("{} of {threshold}", status.progress))
}

fn print_status(status: &Status) -> Result<(), CliError> {
    output::fields(&[
        ("Initialized", &status.initialized.to_string()),
        ("Sealed", &status.sealed.to_string()),
        ("Threshold", &output::or_dash(status.threshold)),
        ("Shares", &output::or_dash(status.shares)),
        ("Unseal progress", &status.progress.to_string()),
        (
            "Root of trust",
            &output::or_dash(status.root_of_trust.as_deref()),
        ),
        ("Version", &status.version),
    ])
}
