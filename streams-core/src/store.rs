//! State store definitions: what a topology declares, and how a task opens it.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use state_store::{
    CacheFlushEntry, CachingKeyValueStore, ChangeLoggingKeyValueStore, ChangelogSink,
    InMemoryKeyValueStore, KeyValueStore, Metered, RecordTimestamp, Restorable,
    RocksDbKeyValueStore, RocksDbResources, StoreMetrics, TaskDirectory, ThreadCache,
};

use crate::error::Result;

/// The kind of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A key-value store.
    KeyValue,
}

/// Declares a state store for [`Topology::add_state_store`](crate::Topology::add_state_store),
/// like Kafka's `StoreBuilder`: persistent (RocksDB) by default, change-logged by default,
/// caching off by default.
///
/// ```
/// use streams_core::StoreBuilder;
/// let store = StoreBuilder::key_value("counts").in_memory().with_caching(true);
/// assert_eq!(store.name(), "counts");
/// assert!(!store.is_persistent() && store.is_caching() && store.is_logging());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreBuilder {
    name: String,
    kind: StoreKind,
    persistent: bool,
    caching: bool,
    logging: bool,
    changelog_config: BTreeMap<String, String>,
}

impl StoreBuilder {
    /// A persistent (RocksDB) key-value store named `name`, logged, not cached.
    pub fn key_value(name: impl Into<String>) -> Self {
        StoreBuilder {
            name: name.into(),
            kind: StoreKind::KeyValue,
            persistent: true,
            caching: false,
            logging: true,
            changelog_config: BTreeMap::new(),
        }
    }

    /// Keep the store in memory instead of RocksDB (restored from its changelog on start).
    pub fn in_memory(mut self) -> Self {
        self.persistent = false;
        self
    }

    /// Keep the store in RocksDB (the default).
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// Turn the write-back record cache on or off.
    pub fn with_caching(mut self, on: bool) -> Self {
        self.caching = on;
        self
    }

    /// Turn change-logging on or off. Without a changelog the store cannot be rebuilt after
    /// its local state is lost.
    pub fn with_logging(mut self, on: bool) -> Self {
        self.logging = on;
        self
    }

    /// Extra topic configs for the changelog topic (e.g. `min.compaction.lag.ms`).
    pub fn with_changelog_config(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.changelog_config.insert(key.into(), value.into());
        self
    }

    /// The store name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store kind.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// Whether it lives in RocksDB.
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// Whether writes are cached until a commit.
    pub fn is_caching(&self) -> bool {
        self.caching
    }

    /// Whether writes go to a changelog topic.
    pub fn is_logging(&self) -> bool {
        self.logging
    }

    /// Topic configs of the changelog (always `cleanup.policy=compact` plus what was set).
    pub fn changelog_config(&self) -> BTreeMap<String, String> {
        let mut c = self.changelog_config.clone();
        c.entry("cleanup.policy".to_owned())
            .or_insert_with(|| "compact".to_owned());
        c
    }
}

/// A key-value store as a task holds it: all layers stacked, restorable.
pub(crate) trait TaskKeyValueStore: KeyValueStore + Restorable {}
impl<T: KeyValueStore + Restorable> TaskKeyValueStore for T {}

/// A store opened for a task.
pub(crate) struct OpenStore {
    pub(crate) spec: StoreBuilder,
    pub(crate) store: Box<dyn TaskKeyValueStore>,
    /// Entries the cache pushed down, waiting to be handed to the connected processors.
    pub(crate) flushed: Option<Arc<Mutex<Vec<CacheFlushEntry>>>>,
    /// The record timestamp the change-logging and caching layers stamp their writes with.
    pub(crate) timestamp: RecordTimestamp,
}

/// Everything needed to open a store for one task.
pub(crate) struct StoreEnv<'a> {
    pub(crate) dir: Option<&'a TaskDirectory>,
    pub(crate) rocksdb: Option<&'a RocksDbResources>,
    /// The record-cache budget of the stream thread (or test driver) running the task,
    /// shared by the caches of all its tasks' stores; a budget of 0 turns caching off.
    pub(crate) cache: ThreadCache,
    pub(crate) metrics: Arc<StoreMetrics>,
}

