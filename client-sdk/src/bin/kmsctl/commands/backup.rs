//! `kmsctl backup`: streaming encryption for pipelines, and the header tools that work on any
//! encrypted file.

use std::io::{self, Write};
use std::path::Path;

use client_sdk::stream::{self, DecryptingReader, EncryptingWriter, KeySlot, KmsSlot};
use serde::Serialize;

use super::file::read_header;
use super::file_key::{NewFileKey, Seal, Unlock};
use super::{Kms, print};
use crate::cli::{
    BackupCommand, BackupDecryptArgs, BackupEncryptArgs, BackupInputArgs, BackupVerifyArgs, Format,
};
use crate::messages::{self, CliError};
use crate::output;
use crate::progress::Progress;
use crate::stream_io::{self, CopyError, Input, Output};

mod inspect;

pub async fn run(kms: &Kms, format: Format, command: BackupCommand) -> Result<(), CliError> {
    match command {
        BackupCommand::Encrypt(args) => encrypt(kms, args).await,
        BackupCommand::Decrypt(args) => decrypt(kms, args).await,
        BackupCommand::Verify(args) => verify(kms, format, args).await,
        BackupCommand::Inspect(args) => inspect(format, args),
        BackupCommand::Rewrap { file } => rewrap(kms, format, &file).await,
    }
}

async fn encrypt(kms: &Kms, args: BackupEncryptArgs) -> Result<(), CliError> {
    let seal = Seal::from_args(&args.seal);
    // Opened first, so that a terminal on stdout is rejected before kmsd makes a data key.
    let mut output = Output::create(args.output.as_deref(), Some("ciphertext"))?;
    let new = seal.new_file_key(kms).await?;
    let input = Input::open(None)?;

    let progress = Progress::new(input.len, "encrypting stdin".to_owned());
    let mut reader = progress.wrap_read(input.reader);
    match seal_stream(&mut reader, &mut output, &seal, new) {
        Ok(()) => {}
        Err(CopyError::Read(source)) => {
            return Err(CliError::ReadInput {
                input: input.name,
                source,
            });
        }
        Err(CopyError::Write(err)) => return Err(output.write_error(err)),
    }
    drop(progress);
    output.commit()
}

/// Encrypts everything `reader` returns into `output`. Errors of the writer come back as
/// `io::Error`s that wrap the format error, for [`Output::write_error`] to name.
fn seal_stream(
    reader: &mut impl io::Read,
    output: &mut Output,
    seal: &Seal,
    new: NewFileKey,
) -> Result<(), CopyError> {
    let writer = EncryptingWriter::new(output, &new.key, &seal.context, new.slots, seal.options);
    let mut writer = writer.map_err(|err| CopyError::Write(err.into()))?;
    stream_io::copy(reader, &mut writer)?;
    writer
        .finish()
        .map_err(|err| CopyError::Write(err.into()))?;
    Ok(())
}

async fn decrypt(kms: &Kms, args: BackupDecryptArgs) -> Result<(), CliError> {
    let unlock = Unlock::from_args(&args.key)?;
    let mut output = Output::create(args.output.as_deref(), None)?;
    match open_and_copy(kms, &unlock, args.input.as_deref(), &mut output).await {
        Ok(_) => output.commit(),
        Err(CliError::WriteOutput(err)) => Err(output.write_error(err)),
        Err(err) => Err(err),
    }
}

async fn verify(kms: &Kms, format: Format, args: BackupVerifyArgs) -> Result<(), CliError> {
    let unlock = Unlock::from_args(&args.key)?;
    let mut sink = io::sink();
    let verified = open_and_copy(kms, &unlock, args.input.as_deref(), &mut sink).await?;
    print(format, &verified, |verified| {
        output::line(&format!(
            "verified {}: {} bytes of plaintext in {} segments, every tag checked",
            verified.input, verified.plaintext_len, verified.segments
        ))
    })
}

