//! Inspection of a file's header and length, without any key.

use std::fs::File;
use std::path::Path;

use super::error::{Error, Result};
use super::header::{Header, read_header};
use super::layout::Layout;

/// Header and lengths of an encrypted file, read without a key.
///
/// Nothing here is authenticated: the header fields are checked only when a reader verifies
/// the commitment, and the lengths only when the last segment opens. Show them to help choose
/// a key, not as facts about the plaintext.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FileInfo {
    /// Parsed header: version, algorithm, segment size, context and key slots.
    pub header: Header,
    /// Length of the encrypted file in bytes.
    pub encrypted_len: u64,
    /// Number of segments the length implies, or `None` when the file ends inside the header
    /// or inside a tag, which decryption rejects as truncated.
    pub segments: Option<u64>,
    /// Plaintext length the file length implies, or `None` as for `segments`.
    pub plaintext_len: Option<u64>,
}

/// Reads the header of the encrypted file at `path` and describes the file, with no key.
///
/// ```no_run
/// # fn main() -> Result<(), client_sdk::stream::Error> {
/// let info = client_sdk::stream::inspect_file("backup.tar.kmsf".as_ref())?;
/// for slot in info.header.slots() {
///     println!("{}", slot.kind());
/// }
/// # Ok(())
/// # }
/// ```
pub fn inspect_file(path: &Path) -> Result<FileInfo> {
    let file = File::open(path).map_err(|err| Error::file("open", path, err))?;
    let header = read_header(&mut &file)?;
    let encrypted_len = file
        .metadata()
        .map_err(|err| Error::file("read the size of", path, err))?
        .len();
    let layout = Layout::for_file(&header, encrypted_len)
        .ok()
        .filter(|layout| layout.last_chunk_len >= super::TAG_LEN as u64);
    Ok(FileInfo {
        segments: layout.map(|layout| layout.segments),
        plaintext_len: layout.map(|layout| layout.total_plaintext_len()),
        header,
        encrypted_len,
    })
}
