//! Opening a declared store for one task: the layers stacked as Kafka Streams stacks them
//! (metered → caching → change-logging → RocksDB or in-memory), for every store kind.

use std::sync::Arc;

use parking_lot::{ArcMutexGuard, Mutex, RawMutex};
use state_store::{
    CacheFlushEntry, CachingKeyValueStore, CachingSessionStore, CachingWindowStore,
    ChangeLoggingKeyValueStore, ChangeLoggingSessionStore, ChangeLoggingWindowStore,
    ChangelogRecord, ChangelogSink, InMemoryKeyValueStore, InMemorySessionStore,
    InMemoryTimeOrderedKeyValueBuffer, InMemoryWindowStore, KeyValueStore, Metered,
    RecordTimestamp, Restorable, RocksDbKeyValueStore, RocksDbResources, RocksDbSessionStore,
    RocksDbWindowStore, SessionCacheFlushEntry, SessionStore, SessionStoreOptions, StateStore,
    StoreError, StoreMetrics, TaskDirectory, ThreadCache, WindowCacheFlushEntry, WindowStore,
    WindowStoreOptions,
};

use super::builder::{StoreBuilder, StoreKind};
use crate::error::Result;

/// A key-value store as a task holds it: all layers stacked, restorable.
pub(crate) trait TaskKeyValueStore: KeyValueStore + Restorable {}
impl<T: KeyValueStore + Restorable> TaskKeyValueStore for T {}

/// A window store as a task holds it.
pub(crate) trait TaskWindowStore: WindowStore + Restorable {}
impl<T: WindowStore + Restorable> TaskWindowStore for T {}

/// A session store as a task holds it.
pub(crate) trait TaskSessionStore: SessionStore + Restorable {}
impl<T: SessionStore + Restorable> TaskSessionStore for T {}

/// A store of any kind, all layers stacked.
pub(crate) enum TaskStore {
    /// Key-value and timestamped key-value stores.
    KeyValue(Box<dyn TaskKeyValueStore>),
    /// Window and timestamped window stores.
    Window(Box<dyn TaskWindowStore>),
    /// Session stores.
    Session(Box<dyn TaskSessionStore>),
    /// Suppression buffers.
    Buffer(Box<InMemoryTimeOrderedKeyValueBuffer>),
}

impl TaskStore {
    /// The store as its common trait (flush, close).
    pub(crate) fn state(&mut self) -> &mut dyn StateStore {
        match self {
            TaskStore::KeyValue(s) => s.as_mut(),
            TaskStore::Window(s) => s.as_mut(),
            TaskStore::Session(s) => s.as_mut(),
            TaskStore::Buffer(s) => s.as_mut(),
        }
    }

    /// The store as a restoration target.
    pub(crate) fn restorable(&mut self) -> &mut dyn Restorable {
        match self {
            TaskStore::KeyValue(s) => s.as_mut(),
            TaskStore::Window(s) => s.as_mut(),
            TaskStore::Session(s) => s.as_mut(),
            TaskStore::Buffer(s) => s.as_mut(),
        }
    }
}

/// A task's store shared with interactive queries (Kafka reads a task's store objects from
/// query threads; here the stack sits behind a mutex that the stream thread holds while it
/// works and releases before it polls, see [`StoreSlot`]).
pub(crate) type SharedTaskStore = Arc<Mutex<TaskStore>>;

/// Where a task keeps one of its stores: the shared stack and, while the stream thread
/// works with it, the thread's hold on its lock. The first access after
/// [`StoreSlot::release`] takes the lock and keeps it, so processors, commits and restores
/// pay one uncontended lock per store per thread loop, and handles can lend `&TaskStore`
/// (and lazy iterators borrowing it) without a guard of their own. Interactive queries
/// lock the same mutex for the duration of one read.
pub(crate) struct StoreSlot {
    shared: SharedTaskStore,
    /// The hold taken by a shared access (`get`).
    held: std::cell::OnceCell<ArcMutexGuard<RawMutex, TaskStore>>,
    /// The hold taken by (or moved to) an exclusive access (`get_mut`); at most one of
    /// `held` and `held_mut` is set.
    held_mut: Option<ArcMutexGuard<RawMutex, TaskStore>>,
}

