//! The crate's error type.

/// Errors from roots of trust, root key generation and Shamir splitting and combining.
///
/// Share text errors have their own type, [`crate::share::ShareError`], because they are
/// reported to the admin who typed the share. No message contains key material or share text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The wrapped key did not authenticate: the root key, the associated data or the wrapped
    /// bytes differ from those used to wrap it.
    #[error(
        "unwrapping key material failed: the root key, the associated data or the wrapped bytes \
         do not match; check that the service was unsealed with shares of the right share set \
         and that the stored blob is intact"
    )]
    UnwrapFailed,

    /// AES-GCM rejected the input because the key material or the associated data exceeds its
    /// length limits.
    #[error(
        "wrapping key material failed: {plaintext_len} bytes of key material with \
         {aad_len} bytes of associated data exceed the AES-GCM length limits"
    )]
    WrapFailed {
        /// Length of the key material in bytes.
        plaintext_len: usize,
        /// Length of the associated data in bytes.
        aad_len: usize,
    },

    /// The share count and threshold do not satisfy `1 <= threshold <= shares <= 255`.
    #[error(
        "invalid share count: threshold {threshold} with {shares} shares; choose values with \
         1 <= threshold <= shares <= 255"
    )]
    InvalidShareCount {
        /// Requested number of shares.
        shares: u8,
        /// Requested number of shares needed to rebuild the key.
        threshold: u8,
    },

    /// Combining was requested before the threshold of shares was collected.
    #[error(
        "not enough shares to rebuild the root key: {collected} of {threshold} collected; \
         provide the remaining shares and try again"
    )]
    NotEnoughShares {
        /// Number of distinct shares collected.
        collected: usize,
        /// Number of shares the share set needs.
        threshold: u8,
    },

    /// The operating system's random number generator failed.
    #[error("reading random bytes from the operating system failed")]
    Random(#[from] getrandom::Error),

    /// The secret sharing library rejected a split or a combination.
    ///
    /// The inner type does not implement `std::error::Error`, so it is shown in the message
    /// instead of being returned as the source.
    #[error("shamir secret sharing failed: {0}")]
    Shamir(vsss_rs::Error),

    /// A mechanism name that this version does not support.
    #[error("unknown wrapping mechanism {name:?}; this version supports \"aes-256-gcm\"")]
    UnknownMechanism {
        /// The name that was parsed.
        name: String,
    },

    /// A root of trust kind name that this version does not support.
    #[error("unknown root of trust kind {name:?}; this version supports \"shamir\"")]
    UnknownRootKind {
        /// The name that was parsed.
        name: String,
    },
}
