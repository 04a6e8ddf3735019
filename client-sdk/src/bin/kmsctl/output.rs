//! Writing results to stdout as text or JSON.

use std::io::{self, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::messages::CliError;

/// Writes `value` as pretty JSON and a newline.
pub fn json(value: &impl Serialize) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)
        .map_err(|err| CliError::WriteOutput(err.into()))?;
    writeln!(out).map_err(CliError::WriteOutput)
}

/// Writes one line.
pub fn line(text: &str) -> Result<(), CliError> {
    writeln!(io::stdout().lock(), "{text}").map_err(CliError::WriteOutput)
}

/// Writes raw bytes, such as a decrypted plaintext.
pub fn raw(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(CliError::WriteOutput)
}

/// Writes `label  value` rows with the values aligned in one column.
pub fn fields(rows: &[(&str, &str)]) -> Result<(), CliError> {
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    let mut out = io::stdout().lock();
    for (label, value) in rows {
        writeln!(out, "{label:<width$}  {value}").map_err(CliError::WriteOutput)?;
    }
    Ok(())
}

/// Writes a table with a header row, each column as wide as its widest cell.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> Result<(), CliError> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = io::stdout().lock();
    let header_cells = header.map(str::to_owned);
    for row in std::iter::once(&header_cells).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        writeln!(out, "{}", cells.join("  ").trim_end()).map_err(CliError::WriteOutput)?;
    }
    Ok(())
}

/// Encodes public bytes, such as a ciphertext, as base64.
pub fn base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Encodes secret bytes as base64 into a buffer that is zeroized on drop.
pub fn secret_base64(bytes: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(STANDARD.encode(bytes))
}

/// Shows an optional value, with `-` for none.
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| value.to_string())
}
