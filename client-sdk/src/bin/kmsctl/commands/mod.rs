//! One module per command group. Each runs a parsed command and prints its result.

mod backup;
mod datakey;
mod field;
mod file;
mod file_key;
mod folder;
mod key;
mod operator;
mod payload;
mod recovery;
mod token;

use std::path::PathBuf;

use clap::CommandFactory as _;
use clap::error::ErrorKind;
use client_sdk::secrecy::SecretString;
use client_sdk::{Client, ClientBuilder, Context};

use crate::args::{ContextPair, collect_context};
use crate::cli::{Cli, Command, ContextArgs, Format};
use crate::messages::{self, CliError};

/// Runs the command, with a client built from the global flags when the command needs kmsd.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let Cli {
        addr,
        token,
        cacert,
        format,
        command,
    } = cli;
    let kms = Kms {
        addr,
        token,
        cacert,
    };
    match command {
        Command::Operator(command) => operator::run(&kms.client()?, format, command).await,
        Command::Key(command) => key::run(&kms.client()?, format, command).await,
        Command::Datakey(command) => datakey::run(&kms.client()?, format, command).await,
        Command::Encrypt(args) => payload::encrypt(&kms.client()?, format, args).await,
        Command::Decrypt(args) => payload::decrypt(&kms.client()?, format, args).await,
        Command::Rewrap(args) => payload::rewrap(&kms.client()?, format, args).await,
        Command::Token(command) => token::run(&kms.client()?, format, command).await,
        Command::File(command) => file::run(&kms, format, command).await,
        Command::Folder(command) => folder::run(&kms, format, command).await,
        Command::Backup(command) => backup::run(&kms, format, command).await,
        Command::Recovery(command) => recovery::run(format, command),
        Command::Field(command) => field::run(&kms, format, command).await,
    }
}

/// Connection settings from the global flags.
///
/// The client is built only by commands that reach kmsd, so that a decrypt with a recovery
/// identity needs no KMS_ADDR, KMS_TOKEN or KMS_CACERT and works with no kmsd at all.
pub struct Kms {
    addr: String,
    token: Option<String>,
    cacert: Option<PathBuf>,
}

impl Kms {
    /// Builds the client.
    pub fn client(&self) -> Result<Client, CliError> {
        let mut builder = ClientBuilder::new(self.addr.as_str());
        if let Some(path) = &self.cacert {
            builder = builder.ca_cert(path);
        }
        // An empty KMS_TOKEN counts as unset, so that the error reports that no token is set.
        if let Some(token) = self.token.as_deref().filter(|token| !token.is_empty()) {
            builder = builder.token(SecretString::from(token));
        }
        Ok(builder.build()?)
    }
}

/// Reports a usage error (exit status 2) in clap's format, after checks that clap cannot make.
fn usage_error(message: String) -> ! {
    Cli::command()
        .error(ErrorKind::ValueValidation, message)
        .exit()
}

/// Collects `--context` pairs. A key given twice is a usage error (exit status 2).
fn context(args: &ContextArgs) -> Context {
    context_from_pairs(&args.pairs)
}

fn context_from_pairs(pairs: &[ContextPair]) -> Context {
    collect_context(pairs).unwrap_or_else(|key| usage_error(messages::context_duplicate_key(&key)))
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
