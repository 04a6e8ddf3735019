//! `kmsctl encrypt`, `decrypt` and `rewrap`: small payloads encrypted by the daemon.

use client_sdk::secrecy::ExposeSecret;
use client_sdk::{Ciphertext, Client};
use serde::Serialize;

use super::{context, datakey};
use crate::cli::{BlobArgs, EncryptArgs, Format};
use crate::messages::CliError;
use crate::{input, output};

pub async fn encrypt(client: &Client, format: Format, args: EncryptArgs) -> Result<(), CliError> {
    let context = context(&args.context);
    let plaintext = input::read_plaintext(args.input.as_deref())?;
    let encrypted = client.encrypt(&args.name, &plaintext, &context).await?;
    print_ciphertext(format, &encrypted)
}

/// Writes the raw plaintext in text mode, so that `kmsctl decrypt > file` restores the file.
pub async fn decrypt(client: &Client, format: Format, args: BlobArgs) -> Result<(), CliError> {
    let context = context(&args.context);
    let ciphertext = input::read_ciphertext(&args.ciphertext)?;
    let decrypted = client.decrypt(&ciphertext, &context).await?;
    match format {
        Format::Text => output::raw(decrypted.plaintext.expose_secret()),
        Format::Json => datakey::print_decrypted(format, &decrypted),
    }
}

pub async fn rewrap(client: &Client, format: Format, args: BlobArgs) -> Result<(), CliError> {
    let context = context(&args.context);
    let ciphertext = input::read_ciphertext(&args.ciphertext)?;
    let rewrapped = client.rewrap(&ciphertext, &context).await?;
    print_ciphertext(format, &rewrapped)
}

#[derive(Serialize)]
struct CiphertextJson<'a> {
    key_name: &'a str,
    key_id: &'a str,
    key_version: u32,
    ciphertext: &'a str,
}

/// Prints the ciphertext as base64: alone in text, with its key in JSON.
fn print_ciphertext(format: Format, encrypted: &Ciphertext) -> Result<(), CliError> {
    let ciphertext = output::base64(&encrypted.ciphertext);
    match format {
        Format::Text => output::line(&ciphertext),
        Format::Json => output::json(&CiphertextJson {
            key_name: &encrypted.key_name,
            key_id: &encrypted.key_id,
            key_version: encrypted.key_version,
            ciphertext: &ciphertext,
        }),
    }
}
