//! Reading plaintexts, ciphertexts and shares from files, stdin and the terminal.

use std::fs::File;
use std::io::{self, BufRead, IsTerminal, Read};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use client_sdk::secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::messages::{self, CliError};

/// Largest plaintext that the encrypt endpoint accepts.
pub const MAX_PLAINTEXT: usize = 4096;

/// Largest field value that `kmsctl field` reads. Field values are single database values;
/// larger data belongs in `kmsctl file encrypt`.
pub const MAX_FIELD_VALUE: usize = 1024 * 1024;

/// Longest encrypted field value read: the largest plaintext in base64, with room for the
/// header and a wrapped data key.
const MAX_FIELD_TEXT: usize = MAX_FIELD_VALUE / 3 * 4 + 64 * 1024;

/// Capacity of the buffer for a share line read from stdin. Shares are a few hundred bytes, and
/// a buffer allocated once at this size does not reallocate and leave a copy behind.
const SHARE_BUFFER: usize = 4096;

/// Reads at most [`MAX_PLAINTEXT`] raw bytes from `path`, or from stdin when `path` is `None`.
pub fn read_plaintext(path: Option<&Path>) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let input = messages::input_name(path);
    let read_error = |source| CliError::ReadInput {
        input: input.clone(),
        source,
    };
    let reader: Box<dyn Read> = match path {
        Some(path) => Box::new(File::open(path).map_err(read_error)?),
        None => Box::new(io::stdin().lock()),
    };
    read_bounded(reader, MAX_PLAINTEXT)
        .map_err(read_error)?
        .ok_or(CliError::InputTooLong {
            input,
            max: MAX_PLAINTEXT,
        })
}

/// Returns the value given as an argument, or reads at most [`MAX_FIELD_VALUE`] raw bytes from
/// stdin when the argument is `None` or `-`.
pub fn read_value(argument: Option<&str>) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let (input, value) = match argument {
        Some(value) if value != "-" => {
            let value = Zeroizing::new(value.as_bytes().to_vec());
            ("the VALUE argument", Some(value))
        }
        _ => {
            let value = read_bounded(io::stdin().lock(), MAX_FIELD_VALUE).map_err(|source| {
                CliError::ReadInput {
                    input: "stdin".into(),
                    source,
                }
            })?;
            ("stdin", value)
        }
    };
    value
        .filter(|value| value.len() <= MAX_FIELD_VALUE)
        .ok_or(CliError::InputTooLong {
            input: input.to_owned(),
            max: MAX_FIELD_VALUE,
        })
}

/// Returns the encrypted field value given as an argument, or read from stdin when the
/// argument is `None` or `-`, without surrounding whitespace.
pub fn read_field_value(argument: Option<&str>) -> Result<String, CliError> {
    let (input, text) = match argument {
        Some(value) if value != "-" => ("the VALUE argument".to_owned(), value.to_owned()),
        _ => {
            let read_error = |source| CliError::ReadInput {
                input: "stdin".into(),
                source,
            };
            let bytes = read_bounded(io::stdin().lock(), MAX_FIELD_TEXT)
                .map_err(read_error)?
                .ok_or(CliError::InputTooLong {
                    input: "stdin".into(),
                    max: MAX_FIELD_TEXT,
                })?;
            // Invalid UTF-8 cannot be a value. The decoder then names what is wrong with it.
            (
                "stdin".to_owned(),
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        }
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(CliError::EmptyInput { input });
    }
    Ok(text.to_owned())
}

/// Decodes standard base64 given in an option, such as a data key's ciphertext.
pub fn decode_base64(input: &str, text: &str) -> Result<Vec<u8>, CliError> {
    decode_ciphertext(input, text)
}

/// Reads up to `max` bytes into a buffer that never reallocates. Returns `None` when there is
/// more.
fn read_bounded(reader: impl Read, max: usize) -> io::Result<Option<Zeroizing<Vec<u8>>>> {
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut buffer = Zeroizing::new(Vec::with_capacity(max + 1));
    reader.take(limit).read_to_end(&mut buffer)?;
    Ok((buffer.len() <= max).then_some(buffer))
}

/// Decodes a base64 ciphertext given as an argument, or read from stdin when it is `-`.
/// Surrounding whitespace, such as the newline that `echo` adds, is ignored.
pub fn read_ciphertext(argument: &str) -> Result<Vec<u8>, CliError> {
    let (input, text) = if argument == "-" {
        let mut text = String::new();
        io::stdin()
            .read_to_string(&mut text)
            .map_err(|source| CliError::ReadInput {
                input: "stdin".into(),
                source,
            })?;
        ("stdin".to_owned(), text)
    } else {
        ("the CIPHERTEXT argument".to_owned(), argument.to_owned())
    };
    decode_ciphertext(&input, &text)
}

fn decode_ciphertext(input: &str, text: &str) -> Result<Vec<u8>, CliError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(CliError::EmptyInput {
            input: input.to_owned(),
        });
    }
    STANDARD
        .decode(text)
        .map_err(|source| CliError::InvalidBase64 {
            input: input.to_owned(),
            source,
        })
}

