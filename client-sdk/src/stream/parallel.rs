//! Whole-file encryption and decryption on every core.
//!
//! Segments are independent, so each thread takes a contiguous range of segment indexes and
//! moves its segments with positioned reads and writes. Each thread holds one segment buffer.

use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use tempfile::NamedTempFile;
use zeroize::Zeroizing;

use super::error::{Error, Result};
use super::header::{Header, read_header};
use super::key::{FileKey, SegmentCipher};
use super::layout::Layout;
use super::segment::misplaced_segment;
use super::slots::KeySlot;
use super::{EncryptOptions, TAG_LEN};
use crate::Context;

/// Encrypts the file at `input` into `output` with one thread per core.
///
/// The output is written to a temporary file (mode 0600) in the folder of `output`, synced,
/// and renamed to `output` only when complete, replacing any file there. The arguments mean
/// what they mean for [`EncryptingWriter::new`](super::EncryptingWriter::new), and the output
/// is the same bytes the streaming writer would produce with the same salt and nonce prefix.
/// Returns the header that was written.
pub fn encrypt_file(
    input: &Path,
    output: &Path,
    key: &FileKey,
    context: &Context,
    slots: Vec<KeySlot>,
    options: EncryptOptions,
) -> Result<Header> {
    let (header, cipher) = Header::create(key, context, slots, options)?;
    encrypt_file_with(input, output, &header, &cipher, available_threads())?;
    Ok(header)
}

/// Decrypts the file at `input` into `output` with one thread per core.
///
/// The plaintext goes to a temporary file (mode 0600) in the folder of `output`, which is
/// synced and renamed to `output` only after every segment has verified, replacing any file
/// there. The folder is synced after the rename. On any error the temporary file is removed,
/// so nothing appears under `output` and an earlier file there stays as it was. `context` is
/// the expected encryption context, as for
/// [`DecryptingReader::new`](super::DecryptingReader::new). Returns the header of the file.
pub fn decrypt_file(
    input: &Path,
    output: &Path,
    key: &FileKey,
    context: &Context,
) -> Result<Header> {
    decrypt_file_with(input, output, key, context, available_threads())
}

pub(crate) fn encrypt_file_with(
    input: &Path,
    output: &Path,
    header: &Header,
    cipher: &SegmentCipher,
    threads: usize,
) -> Result<()> {
    let source = File::open(input).map_err(|err| Error::file("open", input, err))?;
    let plaintext_len = file_len(&source, input)?;
    let layout = Layout::for_plaintext(header, plaintext_len)?;
    let target = TempOutput::create(output)?;
    let encoded = header.encode_new()?;
    target
        .file()
        .write_all_at(&encoded, 0)
        .map_err(|err| Error::file("write to", output, err))?;

    let work = |index: u32, buffer: &mut [u8]| {
        let last = layout.is_last(index);
        let len = layout.plaintext_len(index);
        let plaintext = &mut buffer[..len];
        read_exact_at(&source, input, plaintext, layout.plaintext_offset(index))?;
        let tag = cipher.seal(index, last, plaintext);
        buffer[len..len + TAG_LEN].copy_from_slice(&tag);
        target
            .file()
            .write_all_at(&buffer[..len + TAG_LEN], layout.chunk_offset(index))
            .map_err(|err| Error::file("write to", output, err))
    };
    for_each_segment(layout.segments, threads, layout.chunk_len(), work)?;

    check_unchanged(&source, input, plaintext_len)?;
    target.commit()
}

pub(crate) fn decrypt_file_with(
    input: &Path,
    output: &Path,
    key: &FileKey,
    context: &Context,
    threads: usize,
) -> Result<Header> {
    let source = File::open(input).map_err(|err| Error::file("open", input, err))?;
    let header = read_header(&mut &source)?;
    let cipher = header.open(key, context)?;
    let file_len = file_len(&source, input)?;
    let layout = Layout::for_file(&header, file_len)?;
    let target = TempOutput::create(output)?;

    let work = |index: u32, buffer: &mut [u8]| {
        let plaintext = open_segment(&cipher, &layout, &source, input, index, buffer)?;
        target
            .file()
            .write_all_at(plaintext, layout.plaintext_offset(index))
            .map_err(|err| Error::file("write to", output, err))
    };
    for_each_segment(layout.segments, threads, layout.chunk_len(), work)?;

    check_unchanged(&source, input, file_len)?;
    target.commit()?;
    Ok(header)
}

