//! The streaming encryptor and decryptor over tokio's `AsyncWrite` and `AsyncRead`.
//!
//! They behave as [`EncryptingWriter`](super::EncryptingWriter) and
//! [`DecryptingReader`](super::DecryptingReader) do, on the same segment cores, and write and
//! read the same bytes.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{self, Poll, ready};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::EncryptOptions;
use super::MAGIC;
use super::error::{Error, Result};
use super::header::{Header, PREFIX_LEN, check_prefix};
use super::key::{FileKey, SegmentCipher};
use super::segment::{Opener, Sealer, Step};
use super::slots::KeySlot;
use crate::Context;

/// Reads and parses the header at the start of `reader`, leaving it at the first segment.
///
/// Async form of [`read_header`](super::read_header), which reads exactly the header bytes.
pub async fn read_header_async<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Header> {
    let mut prefix = [0; PREFIX_LEN];
    read_exact(reader, &mut prefix[..4]).await?;
    if prefix[..4] != MAGIC {
        return Err(Error::BadMagic {
            found: [prefix[0], prefix[1], prefix[2], prefix[3]],
        });
    }
    read_exact(reader, &mut prefix[4..]).await?;
    let len = check_prefix(&prefix)?;
    let mut bytes = vec![0; len];
    bytes[..PREFIX_LEN].copy_from_slice(&prefix);
    read_exact(reader, &mut bytes[PREFIX_LEN..]).await?;
    Header::parse(&bytes)
}

async fn read_exact<R: AsyncRead + Unpin>(reader: &mut R, out: &mut [u8]) -> Result<()> {
    match reader.read_exact(out).await {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Err(Error::TruncatedHeader),
        Err(err) => Err(Error::Io(err)),
    }
}

/// Encrypts an async stream into the file format, holding one segment in memory.
///
/// The header goes out with the first write, flush or shutdown. `shutdown` (or
/// [`finish`](Self::finish), which keeps the inner writer open) seals the last segment. A
/// writer dropped before that leaves output that readers reject as truncated.
///
/// ```
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use client_sdk::Context;
/// use client_sdk::stream::{AsyncEncryptingWriter, EncryptOptions, FileKey};
/// use tokio::io::AsyncWriteExt;
///
/// let key = FileKey::generate()?;
/// let options = EncryptOptions::new();
/// let context = Context::new();
/// let mut writer = AsyncEncryptingWriter::new(Vec::new(), &key, &context, vec![], options)?;
/// writer.write_all(b"synthetic export").await?;
/// let encrypted: Vec<u8> = writer.finish().await?;
/// # Ok(())
/// # }
/// ```
pub struct AsyncEncryptingWriter<W> {
    inner: W,
    header: Header,
    /// Encoded header, of which `header_written` bytes are written.
    header_bytes: Vec<u8>,
    header_written: usize,
    sealer: Sealer,
    failed: bool,
}

impl<W: AsyncWrite + Unpin> AsyncEncryptingWriter<W> {
    /// Builds the header for a new file and returns a writer for the plaintext. The arguments
    /// mean what they mean for [`EncryptingWriter::new`](super::EncryptingWriter::new).
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
    pub(crate) fn with_header(inner: W, header: Header, cipher: SegmentCipher) -> Result<Self> {
        let header_bytes = header.encode_new()?;
        let sealer = Sealer::new(cipher, header.segment_size());
        Ok(AsyncEncryptingWriter {
            inner,
            header,
            header_bytes,
            header_written: 0,
            sealer,
            failed: false,
        })
    }

    /// Returns the header of the file.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Seals the last segment, writes everything, flushes the inner writer and returns it
    /// without shutting it down.
    pub async fn finish(mut self) -> Result<W> {
        if self.failed {
            return Err(Error::StreamFailed);
        }
        self.sealer.seal_last()?;
        std::future::poll_fn(|cx| self.poll_pending(cx))
            .await
            .map_err(Error::from_io)?;
        self.inner.flush().await.map_err(Error::Io)?;
        Ok(self.inner)
    }

