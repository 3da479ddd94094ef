//! The storage seam: every durable file the broker and the state stores write goes through a
//! [`Storage`] (a directory tree) and its [`StorageFile`]s (positional reads and writes, `fsync`).
//!
//! Two implementations:
//! - [`OsStorage`], the real file system (`std::fs`, `pread`/`pwrite`, `fsync`).
//! - `sim::SimStorage` (feature `sim`), an in-memory model of the page cache for tests: writes,
//!   new files, renames and deletions are visible at once but become durable only when the
//!   file (`sync_data`/`sync_all`) or its directory ([`Storage::sync_dir`]) is synced. A
//!   simulated power cut keeps what was synced plus a random prefix of what was not (the last
//!   kept write possibly torn or zero-filled), which is what a kill of the process (which keeps
//!   the page cache) cannot show.
//!
//! What this crate owns: the file operations durable code needs, and the helpers built only on
//! them ([`write_atomic`], [`remove_if_exists`]). What it must not depend on: anything of the
//! crates above it (broker, state stores, streams). RocksDB's own files are outside this seam:
//! RocksDB has its own write-ahead log and sync rules.

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(feature = "sim")]
pub mod sim;

/// How [`Storage::open`] treats an existing or missing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist; its content is kept.
    Existing,
    /// Creates the file if it is missing; an existing file keeps its content.
    Create,
    /// Creates the file if it is missing; an existing file is truncated to zero bytes.
    Truncate,
}

/// An open file: positional reads and writes (no shared cursor), length changes and syncs.
///
/// Handles stay usable after the file is renamed or removed (as POSIX file descriptors do).
pub trait StorageFile: Send + Sync + Debug {
    /// Reads exactly `buf.len()` bytes at `pos` (`UnexpectedEof` when the file is shorter).
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()>;
    /// Writes all of `buf` at `pos`, extending the file if needed.
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// The file's current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// True when the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data durable (`fdatasync`). Does not make its directory entry durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Makes the file's data and metadata durable (`fsync`).
    fn sync_all(&self) -> io::Result<()>;
}

/// A handle on an exclusive lock (see [`Storage::try_lock`]); the lock is released on drop.
pub trait LockGuard: Send + Sync + Debug {}

/// A directory tree of durable files. Paths are ordinary absolute or relative paths; the
/// simulator interprets them in its own namespace.
pub trait Storage: Send + Sync + Debug {
    /// Opens a file for reading and writing.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>>;
    /// Creates a directory and its missing parents (new entries are durable only after the
    /// parent directory is synced).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of a directory (files and directories), in no particular order.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Renames a file or a directory, replacing an existing file at `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything under it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (created, renamed and removed files) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Whether a file or directory exists at `path`.
    fn exists(&self, path: &Path) -> bool;
    /// Takes an exclusive lock named by `path` (a file is created for it if needed), or fails
    /// with `WouldBlock` when another holder has it.
    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>>;

    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let f = self.open(path, OpenMode::Existing)?;
        let len = usize::try_from(f.len()?).map_err(|_| io::Error::other("file too large"))?;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }
}

/// Writes `bytes` to `path` atomically and durably: a temporary file is written and fsynced,
/// renamed over `path`, and the directory fsynced. After a crash at any point `path` holds
/// either its old content or all of `bytes`.
pub fn write_atomic(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    {
        let f = storage.open(&tmp, OpenMode::Truncate)?;
        f.write_all_at(bytes, 0)?;
        f.sync_all()?;
    }
    storage.rename(&tmp, path)?;
    storage.sync_dir(parent_dir(path))
}

/// Creates a directory and its missing parents durably: after it returns, a power cut cannot
/// lose any directory it created (each new directory's parent is synced).
pub fn create_dir_all_durable(storage: &dyn Storage, path: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(path);
    while let Some(p) = at {
        if p.as_os_str().is_empty() || storage.exists(p) {
            break;
        }
        missing.push(p);
        at = p.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    storage.create_dir_all(path)?;
    // Outermost first: a directory's entry is synced once its parent's entry is durable.
    for p in missing.iter().rev() {
        storage.sync_dir(parent_dir(p))?;
    }
    Ok(())
}

/// Removes a file; a missing file is not an error.
pub fn remove_if_exists(storage: &dyn Storage, path: &Path) -> io::Result<()> {
    match storage.remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsStorage;

impl OsStorage {
    /// The real file system as a shared [`Storage`].
    pub fn shared() -> Arc<dyn Storage> {
        Arc::new(OsStorage)
    }
}

#[derive(Debug)]
struct OsFile(File);

impl StorageFile for OsFile {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.0.write_all_at(buf, pos)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }
}

#[derive(Debug)]
struct OsLock(#[allow(dead_code)] File);

impl LockGuard for OsLock {}

impl Storage for OsStorage {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let mut o = OpenOptions::new();
        o.read(true).write(true);
        match mode {
            OpenMode::Existing => {}
            OpenMode::Create => {
                o.create(true);
            }
            OpenMode::Truncate => {
                o.create(true).truncate(true);
            }
        }
        Ok(Arc::new(OsFile(o.open(path)?)))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(path)? {
            out.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match f.try_lock() {
            Ok(()) => Ok(Box::new(OsLock(f))),
            Err(fs::TryLockError::WouldBlock) => Err(io::Error::from(ErrorKind::WouldBlock)),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_storage_round_trips_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let s = OsStorage;
        let sub = dir.path().join("a/b");
        s.create_dir_all(&sub).unwrap();
        let p = sub.join("f");
        let f = s.open(&p, OpenMode::Create).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.write_all_at(b"!", 5).unwrap();
        f.sync_data().unwrap();
        assert_eq!(f.len().unwrap(), 6);
        assert_eq!(s.read(&p).unwrap(), b"hello!");
        write_atomic(&s, &sub.join("g"), b"xyz").unwrap();
        let mut names = s.read_dir(&sub).unwrap();
        names.sort();
        assert_eq!(names, vec!["f", "g"]);
        s.rename(&p, &sub.join("h")).unwrap();
        assert!(!s.exists(&p));
        // The handle survives the rename.
        let mut buf = [0u8; 5];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"hello");
        f.set_len(2).unwrap();
        assert_eq!(s.read(&sub.join("h")).unwrap(), b"he");
        remove_if_exists(&s, &sub.join("h")).unwrap();
        remove_if_exists(&s, &sub.join("h")).unwrap();
        s.sync_dir(&sub).unwrap();
        s.remove_dir_all(&dir.path().join("a")).unwrap();
        assert!(!s.exists(&sub));
        let e = s.open(&p, OpenMode::Existing).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn os_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let s = OsStorage;
        let p = dir.path().join("lock");
        let g = s.try_lock(&p).unwrap();
        assert_eq!(s.try_lock(&p).unwrap_err().kind(), ErrorKind::WouldBlock);
        drop(g);
        s.try_lock(&p).unwrap();
    }
}
