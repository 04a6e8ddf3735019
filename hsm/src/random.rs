//! Random bytes from the operating system.

use std::convert::Infallible;

use rand::{TryCryptoRng, TryRng};
use zeroize::Zeroize;

use crate::Error;

/// Fills `buffer` from the operating system's random number generator.
pub(crate) fn fill(buffer: &mut [u8]) -> Result<(), Error> {
    getrandom::fill(buffer)?;
    Ok(())
}

/// Infallible RNG over the operating system's generator, for vsss-rs, which takes a `CryptoRng`.
///
/// A failed read fills the output with zeros and records the error. Callers must check
/// [`OsRandom::finish`] and discard everything drawn if it returns an error. This avoids both a
/// panic and a userspace generator whose state would stay in memory after the split.
#[derive(Debug, Default)]
pub(crate) struct OsRandom {
    failure: Option<getrandom::Error>,
}

impl OsRandom {
    /// Returns the first read error, if any read failed.
    pub(crate) fn finish(self) -> Result<(), Error> {
        match self.failure {
            Some(error) => Err(Error::Random(error)),
            None => Ok(()),
        }
    }
}

impl TryRng for OsRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0u8; 4];
        self.try_fill_bytes(&mut bytes)?;
        let value = u32::from_le_bytes(bytes);
        // The bytes become polynomial coefficients, so they are cleared like key material.
        bytes.zeroize();
        Ok(value)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0u8; 8];
        self.try_fill_bytes(&mut bytes)?;
        let value = u64::from_le_bytes(bytes);
        bytes.zeroize();
        Ok(value)
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        if let Err(error) = getrandom::fill(dst) {
            dst.fill(0);
            self.failure.get_or_insert(error);
        }
        Ok(())
    }
}

impl TryCryptoRng for OsRandom {}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn os_random_fills_bytes_and_finishes_cleanly() {
        let mut rng = OsRandom::default();
        let mut first = [0u8; 32];
        let mut second = [0u8; 32];

        rng.fill_bytes(&mut first);
        rng.fill_bytes(&mut second);

        assert_ne!(first, second);
        assert!(rng.finish().is_ok());
    }
}