    /// Writes the rest of the header, then the sealed bytes. Any error ends the writer,
    /// because part of a segment may already be written.
    fn poll_pending(&mut self, cx: &mut task::Context<'_>) -> Poll<io::Result<()>> {
        if self.failed {
            return Poll::Ready(Err(Error::StreamFailed.into()));
        }
        while self.header_written < self.header_bytes.len() {
            let rest = &self.header_bytes[self.header_written..];
            let result = ready!(Pin::new(&mut self.inner).poll_write(cx, rest));
            self.header_written += self.check_written(result)?;
        }
        loop {
            let pending = self.sealer.pending();
            if pending.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let result = ready!(Pin::new(&mut self.inner).poll_write(cx, pending));
            let written = self.check_written(result)?;
            self.sealer.consume(written);
        }
    }

    /// Marks the writer failed on an error or a zero-length write.
    fn check_written(&mut self, result: io::Result<usize>) -> io::Result<usize> {
        match result {
            Ok(0) => {
                self.failed = true;
                Err(io::ErrorKind::WriteZero.into())
            }
            Ok(written) => Ok(written),
            Err(err) => {
                self.failed = true;
                Err(err)
            }
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for AsyncEncryptingWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut task::Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // The sealer takes nothing when it sealed a full segment. The second round takes data.
        loop {
            ready!(this.poll_pending(cx))?;
            let taken = this
                .sealer
                .accept(data)
                .inspect_err(|_| this.failed = true)?;
            if taken > 0 {
                return Poll::Ready(Ok(taken));
            }
        }
    }

    /// Writes sealed segments and flushes the inner writer. Buffered plaintext stays
    /// buffered, because sealing a partial segment would end the file.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    /// Seals the last segment, writes it and shuts the inner writer down.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.failed {
            this.sealer
                .seal_last()
                .inspect_err(|_| this.failed = true)?;
        }
        ready!(this.poll_pending(cx))?;
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<W> fmt::Debug for AsyncEncryptingWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncEncryptingWriter")
            .field("header", &self.header)
            .field("sealer", &self.sealer)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// Decrypts an async stream in the file format, holding about two segments in memory.
///
/// As with [`DecryptingReader`](super::DecryptingReader), a segment's plaintext is returned
/// only after its tag verifies, errors are `io::Error`s that wrap an [`Error`], and the output
/// is complete only once a read returns no bytes.
pub struct AsyncDecryptingReader<R> {
    inner: R,
    header: Header,
    opener: Opener,
}

impl<R: AsyncRead + Unpin> AsyncDecryptingReader<R> {
    /// Checks the context and the key commitment and returns a reader of the plaintext.
    /// `inner` must be positioned at the first segment, as [`read_header_async`] leaves it.
    pub fn new(inner: R, header: Header, key: &FileKey, context: &Context) -> Result<Self> {
        let cipher = header.open(key, context)?;
        let opener = Opener::new(cipher, header.segment_size());
        Ok(AsyncDecryptingReader {
            inner,
            header,
            opener,
        })
    }

    /// Reads the header from `inner` and returns a reader of the plaintext, for callers that
    /// hold the file key already.
    pub async fn open(mut inner: R, key: &FileKey, context: &Context) -> Result<Self> {
        let header = read_header_async(&mut inner).await?;
        Self::new(inner, header, key, context)
    }

    /// Returns the header of the file.
    pub fn header(&self) -> &Header {
        &self.header
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for AsyncDecryptingReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut task::Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match this.opener.step()? {
                Step::Plaintext => {
                    let ready = this.opener.plaintext();
                    let count = ready.len().min(out.remaining());
                    out.put_slice(&ready[..count]);
                    this.opener.consume(count);
                    return Poll::Ready(Ok(()));
                }
                Step::End => return Poll::Ready(Ok(())),
                Step::NeedInput => {
                    let mut input = ReadBuf::new(this.opener.input());
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut input))?;
                    let count = input.filled().len();
                    this.opener.input_added(count);
                }
            }
        }
    }
}

impl<R> fmt::Debug for AsyncDecryptingReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncDecryptingReader")
            .field("header", &self.header)
            .field("opener", &self.opener)
            .finish_non_exhaustive()
    }
}
