//! The broker's use of the storage seam (`durable-fs`): atomic replace and directory fsync
//! with the broker's error type.

use std::path::Path;

use durable_fs::Storage;

use crate::error::{BrokerError, Result};

/// Writes `bytes` to `path` atomically: a temporary file is written and fsynced, renamed over
/// `path`, and the directory fsynced.
pub(crate) fn write_atomic(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> Result<()> {
    durable_fs::write_atomic(storage, path, bytes).map_err(|e| BrokerError::io(path, e))
}

/// fsyncs a directory so that created, renamed or removed entries are durable.
pub(crate) fn sync_dir(storage: &dyn Storage, dir: &Path) -> Result<()> {
    storage.sync_dir(dir).map_err(|e| BrokerError::io(dir, e))
}
