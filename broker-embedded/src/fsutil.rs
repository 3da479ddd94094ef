//! Small filesystem helpers: atomic replace and directory fsync.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{BrokerError, Result};

/// Writes `bytes` to `path` atomically: write a temp file, fsync it, rename it over `path`,
/// fsync the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(|e| BrokerError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| BrokerError::io(&tmp, e))?;
        f.sync_all().map_err(|e| BrokerError::io(&tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| BrokerError::io(path, e))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// fsyncs a directory so that created, renamed or removed entries are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BrokerError::io(dir, e))
}