impl StoreSlot {
    /// A slot for a freshly opened store.
    pub(crate) fn new(store: TaskStore) -> Self {
        StoreSlot {
            shared: Arc::new(Mutex::new(store)),
            held: std::cell::OnceCell::new(),
            held_mut: None,
        }
    }

    /// The store, locked for this thread until [`StoreSlot::release`].
    pub(crate) fn get(&self) -> &TaskStore {
        match &self.held_mut {
            Some(g) => g,
            None => self.held.get_or_init(|| self.shared.lock_arc()),
        }
    }

    /// The store, to write, locked for this thread until [`StoreSlot::release`].
    pub(crate) fn get_mut(&mut self) -> &mut TaskStore {
        if let Some(g) = self.held.take() {
            self.held_mut = Some(g);
        }
        self.held_mut.get_or_insert_with(|| self.shared.lock_arc())
    }

    /// Gives the lock back (before the stream thread blocks in a poll), so that
    /// interactive queries can read the store.
    pub(crate) fn release(&mut self) {
        self.held.take();
        self.held_mut = None;
    }

    /// The shared store, for the query registry.
    pub(crate) fn shared(&self) -> SharedTaskStore {
        Arc::clone(&self.shared)
    }
}

/// What a store's record cache pushed down (evicted by a write, or flushed at a commit):
/// key bytes, window, new and old value, timestamp. The task decodes it with the store's
/// serdes and hands it to the listener of the processor that owns the store's flushes
/// ([`ProcessorContext::set_cache_flush_listener`](crate::ProcessorContext::set_cache_flush_listener)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheFlush {
    pub(crate) key: Vec<u8>,
    /// `[start, end)` of a window, `[start, end]` of a session.
    pub(crate) window: Option<(i64, i64)>,
    pub(crate) new_value: Option<Vec<u8>>,
    pub(crate) old_value: Option<Vec<u8>>,
    pub(crate) timestamp: i64,
}

/// The entries one store call pushed out of a store's cache, in push order. The cache's
/// flush listener (a `state-store` callback, which cannot reach the task) appends to it;
/// the call that caused the push (a store handle's write, the commit's cache flush) hands
/// the batch to the owning processor's listener before it returns, once the store is no
/// longer borrowed. It is empty between store calls: nothing waits for a later step.
pub(crate) type FlushBatch = Arc<Mutex<Vec<CacheFlush>>>;

/// A store opened for a task.
pub(crate) struct OpenStore {
    pub(crate) spec: StoreBuilder,
    pub(crate) store: StoreSlot,
    /// What the store call in progress pushed out of the cache (present only when the
    /// store is cached).
    pub(crate) cache: Option<FlushBatch>,
    /// The record timestamp the change-logging and caching layers stamp their writes with.
    pub(crate) timestamp: RecordTimestamp,
    /// The topic name store serdes see (`<application.id>-<store>-changelog`, as Kafka).
    pub(crate) serde_topic: String,
    /// The typed serdes, resolved the first time a processor asks for the store.
    pub(crate) resolved_serdes: Option<super::handles::Resolved>,
}

impl OpenStore {
    /// Turns changelog records into what the store holds: timestamped stores keep the
    /// record timestamp in front of the value (Kafka's `rawValueToTimestampedValue`).
    pub(crate) fn convert_restored(&self, records: &mut [ChangelogRecord]) {
        if !self.spec.kind().is_timestamped() {
            return;
        }
        for r in records {
            if let Some(v) = &mut r.value {
                let mut with_ts = Vec::with_capacity(8 + v.len());
                with_ts.extend_from_slice(&r.timestamp.to_be_bytes());
                with_ts.extend_from_slice(v);
                *v = with_ts;
            }
        }
    }
}