/// Reads segment `index` into `buffer` and opens it, naming the failure as the streaming
/// reader does.
fn open_segment<'a>(
    cipher: &SegmentCipher,
    layout: &Layout,
    source: &File,
    input: &Path,
    index: u32,
    buffer: &'a mut [u8],
) -> Result<&'a [u8]> {
    let last = layout.is_last(index);
    let len = layout.stored_chunk_len(index);
    // A final piece shorter than a tag cannot be a segment, so the input was cut inside one.
    if len < TAG_LEN {
        return Err(Error::Truncated {
            complete_segments: u64::from(index),
        });
    }
    let offset = layout.chunk_offset(index);
    read_exact_at(source, input, &mut buffer[..len], offset)?;
    if cipher.open(index, last, &mut buffer[..len]).is_some() {
        return Ok(&buffer[..len - TAG_LEN]);
    }

    // ring zeroed the buffer, so the retry with the other flag reads the segment again.
    let mut other_flag_opens = false;
    if len == layout.chunk_len() {
        read_exact_at(source, input, &mut buffer[..len], offset)?;
        other_flag_opens = cipher.open(index, !last, &mut buffer[..len]).is_some();
    }
    Err(misplaced_segment(index, last, other_flag_opens))
}

/// Runs `work` on segments `0..segments` across `threads` threads, each with its own zeroizing
/// buffer of `buffer_len` bytes, and returns the error of the lowest failing segment.
///
/// Threads skip segments above the lowest failure seen so far but finish those below it, so the
/// error returned is the one that a reader going in order would meet first.
fn for_each_segment<F>(segments: u64, threads: usize, buffer_len: usize, work: F) -> Result<()>
where
    F: Fn(u32, &mut [u8]) -> Result<()> + Sync,
{
    let threads = (threads.max(1) as u64).min(segments);
    let lowest_failure = AtomicU64::new(u64::MAX);
    let run_range = |first: u64, end: u64| -> Result<()> {
        let mut buffer = Zeroizing::new(vec![0; buffer_len]);
        for index in first..end {
            if index > lowest_failure.load(Ordering::Relaxed) {
                break;
            }
            let segment = u32::try_from(index).map_err(|_| Error::TooManySegments)?;
            if let Err(err) = work(segment, &mut buffer) {
                lowest_failure.fetch_min(index, Ordering::Relaxed);
                return Err(err);
            }
        }
        Ok(())
    };
    if threads <= 1 {
        return run_range(0, segments);
    }

    thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (first, end) = (t * segments / threads, (t + 1) * segments / threads);
                scope.spawn(move || run_range(first, end))
            })
            .collect();
        // Ranges ascend with the thread number and each thread stops at its first failure, so
        // the first error in thread order belongs to the lowest failing segment.
        let mut outcome = Ok(());
        for handle in handles {
            let result = handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            if outcome.is_ok() {
                outcome = result;
            }
        }
        outcome
    })
}

/// A temporary file next to the output, renamed over it by [`commit`](Self::commit) and
/// removed when dropped before that.
struct TempOutput {
    file: NamedTempFile,
    output: PathBuf,
}

impl TempOutput {
    fn create(output: &Path) -> Result<Self> {
        let name = output.file_name().ok_or_else(|| {
            let err = io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name");
            Error::file("create", output, err)
        })?;
        let folder = folder_of(output);
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(name);
        prefix.push(".");
        let file = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .tempfile_in(folder)
            .map_err(|err| Error::file("create a temporary file next to", output, err))?;
        Ok(TempOutput {
            file,
            output: output.to_owned(),
        })
    }

    fn file(&self) -> &File {
        self.file.as_file()
    }

    /// Syncs the data to disk, renames the file to the output path, and syncs the folder so
    /// that the rename survives a crash.
    fn commit(self) -> Result<()> {
        let output = self.output;
        self.file
            .as_file()
            .sync_all()
            .map_err(|err| Error::file("sync", &output, err))?;
        self.file
            .persist(&output)
            .map_err(|err| Error::file("rename the temporary file to", &output, err.error))?;
        File::open(folder_of(&output))
            .and_then(|folder| folder.sync_all())
            .map_err(|err| Error::file("sync the folder of", &output, err))
    }
}

/// Returns the folder that holds `path`, `.` for a bare file name.
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

fn available_threads() -> usize {
    thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

fn file_len(file: &File, path: &Path) -> Result<u64> {
    file.metadata()
        .map(|metadata| metadata.len())
        .map_err(|err| Error::file("read the size of", path, err))
}

/// Reads exactly `buffer.len()` bytes at `offset`. An early end means the file shrank.
fn read_exact_at(file: &File, path: &Path, buffer: &mut [u8], offset: u64) -> Result<()> {
    file.read_exact_at(buffer, offset).map_err(|err| {
        if err.kind() == io::ErrorKind::UnexpectedEof {
            Error::InputChanged {
                path: path.to_owned(),
            }
        } else {
            Error::file("read", path, err)
        }
    })
}

fn check_unchanged(file: &File, path: &Path, expected_len: u64) -> Result<()> {
    if file_len(file, path)? == expected_len {
        Ok(())
    } else {
        Err(Error::InputChanged {
            path: path.to_owned(),
        })
    }
}
