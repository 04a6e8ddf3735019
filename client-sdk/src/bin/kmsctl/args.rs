//! Parsers for argument values. Their errors become clap usage errors (exit status 2).

use std::time::Duration;

use client_sdk::stream::{self, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, RecoveryRecipient};
use client_sdk::{Context, DataKeySize, Operation, PolicyRule};

use crate::messages;

/// Longest time to live that the daemon accepts: 365 days.
const MAX_TTL: Duration = Duration::from_secs(31_536_000);

/// One `--context KEY=VALUE` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextPair {
    pub key: String,
    pub value: String,
}

/// Splits `KEY=VALUE` at the first `=`, so the value may contain `=`.
pub fn parse_context_pair(text: &str) -> Result<ContextPair, String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(messages::context_without_equals)?;
    if key.is_empty() {
        return Err(messages::context_empty_key());
    }
    Ok(ContextPair {
        key: key.to_owned(),
        value: value.to_owned(),
    })
}

/// Collects the pairs into a context. A key given twice is returned as the error, because silently
/// keeping one value would make a later decrypt fail with a context that the user did not type.
pub fn collect_context(pairs: &[ContextPair]) -> Result<Context, String> {
    let mut context = Context::new();
    for pair in pairs {
        if context
            .insert(pair.key.clone(), pair.value.clone())
            .is_some()
        {
            return Err(pair.key.clone());
        }
    }
    Ok(context)
}

/// Parses `PATTERNS:OPERATIONS`, both comma-separated, such as `patient-*,billing:decrypt`.
pub fn parse_policy(text: &str) -> Result<PolicyRule, String> {
    let (patterns, operations) = text
        .split_once(':')
        .ok_or_else(messages::policy_without_colon)?;
    let keys: Vec<String> = patterns
        .split(',')
        .map(str::trim)
        .map(str::to_owned)
        .collect();
    if keys.iter().any(String::is_empty) {
        return Err(messages::policy_empty_pattern());
    }
    let operations = operations
        .split(',')
        .map(str::trim)
        .map(|name| {
            name.parse::<Operation>()
                .map_err(|_| messages::policy_bad_operation(name))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PolicyRule { keys, operations })
}

/// Parses a time to live such as `12h` or `90d`, between 1 s and 365 days.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text).map_err(|err| messages::ttl_invalid(&err))?;
    if ttl < Duration::from_secs(1) {
        return Err(messages::ttl_too_short());
    }
    if ttl > MAX_TTL {
        return Err(messages::ttl_too_long());
    }
    Ok(ttl)
}

/// Parses a data-key length: 16, 24 or 32.
pub fn parse_data_key_size(text: &str) -> Result<DataKeySize, String> {
    text.parse::<u16>()
        .ok()
        .and_then(|bytes| DataKeySize::try_from(bytes).ok())
        .ok_or_else(messages::data_key_size_invalid)
}

/// Parses a segment size in bytes, with an optional `KiB` or `MiB` suffix, within the limits
/// of the file format.
pub fn parse_segment_size(text: &str) -> Result<u32, String> {
    let (digits, unit) = if let Some(number) = text.strip_suffix("MiB") {
        (number, 1024 * 1024)
    } else if let Some(number) = text.strip_suffix("KiB") {
        (number, 1024)
    } else {
        (text, 1)
    };
    let size = digits
        .parse::<u32>()
        .ok()
        .and_then(|number| number.checked_mul(unit))
        .ok_or_else(messages::segment_size_invalid)?;
    if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&size) {
        return Err(messages::segment_size_out_of_range(size));
    }
    Ok(size)
}

/// Parses an `age1...` recovery recipient. The error never shows a secret identity back.
pub fn parse_recipient(text: &str) -> Result<RecoveryRecipient, String> {
    stream::parse_recipient(text).map_err(|err| messages::recipient_invalid(&err))
}

#[cfg(test)]
mod tests;