/// Everything needed to open a store for one task.
pub(crate) struct StoreEnv<'a> {
    pub(crate) dir: Option<&'a TaskDirectory>,
    pub(crate) rocksdb: Option<&'a RocksDbResources>,
    /// The record-cache budget of the stream thread (or test driver) running the task,
    /// shared by the caches of all its tasks' stores; a budget of 0 turns caching off.
    pub(crate) cache: ThreadCache,
    pub(crate) metrics: Arc<StoreMetrics>,
    pub(crate) application_id: &'a str,
}

/// The changelog of a timestamped store: the value without its 8-byte timestamp, sent with
/// that timestamp as the record's (Kafka's `ChangeLoggingTimestampedKeyValueBytesStore`).
struct TimestampedChangelog(Box<dyn ChangelogSink>);

impl ChangelogSink for TimestampedChangelog {
    fn send(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        timestamp: i64,
    ) -> state_store::Result<()> {
        match value {
            None => self.0.send(key, None, timestamp),
            Some(v) => match v.split_first_chunk::<8>() {
                Some((ts, raw)) => self.0.send(key, Some(raw), i64::from_be_bytes(*ts)),
                None => Err(StoreError::InvalidArgument(format!(
                    "a timestamped store value needs an 8-byte timestamp prefix; got {} bytes",
                    v.len()
                ))),
            },
        }
    }
    fn flush(&mut self) -> state_store::Result<()> {
        self.0.flush()
    }
}

fn batch_push(batch: &FlushBatch, entry: CacheFlush) {
    batch.lock().push(entry);
}

