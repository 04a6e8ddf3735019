//! Segment positions in the plaintext and in an encrypted file of known length.

use super::TAG_LEN;
use super::error::{Error, Result};
use super::header::Header;

/// Segment positions of one file, from its header and its length.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    pub(super) header_len: u64,
    pub(super) segment_size: u64,
    /// Number of segments, from 1 to 2^32.
    pub(super) segments: u64,
    /// Bytes of the last segment's plaintext plus its tag, as stored. For a cut file this can
    /// be less than a tag.
    pub(super) last_chunk_len: u64,
}

impl Layout {
    /// Lays out the encryption of `plaintext_len` bytes: whole segments, then a last segment
    /// of 1 to `segment_size` bytes, or of 0 bytes for an empty plaintext.
    pub(super) fn for_plaintext(header: &Header, plaintext_len: u64) -> Result<Self> {
        let segment_size = u64::from(header.segment_size());
        let segments = plaintext_len.div_ceil(segment_size).max(1);
        let last_plaintext = plaintext_len - (segments - 1) * segment_size;
        Self::checked(header, segments, last_plaintext + TAG_LEN as u64)
    }

    /// Lays out an existing body (the bytes after the header) of `body_len` bytes.
    pub(super) fn for_body(header: &Header, body_len: u64) -> Result<Self> {
        if body_len == 0 {
            return Err(Error::Truncated {
                complete_segments: 0,
            });
        }
        let chunk_len = u64::from(header.segment_size()) + TAG_LEN as u64;
        let segments = body_len.div_ceil(chunk_len);
        Self::checked(header, segments, body_len - (segments - 1) * chunk_len)
    }

    /// Lays out an existing encrypted file of `file_len` bytes, header included.
    pub(super) fn for_file(header: &Header, file_len: u64) -> Result<Self> {
        Self::for_body(header, file_len.saturating_sub(header.encoded_len() as u64))
    }

    fn checked(header: &Header, segments: u64, last_chunk_len: u64) -> Result<Self> {
        if segments > 1 << 32 {
            return Err(Error::TooManySegments);
        }
        Ok(Layout {
            header_len: header.encoded_len() as u64,
            segment_size: u64::from(header.segment_size()),
            segments,
            last_chunk_len,
        })
    }

    /// Returns the index of the last segment. There are at most 2^32 segments.
    pub(super) fn last_index(&self) -> u32 {
        u32::try_from(self.segments - 1).unwrap_or(u32::MAX)
    }

    pub(super) fn is_last(&self, index: u32) -> bool {
        u64::from(index) + 1 == self.segments
    }

    /// Length of a whole segment with its tag, which is also the buffer size per thread.
    pub(super) fn chunk_len(&self) -> usize {
        self.segment_size as usize + TAG_LEN
    }

    /// Stored length of segment `index`, tag included.
    pub(super) fn stored_chunk_len(&self, index: u32) -> usize {
        if self.is_last(index) {
            self.last_chunk_len as usize
        } else {
            self.chunk_len()
        }
    }

    /// Returns the plaintext length of segment `index`. Call it only when the segment's stored
    /// length contains a tag.
    pub(super) fn plaintext_len(&self, index: u32) -> usize {
        self.stored_chunk_len(index).saturating_sub(TAG_LEN)
    }

    /// Total plaintext length, as the file length implies. Only the last segment's tag proves
    /// it: check that before trusting the value.
    pub(super) fn total_plaintext_len(&self) -> u64 {
        (self.segments - 1) * self.segment_size + self.last_chunk_len.saturating_sub(TAG_LEN as u64)
    }

    pub(super) fn plaintext_offset(&self, index: u32) -> u64 {
        u64::from(index) * self.segment_size
    }

    /// Offset of segment `index` from the start of the body.
    pub(super) fn body_offset(&self, index: u32) -> u64 {
        u64::from(index) * self.chunk_len() as u64
    }

    /// Offset of segment `index` from the start of the file.
    pub(super) fn chunk_offset(&self, index: u32) -> u64 {
        self.header_len + self.body_offset(index)
    }
}
