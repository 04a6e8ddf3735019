//! A decrypting reader that seeks to any segment of a seekable source.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};

use zeroize::Zeroizing;

use super::error::{Error, Result};
use super::header::{Header, read_header};
use super::key::{FileKey, SegmentCipher};
use super::layout::Layout;
use super::segment::open_or_explain;
use crate::Context;

/// Decrypts a file with random access: `Seek` moves in the plaintext, and each `read` opens
/// only the segment it needs.
///
/// [`new`](Self::new) opens the last segment first. Its tag proves where the file ends, so the
/// plaintext length and `SeekFrom::End` can be trusted, and a truncated or extended file is
/// rejected before any read. Every segment is checked when it is read. A damaged segment fails
/// each read that touches it, while the others stay readable. The reader keeps one segment's
/// ciphertext and plaintext in memory.
///
/// ```
/// use std::io::{Cursor, Read, Seek, SeekFrom, Write};
/// use client_sdk::Context;
/// use client_sdk::stream::{EncryptOptions, EncryptingWriter, FileKey, SeekableDecryptingReader};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = FileKey::generate()?;
/// let context = Context::new();
/// let options = EncryptOptions::new().with_segment_size(4096);
/// let mut writer = EncryptingWriter::new(Vec::new(), &key, &context, vec![], options)?;
/// writer.write_all(&[7; 10_000])?;
/// let encrypted = writer.finish()?;
///
/// let mut reader = SeekableDecryptingReader::open(Cursor::new(encrypted), &key, &context)?;
/// assert_eq!(reader.plaintext_len(), 10_000);
/// reader.seek(SeekFrom::Start(9_000))?;
/// let mut tail = Vec::new();
/// reader.read_to_end(&mut tail)?;
/// assert_eq!(tail.len(), 1_000);
/// # Ok(())
/// # }
/// ```
pub struct SeekableDecryptingReader<R: Read + Seek> {
    inner: R,
    header: Header,
    cipher: SegmentCipher,
    layout: Layout,
    /// Position of the first segment in `inner`.
    body_start: u64,
    /// Position in the plaintext.
    position: u64,
    plaintext_len: u64,
    /// Ciphertext of the segment being loaded.
    ciphertext: Vec<u8>,
    /// Segment buffer. After a successful load it contains the plaintext of `loaded`.
    buffer: Zeroizing<Vec<u8>>,
    loaded: Option<u32>,
}

impl<R: Read + Seek> SeekableDecryptingReader<R> {
    /// Checks the context and the key commitment, opens the last segment, and returns a reader
    /// at plaintext position 0.
    ///
    /// `inner` must be positioned at the first segment, as [`read_header`] leaves it. The
    /// file runs to the end of `inner`.
    pub fn new(mut inner: R, header: Header, key: &FileKey, context: &Context) -> Result<Self> {
        let cipher = header.open(key, context)?;
        let body_start = inner.stream_position().map_err(Error::Io)?;
        let end = inner.seek(SeekFrom::End(0)).map_err(Error::Io)?;
        let layout = Layout::for_body(&header, end.saturating_sub(body_start))?;
        let mut reader = SeekableDecryptingReader {
            inner,
            header,
            cipher,
            layout,
            body_start,
            position: 0,
            plaintext_len: layout.total_plaintext_len(),
            ciphertext: vec![0; layout.chunk_len()],
            buffer: Zeroizing::new(vec![0; layout.chunk_len()]),
            loaded: None,
        };
        reader.load(layout.last_index())?;
        Ok(reader)
    }

    /// Reads the header from `inner` and returns a reader, for callers that hold the file key
    /// already.
    pub fn open(mut inner: R, key: &FileKey, context: &Context) -> Result<Self> {
        let header = read_header(&mut inner)?;
        Self::new(inner, header, key, context)
    }

    /// Returns the header of the file.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Returns the plaintext length, which the last segment's tag has proved.
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// Reads and opens segment `index` into the buffer.
    fn load(&mut self, index: u32) -> Result<()> {
        if self.loaded == Some(index) {
            return Ok(());
        }
        self.loaded = None;
        let len = self.layout.stored_chunk_len(index);
        // A final piece shorter than a tag cannot be a segment, so the input was cut inside one.
        if len < super::TAG_LEN {
            return Err(Error::Truncated {
                complete_segments: u64::from(index),
            });
        }
        let offset = self.body_start + self.layout.body_offset(index);
        self.inner
            .seek(SeekFrom::Start(offset))
            .map_err(Error::Io)?;
        let ciphertext = &mut self.ciphertext[..len];
        self.inner.read_exact(ciphertext).map_err(Error::Io)?;

        let chunk = &mut self.buffer[..len];
        chunk.copy_from_slice(ciphertext);
        let last = self.layout.is_last(index);
        let whole = len == self.layout.chunk_len();
        open_or_explain(&self.cipher, index, last, chunk, whole, ciphertext)?;
        self.loaded = Some(index);
        Ok(())
    }
}

impl<R: Read + Seek> Read for SeekableDecryptingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.position >= self.plaintext_len {
            return Ok(0);
        }
        let segment_size = self.layout.segment_size;
        // Positions below the plaintext length fall in one of at most 2^32 segments.
        let index = u32::try_from(self.position / segment_size)
            .map_err(|_| io::Error::from(Error::TooManySegments))?;
        self.load(index)?;

        let start = (self.position % segment_size) as usize;
        let end = self.layout.plaintext_len(index);
        let count = out.len().min(end - start);
        out[..count].copy_from_slice(&self.buffer[start..start + count]);
        self.position += count as u64;
        Ok(count)
    }
}

impl<R: Read + Seek> Seek for SeekableDecryptingReader<R> {
    /// Moves in the plaintext. Seeking past the end is allowed, and reads there return 0;
    /// seeking before the start fails with `InvalidInput`.
    fn seek(&mut self, target: SeekFrom) -> io::Result<u64> {
        let (base, offset) = match target {
            SeekFrom::Start(position) => {
                self.position = position;
                return Ok(position);
            }
            SeekFrom::Current(offset) => (self.position, offset),
            SeekFrom::End(offset) => (self.plaintext_len, offset),
        };
        let position = base.checked_add_signed(offset).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek to a position before the start of the plaintext",
            )
        })?;
        self.position = position;
        Ok(position)
    }
}

impl<R: Read + Seek> fmt::Debug for SeekableDecryptingReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeekableDecryptingReader")
            .field("header", &self.header)
            .field("position", &self.position)
            .field("plaintext_len", &self.plaintext_len)
            .finish_non_exhaustive()
    }
}