pub(crate) fn open_store(
    spec: &StoreBuilder,
    env: &StoreEnv<'_>,
    changelog: Option<Box<dyn ChangelogSink>>,
) -> Result<OpenStore> {
    let timestamp = RecordTimestamp::new();
    let changelog = match changelog {
        Some(sink) if spec.kind().is_timestamped() => {
            Some(Box::new(TimestampedChangelog(sink)) as Box<dyn ChangelogSink>)
        }
        other => other,
    };
    let cached = spec.caching && env.cache.max_bytes() > 0;
    let batch: Option<FlushBatch> = cached.then(FlushBatch::default);
    // Kafka's named-cache namespace `<taskId>-<storeName>`; the task directory is
    // `<state.dir>/<application.id>/<taskId>`.
    let namespace = format!(
        "{}{}",
        env.dir
            .and_then(|d| d.path().file_name())
            .map(|n| format!("{}-", n.to_string_lossy()))
            .unwrap_or_default(),
        spec.name
    );
    let persistent = match (spec.persistent, env.dir, env.rocksdb) {
        (true, Some(dir), Some(resources)) => Some((dir.store_path(&spec.name)?, resources)),
        _ => None,
    };
    let name = spec.name.clone();
    let store = match spec.kind() {
        StoreKind::KeyValue | StoreKind::TimestampedKeyValue => {
            let base: Box<dyn TaskKeyValueStore> = match persistent {
                Some((path, resources)) => {
                    Box::new(RocksDbKeyValueStore::open(name, path, resources)?)
                }
                None => Box::new(InMemoryKeyValueStore::new(name)),
            };
            let logged: Box<dyn TaskKeyValueStore> = match changelog {
                Some(sink) => Box::new(ChangeLoggingKeyValueStore::new(
                    base,
                    sink,
                    timestamp.clone(),
                )),
                None => base,
            };
            let cached: Box<dyn TaskKeyValueStore> = match &batch {
                Some(q) => {
                    let q = Arc::clone(q);
                    let mut cache = CachingKeyValueStore::with_thread_cache(
                        logged,
                        &env.cache,
                        namespace,
                        timestamp.clone(),
                    );
                    cache.set_send_old_values(true);
                    cache.set_flush_listener(Box::new(move |e: &CacheFlushEntry| {
                        batch_push(
                            &q,
                            CacheFlush {
                                key: e.key.clone(),
                                window: None,
                                new_value: e.new_value.clone(),
                                old_value: e.old_value.clone(),
                                timestamp: e.timestamp,
                            },
                        );
                    }));
                    Box::new(cache)
                }
                None => logged,
            };
            TaskStore::KeyValue(Box::new(Metered::new(cached, env.metrics.clone())))
        }
        StoreKind::Window {
            retention_ms,
            window_size_ms,
            retain_duplicates,
        }
        | StoreKind::TimestampedWindow {
            retention_ms,
            window_size_ms,
            retain_duplicates,
        } => {
            let mut options = WindowStoreOptions::new(retention_ms);
            options.retain_duplicates = retain_duplicates;
            let base: Box<dyn TaskWindowStore> = match persistent {
                Some((path, resources)) => {
                    Box::new(RocksDbWindowStore::rocksdb(name, path, resources, options)?)
                }
                None => Box::new(InMemoryWindowStore::in_memory(name, options)?),
            };
            let logged: Box<dyn TaskWindowStore> = match changelog {
                Some(sink) => {
                    Box::new(ChangeLoggingWindowStore::new(base, sink, timestamp.clone()))
                }
                None => base,
            };
            // Kafka Streams does not cache stores that retain duplicates (join buffers).
            let cached: Box<dyn TaskWindowStore> = match &batch {
                Some(q) if !retain_duplicates => {
                    let q = Arc::clone(q);
                    let mut cache = CachingWindowStore::with_thread_cache(
                        logged,
                        &env.cache,
                        namespace,
                        timestamp.clone(),
                    );
                    cache.set_send_old_values(true);
                    cache.set_flush_listener(Box::new(move |e: &WindowCacheFlushEntry| {
                        batch_push(
                            &q,
                            CacheFlush {
                                key: e.key.clone(),
                                window: Some((
                                    e.window_start,
                                    e.window_start.saturating_add(window_size_ms),
                                )),
                                new_value: e.new_value.clone(),
                                old_value: e.old_value.clone(),
                                timestamp: e.timestamp,
                            },
                        );
                    }));
                    Box::new(cache)
                }
                _ => logged,
            };
            TaskStore::Window(Box::new(Metered::new(cached, env.metrics.clone())))
        }
        StoreKind::Session { retention_ms } => {
            let options = SessionStoreOptions::new(retention_ms);
            let base: Box<dyn TaskSessionStore> = match persistent {
                Some((path, resources)) => Box::new(RocksDbSessionStore::rocksdb(
                    name, path, resources, options,
                )?),
                None => Box::new(InMemorySessionStore::in_memory(name, options)?),
            };
            let logged: Box<dyn TaskSessionStore> = match changelog {
                Some(sink) => Box::new(ChangeLoggingSessionStore::new(
                    base,
                    sink,
                    timestamp.clone(),
                )),
                None => base,
            };
            let cached: Box<dyn TaskSessionStore> = match &batch {
                Some(q) => {
                    let q = Arc::clone(q);
                    let mut cache = CachingSessionStore::with_thread_cache(
                        logged,
                        &env.cache,
                        namespace,
                        timestamp.clone(),
                    );
                    cache.set_send_old_values(true);
                    cache.set_flush_listener(Box::new(move |e: &SessionCacheFlushEntry| {
                        batch_push(
                            &q,
                            CacheFlush {
                                key: e.key.clone(),
                                window: Some((e.start, e.end)),
                                new_value: e.new_value.clone(),
                                old_value: e.old_value.clone(),
                                timestamp: e.timestamp,
                            },
                        );
                    }));
                    Box::new(cache)
                }
                None => logged,
            };
            TaskStore::Session(Box::new(Metered::new(cached, env.metrics.clone())))
        }
        StoreKind::TimeOrderedBuffer => TaskStore::Buffer(Box::new(
            InMemoryTimeOrderedKeyValueBuffer::new(name, changelog),
        )),
    };
    let cache = match (&store, &batch, spec.kind()) {
        (TaskStore::Buffer(_), _, _) => None,
        (
            TaskStore::Window(_),
            Some(_),
            StoreKind::Window {
                retain_duplicates: true,
                ..
            }
            | StoreKind::TimestampedWindow {
                retain_duplicates: true,
                ..
            },
        ) => None,
        _ => batch,
    };
    Ok(OpenStore {
        spec: spec.clone(),
        store: StoreSlot::new(store),
        cache,
        timestamp,
        serde_topic: crate::names::changelog_topic(env.application_id, &spec.name),
        resolved_serdes: None,
    })
}

