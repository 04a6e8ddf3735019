//! The streaming decryptor over `std::io::Read`.

use std::fmt;
use std::io::{self, Read};

use super::error::Result;
use super::header::{Header, read_header};
use super::key::FileKey;
use super::segment::{Opener, Step};
use crate::Context;

/// Decrypts a stream in the file format, holding about two segments in memory.
///
/// `read` returns a segment's plaintext only after its tag verifies. A segment is known to be
/// the last one when the input ends right after it, so the reader reads one byte past each
/// segment before it opens it. Errors come back as `io::Error`s that wrap an
/// [`Error`](super::Error). Get it back with [`Error::from_io`](super::Error::from_io).
///
/// Plaintext of earlier segments has already been returned when a later segment fails, so
/// treat the output as complete only once `read` has returned 0. To decrypt into a file with
/// nothing left behind on failure, use [`decrypt_file`](super::decrypt_file).
///
/// ```
/// use std::io::{Read, Write};
/// use client_sdk::Context;
/// use client_sdk::stream::{self, DecryptingReader, EncryptOptions, EncryptingWriter, FileKey};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = FileKey::generate()?;
/// let context = Context::new();
/// let options = EncryptOptions::new();
/// let mut writer = EncryptingWriter::new(Vec::new(), &key, &context, vec![], options)?;
/// writer.write_all(b"synthetic export")?;
/// let encrypted = writer.finish()?;
///
/// let mut input = encrypted.as_slice();
/// let header = stream::read_header(&mut input)?;
/// // Here the caller unwraps `header.kms_slot()` with `Client::decrypt` and `header.context()`.
/// let mut reader = DecryptingReader::new(input, header, &key, &context)?;
/// let mut plaintext = Vec::new();
/// reader.read_to_end(&mut plaintext)?;
/// assert_eq!(plaintext, b"synthetic export");
/// # Ok(())
/// # }
/// ```
pub struct DecryptingReader<R: Read> {
    inner: R,
    header: Header,
    opener: Opener,
}

impl<R: Read> DecryptingReader<R> {
    /// Checks the context and the key commitment and returns a reader of the plaintext.
    ///
    /// `inner` must be positioned at the first segment, as [`read_header`] leaves it. `context`
    /// is the encryption context that the caller expects. A different one fails with
    /// [`Error::ContextMismatch`](super::Error::ContextMismatch), and a wrong key with
    /// [`Error::CommitmentMismatch`](super::Error::CommitmentMismatch).
    pub fn new(inner: R, header: Header, key: &FileKey, context: &Context) -> Result<Self> {
        let cipher = header.open(key, context)?;
        let opener = Opener::new(cipher, header.segment_size());
        Ok(DecryptingReader {
            inner,
            header,
            opener,
        })
    }

    /// Reads the header from `inner` and returns a reader of the plaintext, for callers that
    /// hold the file key already.
    pub fn open(mut inner: R, key: &FileKey, context: &Context) -> Result<Self> {
        let header = read_header(&mut inner)?;
        Self::new(inner, header, key, context)
    }

    /// Returns the header of the file.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Returns the inner reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Reads once into the opener's input buffer. Errors of the inner reader leave the state
    /// as it was, so a later call can resume.
    fn fill(&mut self) -> io::Result<()> {
        loop {
            match self.inner.read(self.opener.input()) {
                Ok(count) => {
                    self.opener.input_added(count);
                    return Ok(());
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.opener.step()? {
                Step::Plaintext => return Ok(self.opener.copy_to(out)),
                Step::End => return Ok(0),
                Step::NeedInput => self.fill()?,
            }
        }
    }
}

impl<R: Read> fmt::Debug for DecryptingReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptingReader")
            .field("header", &self.header)
            .field("opener", &self.opener)
            .finish_non_exhaustive()
    }
}
