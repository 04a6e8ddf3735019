//! Splitting the root key into shares and combining shares back into it.

use std::collections::BTreeMap;
use std::fmt;

use vsss_rs::{Gf256, IdentifierGf256};
use zeroize::Zeroizing;

use super::{Share, ShareError, ShareSetId};
use crate::random::OsRandom;
use crate::secret::ROOT_KEY_LEN;
use crate::{Error, RootKey};

/// Splits `key` into `shares` shares, any `threshold` of which rebuild it.
///
/// Shares are numbered `1..=shares` and carry `set_id`, so that [`UnsealProgress`] can reject
/// shares of another split. The counts must satisfy `1 <= threshold <= shares <= 255`, or the
/// result is [`Error::InvalidShareCount`]. With a threshold of 1 every share is a copy of the
/// key.
pub fn split(
    key: &RootKey,
    shares: u8,
    threshold: u8,
    set_id: ShareSetId,
) -> Result<Vec<Share>, Error> {
    if threshold == 0 || threshold > shares {
        return Err(Error::InvalidShareCount { shares, threshold });
    }
    // vsss-rs rejects a threshold of 1, where the polynomial is the constant key.
    if threshold == 1 {
        let copies = (1..=shares).map(|index| Share::from_parts(set_id, 1, index, key.expose()));
        return Ok(copies.collect());
    }

    // Each point is the x-coordinate (the share index) followed by one y byte per key byte.
    // The points are zeroized on drop.
    // NOTE: vsss-rs 6.0.1 does not zeroize its polynomial coefficients after the split, so
    // the last coefficients stay in freed heap memory until it is reused.
    let mut rng = OsRandom::default();
    let indexes = (1..=shares).map(|index| IdentifierGf256(Gf256(index)));
    let points = Gf256::split_bytes_with_participant_ids_iter(
        usize::from(threshold),
        usize::from(shares),
        key.expose(),
        &mut rng,
        indexes,
    )
    .map(Zeroizing::new)
    .map_err(Error::Shamir)?;
    rng.finish()?;

    if points.len() != usize::from(shares) {
        return Err(Error::Shamir(vsss_rs::Error::InvalidShare));
    }
    points
        .iter()
        .zip(1..=shares)
        .map(|(point, index)| share_from_point(set_id, threshold, index, point))
        .collect()
}

/// Builds a share from a vsss-rs point, checking that its x-coordinate is `index`.
fn share_from_point(
    set_id: ShareSetId,
    threshold: u8,
    index: u8,
    point: &[u8],
) -> Result<Share, Error> {
    match point.split_first() {
        Some((&x, y)) if x == index => {
            let value = <&[u8; ROOT_KEY_LEN]>::try_from(y)
                .map_err(|_| Error::Shamir(vsss_rs::Error::InvalidShare))?;
            Ok(Share::from_parts(set_id, threshold, index, value))
        }
        _ => Err(Error::Shamir(vsss_rs::Error::InvalidShare)),
    }
}

/// Shares collected so far while the service is sealed.
///
/// Shares arrive one at a time, possibly from different admins. [`UnsealProgress::add`]
/// rejects shares that cannot help and keeps the ones already collected, so one admin's
/// mistake does not discard another admin's share. The collected shares are zeroized when they
/// are combined, reset or dropped.
pub struct UnsealProgress {
    set_id: ShareSetId,
    threshold: u8,
    shares: BTreeMap<u8, Share>,
}

impl UnsealProgress {
    /// Starts collecting shares of the split `set_id`, which needs `threshold` shares.
    ///
    /// A threshold of 0 matches no share, so such a progress never completes.
    pub fn new(set_id: ShareSetId, threshold: u8) -> Self {
        UnsealProgress {
            set_id,
            threshold,
            shares: BTreeMap::new(),
        }
    }

    /// Returns the split this progress collects shares of.
    pub fn set_id(&self) -> ShareSetId {
        self.set_id
    }

    /// Returns the number of shares needed.
    pub fn threshold(&self) -> u8 {
        self.threshold
    }

