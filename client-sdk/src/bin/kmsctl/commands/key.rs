//! `kmsctl key`: create, list, show, rotate, disable and enable.

use client_sdk::{Client, Key};
use serde::Serialize;

use super::print;
use crate::cli::{Format, KeyCommand};
use crate::messages::CliError;
use crate::output;

pub async fn run(client: &Client, format: Format, command: KeyCommand) -> Result<(), CliError> {
    let key = match command {
        KeyCommand::List => {
            let keys = client.list_keys().await?;
            return print(format, &KeyList { keys }, |list| print_list(&list.keys));
        }
        KeyCommand::Create(key) => client.create_key(&key.name).await?,
        KeyCommand::Show(key) => client.get_key(&key.name).await?,
        KeyCommand::Rotate(key) => client.rotate_key(&key.name).await?,
        KeyCommand::Disable(key) => client.disable_key(&key.name).await?,
        KeyCommand::Enable(key) => client.enable_key(&key.name).await?,
    };
    print(format, &key, print_key)
}

/// `{"keys": [...]}`, as the API returns the list.
#[derive(Serialize)]
struct KeyList {
    keys: Vec<Key>,
}

fn print_key(key: &Key) -> Result<(), CliError> {
    output::fields(&[
        ("Name", &key.name),
        ("Id", &key.id),
        ("State", key.state.as_str()),
        ("Created", &key.created_at),
        ("Latest version", &key.latest_version.to_string()),
    ])?;
    output::line("")?;
    let rows: Vec<[String; 3]> = key
        .versions
        .iter()
        .map(|v| {
            [
                v.version.to_string(),
                v.state.to_string(),
                v.created_at.clone(),
            ]
        })
        .collect();
    output::table(["VERSION", "STATE", "CREATED"], &rows)
}

fn print_list(keys: &[Key]) -> Result<(), CliError> {
    let rows: Vec<[String; 4]> = keys
        .iter()
        .map(|k| {
            [
                k.name.clone(),
                k.state.to_string(),
                k.latest_version.to_string(),
                k.id.clone(),
            ]
        })
        .collect();
    output::table(["NAME", "STATE", "LATEST", "ID"], &rows)
}
