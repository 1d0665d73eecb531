//! [`StorageError`]: what went wrong on disk (disk full, permission denied, read-only filesystem, missing or
//! short data, too many open files, unsafe paths), each message saying what to do; and the classification of
//! `io::Error`s into it.

use super::layout::LayoutError;
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

const EMFILE: i32 = 24;
const ENFILE: i32 = 23;
const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;

/// What went wrong on disk, and what to do about it.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("disk full while writing {path}: free space on that disk or download to another directory, then retry")]
    DiskFull { path: PathBuf },
    #[error("permission denied {op} {path}: make it writable/readable by this user or use another directory")]
    PermissionDenied { op: &'static str, path: PathBuf },
    #[error("{path} is on a read-only filesystem: download to a writable directory")]
    ReadOnly { path: PathBuf },
    #[error("{path} does not exist: its data is not downloaded yet or was deleted; recheck and fetch it again")]
    Missing { path: PathBuf },
    #[error("{path} ends before byte {end}: the data is incomplete or was changed; recheck and fetch it again")]
    Truncated { path: PathBuf, end: u64 },
    #[error("too many open files opening {path}: lower the open-file cap or raise `ulimit -n`")]
    TooManyOpenFiles { path: PathBuf },
    #[error("file {file} has unsafe path component {component:?} that could escape the download directory: the torrent is broken or malicious")]
    UnsafePath { file: usize, component: String },
    #[error("file {file} ({path}) clashes with another file of the torrent (same path, or a file used as a directory): the torrent is invalid")]
    PathClash { file: usize, path: PathBuf },
    #[error("file {file} does not exist (the torrent has {count} files) (caller bug)")]
    NoSuchFile { file: usize, count: usize },
    #[error("{0}")]
    Layout(#[from] LayoutError),
    #[error("a buffer of {got} bytes was passed for {expected} bytes of data (caller bug)")]
    BufferSize { expected: u64, got: usize },
    #[error("{op} {path} failed: {source}; check the disk and the directory, then retry")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl StorageError {
    /// Classify an `io::Error` from operation `op` on `path`.
    pub fn from_io(err: io::Error, op: &'static str, path: &Path) -> StorageError {
        let path = path.to_path_buf();
        match (err.kind(), err.raw_os_error()) {
            (io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded, _)
            | (_, Some(ENOSPC | EDQUOT)) => StorageError::DiskFull { path },
            (io::ErrorKind::PermissionDenied, _) => StorageError::PermissionDenied { op, path },
            (io::ErrorKind::ReadOnlyFilesystem, _) => StorageError::ReadOnly { path },
            (io::ErrorKind::NotFound, _) => StorageError::Missing { path },
            (_, Some(EMFILE | ENFILE)) => StorageError::TooManyOpenFiles { path },
            _ => StorageError::Io {
                op,
                path,
                source: err,
            },
        }
    }

    /// The data simply is not there (missing or short file): a piece that needs it is not valid, not an error.
    pub fn is_missing_data(&self) -> bool {
        matches!(
            self,
            StorageError::Missing { .. } | StorageError::Truncated { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified() {
        let p = Path::new("/x");
        let full = StorageError::from_io(io::Error::from_raw_os_error(ENOSPC), "writing", p);
        assert!(matches!(full, StorageError::DiskFull { .. }));
        assert!(full.to_string().contains("free space"));
        let perm = StorageError::from_io(io::Error::from_raw_os_error(13), "opening", p);
        assert!(matches!(perm, StorageError::PermissionDenied { .. }));
        assert!(matches!(
            StorageError::from_io(io::Error::from_raw_os_error(EMFILE), "opening", p),
            StorageError::TooManyOpenFiles { .. }
        ));
        assert!(matches!(
            StorageError::from_io(io::Error::from_raw_os_error(30), "opening", p),
            StorageError::ReadOnly { .. }
        ));
    }
}
