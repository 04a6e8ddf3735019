//! The streaming encryptor over `std::io::Write`.

use std::fmt;
use std::io::{self, Write};

use super::EncryptOptions;
use super::error::{Error, Result};
use super::header::Header;
use super::key::{FileKey, SegmentCipher};
use super::segment::Sealer;
use super::slots::KeySlot;
use crate::Context;

/// Encrypts a stream into the file format, holding one segment in memory.
///
/// [`new`](Self::new) writes the header at once. Each `write` fills a segment buffer. A full
/// segment is sealed and written when more data arrives, because only then is it known not to
/// be the last. [`finish`](Self::finish) seals the last segment. A writer dropped without
/// `finish` leaves output without a last segment, which every reader rejects as truncated.
///
/// ```
/// use std::io::Write;
/// use client_sdk::Context;
/// use client_sdk::stream::{EncryptOptions, EncryptingWriter, FileKey, KeySlot, KmsSlot};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = FileKey::generate()?;
/// let context = Context::from([("tenant".to_owned(), "clinic-7".to_owned())]);
/// // In real use the blob is the ciphertext that kmsd returned with the data key.
/// let slot = KmsSlot::new("0b7e5f0c-5d1c-4c39-9a57-3f1f1d0e2a11", 1, b"blob".to_vec())?;
/// let slots = vec![KeySlot::Kms(slot)];
/// let options = EncryptOptions::new();
/// let mut writer = EncryptingWriter::new(Vec::new(), &key, &context, slots, options)?;
/// writer.write_all(b"synthetic export")?;
/// let encrypted: Vec<u8> = writer.finish()?;
/// # assert!(encrypted.starts_with(b"KMSF"));
/// # Ok(())
/// # }
/// ```
pub struct EncryptingWriter<W: Write> {
    inner: W,
    header: Header,
    sealer: Sealer,
    failed: bool,
}

impl<W: Write> EncryptingWriter<W> {
    /// Writes the header for a new file to `inner` and returns a writer for the plaintext.
    ///
    /// `context` is bound to the file and must be passed again to decrypt it. Make it the
    /// context under which the `kmsd` slot was wrapped, because readers pass the stored context
    /// to `kmsd` to unwrap that slot.
    pub fn new(
        inner: W,
        key: &FileKey,
        context: &Context,
        slots: Vec<KeySlot>,
        options: EncryptOptions,
    ) -> Result<Self> {
        let (header, cipher) = Header::create(key, context, slots, options)?;
        Self::with_header(inner, header, cipher)
    }

    /// Builds a writer from a header made with a fixed salt and nonce prefix, for
    /// known-answer tests.
    pub(crate) fn with_header(mut inner: W, header: Header, cipher: SegmentCipher) -> Result<Self> {
        inner.write_all(&header.encode_new()?).map_err(Error::Io)?;
        let sealer = Sealer::new(cipher, header.segment_size());
        Ok(EncryptingWriter {
            inner,
            header,
            sealer,
            failed: false,
        })
    }

    /// Returns the header that was written.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Seals the buffered plaintext as the last segment, flushes the inner writer and returns
    /// it.
    pub fn finish(mut self) -> Result<W> {
        if self.failed {
            return Err(Error::StreamFailed);
        }
        self.sealer.seal_last()?;
        self.write_pending()?;
        self.inner.flush().map_err(Error::Io)?;
        Ok(self.inner)
    }

    /// Writes the sealed bytes. Any error ends the writer, because part of a segment may
    /// already be written.
    fn write_pending(&mut self) -> Result<()> {
        let pending = self.sealer.pending();
        if pending.is_empty() {
            return Ok(());
        }
        let count = pending.len();
        if let Err(err) = self.inner.write_all(pending) {
            self.failed = true;
            return Err(Error::Io(err));
        }
        self.sealer.consume(count);
        Ok(())
    }
}

impl<W: Write> Write for EncryptingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(Error::StreamFailed.into());
        }
        if data.is_empty() {
            return Ok(0);
        }
        // The sealer takes nothing when it sealed a full segment. The second round takes data.
        loop {
            self.write_pending()?;
            let taken = self
                .sealer
                .accept(data)
                .inspect_err(|_| self.failed = true)?;
            if taken > 0 {
                return Ok(taken);
            }
        }
    }

    /// Flushes the inner writer. Buffered plaintext stays buffered, because sealing a partial
    /// segment would end the file. Only [`finish`](Self::finish) does that.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> fmt::Debug for EncryptingWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptingWriter")
            .field("header", &self.header)
            .field("sealer", &self.sealer)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}
