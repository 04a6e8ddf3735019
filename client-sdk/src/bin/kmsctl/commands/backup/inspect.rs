//! `kmsctl backup inspect`: the header of an encrypted file, read with no key.

use std::io;
use std::path::Path;

use client_sdk::Context;
use client_sdk::stream::{self, Header, KeySlot};
use serde::Serialize;

use crate::messages::{self, CliError};
use crate::output;

/// Header description that `backup inspect` prints. Nothing here is secret, and nothing is
/// authenticated until the file is decrypted or verified.
#[derive(Serialize)]
pub struct Described {
    input: String,
    version: u8,
    algorithm: String,
    algorithm_id: u8,
    segment_size: u32,
    header_len: usize,
    slot_area_len: u32,
    slot_generation: u64,
    context: Context,
    slots: Vec<SlotInfo>,
    /// Ciphertext length, `null` for stdin because the lengths need the file's size.
    encrypted_len: Option<u64>,
    segments: Option<u64>,
    plaintext_len: Option<u64>,
}

/// One key slot, without its wrapped key.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum SlotInfo {
    Kms { key_id: String, key_version: u32 },
    Recovery { recipient: String },
    Unknown { slot_type: u8 },
}

/// Describes the encrypted file at `path`, with the lengths its size implies.
pub fn describe_file(path: &Path) -> Result<Described, CliError> {
    let info = stream::inspect_file(path).map_err(|err| match err {
        stream::Error::File { source, .. } => CliError::ReadInput {
            input: messages::input_name(Some(path)),
            source,
        },
        other => other.into(),
    })?;
    let mut described = describe(messages::input_name(Some(path)), &info.header);
    described.encrypted_len = Some(info.encrypted_len);
    described.segments = info.segments;
    described.plaintext_len = info.plaintext_len;
    Ok(described)
}

/// Describes the header at the start of stdin. The rest of stdin is not read.
pub fn describe_stdin() -> Result<Described, CliError> {
    let header = stream::read_header(&mut io::stdin().lock()).map_err(|err| match err {
        stream::Error::Io(source) => CliError::ReadInput {
            input: "stdin".to_owned(),
            source,
        },
        other => other.into(),
    })?;
    Ok(describe("stdin".to_owned(), &header))
}

fn describe(input: String, header: &Header) -> Described {
    Described {
        input,
        version: header.version(),
        algorithm: header.algorithm().to_string(),
        algorithm_id: header.algorithm().id(),
        segment_size: header.segment_size(),
        header_len: header.encoded_len(),
        slot_area_len: header.slot_area_len(),
        slot_generation: header.slot_generation(),
        context: header.context().clone(),
        slots: header.slots().iter().map(slot_info).collect(),
        encrypted_len: None,
        segments: None,
        plaintext_len: None,
    }
}

fn slot_info(slot: &KeySlot) -> SlotInfo {
    match slot {
        KeySlot::Kms(kms) => SlotInfo::Kms {
            key_id: kms.key_id().to_owned(),
            key_version: kms.key_version(),
        },
        KeySlot::Recovery(recovery) => SlotInfo::Recovery {
            recipient: recovery.recipient().to_owned(),
        },
        other => SlotInfo::Unknown {
            slot_type: other.slot_type(),
        },
    }
}

/// Prints the description as aligned rows, one per field and one per slot.
pub fn print_text(described: &Described) -> Result<(), CliError> {
    let bytes = |len: u64| format!("{len} bytes");
    let or_unknown = |value: Option<String>| value.unwrap_or_else(|| "unknown (stdin)".to_owned());
    let context = if described.context.is_empty() {
        "-".to_owned()
    } else {
        let pairs: Vec<String> = described
            .context
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        pairs.join(", ")
    };
    let mut rows = vec![
        ("Input", described.input.clone()),
        ("Format version", described.version.to_string()),
        (
            "Algorithm",
            format!("{} (id {})", described.algorithm, described.algorithm_id),
        ),
        ("Segment size", bytes(described.segment_size.into())),
        ("Header length", bytes(described.header_len as u64)),
        ("Context", context),
        (
            "Encrypted length",
            or_unknown(described.encrypted_len.map(bytes)),
        ),
        (
            "Segments",
            or_unknown(described.segments.map(|n| n.to_string())),
        ),
        (
            "Plaintext length",
            or_unknown(described.plaintext_len.map(bytes)),
        ),
        ("Slot generation", described.slot_generation.to_string()),
    ];
    for slot in &described.slots {
        let text = match slot {
            SlotInfo::Kms {
                key_id,
                key_version,
            } => format!("kms, key {key_id} version {key_version}"),
            SlotInfo::Recovery { recipient } => format!("recovery, recipient {recipient}"),
            SlotInfo::Unknown { slot_type } => format!("unknown type {slot_type}"),
        };
        rows.push(("Key slot", text));
    }
    let borrowed: Vec<(&str, &str)> = rows
        .iter()
        .map(|(label, value)| (*label, value.as_str()))
        .collect();
    output::fields(&borrowed)
}
