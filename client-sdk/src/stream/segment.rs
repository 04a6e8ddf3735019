//! Sealing and opening segments without I/O. The sync and async adapters drive these cores.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

use super::TAG_LEN;
use super::error::{Error, Result};
use super::key::SegmentCipher;

/// Names the failure of segment `index`, which did not open with the flag that its position
/// implies (`expected_last`). When it opens with the other flag, the segment is intact but in
/// the wrong place: a middle segment at the end, or a last segment with more input after it.
pub(super) fn misplaced_segment(index: u32, expected_last: bool, other_flag_opens: bool) -> Error {
    match (other_flag_opens, expected_last) {
        (false, _) => Error::SegmentAuthFailed { index },
        (true, true) => Error::Truncated {
            complete_segments: u64::from(index) + 1,
        },
        (true, false) => Error::TrailingData {
            last_segment: index,
        },
    }
}

/// Opens `chunk` (ciphertext and tag) as segment `index` with the flag `last`, and on failure
/// names the cause. `chunk` is overwritten either way. A whole segment that fails is tried
/// again with the other flag from `retry_source`, a copy of the ciphertext.
pub(super) fn open_or_explain<'a>(
    cipher: &SegmentCipher,
    index: u32,
    last: bool,
    chunk: &'a mut [u8],
    whole_segment: bool,
    retry_source: &[u8],
) -> Result<&'a [u8]> {
    if cipher.open(index, last, chunk).is_some() {
        let len = chunk.len() - TAG_LEN;
        return Ok(&chunk[..len]);
    }
    // ring zeroes a chunk that fails, so the retry starts from the ciphertext again.
    let mut other_flag_opens = false;
    if whole_segment {
        chunk.copy_from_slice(retry_source);
        other_flag_opens = cipher.open(index, !last, chunk).is_some();
        // That plaintext is never returned.
        chunk.zeroize();
    }
    Err(misplaced_segment(index, last, other_flag_opens))
}

/// Buffers plaintext and seals it segment by segment.
///
/// A full segment is sealed only when more plaintext arrives, because only then is it known
/// not to be the last. The sealed bytes replace the plaintext in the buffer and must be written
/// out ([`pending`](Self::pending), [`consume`](Self::consume)) before more plaintext fits.
pub(super) struct Sealer {
    cipher: SegmentCipher,
    /// Plaintext of the current segment with room for the tag, or its sealed form.
    buffer: Zeroizing<Vec<u8>>,
    segment_size: usize,
    /// Plaintext bytes in `buffer`, or 0 while sealed bytes wait.
    buffered: usize,
    /// Sealed bytes in `buffer`, and how many of them are written.
    sealed: usize,
    written: usize,
    next_index: u32,
    finished: bool,
}

impl Sealer {
    pub(super) fn new(cipher: SegmentCipher, segment_size: u32) -> Self {
        let segment_size = segment_size as usize;
        Sealer {
            cipher,
            buffer: Zeroizing::new(vec![0; segment_size + TAG_LEN]),
            segment_size,
            buffered: 0,
            sealed: 0,
            written: 0,
            next_index: 0,
            finished: false,
        }
    }

    /// Returns the sealed bytes not yet written.
    pub(super) fn pending(&self) -> &[u8] {
        &self.buffer[self.written..self.sealed]
    }

    /// Records that `count` pending bytes were written.
    pub(super) fn consume(&mut self, count: usize) {
        self.written = (self.written + count).min(self.sealed);
        if self.written == self.sealed {
            self.sealed = 0;
            self.written = 0;
        }
    }

    /// Copies plaintext into the segment and returns how many bytes it took.
    ///
    /// When the segment is full, this seals it as a middle segment and returns 0. The caller
    /// writes [`pending`](Self::pending) and calls again. Call only with nothing pending.
    pub(super) fn accept(&mut self, data: &[u8]) -> Result<usize> {
        if data.is_empty() || self.sealed != 0 || self.finished {
            return Ok(0);
        }
        if self.buffered == self.segment_size {
            self.seal(false)?;
            return Ok(0);
        }
        let taken = data.len().min(self.segment_size - self.buffered);
        self.buffer[self.buffered..self.buffered + taken].copy_from_slice(&data[..taken]);
        self.buffered += taken;
        Ok(taken)
    }

    /// Seals the buffered plaintext as the last segment, once. Later calls do nothing.
    pub(super) fn seal_last(&mut self) -> Result<()> {
        if !self.finished {
            self.seal(true)?;
            self.finished = true;
        }
        Ok(())
    }

