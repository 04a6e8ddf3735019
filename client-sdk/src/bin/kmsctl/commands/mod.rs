//! One module per command group; each runs a parsed command and prints its result.

mod datakey;
mod key;
mod operator;
mod payload;
mod token;

use clap::CommandFactory as _;
use clap::error::ErrorKind;
use client_sdk::secrecy::SecretString;
use client_sdk::{Client, ClientBuilder, Context};

use crate::args::collect_context;
use crate::cli::{Cli, Command, ContextArgs, Format};
use crate::messages::{self, CliError};

/// Builds the client from the global flags and runs the command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let client = build_client(&cli)?;
    let format = cli.format;
    match cli.command {
        Command::Operator(command) => operator::run(&client, format, command).await,
        Command::Key(command) => key::run(&client, format, command).await,
        Command::Datakey(command) => datakey::run(&client, format, command).await,
        Command::Encrypt(args) => payload::encrypt(&client, format, args).await,
        Command::Decrypt(args) => payload::decrypt(&client, format, args).await,
        Command::Rewrap(args) => payload::rewrap(&client, format, args).await,
        Command::Token(command) => token::run(&client, format, command).await,
    }
}

fn build_client(cli: &Cli) -> Result<Client, CliError> {
    let mut builder = ClientBuilder::new(cli.addr.as_str());
    if let Some(path) = &cli.cacert {
        builder = builder.ca_cert(path);
    }
    // An empty KMS_TOKEN counts as unset, so that the error reports that no token is set.
    if let Some(token) = cli.token.as_deref().filter(|token| !token.is_empty()) {
        builder = builder.token(SecretString::from(token));
    }
    Ok(builder.build()?)
}

/// Collects `--context` pairs; a key given twice is a usage error (exit status 2).
fn context(args: &ContextArgs) -> Context {
    collect_context(&args.pairs).unwrap_or_else(|key| {
        Cli::command()
            .error(
                ErrorKind::ValueValidation,
                messages::context_duplicate_key(&key),
            )
            .exit()
    })
}

/// Prints `value` as JSON, or runs `text` to print it for people.
fn print<T: serde::Serialize>(
    format: Format,
    value: &T,
    text: impl FnOnce(&T) -> Result<(), CliError>,
) -> Result<(), CliError> {
    match format {
        Format::Json => crate::output::json(value),
        Format::Text => text(value),
    }
}