/// Returns the share from the argument, or reads it without echo from the terminal, or reads
/// one line from stdin when stdin is not a terminal.
pub fn read_share(argument: Option<String>) -> Result<SecretString, CliError> {
    let share = match argument {
        Some(share) => Zeroizing::new(share),
        None if io::stdin().is_terminal() => {
            Zeroizing::new(rpassword::prompt_password(messages::SHARE_PROMPT).map_err(
                |source| CliError::ReadInput {
                    input: "the terminal".into(),
                    source,
                },
            )?)
        }
        None => {
            let mut line = Zeroizing::new(String::with_capacity(SHARE_BUFFER));
            io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|source| CliError::ReadInput {
                    input: "stdin".into(),
                    source,
                })?;
            line
        }
    };
    let trimmed = share.trim();
    if trimmed.is_empty() {
        return Err(CliError::EmptyShare);
    }
    Ok(SecretString::from(trimmed))
}

/// Reads `count` shares: prompted without echo on a terminal, otherwise one per non-empty
/// line of stdin until `count` lines or the end of input.
pub fn read_shares(count: usize) -> Result<Vec<SecretString>, CliError> {
    let mut shares = Vec::with_capacity(count);
    if io::stdin().is_terminal() {
        for n in 1..=count {
            let prompt = format!("Share {n} of {count}: ");
            let line = Zeroizing::new(rpassword::prompt_password(prompt).map_err(|source| {
                CliError::ReadInput {
                    input: "the terminal".into(),
                    source,
                }
            })?);
            shares.push(SecretString::from(line.trim()));
        }
    } else {
        for line in io::stdin().lock().lines() {
            let line = Zeroizing::new(line.map_err(|source| CliError::ReadInput {
                input: "stdin".into(),
                source,
            })?);
            if !line.trim().is_empty() {
                shares.push(SecretString::from(line.trim()));
            }
            if shares.len() == count {
                break;
            }
        }
    }
    if shares.iter().any(|s| s.expose_secret().is_empty()) || shares.is_empty() {
        return Err(CliError::EmptyShare);
    }
    Ok(shares)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_bounded_accepts_exact_limit() {
        let data = vec![7u8; MAX_PLAINTEXT];
        let read = read_bounded(&data[..], MAX_PLAINTEXT).unwrap().unwrap();
        assert_eq!(read.len(), MAX_PLAINTEXT);
    }

    #[test]
    fn read_bounded_rejects_one_byte_over() {
        let data = vec![7u8; MAX_PLAINTEXT + 1];
        assert!(read_bounded(&data[..], MAX_PLAINTEXT).unwrap().is_none());
    }

    #[test]
    fn read_bounded_accepts_empty_input() {
        let read = read_bounded(&b""[..], MAX_PLAINTEXT).unwrap().unwrap();
        assert!(read.is_empty());
    }

    #[test]
    fn ciphertext_ignores_surrounding_whitespace() {
        let bytes = decode_ciphertext("stdin", "  AAECAw==\n").unwrap();
        assert_eq!(bytes, vec![0, 1, 2, 3]);
    }

    #[test]
    fn ciphertext_rejects_invalid_base64() {
        let err = decode_ciphertext("the CIPHERTEXT argument", "not base64!").unwrap_err();
        assert!(matches!(err, CliError::InvalidBase64 { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the CIPHERTEXT argument is not valid base64"
        );
    }

    #[test]
    fn ciphertext_rejects_empty_input() {
        let err = decode_ciphertext("stdin", " \n").unwrap_err();
        assert!(matches!(err, CliError::EmptyInput { .. }), "{err:?}");
    }

    #[test]
    fn blank_share_argument_is_rejected() {
        let err = read_share(Some(" \n".into())).unwrap_err();
        assert!(matches!(err, CliError::EmptyShare), "{err:?}");
    }

    #[test]
    fn share_argument_is_trimmed() {
        use client_sdk::secrecy::ExposeSecret;
        let share = read_share(Some(" kms-share-v1-abc\n".into())).unwrap();
        assert_eq!(share.expose_secret(), "kms-share-v1-abc");
    }
}
