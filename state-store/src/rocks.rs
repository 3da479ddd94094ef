//! The RocksDB key-value store, its shared memory budget, and store-type markers.

use std::fs;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, Cache, Options, ReadOptions, WriteBatch, WriteBufferManager, WriteOptions,
    DB,
};

use durable_fs::OsStorage;

use crate::error::{Result, StoreError};
use crate::restore::ChangelogRecord;
use crate::store::{
    BatchEntry, Direction, KeyValue, KeyValueIter, KeyValueStore, Restorable, StateStore,
};

/// Name of the file, inside a store directory, that records which type of store owns it.
pub const STORE_TYPE_MARKER: &str = ".state-store-type";

/// RocksDB settings shared by every store of an application instance.
///
/// The defaults bound memory as Kafka Streams' `BoundedMemoryRocksDBConfig` recipe does:
/// one block cache for all stores, and memtables charged against it through a write-buffer
/// manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RocksDbConfig {
    /// Capacity of the block cache shared by all stores, in bytes.
    pub block_cache_bytes: usize,
    /// Limit of all memtables of all stores together, in bytes (charged to the block cache).
    pub write_buffer_manager_bytes: usize,
    /// Size of one memtable, in bytes.
    pub write_buffer_size: usize,
    /// Memtables per store before writes stall.
    pub max_write_buffer_number: i32,
    /// Disable the write-ahead log, as Kafka Streams does: the changelog is the source of
    /// truth, and a checkpoint is written only after a flush.
    pub disable_wal: bool,
    /// Compress SST files with LZ4 (Kafka Streams' default is no compression).
    pub lz4_compression: bool,
}

impl Default for RocksDbConfig {
    fn default() -> Self {
        RocksDbConfig {
            block_cache_bytes: 64 << 20,
            write_buffer_manager_bytes: 32 << 20,
            write_buffer_size: 16 << 20,
            max_write_buffer_number: 3,
            disable_wal: true,
            lz4_compression: false,
        }
    }
}

/// The block cache and write-buffer manager shared by the RocksDB stores of an
/// application instance; cloning shares them.
#[derive(Clone)]
pub struct RocksDbResources {
    config: RocksDbConfig,
    cache: Cache,
    write_buffer_manager: WriteBufferManager,
}

impl std::fmt::Debug for RocksDbResources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbResources")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RocksDbResources {
    /// Creates the shared cache and write-buffer manager for `config`.
    pub fn new(config: RocksDbConfig) -> Result<Self> {
        if config.block_cache_bytes == 0 || config.write_buffer_size == 0 {
            return Err(StoreError::InvalidArgument(
                "block_cache_bytes and write_buffer_size must be positive".to_owned(),
            ));
        }
        if config.max_write_buffer_number < 1 {
            return Err(StoreError::InvalidArgument(
                "max_write_buffer_number must be at least 1".to_owned(),
            ));
        }
        let cache = Cache::new_lru_cache(config.block_cache_bytes);
        let write_buffer_manager = WriteBufferManager::new_write_buffer_manager_with_cache(
            config.write_buffer_manager_bytes,
            false,
            cache.clone(),
        );
        Ok(RocksDbResources {
            config,
            cache,
            write_buffer_manager,
        })
    }

    /// The configuration these resources were made from.
    pub fn config(&self) -> &RocksDbConfig {
        &self.config
    }

    /// Bytes currently held by the shared block cache (memtables included).
    pub fn cache_usage(&self) -> usize {
        self.cache.get_usage()
    }

    fn options(&self) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        table.set_block_size(4096);
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_block_based_table_factory(&table);
        opts.set_write_buffer_manager(&self.write_buffer_manager);
        opts.set_write_buffer_size(self.config.write_buffer_size);
        opts.set_max_write_buffer_number(self.config.max_write_buffer_number);
        opts.set_compression_type(if self.config.lz4_compression {
            rocksdb::DBCompressionType::Lz4
        } else {
            rocksdb::DBCompressionType::None
        });
        opts
    }
}