    /// Adds a share and returns the number of distinct shares collected so far.
    ///
    /// Rejects a share of another split ([`ShareError::ForeignShare`]), one that states another
    /// threshold ([`ShareError::ThresholdMismatch`]), one whose index was already collected,
    /// whatever its value ([`ShareError::DuplicateShare`]), and any share once the threshold is
    /// reached ([`ShareError::AlreadyComplete`]). A rejected share is dropped, and the shares
    /// already collected are kept.
    pub fn add(&mut self, share: Share) -> Result<usize, ShareError> {
        if share.set_id() != self.set_id {
            return Err(ShareError::ForeignShare {
                expected: self.set_id,
                found: share.set_id(),
            });
        }
        if share.threshold() != self.threshold {
            return Err(ShareError::ThresholdMismatch {
                expected: self.threshold,
                found: share.threshold(),
            });
        }
        if self.shares.contains_key(&share.index()) {
            return Err(ShareError::DuplicateShare {
                index: share.index(),
            });
        }
        if self.is_complete() {
            return Err(ShareError::AlreadyComplete {
                threshold: self.threshold,
            });
        }
        self.shares.insert(share.index(), share);
        Ok(self.shares.len())
    }

    /// Returns the number of distinct shares collected.
    pub fn count(&self) -> usize {
        self.shares.len()
    }

    /// Returns whether the threshold of shares has been collected.
    pub fn is_complete(&self) -> bool {
        self.threshold > 0 && self.shares.len() >= usize::from(self.threshold)
    }

    /// Drops the collected shares, zeroizing them.
    pub fn reset(&mut self) {
        self.shares.clear();
    }

    /// Rebuilds the root key from the collected shares.
    ///
    /// The shares are cleared (and zeroized) whatever the result, including
    /// [`Error::NotEnoughShares`] when fewer than the threshold were collected. Shares that are
    /// well formed but not from the original split produce a wrong key without an error here.
    /// The caller detects that when unwrapping the keyring key fails.
    pub fn combine(&mut self) -> Result<RootKey, Error> {
        let complete = self.is_complete();
        // Taking the map clears the progress, and the shares are zeroized when `shares` drops.
        let shares = std::mem::take(&mut self.shares);
        if !complete {
            return Err(Error::NotEnoughShares {
                collected: shares.len(),
                threshold: self.threshold,
            });
        }
        combine_shares(&shares)
    }
}

