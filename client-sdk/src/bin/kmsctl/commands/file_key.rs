//! File keys: a new one from kmsd for each encryption, and the key of an existing file from
//! its kmsd slot or from a recovery identity.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use client_sdk::stream::{
    EncryptOptions, FileKey, Header, KeySlot, KmsSlot, RecoveryIdentity, RecoveryRecipient,
    RecoverySlot, parse_identity_file,
};
use client_sdk::{Context, DataKeySize};
use zeroize::Zeroizing;

use super::{Kms, context, context_from_pairs, usage_error};
use crate::args::parse_recipient;
use crate::cli::{KeySourceArgs, SealArgs};
use crate::messages::CliError;

/// Largest identity file read. One identity takes 74 bytes, so this leaves room for many
/// identities and comments.
const MAX_IDENTITY_FILE: usize = 64 * 1024;

/// Sealing settings of a new file, checked before a key is requested from kmsd.
pub struct Seal {
    key_name: String,
    pub context: Context,
    recipients: Vec<RecoveryRecipient>,
    pub options: EncryptOptions,
}

/// A new file key and the slots that wrap it.
pub struct NewFileKey {
    pub key: FileKey,
    pub slots: Vec<KeySlot>,
}

impl Seal {
    /// Checks the arguments. An invalid context or recipient is a usage error (exit status 2).
    pub fn from_args(args: &SealArgs) -> Self {
        let recipients = args
            .recovery_recipients
            .iter()
            .map(|text| parse_recipient(text).unwrap_or_else(|message| usage_error(message)))
            .collect();
        Seal {
            key_name: args.key.clone(),
            context: context(&args.context),
            recipients,
            options: EncryptOptions::new().with_segment_size(args.segment_size),
        }
    }

    /// Generates a data key under the named key and wraps it for each recovery recipient.
    pub async fn new_file_key(&self, kms: &Kms) -> Result<NewFileKey, CliError> {
        let client = kms.client()?;
        let data_key = client
            .generate_data_key(&self.key_name, DataKeySize::Bytes32, &self.context, true)
            .await?;
        let plaintext = data_key
            .plaintext
            .as_ref()
            .ok_or(CliError::MissingPlaintext)?;
        let key = FileKey::try_from(plaintext)?;
        let mut slots = vec![KeySlot::Kms(KmsSlot::from_data_key(&data_key)?)];
        for recipient in &self.recipients {
            slots.push(KeySlot::Recovery(RecoverySlot::wrap(&key, recipient)?));
        }
        Ok(NewFileKey { key, slots })
    }
}

/// Source of the key of an existing file, with the context that the caller expects.
pub struct Unlock {
    identities: Option<Vec<RecoveryIdentity>>,
    expected: Option<Context>,
}

impl Unlock {
    /// Reads the identity file, when one is given, before any input is opened.
    pub fn from_args(args: &KeySourceArgs) -> Result<Self, CliError> {
        let identities = args.identity.as_deref().map(read_identities).transpose()?;
        let pairs = &args.context.pairs;
        let expected = (!pairs.is_empty()).then(|| context_from_pairs(pairs));
        Ok(Unlock {
            identities,
            expected,
        })
    }

    /// Returns the file key of the file with `header`, and the context to decrypt it with.
    ///
    /// With identities the key comes from a recovery slot and kmsd is not contacted;
    /// otherwise kmsd unwraps the kmsd slot. `input` names the file in messages.
    pub async fn file_key(
        &self,
        kms: &Kms,
        header: &Header,
        input: &str,
    ) -> Result<(FileKey, Context), CliError> {
        let context = match &self.expected {
            // Checked here too, so that a wrong context costs no request to kmsd.
            Some(expected) if expected != header.context() => {
                return Err(client_sdk::stream::Error::ContextMismatch.into());
            }
            Some(expected) => expected.clone(),
            None => header.context().clone(),
        };
        let key = match &self.identities {
            Some(identities) => header.unwrap_recovery(identities)?,
            None => unwrap_kms_slot(kms, header, &context, input).await?,
        };
        Ok((key, context))
    }
}

/// Asks kmsd to decrypt the file key from the kmsd slot.
async fn unwrap_kms_slot(
    kms: &Kms,
    header: &Header,
    context: &Context,
    input: &str,
) -> Result<FileKey, CliError> {
    let slot = header.kms_slot().ok_or_else(|| CliError::NoKmsSlot {
        input: input.to_owned(),
    })?;
    let client = kms.client()?;
    let decrypted = client
        .decrypt(slot.blob(), context)
        .await
        .map_err(|err| match err.code() {
            Some("decryption_failed" | "invalid_ciphertext") => CliError::KeySlotRejected {
                input: input.to_owned(),
                source: err,
            },
            _ => CliError::Sdk(err),
        })?;
    Ok(FileKey::try_from(&decrypted.plaintext)?)
}

/// Reads an age identity file into a buffer that is zeroized afterwards.
pub fn read_identities(path: &Path) -> Result<Vec<RecoveryIdentity>, CliError> {
    let read_error = |source| CliError::ReadIdentity {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    // Allocated once at full size, so that no reallocation leaves a copy of the key behind.
    let mut text = Zeroizing::new(String::with_capacity(MAX_IDENTITY_FILE + 1));
    file.take(MAX_IDENTITY_FILE as u64 + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    if text.len() > MAX_IDENTITY_FILE {
        return Err(read_error(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the file is larger than {MAX_IDENTITY_FILE} bytes, which no identity file is"),
        )));
    }
    parse_identity_file(&text).map_err(|source| CliError::IdentityFile {
        path: path.to_owned(),
        source: Box::new(source),
    })
}