/// Checks the store-type marker of `dir`, writing it if the directory is new. Fails with
/// [`StoreError::StoreTypeMismatch`] when the directory belongs to another store type.
///
/// The marker is written atomically (temporary file, fsync, rename, directory fsync), so a
/// crash while a store is created leaves either no marker or the whole one. An empty marker
/// beside no RocksDB files (what a crash left behind before markers were written atomically)
/// is treated as a new directory.
pub(crate) fn check_or_write_marker(dir: &Path, store_type: &str) -> Result<()> {
    let storage = OsStorage;
    durable_fs::create_dir_all_durable(&storage, dir).map_err(|e| StoreError::io(dir, e))?;
    let marker = dir.join(STORE_TYPE_MARKER);
    let has_db = dir.join("CURRENT").exists();
    let found = match fs::read_to_string(&marker) {
        Ok(found) => Some(found.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(StoreError::io(&marker, e)),
    };
    match found {
        Some(found) if found == store_type => Ok(()),
        Some(found) if !found.is_empty() || has_db => Err(StoreError::StoreTypeMismatch {
            path: dir.to_owned(),
            expected: store_type.to_owned(),
            found,
        }),
        // A directory with RocksDB files but no marker was not made by this crate for this
        // type: refuse rather than guess.
        None if has_db => Err(StoreError::StoreTypeMismatch {
            path: dir.to_owned(),
            expected: store_type.to_owned(),
            found: "unmarked RocksDB instance".to_owned(),
        }),
        _ => durable_fs::write_atomic(&storage, &marker, store_type.as_bytes())
            .map_err(|e| StoreError::io(&marker, e)),
    }
}

/// A key-value store in its own RocksDB instance, ordered by key bytes.
pub struct RocksDbKeyValueStore {
    name: String,
    path: PathBuf,
    db: Option<DB>,
    options: Options,
    write_options: WriteOptions,
    restore_options: WriteOptions,
}

impl std::fmt::Debug for RocksDbKeyValueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbKeyValueStore")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("open", &self.db.is_some())
            .finish()
    }
}

/// Store type recorded in the marker of a RocksDB key-value store.
pub(crate) const KV_STORE_TYPE: &str = "key-value";

impl RocksDbKeyValueStore {
    /// Opens (creating if needed) the store `name` in directory `path`, usually
    /// [`TaskDirectory::store_path`](crate::TaskDirectory::store_path).
    ///
    /// Fails with [`StoreError::StoreTypeMismatch`] if the directory holds another store type
    /// and with [`StoreError::Locked`] if another process (or handle) has it open.
    pub fn open(
        name: impl Into<String>,
        path: impl Into<PathBuf>,
        resources: &RocksDbResources,
    ) -> Result<Self> {
        Self::open_typed(name.into(), path.into(), resources, KV_STORE_TYPE)
    }

    pub(crate) fn open_typed(
        name: String,
        path: PathBuf,
        resources: &RocksDbResources,
        store_type: &str,
    ) -> Result<Self> {
        check_or_write_marker(&path, store_type)?;
        let options = resources.options();
        let db =
            DB::open(&options, &path).map_err(|e| StoreError::from_rocksdb(&name, &path, e))?;
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(resources.config.disable_wal);
        let mut restore_options = WriteOptions::default();
        restore_options.disable_wal(true);
        tracing::debug!(store = %name, path = %path.display(), "opened RocksDB store");
        Ok(RocksDbKeyValueStore {
            name,
            path,
            db: Some(db),
            options,
            write_options,
            restore_options,
        })
    }

