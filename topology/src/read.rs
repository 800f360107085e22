//! Reading a config, topology or PEM file from disk: a regular file only, never more
//! than a stated number of bytes, and (for text) UTF-8 with the position of the
//! first bad byte.
//!
//! The one I/O this crate does. A FIFO would block `open` and `read` forever and
//! `/dev/zero` never ends, so the file's type is checked before it is opened, the
//! file is opened non-blocking (a FIFO swapped in after the check cannot block
//! either) and checked again on the open handle, and at most `max_bytes + 1` bytes
//! are ever read.

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::Path;

/// The size cap for topology and daemon config files: 4 MiB. The shipped 55-city
/// topology is 17 KiB and a 2,000-node fleet about 1 MiB.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Reading a file failed. Each message names the file, says what is wrong and what
/// to do.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be found, opened or inspected; `source.kind()` says why
    /// (`NotFound`, `PermissionDenied`, ...).
    #[error("cannot open {path}: {source}; check the path and its permissions")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A directory, FIFO, socket or device: reading it could block or never end.
    #[error("{path} is not a regular file (it is a {kind}); give the path of a regular file")]
    NotRegular { path: String, kind: &'static str },
    /// Larger than the cap. `size` is the file's size if known, else the bytes read
    /// before giving up (one more than `max`).
    #[error(
        "{path} is too large: {size} bytes or more, over the limit of {max} bytes; \
         is this the right file?"
    )]
    TooLarge { path: String, size: u64, max: u64 },
    /// Reading failed part way.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Not UTF-8. `offset` is the 0-based byte offset of the first invalid byte,
    /// `line` and `column` (1-based, column in characters) where it is.
    #[error(
        "{path}:{line}: not valid UTF-8: byte 0x{byte:02x} at byte offset {offset} \
         (line {line}, column {column}); save the file as UTF-8"
    )]
    NotUtf8 {
        path: String,
        line: usize,
        column: usize,
        offset: usize,
        byte: u8,
    },
}

impl ReadError {
    /// The file the error is about, as given.
    pub fn path(&self) -> &str {
        match self {
            ReadError::Open { path, .. }
            | ReadError::NotRegular { path, .. }
            | ReadError::TooLarge { path, .. }
            | ReadError::Read { path, .. }
            | ReadError::NotUtf8 { path, .. } => path,
        }
    }
}

/// Reads a text config file (topology, `relay.yaml`, `controller.yaml`, a PEM file
/// read as text): a regular file of at most `max_bytes` bytes, UTF-8, a leading
/// byte order mark removed. Pass [`MAX_CONFIG_BYTES`] unless the file has a
/// tighter bound of its own. Fails fast on FIFOs, devices and directories.
pub fn read_config_text(path: &Path, max_bytes: u64) -> Result<String, ReadError> {
    let bytes = read_bounded_bytes(path, max_bytes)?;
    let mut text = String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let offset = e.utf8_error().valid_up_to();
        let before = &bytes[..offset];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |nl| nl + 1);
        // The bytes before `offset` are valid UTF-8, so this never fails.
        let column =
            std::str::from_utf8(&before[line_start..]).map_or(1, |s| s.chars().count() + 1);
        ReadError::NotUtf8 {
            path: path.display().to_string(),
            line: before.iter().filter(|&&b| b == b'\n').count() + 1,
            column,
            offset,
            byte: bytes.get(offset).copied().unwrap_or(0),
        }
    })?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    Ok(text)
}

/// Reads a binary file (a DER or PEM key or certificate): a regular file of at most
/// `max_bytes` bytes, returned as is. Fails fast on FIFOs, devices and directories.
pub fn read_bounded_bytes(path: &Path, max_bytes: u64) -> Result<Vec<u8>, ReadError> {
    let shown = || path.display().to_string();
    let open_error = |source| ReadError::Open {
        path: shown(),
        source,
    };
    // Checked before opening: opening a FIFO blocks until a writer comes, and
    // opening a device can have effects of its own.
    check_regular(path, &std::fs::metadata(path).map_err(open_error)?)?;
    let file = open_nonblocking(path).map_err(open_error)?;
    // Checked again on the handle: the path may have been replaced since.
    let meta = file.metadata().map_err(open_error)?;
    check_regular(path, &meta)?;
    let too_large = |size| ReadError::TooLarge {
        path: shown(),
        size,
        max: max_bytes,
    };
    if meta.len() > max_bytes {
        return Err(too_large(meta.len()));
    }
    // The size can change while reading (or be wrong, as in /proc): never read more
    // than one byte past the cap.
    let limit = max_bytes.saturating_add(1);
    let capacity = usize::try_from(meta.len().min(limit)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|source| ReadError::Read {
            path: shown(),
            source,
        })?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

fn check_regular(path: &Path, meta: &Metadata) -> Result<(), ReadError> {
    if meta.is_file() {
        return Ok(());
    }
    Err(ReadError::NotRegular {
        path: path.display().to_string(),
        kind: kind_of(meta),
    })
}

/// What a non-regular file is, for messages.
fn kind_of(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "FIFO (named pipe)";
        }
        if t.is_socket() {
            return "socket";
        }
        if t.is_char_device() {
            return "character device";
        }
        if t.is_block_device() {
            return "block device";
        }
    }
    "special file"
}