    fn seal(&mut self, last: bool) -> Result<()> {
        let index = self.next_index;
        // A middle segment at index u32::MAX would leave no index for the last one.
        if !last && index == u32::MAX {
            return Err(Error::TooManySegments);
        }
        let len = self.buffered;
        let tag = self.cipher.seal(index, last, &mut self.buffer[..len]);
        self.buffer[len..len + TAG_LEN].copy_from_slice(&tag);
        self.buffered = 0;
        self.sealed = len + TAG_LEN;
        self.written = 0;
        self.next_index = index.wrapping_add(1);
        Ok(())
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("segment_size", &self.segment_size)
            .field("next_index", &self.next_index)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// Next step of an [`Opener`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Verified plaintext is ready in [`Opener::plaintext`].
    Plaintext,
    /// More input must be read into [`Opener::input`].
    NeedInput,
    /// End of the stream: the last segment was returned.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Segments,
    Done,
    Failed,
}

/// Opens segments from input that arrives in pieces.
///
/// A segment is known to be the last one when the input ends right after it, so the opener buffers
/// one byte past each whole segment before it opens it. Its buffer contains the ciphertext of one
/// segment plus one byte, and the plaintext of one segment.
pub(super) struct Opener {
    cipher: SegmentCipher,
    ciphertext: Vec<u8>,
    filled: usize,
    eof: bool,
    /// Plaintext of the current segment, of which `start..end` is not yet returned.
    plaintext: Zeroizing<Vec<u8>>,
    start: usize,
    end: usize,
    next_index: u64,
    state: State,
}

impl Opener {
    pub(super) fn new(cipher: SegmentCipher, segment_size: u32) -> Self {
        let chunk_len = segment_size as usize + TAG_LEN;
        Opener {
            cipher,
            ciphertext: vec![0; chunk_len + 1],
            filled: 0,
            eof: false,
            plaintext: Zeroizing::new(vec![0; chunk_len]),
            start: 0,
            end: 0,
            next_index: 0,
            state: State::Segments,
        }
    }

    /// Advances as far as the buffered input allows. Any error ends the opener, and later
    /// calls return [`Error::StreamFailed`].
    pub(super) fn step(&mut self) -> Result<Step> {
        loop {
            if self.start < self.end {
                return Ok(Step::Plaintext);
            }
            match self.state {
                State::Segments => {}
                State::Done => return Ok(Step::End),
                State::Failed => return Err(Error::StreamFailed),
            }
            if !self.eof && self.filled < self.ciphertext.len() {
                return Ok(Step::NeedInput);
            }
            if let Err(err) = self.open_next() {
                self.state = State::Failed;
                return Err(err);
            }
        }
    }

    /// Returns the free part of the input buffer.
    pub(super) fn input(&mut self) -> &mut [u8] {
        &mut self.ciphertext[self.filled..]
    }

    /// Records `count` bytes read into [`input`](Self::input). A count of 0 means that the input
    /// ended.
    pub(super) fn input_added(&mut self, count: usize) {
        if count == 0 {
            self.eof = true;
        } else {
            self.filled = (self.filled + count).min(self.ciphertext.len());
        }
    }

    /// Returns verified plaintext not yet consumed.
    pub(super) fn plaintext(&self) -> &[u8] {
        &self.plaintext[self.start..self.end]
    }

    /// Records that `count` plaintext bytes were returned to the caller.
    pub(super) fn consume(&mut self, count: usize) {
        self.start = (self.start + count).min(self.end);
    }

    /// Copies verified plaintext into `out` and returns the count.
    pub(super) fn copy_to(&mut self, out: &mut [u8]) -> usize {
        let count = out.len().min(self.end - self.start);
        out[..count].copy_from_slice(&self.plaintext[self.start..self.start + count]);
        self.consume(count);
        count
    }

    fn open_next(&mut self) -> Result<()> {
        let index = u32::try_from(self.next_index).map_err(|_| Error::TooManySegments)?;
        let chunk_len = self.ciphertext.len() - 1;

        // More input follows a whole segment, so it must be a middle segment.
        if self.filled > chunk_len {
            self.open_chunk(index, chunk_len, false)?;
            self.ciphertext.copy_within(chunk_len..self.filled, 0);
            self.filled -= chunk_len;
            self.next_index += 1;
            return Ok(());
        }

        // The input ends here. Fewer bytes than a tag cannot be a segment, so the input was cut.
        if self.filled < TAG_LEN {
            return Err(Error::Truncated {
                complete_segments: self.next_index,
            });
        }
        self.open_chunk(index, self.filled, true)?;
        self.filled = 0;
        self.state = State::Done;
        Ok(())
    }

    /// Opens the first `len` buffered bytes into the plaintext buffer.
    fn open_chunk(&mut self, index: u32, len: usize, last: bool) -> Result<()> {
        let whole_segment = len == self.ciphertext.len() - 1;
        let source = &self.ciphertext[..len];
        let chunk = &mut self.plaintext[..len];
        chunk.copy_from_slice(source);
        let opened = open_or_explain(&self.cipher, index, last, chunk, whole_segment, source)?;
        self.start = 0;
        self.end = opened.len();
        Ok(())
    }
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("next_index", &self.next_index)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}