    /// Directory of the RocksDB instance.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db(&self) -> Result<&DB> {
        self.db
            .as_ref()
            .ok_or_else(|| StoreError::closed(&self.name))
    }

    fn err(&self, e: rocksdb::Error) -> StoreError {
        StoreError::from_rocksdb(&self.name, &self.path, e)
    }

    /// Closes the store and deletes its directory.
    pub(crate) fn destroy(mut self) -> Result<()> {
        self.db = None;
        DB::destroy(&self.options, &self.path).map_err(|e| self.err(e))?;
        match fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(&self.path, e)),
        }
    }

    fn apply_batch(&self, batch: WriteBatch, restore: bool) -> Result<()> {
        let opts = if restore {
            &self.restore_options
        } else {
            &self.write_options
        };
        self.db()?.write_opt(batch, opts).map_err(|e| self.err(e))
    }
}

/// The smallest key strictly greater than `key`.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(key.len() + 1);
    v.extend_from_slice(key);
    v.push(0);
    v
}

impl StateStore for RocksDbKeyValueStore {
    fn name(&self) -> &str {
        &self.name
    }
    fn persistent(&self) -> bool {
        true
    }
    fn is_open(&self) -> bool {
        self.db.is_some()
    }
    fn flush(&mut self) -> Result<()> {
        self.db()?.flush().map_err(|e| self.err(e))
    }
    fn flush_async(&mut self) -> Result<()> {
        let mut options = rocksdb::FlushOptions::default();
        options.set_wait(false);
        self.db()?.flush_opt(&options).map_err(|e| self.err(e))
    }
    fn flush_done(&mut self) -> Result<bool> {
        let db = self.db()?;
        let mut pending = 0;
        for property in [
            "rocksdb.num-immutable-mem-table",
            "rocksdb.mem-table-flush-pending",
        ] {
            pending += db
                .property_int_value(property)
                .map_err(|e| self.err(e))?
                .unwrap_or(0);
        }
        Ok(pending == 0)
    }
    fn close(&mut self) -> Result<()> {
        if let Some(db) = self.db.as_ref() {
            db.flush().map_err(|e| self.err(e))?;
        }
        self.db = None;
        Ok(())
    }
}

impl Restorable for RocksDbKeyValueStore {
    fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
        // Writing in key order makes memtable inserts ~30% cheaper; the sort is stable, so
        // of several records for one key the last still wins.
        let mut order: Vec<&ChangelogRecord> = records.iter().collect();
        order.sort_by(|a, b| a.key.cmp(&b.key));
        let mut batch = WriteBatch::default();
        for r in order {
            match &r.value {
                Some(v) => batch.put(&r.key, v),
                None => batch.delete(&r.key),
            }
        }
        self.apply_batch(batch, true)
    }
}

impl KeyValueStore for RocksDbKeyValueStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db()?
            .get_pinned(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| self.err(e))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db()?
            .put_opt(key, value, &self.write_options)
            .map_err(|e| self.err(e))
    }

    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let old = self.get(key)?;
        if old.is_some() {
            self.db()?
                .delete_opt(key, &self.write_options)
                .map_err(|e| self.err(e))?;
        }
        Ok(old)
    }

    fn write_batch(&mut self, entries: &[BatchEntry]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (k, v) in entries {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
        self.apply_batch(batch, false)
    }

    fn scan(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        direction: Direction,
    ) -> Result<KeyValueIter<'_>> {
        let db = self.db()?;
        if crate::memory::bounds_empty(lower, upper) {
            return Ok(KeyValueIter::empty());
        }
        let mut read = ReadOptions::default();
        match lower {
            Bound::Included(l) => read.set_iterate_lower_bound(l.to_vec()),
            Bound::Excluded(l) => read.set_iterate_lower_bound(successor(l)),
            Bound::Unbounded => {}
        }
        match upper {
            Bound::Included(u) => read.set_iterate_upper_bound(successor(u)),
            Bound::Excluded(u) => read.set_iterate_upper_bound(u.to_vec()),
            Bound::Unbounded => {}
        }
        Ok(KeyValueIter::new(RocksScan {
            it: db.raw_iterator_opt(read),
            reverse: direction == Direction::Reverse,
            positioned: false,
            finished: false,
            store: self,
        }))
    }

    fn approximate_num_entries(&self) -> Result<u64> {
        Ok(self
            .db()?
            .property_int_value("rocksdb.estimate-num-keys")
            .map_err(|e| self.err(e))?
            .unwrap_or(0))
    }
}

