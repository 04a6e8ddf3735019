//! `kmsctl folder`: encrypt a folder tree with its names hidden, restore and verify it.

use client_sdk::folder::{self, FolderOptions, FolderReport};
use serde::Serialize;

use super::file_key::read_identities;
use super::{Kms, context, usage_error};
use crate::args::parse_recipient;
use crate::cli::{FolderCommand, Format};
use crate::messages::CliError;
use crate::output;
use crate::progress::Progress;

pub async fn run(kms: &Kms, format: Format, command: FolderCommand) -> Result<(), CliError> {
    let report = match command {
        FolderCommand::Encrypt(args) => {
            let mut options = FolderOptions::new(args.key.clone(), context(&args.context));
            if let Some(text) = &args.recovery_recipient {
                let recipient =
                    parse_recipient(text).unwrap_or_else(|message| usage_error(message));
                options = options.with_recovery(recipient);
            }
            let client = kms.client()?;
            let progress = Progress::new(None, format!("encrypting {}", args.source.display()));
            folder::encrypt_folder(
                &client,
                &args.source,
                &args.destination,
                &options,
                &|bytes| progress.inc(bytes),
            )
            .await?
        }
        FolderCommand::Decrypt(args) => {
            let progress = Progress::new(None, format!("restoring {}", args.source.display()));
            let track = |bytes| progress.inc(bytes);
            match &args.identity {
                Some(path) => {
                    let identities = read_identities(path)?;
                    folder::decrypt_folder_with_identity(
                        &identities,
                        &args.source,
                        &args.destination,
                        &track,
                    )
                    .await?
                }
                None => {
                    let client = kms.client()?;
                    folder::decrypt_folder(&client, &args.source, &args.destination, &track).await?
                }
            }
        }
        FolderCommand::Verify(args) => {
            let client = kms.client()?;
            let progress = Progress::new(None, format!("verifying {}", args.source.display()));
            folder::verify_folder(&client, &args.source, &|bytes| progress.inc(bytes)).await?
        }
    };
    print_report(format, &report)
}

/// A folder run as `--format json` prints it.
#[derive(Serialize)]
struct ReportJson {
    files: u64,
    encrypted: u64,
    unchanged: u64,
    removed: u64,
    bytes: u64,
    directories: u64,
    symlinks: u64,
}

fn print_report(format: Format, report: &FolderReport) -> Result<(), CliError> {
    if format == Format::Json {
        return output::json(&ReportJson {
            files: report.files,
            encrypted: report.encrypted,
            unchanged: report.unchanged,
            removed: report.removed,
            bytes: report.bytes,
            directories: report.directories,
            symlinks: report.symlinks,
        });
    }
    let rows = [
        ("Files", report.files.to_string()),
        ("Encrypted", report.encrypted.to_string()),
        ("Unchanged", report.unchanged.to_string()),
        ("Removed", report.removed.to_string()),
        ("Bytes", report.bytes.to_string()),
        ("Folders", report.directories.to_string()),
        ("Symlinks", report.symlinks.to_string()),
    ];
    let rows: Vec<(&str, &str)> = rows.iter().map(|(k, v)| (*k, v.as_str())).collect();
    output::fields(&rows)
}
