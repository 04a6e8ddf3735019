//! `kmsctl`, the command-line client for kmsd.
//!
//! Exit status: 0 on success, 1 when an operation fails (stderr has `error: ...` and, when
//! there is a fix to suggest, `hint: ...`), 2 on a usage error.

mod args;
mod cli;
mod commands;
mod input;
mod messages;
mod output;
mod progress;
mod stream_io;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::Cli;
use crate::messages::CliError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
        .and_then(|runtime| runtime.block_on(commands::run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            messages::report(&err);
            ExitCode::FAILURE
        }
    }
}