/// A lazy scan over a RocksDB iterator bounded by the read options; positioned at the
/// first call to `next`, each entry copied out as it is reached.
struct RocksScan<'a> {
    it: rocksdb::DBRawIteratorWithThreadMode<'a, DB>,
    reverse: bool,
    positioned: bool,
    finished: bool,
    store: &'a RocksDbKeyValueStore,
}

impl Iterator for RocksScan<'_> {
    type Item = Result<KeyValue>;

    fn next(&mut self) -> Option<Result<KeyValue>> {
        if self.finished {
            return None;
        }
        match (self.positioned, self.reverse) {
            (false, false) => self.it.seek_to_first(),
            (false, true) => self.it.seek_to_last(),
            (true, false) => self.it.next(),
            (true, true) => self.it.prev(),
        }
        self.positioned = true;
        if let Some((k, v)) = self.it.item() {
            return Some(Ok((k.to_vec(), v.to_vec())));
        }
        self.finished = true;
        self.it.status().err().map(|e| Err(self.store.err(e)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn sst_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sst"))
            })
            .count()
    }

    /// A crash while a store directory was first created could leave an empty marker (before
    /// markers were written atomically): with no RocksDB files beside it, the directory is
    /// new and opens; with RocksDB files, it is refused as another store's.
    #[test]
    fn an_empty_marker_is_a_new_store_only_without_rocksdb_files() {
        let dir = tempfile::tempdir().unwrap();
        let resources = RocksDbResources::new(RocksDbConfig::default()).unwrap();
        let path = dir.path().join("kv");
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join(STORE_TYPE_MARKER), b"").unwrap();
        let mut store = RocksDbKeyValueStore::open("kv", &path, &resources).unwrap();
        store.put(b"k", b"v").unwrap();
        store.close().unwrap();
        assert_eq!(
            std::fs::read_to_string(path.join(STORE_TYPE_MARKER)).unwrap(),
            KV_STORE_TYPE
        );
        assert!(
            !path.join(format!("{STORE_TYPE_MARKER}.tmp")).exists(),
            "no temporary marker is left"
        );

        std::fs::write(path.join(STORE_TYPE_MARKER), b"").unwrap();
        let err = RocksDbKeyValueStore::open("kv", &path, &resources).unwrap_err();
        assert!(
            matches!(&err, StoreError::StoreTypeMismatch { found, .. } if found.is_empty()),
            "{err}"
        );
    }

    /// A background flush makes the writes durable (in an SST file, the WAL being off)
    /// without the caller waiting, and `flush_done` tells when.
    #[test]
    fn flush_async_reaches_an_sst_file_and_reports_done() {
        let dir = tempfile::tempdir().unwrap();
        let resources = RocksDbResources::new(RocksDbConfig::default()).unwrap();
        let path = dir.path().join("kv");
        let mut store = RocksDbKeyValueStore::open("kv", &path, &resources).unwrap();
        for i in 0..10_000u32 {
            store.put(&i.to_be_bytes(), &[7; 32]).unwrap();
        }
        assert_eq!(sst_files(&path), 0, "nothing flushed yet (the WAL is off)");
        store.flush_async().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !store.flush_done().unwrap() {
            assert!(
                Instant::now() < deadline,
                "the background flush never finished"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(sst_files(&path) >= 1, "flushed data is in an SST file");
        // Writes after the flush do not undo `flush_done` for what came before.
        store.put(b"later", b"x").unwrap();
        assert!(store.flush_done().unwrap());
        store.close().unwrap();
    }
}