#[cfg(test)]
mod tests {
    use state_store::InMemoryChangelog;

    use super::*;

    /// What a timestamped store logs (plain value, timestamp as the record's) turns back
    /// into what it holds (timestamp prefix + value) when restored.
    #[test]
    fn timestamped_changelog_round_trips_through_restore() {
        let changelog = InMemoryChangelog::new();
        let mut sink = TimestampedChangelog(Box::new(changelog.clone()));
        let mut stored = 1_234i64.to_be_bytes().to_vec();
        stored.extend_from_slice(b"value");
        sink.send(b"k", Some(&stored), 999).unwrap();
        sink.send(b"gone", None, 777).unwrap();
        assert!(sink.send(b"short", Some(b"1234567"), 1).is_err());
        let mut records = changelog.records().unwrap();
        assert_eq!(records[0].value.as_deref(), Some(&b"value"[..]));
        assert_eq!(records[0].timestamp, 1_234);
        assert_eq!(
            (records[1].value.as_deref(), records[1].timestamp),
            (None, 777)
        );

        let open = open_store(
            &StoreBuilder::timestamped_key_value("ts").in_memory(),
            &StoreEnv {
                dir: None,
                rocksdb: None,
                cache: ThreadCache::new(0),
                metrics: Arc::new(StoreMetrics::new()),
                application_id: "app",
            },
            None,
        )
        .unwrap();
        open.convert_restored(&mut records);
        assert_eq!(records[0].value.as_deref(), Some(&stored[..]));
        assert_eq!(records[1].value, None);
        assert_eq!(open.serde_topic, "app-ts-changelog");
    }

