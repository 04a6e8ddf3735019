//! `kmsctl datakey`: generate and decrypt data keys.

use client_sdk::secrecy::ExposeSecret;
use client_sdk::{Client, DataKey, Plaintext};
use serde::Serialize;

use super::context;
use crate::cli::{DatakeyCommand, Format};
use crate::messages::CliError;
use crate::{input, output};

pub async fn run(client: &Client, format: Format, command: DatakeyCommand) -> Result<(), CliError> {
    match command {
        DatakeyCommand::Generate {
            name,
            bytes,
            context: pairs,
            no_plaintext,
        } => {
            let context = context(&pairs);
            let key = client
                .generate_data_key(&name, bytes, &context, !no_plaintext)
                .await?;
            print_generated(format, &key)
        }
        DatakeyCommand::Decrypt {
            context: pairs,
            ciphertext,
        } => {
            let context = context(&pairs);
            let ciphertext = input::read_ciphertext(&ciphertext)?;
            let key = client.decrypt(&ciphertext, &context).await?;
            print_decrypted(format, &key)
        }
    }
}

/// Generated data key as JSON, without the plaintext when it was not requested.
#[derive(Serialize)]
struct GeneratedJson<'a> {
    key_name: &'a str,
    key_id: &'a str,
    key_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext: Option<&'a str>,
    ciphertext: &'a str,
}

fn print_generated(format: Format, key: &DataKey) -> Result<(), CliError> {
    let plaintext = key
        .plaintext
        .as_ref()
        .map(|p| output::secret_base64(p.expose_secret()));
    let ciphertext = output::base64(&key.ciphertext);
    if format == Format::Json {
        return output::json(&GeneratedJson {
            key_name: &key.key_name,
            key_id: &key.key_id,
            key_version: key.key_version,
            plaintext: plaintext.as_deref().map(String::as_str),
            ciphertext: &ciphertext,
        });
    }

    let version = key.key_version.to_string();
    let mut rows = vec![("Key id", key.key_id.as_str()), ("Key version", &version)];
    if let Some(plaintext) = &plaintext {
        rows.push(("Plaintext", plaintext));
    }
    rows.push(("Ciphertext", &ciphertext));
    output::fields(&rows)
}

/// A decrypted data key as JSON.
#[derive(Serialize)]
struct DecryptedJson<'a> {
    key_name: &'a str,
    key_id: &'a str,
    key_version: u32,
    plaintext: &'a str,
}

/// Prints the data key as base64: alone in text, with its key in JSON.
pub fn print_decrypted(format: Format, key: &Plaintext) -> Result<(), CliError> {
    let plaintext = output::secret_base64(key.plaintext.expose_secret());
    match format {
        Format::Text => output::line(&plaintext),
        Format::Json => output::json(&DecryptedJson {
            key_name: &key.key_name,
            key_id: &key.key_id,
            key_version: key.key_version,
            plaintext: &plaintext,
        }),
    }
}
