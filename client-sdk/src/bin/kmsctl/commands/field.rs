//! `kmsctl field`: single values in the field format, for scripts.
//!
//! Values are self-contained: each carries the ciphertext of its data key, so decrypting one
//! needs only kmsd and the binding (field name, record id and context).

use client_sdk::field::{self, FieldAad, FieldKey, Form, Mode};
use client_sdk::{Client, DataKeySize};
use serde::Serialize;

use super::{Kms, context, print, usage_error};
use crate::cli::{FieldBindingArgs, FieldCommand, FieldDecryptArgs, FieldEncryptArgs, Format};
use crate::input;
use crate::messages::{self, CliError};
use crate::output;

pub async fn run(kms: &Kms, format: Format, command: FieldCommand) -> Result<(), CliError> {
    match command {
        FieldCommand::Encrypt(args) => encrypt(kms, format, args).await,
        FieldCommand::Decrypt(args) => decrypt(kms, format, args).await,
    }
}

/// Key that encrypted or decrypted a value, as `--format json` shows it.
#[derive(Serialize)]
struct KeyInfo {
    key_name: String,
    key_id: String,
    key_version: u32,
}

/// Output of `field encrypt --format json`.
#[derive(Serialize)]
struct Encrypted<'a> {
    value: &'a str,
    mode: String,
    #[serde(flatten)]
    key: KeyInfo,
}

async fn encrypt(kms: &Kms, format: Format, args: FieldEncryptArgs) -> Result<(), CliError> {
    if args.deterministic && args.data_key.is_none() {
        usage_error(messages::deterministic_needs_data_key());
    }
    let context = context(&args.context);
    let stored = args
        .data_key
        .as_deref()
        .map(|text| input::decode_base64("the --data-key value", text))
        .transpose()?;
    let plaintext = input::read_value(args.value.as_deref())?;

    let client = kms.client()?;
    let (key, info) = match (stored, &args.key) {
        (Some(blob), _) => stored_key(&client, &blob, &context).await?,
        (None, Some(name)) => new_key(&client, name, &context).await?,
        // clap requires --key unless --data-key is given.
        (None, None) => usage_error(messages::field_key_missing()),
    };
    let mode = if args.deterministic {
        Mode::Deterministic
    } else {
        Mode::Randomized
    };
    let value = key.encrypt(
        mode,
        Form::SelfContained,
        &plaintext,
        &binding(&args.binding),
    )?;

    let encrypted = Encrypted {
        value: &value,
        mode: mode.to_string(),
        key: info,
    };
    print(format, &encrypted, |encrypted| {
        output::line(encrypted.value)
    })
}

/// Output of `field decrypt --format json`, with the plaintext in base64.
#[derive(Serialize)]
struct Decrypted<'a> {
    plaintext: &'a str,
    #[serde(flatten)]
    key: KeyInfo,
}

async fn decrypt(kms: &Kms, format: Format, args: FieldDecryptArgs) -> Result<(), CliError> {
    let context = context(&args.context);
    let stored = args
        .data_key
        .as_deref()
        .map(|text| input::decode_base64("the --data-key value", text))
        .transpose()?;
    let value = input::read_field_value(args.value.as_deref())?;

    let info = field::inspect(&value)?;
    let blob = match (info.wrapped_key(), stored) {
        (Some(wrapped), _) => wrapped.to_vec(),
        (None, Some(stored)) => stored,
        (None, None) => {
            return Err(CliError::CompactValue {
                key_ref: info
                    .key_ref()
                    .map(|key_ref| key_ref.to_string())
                    .unwrap_or_default(),
            });
        }
    };
    let client = kms.client()?;
    let (key, key_info) = stored_key(&client, &blob, &context).await?;
    let plaintext = key.decrypt(&value, &binding(&args.binding))?;

    match format {
        Format::Text => output::raw(&plaintext),
        Format::Json => output::json(&Decrypted {
            plaintext: &output::secret_base64(&plaintext),
            key: key_info,
        }),
    }
}

/// Generates a new data key under the named key.
async fn new_key(
    client: &Client,
    name: &str,
    context: &client_sdk::Context,
) -> Result<(FieldKey, KeyInfo), CliError> {
    let data_key = client
        .generate_data_key(name, DataKeySize::Bytes32, context, true)
        .await?;
    let key = FieldKey::from_data_key(&data_key)?;
    let info = KeyInfo {
        key_name: data_key.key_name,
        key_id: data_key.key_id,
        key_version: data_key.key_version,
    };
    Ok((key, info))
}

/// Has kmsd decrypt a stored data key's ciphertext.
async fn stored_key(
    client: &Client,
    blob: &[u8],
    context: &client_sdk::Context,
) -> Result<(FieldKey, KeyInfo), CliError> {
    let decrypted = client.decrypt(blob, context).await?;
    let key = FieldKey::new(&decrypted.plaintext, blob)?;
    let info = KeyInfo {
        key_name: decrypted.key_name,
        key_id: decrypted.key_id,
        key_version: decrypted.key_version,
    };
    Ok((key, info))
}

fn binding(args: &FieldBindingArgs) -> FieldAad<'_> {
    let aad = FieldAad::new(&args.field);
    match &args.record_id {
        Some(record_id) => aad.with_record_id(record_id.as_str()),
        None => aad,
    }
}
