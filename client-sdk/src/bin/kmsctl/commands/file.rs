//! `kmsctl file`: encrypt and decrypt whole files on every core.

use std::fs::File;
use std::path::Path;

use client_sdk::stream::{self, Header};
use serde::Serialize;

use super::Kms;
use super::file_key::{Seal, Unlock};
use crate::cli::{FileCommand, FileDecryptArgs, FileEncryptArgs, Format};
use crate::messages::{self, CliError};
use crate::output;
use crate::progress::Progress;

pub async fn run(kms: &Kms, format: Format, command: FileCommand) -> Result<(), CliError> {
    match command {
        FileCommand::Encrypt(args) => encrypt(kms, format, args).await,
        FileCommand::Decrypt(args) => decrypt(kms, format, args).await,
    }
}

async fn encrypt(kms: &Kms, format: Format, args: FileEncryptArgs) -> Result<(), CliError> {
    let seal = Seal::from_args(&args.seal);
    // Checked before a data key is requested from kmsd, which it records in its audit log.
    let input_len = file_len(&args.input)?;
    let new = seal.new_file_key(kms).await?;

    let label = format!("encrypting {}", args.input.display());
    let progress = Progress::new(Some(input_len), label);
    let header = progress.track_reads(|| {
        stream::encrypt_file(
            &args.input,
            &args.output,
            &new.key,
            &seal.context,
            new.slots,
            seal.options,
        )
    })?;
    drop(progress);
    print_summary(format, &args.input, &args.output, &header, input_len)
}

async fn decrypt(kms: &Kms, format: Format, args: FileDecryptArgs) -> Result<(), CliError> {
    let unlock = Unlock::from_args(&args.key)?;
    let input = messages::input_name(Some(&args.input));
    let encrypted_len = file_len(&args.input)?;
    let header = read_header(&args.input)?;
    let (key, context) = unlock.file_key(kms, &header, &input).await?;

    let label = format!("decrypting {}", args.input.display());
    let progress = Progress::new(Some(encrypted_len), label);
    let header =
        progress.track_reads(|| stream::decrypt_file(&args.input, &args.output, &key, &context))?;
    drop(progress);
    let plaintext_len = file_len(&args.output)?;
    print_summary(format, &args.input, &args.output, &header, plaintext_len)
}

/// Reads the header of the encrypted file at `path`, with no key.
pub fn read_header(path: &Path) -> Result<Header, CliError> {
    let file = File::open(path).map_err(|source| CliError::ReadInput {
        input: messages::input_name(Some(path)),
        source,
    })?;
    Ok(stream::read_header(&mut &file)?)
}

/// Returns the length of the regular file at `path`. Pipes and devices are rejected, because
/// the work is split by position across threads.
fn file_len(path: &Path) -> Result<u64, CliError> {
    let input = messages::input_name(Some(path));
    let metadata = std::fs::metadata(path).map_err(|source| CliError::ReadInput {
        input: input.clone(),
        source,
    })?;
    if !metadata.is_file() {
        return Err(CliError::NotAFile { input });
    }
    Ok(metadata.len())
}

/// Summary of a file operation, as `--format json` prints it.
#[derive(Serialize)]
struct FileSummary<'a> {
    input: &'a Path,
    output: &'a Path,
    plaintext_len: u64,
    key_id: Option<&'a str>,
    key_version: Option<u32>,
    segment_size: u32,
}

/// Prints nothing in text mode, as `cp` does. JSON gives scripts the key that was used.
fn print_summary(
    format: Format,
    input: &Path,
    output: &Path,
    header: &Header,
    plaintext_len: u64,
) -> Result<(), CliError> {
    if format == Format::Text {
        return Ok(());
    }
    let slot = header.kms_slot();
    output::json(&FileSummary {
        input,
        output,
        plaintext_len,
        key_id: slot.map(|slot| slot.key_id()),
        key_version: slot.map(|slot| slot.key_version()),
        segment_size: header.segment_size(),
    })
}