/// Opens for reading without blocking on a FIFO (`O_NONBLOCK`; no effect on the
/// reads of a regular file) and without taking a terminal as controlling one.
#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A file in a fresh folder under the system temp dir; the folder is removed
    /// when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("topology-read-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create temp dir");
            Scratch(dir)
        }

        fn write(&self, bytes: &[u8]) -> PathBuf {
            let path = self.0.join("file");
            std::fs::write(&path, bytes).expect("write");
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn text_is_read_and_a_bom_removed() {
        let dir = Scratch::new("bom");
        let path = dir.write("\u{feff}a: 1\n".as_bytes());
        assert_eq!(read_config_text(&path, 100).expect("readable"), "a: 1\n");
        let path = dir.write(b"a: 1\n");
        assert_eq!(read_config_text(&path, 100).expect("readable"), "a: 1\n");
    }

    #[test]
    fn invalid_utf8_reports_line_column_and_offset() {
        let dir = Scratch::new("utf8");
        // "é" is two bytes and one column; then a lone continuation byte.
        let path = dir.write(b"a: 1\nb: \xc3\xa9\x80\n");
        match read_config_text(&path, 100) {
            Err(ReadError::NotUtf8 {
                line,
                column,
                offset,
                byte,
                ..
            }) => assert_eq!((line, column, offset, byte), (2, 5, 10, 0x80)),
            other => panic!("{other:?}"),
        }
        // A truncated sequence at the very end.
        let path = dir.write(b"a: \xe2\x82");
        match read_config_text(&path, 100) {
            Err(e @ ReadError::NotUtf8 { .. }) => {
                let shown = e.to_string();
                assert!(
                    shown.contains(
                        ":1: not valid UTF-8: byte 0xe2 at byte offset 3 (line 1, column 4)"
                    ),
                    "{shown}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_cap_is_inclusive() {
        let dir = Scratch::new("cap");
        let path = dir.write(&[b'#'; 10]);
        assert_eq!(read_bounded_bytes(&path, 10).expect("at the cap").len(), 10);
        match read_bounded_bytes(&path, 9) {
            Err(ReadError::TooLarge { size, max, .. }) => assert_eq!((size, max), (10, 9)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            read_bounded_bytes(&path, u64::MAX).expect("no cap").len(),
            10
        );
    }

    /// /proc files say they are empty: the cap is enforced while reading too.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_longer_than_its_stated_size_stops_one_byte_past_the_cap() {
        let path = Path::new("/proc/self/status");
        match read_bounded_bytes(path, 10) {
            Err(ReadError::TooLarge { size, max, .. }) => assert_eq!((size, max), (11, 10)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bytes_are_returned_as_they_are() {
        let dir = Scratch::new("bytes");
        let bytes = [0xef, 0xbb, 0xbf, 0xff, 0x00, b'\n'];
        let path = dir.write(&bytes);
        assert_eq!(read_bounded_bytes(&path, 100).expect("readable"), bytes);
    }

    #[cfg(unix)]
    #[test]
    fn special_files_are_refused_by_kind() {
        let dir = Scratch::new("special");
        let fifo = dir.0.join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("run mkfifo");
        assert!(made.success());
        for (path, kind) in [
            (fifo.as_path(), "FIFO (named pipe)"),
            (Path::new("/dev/null"), "character device"),
            (dir.0.as_path(), "directory"),
        ] {
            match read_bounded_bytes(path, 100) {
                Err(e @ ReadError::NotRegular { kind: k, .. }) => {
                    assert_eq!(k, kind);
                    assert_eq!(e.path(), path.display().to_string());
                    assert!(e.to_string().contains("is not a regular file"));
                }
                other => panic!("{}: {other:?}", path.display()),
            }
        }
    }

    #[test]
    fn a_missing_file_keeps_its_io_error_kind() {
        match read_config_text(Path::new("/nonexistent/relay.yaml"), 100) {
            Err(ReadError::Open { source, path }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
                assert_eq!(path, "/nonexistent/relay.yaml");
            }
            other => panic!("{other:?}"),
        }
    }
}
