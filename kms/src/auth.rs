//! Tokens and policies.
//!
//! A token is `kmst_` followed by 43 base64url characters (32 random bytes). The store keeps
//! only its SHA-256 hash; the accessor, a separate random id, names the token in the audit log
//! and in lookup and revoke calls.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::Error;
use crate::keyring::random_fill;
use crate::store::models::TokenRow;

/// Prefix of every token, so secret scanners can find leaked ones.
pub const TOKEN_PREFIX: &str = "kmst_";
/// Maximum number of tokens kept in the in-memory lookup cache.
const TOKEN_CACHE_CAPACITY: usize = 10_000;

/// An operation that a policy rule can allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Generate,
    Encrypt,
    Decrypt,
    Rewrap,
    Describe,
    Manage,
}

impl Operation {
    /// The spelling in policies and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Generate => "generate",
            Operation::Encrypt => "encrypt",
            Operation::Decrypt => "decrypt",
            Operation::Rewrap => "rewrap",
            Operation::Describe => "describe",
            Operation::Manage => "manage",
        }
    }
}

/// One policy rule: the operations it allows on keys whose names match a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// Key names, each optionally ending in `*` to match a prefix.
    pub keys: Vec<String>,
    /// Allowed operations.
    pub operations: Vec<Operation>,
}

impl PolicyRule {
    fn allows(&self, operation: Operation, key: &str) -> bool {
        self.operations.contains(&operation) && self.keys.iter().any(|p| pattern_matches(p, key))
    }
}

/// Returns whether a key-name pattern matches `name`: exact, or a prefix ending in `*`.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Checks a policy from a request: at least one rule, each with keys and operations, and
/// patterns that are key names with at most a trailing `*`.
pub fn validate_policy(rules: &[PolicyRule]) -> Result<(), Error> {
    if rules.is_empty() {
        return Err(Error::InvalidRequest(
            "policy: give at least one rule".to_owned(),
        ));
    }
    for (i, rule) in rules.iter().enumerate() {
        if rule.keys.is_empty() || rule.operations.is_empty() {
            return Err(Error::InvalidRequest(format!(
                "policy[{i}]: a rule needs at least one key pattern and one operation"
            )));
        }
        for pattern in &rule.keys {
            let stem = pattern.strip_suffix('*').unwrap_or(pattern);
            let valid_stem = pattern == "*" || crate::api::valid_key_name_prefix(stem);
            if !valid_stem || stem.contains('*') {
                return Err(Error::InvalidRequest(format!(
                    "policy[{i}].keys: {pattern:?} is not a key name optionally ending in '*'"
                )));
            }
        }
    }
    Ok(())
}

/// The authenticated identity of a request.
#[derive(Clone)]
pub struct Caller {
    pub accessor: String,
    pub root: bool,
    pub policy: Arc<Vec<PolicyRule>>,
    pub expires_at: Option<i64>,
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("accessor", &self.accessor)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Caller {
    /// Returns whether the caller may perform `operation` on key `key`.
    pub fn allows(&self, operation: Operation, key: &str) -> bool {
        self.root || self.policy.iter().any(|rule| rule.allows(operation, key))
    }

    /// Fails with 403 unless the caller may perform `operation` on key `key`.
    pub fn authorize(&self, operation: Operation, key: &str) -> Result<(), Error> {
        if self.allows(operation, key) {
            Ok(())
        } else {
            Err(Error::PermissionDenied {
                operation: operation.as_str(),
                key: key.to_owned(),
            })
        }
    }

    /// Fails with 403 unless the caller holds the root token.
    pub fn require_root(&self, what: &'static str) -> Result<(), Error> {
        if self.root {
            Ok(())
        } else {
            Err(Error::RootRequired(what))
        }
    }
}

/// A freshly minted token: the secret, its hash and its accessor.
pub struct NewToken {
    pub secret: SecretString,
    pub hash: [u8; 32],
    pub accessor: String,
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("accessor", &self.accessor)
            .finish_non_exhaustive()
    }
}

/// Mints a random token and accessor.
pub fn mint_token() -> Result<NewToken, Error> {
    let mut raw = zeroize::Zeroizing::new([0u8; 32]);
    random_fill(raw.as_mut())?;
    let secret = SecretString::from(format!(
        "{TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(raw.as_ref())
    ));
    let hash = hash_token(secret.expose_secret());
    let mut id = [0u8; 12];
    random_fill(&mut id)?;
    let accessor = id.iter().map(|b| format!("{b:02x}")).collect();
    Ok(NewToken {
        secret,
        hash,
        accessor,
    })
}

/// SHA-256 of a token. Tokens carry 256 random bits, so an unsalted hash is enough.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Turns a stored row into a caller if the token is live at `now`.
pub fn caller_from_row(row: &TokenRow, hash: &[u8; 32], now: i64) -> Result<Caller, Error> {
    if !bool::from(row.token_hash.as_slice().ct_eq(hash)) {
        return Err(Error::Unauthenticated("unknown token: check KMS_TOKEN"));
    }
    if row.revoked_at.is_some() {
        return Err(Error::Unauthenticated(
            "the token was revoked: ask an admin for a new one",
        ));
    }
    if row.expires_at.is_some_and(|t| t <= now) {
        return Err(Error::Unauthenticated(
            "the token expired: ask an admin for a new one",
        ));
    }
    let policy: Vec<PolicyRule> = serde_json::from_str(&row.policy).map_err(|_| {
        Error::StoreInvalid(format!(
            "stored policy of token {} is not valid JSON",
            row.accessor
        ))
    })?;
    Ok(Caller {
        accessor: row.accessor.clone(),
        root: row.is_root,
        policy: Arc::new(policy),
        expires_at: row.expires_at,
    })
}