/// Output of `backup verify`.
#[derive(Serialize)]
struct Verified {
    input: String,
    plaintext_len: u64,
    segments: u64,
}

/// Reads the header, unwraps the file key, and decrypts the whole input into `writer`.
///
/// A failed write comes back as [`CliError::WriteOutput`], for the caller to name its output.
async fn open_and_copy(
    kms: &Kms,
    unlock: &Unlock,
    path: Option<&Path>,
    writer: &mut impl Write,
) -> Result<Verified, CliError> {
    let mut input = Input::open(path)?;
    let header = stream::read_header(&mut input.reader).map_err(|err| match err {
        stream::Error::Io(source) => CliError::ReadInput {
            input: input.name.clone(),
            source,
        },
        other => other.into(),
    })?;
    let (key, context) = unlock.file_key(kms, &header, &input.name).await?;
    let segment_size = u64::from(header.segment_size());

    let label = match path {
        Some(path) => format!("decrypting {}", path.display()),
        None => "decrypting stdin".to_owned(),
    };
    let progress = Progress::new(input.len, label);
    progress.inc(header.encoded_len() as u64);
    let reader = progress.wrap_read(&mut input.reader);
    let mut reader = DecryptingReader::new(reader, header, &key, &context)?;
    let plaintext_len = match stream_io::copy(&mut reader, writer) {
        Ok(len) => len,
        Err(CopyError::Read(err)) => return Err(input.read_error(err)),
        Err(CopyError::Write(err)) => return Err(CliError::WriteOutput(err)),
    };
    Ok(Verified {
        input: input.name,
        plaintext_len,
        segments: plaintext_len.div_ceil(segment_size).max(1),
    })
}

fn inspect(format: Format, args: BackupInputArgs) -> Result<(), CliError> {
    let described = match &args.input {
        Some(path) => inspect::describe_file(path)?,
        None => inspect::describe_stdin()?,
    };
    print(format, &described, inspect::print_text)
}

async fn rewrap(kms: &Kms, format: Format, path: &Path) -> Result<(), CliError> {
    let input = messages::input_name(Some(path));
    let header = read_header(path)?;
    let first = header.kms_slot().ok_or_else(|| CliError::NoKmsSlot {
        input: input.clone(),
    })?;
    let client = kms.client()?;

    // Each kmsd slot is rewrapped on its own. Other slots stay as they are.
    let mut slots = Vec::with_capacity(header.slots().len());
    let mut latest = None;
    for slot in header.slots() {
        let KeySlot::Kms(old) = slot else {
            slots.push(slot.clone());
            continue;
        };
        let rewrapped = client.rewrap(old.blob(), header.context()).await?;
        let new = KmsSlot::from_ciphertext(&rewrapped)?;
        latest.get_or_insert_with(|| new.clone());
        slots.push(KeySlot::Kms(new));
    }
    // `first` exists, so the loop set `latest`.
    let latest = latest.unwrap_or_else(|| first.clone());
    let changed = latest.key_version() != first.key_version();
    if changed {
        stream::rewrap_file(path, slots)?;
    }

    let summary = Rewrapped {
        file: path,
        key_id: latest.key_id(),
        previous_version: first.key_version(),
        key_version: latest.key_version(),
        changed,
    };
    print(format, &summary, |summary| {
        let text = if summary.changed {
            format!(
                "rewrapped {}: key {} version {} -> {}",
                summary.file.display(),
                summary.key_id,
                summary.previous_version,
                summary.key_version
            )
        } else {
            format!(
                "{} is already under the latest version {} of key {}; left unchanged",
                summary.file.display(),
                summary.key_version,
                summary.key_id
            )
        };
        output::line(&text)
    })
}

/// Output of `backup rewrap`.
#[derive(Serialize)]
struct Rewrapped<'a> {
    file: &'a Path,
    key_id: &'a str,
    previous_version: u32,
    key_version: u32,
    /// False when the slot was under the latest version already, so the file was not written.
    changed: bool,
}