    fn kv(open: &mut OpenStore) -> &mut dyn TaskKeyValueStore {
        match open.store.get_mut() {
            TaskStore::KeyValue(s) => s.as_mut(),
            _ => panic!("not a key-value store"),
        }
    }

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
                    application_id: "app",
                };
                open_store(&spec, &env, None).unwrap()
            })
            .collect();
        assert_eq!(
            cache.namespaces(),
            vec!["0_0-counts".to_owned(), "1_0-counts".to_owned()]
        );
        for i in 0..5u8 {
            kv(&mut stores[0]).put(&[i], &[0; 100]).unwrap();
        }
        let first = cache.namespace_bytes("0_0-counts");
        assert!(first > 500);
        for i in 0..20u8 {
            kv(&mut stores[1]).put(&[i], &[0; 100]).unwrap();
            assert!(cache.size_bytes() <= 1_000);
        }
        // The second store evicted its own entries (reported to its batch) and left the
        // first store's alone.
        assert_eq!(cache.namespace_bytes("0_0-counts"), first);
        let flushed = stores[1].cache.as_ref().unwrap().lock().len();
        assert!(flushed > 0);
        assert!(stores[0].cache.as_ref().unwrap().lock().is_empty());
        drop(stores);
        assert_eq!(cache.size_bytes(), 0);
    }

    /// The suppression buffer kind opens as state-store's buffer: in memory whatever is
    /// asked, never cached, logged to the given sink at flush with Kafka's `v` header.
    #[test]
    fn a_time_ordered_buffer_opens_uncached_in_memory_and_logged() {
        let spec = StoreBuilder::time_ordered_buffer("buf")
            .persistent()
            .with_caching(true);
        assert!(!spec.is_persistent() && !spec.is_caching());
        let env = StoreEnv {
            dir: None,
            rocksdb: None,
            cache: ThreadCache::new(1 << 20),
            metrics: Arc::new(StoreMetrics::new()),
            application_id: "app",
        };
        let changelog = InMemoryChangelog::new();
        let mut open = open_store(&spec, &env, Some(Box::new(changelog.clone()))).unwrap();
        assert!(open.cache.is_none());
        let TaskStore::Buffer(buffer) = open.store.get_mut() else {
            panic!("not a buffer");
        };
        let context = state_store::BufferRecordContext {
            timestamp: 5,
            offset: 0,
            topic: "in".into(),
            partition: 0,
            headers: Vec::new(),
        };
        buffer
            .put(10, b"k", Some(b"v".to_vec()), None, context)
            .unwrap();
        assert!(changelog.records().unwrap().is_empty());
        open.store.get_mut().state().flush_cache().unwrap();
        let records = changelog.records().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].timestamp, 5);
        open.store
            .get_mut()
            .restorable()
            .restore_batch(&records)
            .unwrap();
        assert_eq!(open.serde_topic, "app-buf-changelog");
    }

    #[test]
    fn a_zero_budget_turns_caching_off() {
        let spec = StoreBuilder::key_value("s").in_memory().with_caching(true);
        let env = StoreEnv {
            dir: None,
            rocksdb: None,
            cache: ThreadCache::new(0),
            metrics: Arc::new(StoreMetrics::new()),
            application_id: "app",
        };
        assert!(open_store(&spec, &env, None).unwrap().cache.is_none());
    }

    /// Window and session stores are cached on the same budget and report their windows.
    #[test]
    fn window_and_session_caches_report_their_windows_with_old_values() {
        let cache = ThreadCache::new(1 << 20);
        let env = StoreEnv {
            dir: None,
            rocksdb: None,
            cache: cache.clone(),
            metrics: Arc::new(StoreMetrics::new()),
            application_id: "app",
        };
        let spec = StoreBuilder::window(
            "w",
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(10),
            false,
        )
        .unwrap()
        .in_memory()
        .with_caching(true);
        let mut open = open_store(&spec, &env, None).unwrap();
        let TaskStore::Window(store) = open.store.get_mut() else {
            panic!("not a window store");
        };
        store.put(b"k", Some(b"1"), 10_000).unwrap();
        store.flush_cache().unwrap();
        store.put(b"k", Some(b"2"), 10_000).unwrap();
        store.flush_cache().unwrap();
        let flushed = open.cache.as_ref().unwrap().lock().clone();
        assert_eq!(flushed.len(), 2);
        assert_eq!(flushed[1].window, Some((10_000, 20_000)));
        assert_eq!(flushed[1].new_value.as_deref(), Some(&b"2"[..]));
        assert_eq!(flushed[1].old_value.as_deref(), Some(&b"1"[..]));

        let spec = StoreBuilder::session("s", std::time::Duration::from_secs(60))
            .in_memory()
            .with_caching(true);
        let mut open = open_store(&spec, &env, None).unwrap();
        let TaskStore::Session(store) = open.store.get_mut() else {
            panic!("not a session store");
        };
        store.put(b"k", 5, 9, b"a").unwrap();
        store.flush_cache().unwrap();
        let flushed = open.cache.as_ref().unwrap().lock().clone();
        assert_eq!(flushed[0].window, Some((5, 9)));
        assert_eq!(cache.namespaces(), vec!["s".to_owned(), "w".to_owned()]);
    }
}