impl fmt::Debug for UnsealProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnsealProgress")
            .field("set_id", &self.set_id)
            .field("threshold", &self.threshold)
            .field("indexes", &self.shares.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Interpolates the key from shares with distinct indexes, at least two of them.
fn combine_shares(shares: &BTreeMap<u8, Share>) -> Result<RootKey, Error> {
    // With one share the threshold is 1 and the share value is the key.
    let mut values = shares.values();
    if let (Some(share), None) = (values.next(), values.next()) {
        return Ok(RootKey::from_bytes(share.value()));
    }

    // Points are built with their exact capacity, so no reallocation leaves a copy behind, and
    // they are zeroized on drop.
    let mut points = Zeroizing::new(Vec::with_capacity(shares.len()));
    for (&index, share) in shares {
        let mut point = Vec::with_capacity(1 + ROOT_KEY_LEN);
        point.push(index);
        point.extend_from_slice(share.value());
        points.push(point);
    }

    let secret = Gf256::combine_bytes(points.as_slice())
        .map(Zeroizing::new)
        .map_err(Error::Shamir)?;
    let bytes = <&[u8; ROOT_KEY_LEN]>::try_from(secret.as_slice())
        .map_err(|_| Error::Shamir(vsss_rs::Error::InvalidShare))?;
    Ok(RootKey::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::secret::tests::assert_no_secret;
    use crate::{RootOfTrust, ShamirRoot};

    const SET_ID: ShareSetId = ShareSetId([1, 2, 3, 4, 5, 6, 7, 8]);
    const OTHER_SET_ID: ShareSetId = ShareSetId([8, 7, 6, 5, 4, 3, 2, 1]);

    /// Passes shares through their text form, as admins would, and combines them.
    fn combine_via_text<'a>(shares: impl IntoIterator<Item = &'a Share>, threshold: u8) -> RootKey {
        let mut progress = UnsealProgress::new(SET_ID, threshold);
        for share in shares {
            let text = share.encode();
            progress
                .add(Share::parse(text.expose_secret()).unwrap())
                .unwrap();
        }
        assert!(progress.is_complete());
        progress.combine().unwrap()
    }

    /// Returns every `size`-element subset of `0..n`, in lexicographic order.
    fn subsets(n: usize, size: usize) -> Vec<Vec<usize>> {
        if size == 0 {
            return vec![vec![]];
        }
        (0..n)
            .flat_map(|last| {
                subsets(last, size - 1).into_iter().map(move |mut subset| {
                    subset.push(last);
                    subset
                })
            })
            .collect()
    }

    #[test]
    fn split_then_combine_round_trips() {
        for (threshold, count) in [(1u8, 1u8), (2, 3), (3, 5), (255, 255)] {
            let key = RootKey::generate().unwrap();

            let shares = split(&key, count, threshold, SET_ID).unwrap();
            let rebuilt = combine_via_text(shares.iter().take(usize::from(threshold)), threshold);

            assert_eq!(shares.len(), usize::from(count), "{threshold} of {count}");
            assert_eq!(rebuilt.expose(), key.expose(), "{threshold} of {count}");
        }
    }

    #[test]
    fn split_numbers_shares_from_one() {
        let key = RootKey::generate().unwrap();

        let shares = split(&key, 5, 3, SET_ID).unwrap();

        let indexes: Vec<u8> = shares.iter().map(Share::index).collect();
        assert_eq!(indexes, [1, 2, 3, 4, 5]);
        assert!(shares.iter().all(|share| share.threshold() == 3));
        assert!(shares.iter().all(|share| share.set_id() == SET_ID));
    }

    #[test]
    fn split_with_threshold_one_copies_the_key() {
        let key = RootKey::generate().unwrap();

        let shares = split(&key, 3, 1, SET_ID).unwrap();

        for share in &shares {
            assert_eq!(share.value(), key.expose());
            assert_eq!(combine_via_text([share], 1).expose(), key.expose());
        }
    }

    #[test]
    fn split_shares_do_not_equal_the_key() {
        let key = RootKey::generate().unwrap();

        let shares = split(&key, 5, 3, SET_ID).unwrap();

        assert!(shares.iter().all(|share| share.value() != key.expose()));
    }

    #[test]
    fn any_threshold_of_shares_recovers_the_key() {
        for (threshold, count) in [(2u8, 3u8), (3, 5), (4, 6)] {
            let key = RootKey::generate().unwrap();
            let shares = split(&key, count, threshold, SET_ID).unwrap();

            for subset in subsets(usize::from(count), usize::from(threshold)) {
                let rebuilt = combine_via_text(subset.iter().map(|&i| &shares[i]), threshold);

                assert_eq!(rebuilt.expose(), key.expose(), "subset {subset:?}");
            }
        }
    }

    #[test]
    fn any_200_of_255_shares_recover_key() {
        let key = RootKey::generate().unwrap();
        let shares = split(&key, 255, 200, SET_ID).unwrap();

        let last = combine_via_text(shares.iter().skip(55), 200);
        // Shares 1, 3, ..., 255 first, then 2, 4, ... until 200 are collected.
        let odd_then_even = combine_via_text(
            shares
                .iter()
                .step_by(2)
                .chain(shares.iter().skip(1).step_by(2))
                .take(200),
            200,
        );

        assert_eq!(last.expose(), key.expose());
        assert_eq!(odd_then_even.expose(), key.expose());
    }

    #[test]
    fn fewer_than_threshold_shares_do_not_complete() {
        let key = RootKey::generate().unwrap();
        let shares = split(&key, 5, 3, SET_ID).unwrap();
        let mut progress = UnsealProgress::new(SET_ID, 3);

        for share in shares.into_iter().take(2) {
            progress.add(share).unwrap();
        }

        assert_eq!(progress.count(), 2);
        assert!(!progress.is_complete());
        assert!(matches!(
            progress.combine(),
            Err(Error::NotEnoughShares {
                collected: 2,
                threshold: 3
            })
        ));
        assert_eq!(progress.count(), 0, "combine clears the shares");
    }

    #[test]
    fn add_returns_running_count() {
        let key = RootKey::generate().unwrap();
        let shares = split(&key, 3, 3, SET_ID).unwrap();
        let mut progress = UnsealProgress::new(SET_ID, 3);

        let counts: Vec<usize> = shares
            .into_iter()
            .map(|share| progress.add(share).unwrap())
            .collect();

        assert_eq!(counts, [1, 2, 3]);
        assert!(progress.is_complete());
    }

    #[test]
    fn add_rejects_foreign_share_and_keeps_progress() {
        let key = RootKey::generate().unwrap();
        let ours = split(&key, 3, 2, SET_ID).unwrap();
        let theirs = split(&key, 3, 2, OTHER_SET_ID).unwrap();
        let mut progress = UnsealProgress::new(SET_ID, 2);
        progress.add(ours.into_iter().next().unwrap()).unwrap();

        let error = progress
            .add(theirs.into_iter().nth(1).unwrap())
            .unwrap_err();

        assert_eq!(
            error,
            ShareError::ForeignShare {
                expected: SET_ID,
                found: OTHER_SET_ID
            }
        );
        assert!(error.to_string().contains(&OTHER_SET_ID.to_string()));
        // The expected set id would let anyone forge shares that take up unseal progress.
        assert!(!error.to_string().contains(&SET_ID.to_string()));
        assert_eq!(progress.count(), 1);
    }

    #[test]
    fn add_rejects_duplicate_index_and_keeps_progress() {
        let key = RootKey::generate().unwrap();
        let shares = split(&key, 3, 3, SET_ID).unwrap();
        let first_text = shares[0].encode();
        let altered = Share::from_parts(SET_ID, 3, 1, &[0x5a; ROOT_KEY_LEN]);
        let mut progress = UnsealProgress::new(SET_ID, 3);
        progress
            .add(Share::parse(first_text.expose_secret()).unwrap())
            .unwrap();
        progress
            .add(Share::parse(shares[1].encode().expose_secret()).unwrap())
            .unwrap();

        let same_value = progress.add(Share::parse(first_text.expose_secret()).unwrap());
        let different_value = progress.add(altered);

        assert_eq!(same_value, Err(ShareError::DuplicateShare { index: 1 }));
        assert_eq!(
            different_value,
            Err(ShareError::DuplicateShare { index: 1 })
        );
        assert_eq!(progress.count(), 2);

        progress
            .add(Share::parse(shares[2].encode().expose_secret()).unwrap())
            .unwrap();
        assert_eq!(progress.combine().unwrap().expose(), key.expose());
    }

    #[test]
    fn add_rejects_threshold_mismatch_and_keeps_progress() {
        let key = RootKey::generate().unwrap();
        let shares = split(&key, 3, 2, SET_ID).unwrap();
        let mismatched = Share::from_parts(SET_ID, 3, 2, shares[1].value());
        let mut progress = UnsealProgress::new(SET_ID, 2);
        progress
            .add(split(&key, 3, 2, SET_ID).unwrap().remove(0))
            .unwrap();

        let error = progress.add(mismatched).unwrap_err();

        assert_eq!(
            error,
            ShareError::ThresholdMismatch {
                expected: 2,
                found: 3
            }
        );
        assert_eq!(progress.count(), 1);
    }

    #[test]
    fn add_rejects_share_after_threshold_reached() {
        let key = RootKey::generate().unwrap();
        let mut shares = split(&key, 3, 2, SET_ID).unwrap().into_iter();
        let mut progress = UnsealProgress::new(SET_ID, 2);
        progress.add(shares.next().unwrap()).unwrap();
        progress.add(shares.next().unwrap()).unwrap();

        let error = progress.add(shares.next().unwrap()).unwrap_err();

        assert_eq!(error, ShareError::AlreadyComplete { threshold: 2 });
        assert_eq!(progress.combine().unwrap().expose(), key.expose());
    }

    #[test]
    fn reset_and_combine_clear_collected_shares() {
        let key = RootKey::generate().unwrap();
        let shares = split(&key, 4, 2, SET_ID).unwrap();
        let mut progress = UnsealProgress::new(SET_ID, 2);
        let mut shares = shares.into_iter();

        progress.add(shares.next().unwrap()).unwrap();
        progress.reset();
        assert_eq!(progress.count(), 0);

        progress.add(shares.next().unwrap()).unwrap();
        progress.add(shares.next().unwrap()).unwrap();
        let rebuilt = progress.combine().unwrap();
        assert_eq!(rebuilt.expose(), key.expose());
        assert_eq!(progress.count(), 0);
        assert!(!progress.is_complete());
    }

    #[test]
    fn progress_with_zero_threshold_never_completes() {
        let key = RootKey::generate().unwrap();
        let share = split(&key, 1, 1, SET_ID).unwrap().remove(0);
        let mut progress = UnsealProgress::new(SET_ID, 0);

        assert!(!progress.is_complete());
        assert!(matches!(
            progress.add(share),
            Err(ShareError::ThresholdMismatch { .. })
        ));
        assert!(matches!(
            progress.combine(),
            Err(Error::NotEnoughShares { .. })
        ));
    }

    #[test]
    fn split_rejects_threshold_out_of_range() {
        let key = RootKey::generate().unwrap();

        for (count, threshold) in [(3u8, 0u8), (3, 4), (0, 0), (0, 1), (254, 255)] {
            let error = split(&key, count, threshold, SET_ID).unwrap_err();
            let message = error.to_string();

            let Error::InvalidShareCount {
                shares: reported_shares,
                threshold: reported_threshold,
            } = error
            else {
                panic!("{count} shares, threshold {threshold} gave {error:?}");
            };
            assert_eq!(reported_shares, count);
            assert_eq!(reported_threshold, threshold);
            assert!(
                message.contains(&format!("threshold {threshold} with {count} shares")),
                "{message}"
            );
        }
    }

    #[test]
    fn altered_share_gives_key_that_fails_unwrap() {
        let key = RootKey::generate().unwrap();
        let shares = split(&key, 3, 2, SET_ID).unwrap();
        let wrapped = ShamirRoot::new(RootKey::from_bytes(key.expose()))
            .wrap(b"keyring key", b"keyring:v1")
            .unwrap();
        let mut value = *shares[0].value();
        value[0] ^= 0x01;
        // Encoding recomputes the checksum, so the altered share parses cleanly.
        let altered_text = Share::from_parts(SET_ID, 2, 1, &value).encode();
        let altered = Share::parse(altered_text.expose_secret()).unwrap();
        let mut progress = UnsealProgress::new(SET_ID, 2);
        progress.add(altered).unwrap();
        progress
            .add(Share::parse(shares[1].encode().expose_secret()).unwrap())
            .unwrap();

        let wrong_key = progress.combine().unwrap();
        let result = ShamirRoot::new(wrong_key).unwrap(&wrapped, b"keyring:v1");

        assert!(matches!(result, Err(Error::UnwrapFailed)));
    }

    #[test]
    fn unseal_progress_debug_shows_no_share_values() {
        let key = RootKey::generate().unwrap();
        let shares = split(&key, 3, 3, SET_ID).unwrap();
        let values: Vec<[u8; ROOT_KEY_LEN]> = shares.iter().map(|share| *share.value()).collect();
        let mut progress = UnsealProgress::new(SET_ID, 3);
        for share in shares.into_iter().rev().take(2) {
            progress.add(share).unwrap();
        }

        let debug = format!("{progress:?}");

        assert_eq!(
            debug,
            "UnsealProgress { set_id: ShareSetId(0102030405060708), threshold: 3, indexes: [2, 3] }"
        );
        for value in &values {
            assert_no_secret(&debug, value);
        }
        assert_no_secret(&debug, key.expose());
    }
}