pub(crate) fn open_store(
    spec: &StoreBuilder,
    env: &StoreEnv<'_>,
    changelog: Option<Box<dyn ChangelogSink>>,
) -> Result<OpenStore> {
    let timestamp = RecordTimestamp::new();
    let base: Box<dyn TaskKeyValueStore> = match (spec.persistent, env.dir, env.rocksdb) {
        (true, Some(dir), Some(resources)) => Box::new(RocksDbKeyValueStore::open(
            spec.name.clone(),
            dir.store_path(&spec.name)?,
            resources,
        )?),
        _ => Box::new(InMemoryKeyValueStore::new(spec.name.clone())),
    };
    let logged: Box<dyn TaskKeyValueStore> = match changelog {
        Some(sink) => Box::new(ChangeLoggingKeyValueStore::new(
            base,
            sink,
            timestamp.clone(),
        )),
        None => base,
    };
    let (cached, flushed): (Box<dyn TaskKeyValueStore>, _) =
        if spec.caching && env.cache.max_bytes() > 0 {
            let queue = Arc::new(Mutex::new(Vec::new()));
            let q = Arc::clone(&queue);
            // Kafka's named-cache namespace `<taskId>-<storeName>`; the task directory is
            // `<state.dir>/<application.id>/<taskId>`.
            let task = env
                .dir
                .and_then(|d| d.path().file_name())
                .map(|n| format!("{}-", n.to_string_lossy()))
                .unwrap_or_default();
            let namespace = format!("{task}{}", spec.name);
            let mut cache = CachingKeyValueStore::with_thread_cache(
                logged,
                &env.cache,
                namespace,
                timestamp.clone(),
            );
            cache.set_send_old_values(true);
            cache.set_flush_listener(Box::new(move |e: &CacheFlushEntry| {
                q.lock().push(e.clone())
            }));
            (Box::new(cache), Some(queue))
        } else {
            (logged, None)
        };
    let metered = Metered::new(cached, env.metrics.clone());
    Ok(OpenStore {
        spec: spec.clone(),
        store: Box::new(metered),
        flushed,
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cached stores of a thread's tasks share the thread's budget, each as a named
    /// cache `<taskId>-<store>`; writing to one evicts from it only.
    #[test]
    fn cached_stores_share_the_thread_cache() {
        let state = tempfile::tempdir().unwrap();
        let cache = ThreadCache::new(1_000);
        let dirs = [
            TaskDirectory::new(state.path(), "app", "0_0").unwrap(),
            TaskDirectory::new(state.path(), "app", "1_0").unwrap(),
        ];
        let spec = StoreBuilder::key_value("counts")
            .in_memory()
            .with_caching(true);
        let mut stores: Vec<OpenStore> = dirs
            .iter()
            .map(|dir| {
                let env = StoreEnv {
                    dir: Some(dir),
                    rocksdb: None,
                    cache: cache.clone(),
                    metrics: Arc::new(StoreMetrics::new()),
                };
                open_store(&spec, &env, None).unwrap()
            })
            .collect();
        assert_eq!(
            cache.namespaces(),
            vec!["0_0-counts".to_owned(), "1_0-counts".to_owned()]
        );
        for i in 0..5u8 {
            stores[0].store.put(&[i], &[0; 100]).unwrap();
        }
        let first = cache.namespace_bytes("0_0-counts");
        assert!(first > 500);
        for i in 0..20u8 {
            stores[1].store.put(&[i], &[0; 100]).unwrap();
            assert!(cache.size_bytes() <= 1_000);
        }
        // The second store evicted its own entries (reported to its queue) and left the
        // first store's alone.
        assert_eq!(cache.namespace_bytes("0_0-counts"), first);
        let flushed = stores[1].flushed.as_ref().unwrap().lock().len();
        assert!(flushed > 0);
        assert!(stores[0].flushed.as_ref().unwrap().lock().is_empty());
        drop(stores);
        assert_eq!(cache.size_bytes(), 0);
    }

    #[test]
    fn a_zero_budget_turns_caching_off() {
        let spec = StoreBuilder::key_value("s").in_memory().with_caching(true);
        let env = StoreEnv {
            dir: None,
            rocksdb: None,
            cache: ThreadCache::new(0),
            metrics: Arc::new(StoreMetrics::new()),
        };
        assert!(open_store(&spec, &env, None).unwrap().flushed.is_none());
    }
}