/// Callers already authenticated, keyed by token hash, so the hot path skips the database.
///
/// Revocation on this node removes the entry at once.
// TODO: share revocations between nodes once several kmsd processes share one database.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<CacheEntries>,
}

#[derive(Default)]
struct CacheEntries {
    callers: HashMap<[u8; 32], Caller>,
    /// Counts revocations, so that a lookup that read its row before a revocation does not
    /// cache the revoked token after the revocation cleared it.
    revocations: u64,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache").finish_non_exhaustive()
    }
}

impl TokenCache {
    /// Returns the cached caller for `hash` if it has not expired at `now`.
    pub fn get(&self, hash: &[u8; 32], now: i64) -> Option<Caller> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let caller = entries.callers.get(hash)?.clone();
        if caller.expires_at.is_some_and(|t| t <= now) {
            entries.callers.remove(hash);
            return None;
        }
        Some(caller)
    }

    /// Returns the revocation count, to pass to [`TokenCache::insert`] after reading the
    /// token's row.
    pub fn revocations(&self) -> u64 {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .revocations
    }

    /// Caches a caller whose row was read after [`TokenCache::revocations`] returned
    /// `revocations`. Nothing is cached when a revocation happened since, because the row may
    /// be stale.
    pub fn insert(&self, hash: [u8; 32], caller: Caller, revocations: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.revocations != revocations {
            return;
        }
        if entries.callers.len() >= TOKEN_CACHE_CAPACITY {
            entries.callers.clear();
        }
        entries.callers.insert(hash, caller);
    }

    /// Drops the entry of the token with `accessor`, and keeps lookups in flight from caching
    /// it again.
    pub fn remove_accessor(&self, accessor: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.revocations += 1;
        entries
            .callers
            .retain(|_, caller| caller.accessor != accessor);
    }

    /// Drops every entry.
    pub fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.revocations += 1;
        entries.callers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(rules: Vec<PolicyRule>) -> Caller {
        Caller {
            accessor: "a".into(),
            root: false,
            policy: Arc::new(rules),
            expires_at: None,
        }
    }

    #[test]
    fn patterns_match_exact_and_prefix() {
        assert!(pattern_matches("patient-*", "patient-records"));
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("billing", "billing"));
        assert!(!pattern_matches("billing", "billing-2"));
        assert!(!pattern_matches("patient-*", "patients"));
    }

    #[test]
    fn policy_allows_only_listed_operations_and_keys() {
        let c = caller(vec![PolicyRule {
            keys: vec!["patient-*".into()],
            operations: vec![Operation::Generate, Operation::Decrypt],
        }]);
        assert!(c.allows(Operation::Generate, "patient-records"));
        assert!(c.allows(Operation::Decrypt, "patient-records"));
        assert!(!c.allows(Operation::Encrypt, "patient-records"));
        assert!(!c.allows(Operation::Manage, "patient-records"));
        assert!(!c.allows(Operation::Generate, "billing"));
    }

    #[test]
    fn validate_policy_rejects_bad_patterns() {
        let rule = |k: &str| PolicyRule {
            keys: vec![k.into()],
            operations: vec![Operation::Decrypt],
        };
        assert!(validate_policy(&[rule("a*")]).is_ok());
        assert!(validate_policy(&[rule("*")]).is_ok());
        assert!(validate_policy(&[rule("a*b")]).is_err());
        assert!(validate_policy(&[rule("a b")]).is_err());
        assert!(validate_policy(&[]).is_err());
    }

    #[test]
    fn minted_tokens_hash_to_their_stored_hash() {
        let token = mint_token().unwrap();
        assert!(token.secret.expose_secret().starts_with(TOKEN_PREFIX));
        assert_eq!(token.secret.expose_secret().len(), TOKEN_PREFIX.len() + 43);
        assert_eq!(hash_token(token.secret.expose_secret()), token.hash);
        assert_eq!(token.accessor.len(), 24);
        assert!(!format!("{token:?}").contains(token.secret.expose_secret()));
    }

    #[test]
    fn cache_skips_rows_read_before_a_revocation() {
        let cache = TokenCache::default();
        let hash = [7u8; 32];
        let before = cache.revocations();

        // A lookup read the row, then the token was revoked before the lookup cached it.
        cache.remove_accessor("a");
        cache.insert(hash, caller(Vec::new()), before);
        assert!(cache.get(&hash, 0).is_none());

        cache.insert(hash, caller(Vec::new()), cache.revocations());
        assert!(cache.get(&hash, 0).is_some());
    }

    #[test]
    fn empty_key_pattern_is_rejected() {
        let rule = PolicyRule {
            keys: vec![String::new()],
            operations: vec![Operation::Generate],
        };
        assert!(validate_policy(&[rule]).is_err());
    }
}
