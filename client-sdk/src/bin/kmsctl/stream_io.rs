//! Inputs and outputs of streamed data: stdin or a file in, stdout or a file out.
//!
//! An output file is written under a temporary name in its folder and renamed into place only
//! when complete, so an interrupted or failed run never leaves a partial file under the name.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, StdoutLock, Write};
use std::path::{Path, PathBuf};

use client_sdk::stream::Error as StreamError;
use tempfile::NamedTempFile;
use zeroize::Zeroizing;

use crate::messages::{self, CliError};

/// Bytes moved per read, and the capacity of the stdout buffer.
const CHUNK: usize = 256 * 1024;

/// Source of streamed data: stdin or a file.
pub struct Input {
    pub reader: Box<dyn Read>,
    /// `stdin` or `file PATH`, for messages.
    pub name: String,
    /// Length in bytes, when the input is a regular file.
    pub len: Option<u64>,
}

impl Input {
    /// Opens `path`, or stdin when it is `None`.
    pub fn open(path: Option<&Path>) -> Result<Self, CliError> {
        let name = messages::input_name(path);
        let Some(path) = path else {
            return Ok(Input {
                reader: Box::new(io::stdin().lock()),
                len: stdin_len(),
                name,
            });
        };
        let read_error = |source| CliError::ReadInput {
            input: name.clone(),
            source,
        };
        let file = File::open(path).map_err(read_error)?;
        let len = file.metadata().map_err(read_error)?.len();
        Ok(Input {
            reader: Box::new(file),
            name,
            len: Some(len),
        })
    }

    /// Turns a failed read of a stream reader into an error that names this input. Errors of
    /// the file format keep their own message.
    pub fn read_error(&self, err: io::Error) -> CliError {
        match StreamError::from_io(err) {
            StreamError::Io(source) => CliError::ReadInput {
                input: self.name.clone(),
                source,
            },
            other => other.into(),
        }
    }
}

/// Returns the length of stdin when it is redirected from a regular file.
#[cfg(unix)]
fn stdin_len() -> Option<u64> {
    use std::os::fd::AsFd as _;

    let fd = io::stdin().as_fd().try_clone_to_owned().ok()?;
    let metadata = File::from(fd).metadata().ok()?;
    metadata.is_file().then_some(metadata.len())
}

#[cfg(not(unix))]
fn stdin_len() -> Option<u64> {
    None
}

/// Destination of streamed data: stdout or a file.
pub enum Output {
    Stdout(BufWriter<StdoutLock<'static>>),
    File(OutputFile),
}

impl Output {
    /// Creates the output file at `path`, or takes stdout when it is `None`. `binary` rejects a
    /// terminal on stdout, which would only show garbage.
    pub fn create(path: Option<&Path>, binary: Option<&'static str>) -> Result<Self, CliError> {
        match path {
            Some(path) => OutputFile::create(path).map(Output::File),
            None => {
                if let Some(what) = binary.filter(|_| io::stdout().is_terminal()) {
                    return Err(CliError::StdoutIsTerminal { what });
                }
                let stdout = io::stdout().lock();
                Ok(Output::Stdout(BufWriter::with_capacity(CHUNK, stdout)))
            }
        }
    }

    /// Turns a failed write into an error that names this output. Errors of the file format
    /// keep their own message.
    pub fn write_error(&self, err: io::Error) -> CliError {
        let source = match StreamError::from_io(err) {
            StreamError::Io(source) => source,
            other => return other.into(),
        };
        match self {
            Output::Stdout(_) => CliError::WriteOutput(source),
            Output::File(file) => CliError::WriteFile {
                path: file.path.clone(),
                source,
            },
        }
    }

    /// Flushes stdout, or syncs the file and renames it into place.
    pub fn commit(self) -> Result<(), CliError> {
        match self {
            Output::Stdout(mut stdout) => stdout.flush().map_err(CliError::WriteOutput),
            Output::File(file) => file.commit(),
        }
    }
}

impl Write for Output {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Output::Stdout(stdout) => stdout.write(bytes),
            Output::File(file) => file.temp.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(stdout) => stdout.flush(),
            Output::File(file) => file.temp.flush(),
        }
    }
}

/// A temporary file (mode 0600) next to `path`, renamed to `path` by
/// [`commit`](Self::commit) and removed when dropped before that.
pub struct OutputFile {
    temp: NamedTempFile,
    path: PathBuf,
}

impl OutputFile {
    fn create(path: &Path) -> Result<Self, CliError> {
        let write_error = |source| CliError::WriteFile {
            path: path.to_owned(),
            source,
        };
        let name = path.file_name().ok_or_else(|| {
            write_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path names no file",
            ))
        })?;
        let mut prefix = OsString::from(".");
        prefix.push(name);
        prefix.push(".");
        let temp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .tempfile_in(folder_of(path))
            .map_err(write_error)?;
        Ok(OutputFile {
            temp,
            path: path.to_owned(),
        })
    }

    /// Syncs the data, renames the file into place, and syncs the folder so that the rename
    /// survives a crash.
    fn commit(mut self) -> Result<(), CliError> {
        let path = self.path;
        let write_error = |source| CliError::WriteFile {
            path: path.clone(),
            source,
        };
        self.temp.flush().map_err(write_error)?;
        self.temp.as_file().sync_all().map_err(write_error)?;
        self.temp
            .persist(&path)
            .map_err(|err| write_error(err.error))?;
        File::open(folder_of(&path))
            .and_then(|folder| folder.sync_all())
            .map_err(write_error)
    }
}

/// Returns the folder that contains `path`, `.` for a bare file name.
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// A failed [`copy`], by side.
pub enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `reader` to `writer` through one buffer that is zeroized afterwards, because it
/// contains plaintext in one of the two directions. Returns the bytes copied.
pub fn copy(reader: &mut impl Read, writer: &mut impl Write) -> Result<u64, CopyError> {
    let mut buffer = Zeroizing::new(vec![0; CHUNK]);
    let mut total = 0;
    loop {
        let count = match reader.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(count) => count,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(CopyError::Read(err)),
        };
        writer
            .write_all(&buffer[..count])
            .map_err(CopyError::Write)?;
        total += count as u64;
    }
}
