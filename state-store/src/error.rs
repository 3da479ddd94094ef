//! Typed errors of the state layer.

use std::path::PathBuf;

/// Result type of every fallible operation in this crate.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Everything that can go wrong in a state store, its directory or its restoration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file or directory operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// RocksDB reported an error other than corruption or a held lock.
    #[error("RocksDB error in store `{store}` at {path}: {message}")]
    RocksDb {
        /// Name of the store.
        store: String,
        /// Directory of the RocksDB instance.
        path: PathBuf,
        /// RocksDB's message.
        message: String,
    },
    /// Persistent data (a RocksDB instance or an on-disk key) is corrupt.
    #[error("corruption in store `{store}` at {path}: {detail}")]
    Corruption {
        /// Name of the store.
        store: String,
        /// Directory or file that is corrupt.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// A `.checkpoint` file cannot be parsed.
    #[error("corrupt checkpoint file {path} (line {line}): {detail}")]
    CorruptCheckpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// 1-based line number of the problem.
        line: usize,
        /// What was wrong.
        detail: String,
    },
    /// A changelog record cannot be decoded into this store's key layout.
    #[error("corrupt changelog record at offset {offset} for store `{store}`: {detail}")]
    CorruptChangelogRecord {
        /// Name of the store being restored.
        store: String,
        /// Offset of the record in its changelog partition.
        offset: i64,
        /// What was wrong.
        detail: String,
    },
    /// The store directory is locked by another process (or another open handle).
    #[error("store `{store}` at {path} is locked by another process or handle: {message}")]
    Locked {
        /// Name of the store.
        store: String,
        /// Directory of the store.
        path: PathBuf,
        /// RocksDB's message.
        message: String,
    },
    /// The directory belongs to a store of another type.
    #[error(
        "store directory {path} holds a `{found}` store, but a `{expected}` store was requested"
    )]
    StoreTypeMismatch {
        /// Directory of the store.
        path: PathBuf,
        /// Type that was requested.
        expected: String,
        /// Type recorded in the directory.
        found: String,
    },
    /// An operation was attempted on a closed store.
    #[error("store `{store}` is closed")]
    Closed {
        /// Name of the store.
        store: String,
    },
    /// A range query whose lower bound is above its upper bound.
    #[error("invalid range in store `{store}`: {detail}")]
    InvalidRange {
        /// Name of the store.
        store: String,
        /// The offending bounds.
        detail: String,
    },
    /// An argument outside what the store accepts (configuration, names, sizes).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A changelog sink refused a record.
    #[error("changelog sink for store `{store}` failed: {detail}")]
    Changelog {
        /// Name of the store.
        store: String,
        /// The sink's explanation.
        detail: String,
    },
}

impl StoreError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn closed(store: &str) -> Self {
        StoreError::Closed {
            store: store.to_owned(),
        }
    }

    pub(crate) fn invalid_range(store: &str, detail: String) -> Self {
        StoreError::InvalidRange {
            store: store.to_owned(),
            detail,
        }
    }

    /// Maps a RocksDB error to the matching variant, keeping store name and path.
    pub(crate) fn from_rocksdb(store: &str, path: &std::path::Path, err: rocksdb::Error) -> Self {
        let message = err.clone().into_string();
        match err.kind() {
            rocksdb::ErrorKind::Corruption => StoreError::Corruption {
                store: store.to_owned(),
                path: path.to_owned(),
                detail: message,
            },
            rocksdb::ErrorKind::IOError if message.to_ascii_lowercase().contains("lock") => {
                StoreError::Locked {
                    store: store.to_owned(),
                    path: path.to_owned(),
                    message,
                }
            }
            _ => StoreError::RocksDb {
                store: store.to_owned(),
                path: path.to_owned(),
                message,
            },
        }
    }
}
