//! Interactive queries (Kafka's `KafkaStreams#store`, `QueryableStoreTypes`,
//! `StoreQueryParameters` and the composite read-only stores): typed, read-only views of a
//! running application's local stores, each spanning every local task's instance of the
//! store, plus the metadata telling which instance holds a key ([`metadata`]).
//!
//! How reads stay safe while stream threads run: a task's store stack sits behind a mutex
//! ([`SharedTaskStore`]); the stream thread holds it while it works and gives it back
//! before each poll ([`StoreSlot`](crate::store::StoreSlot)), and every task registers its
//! stores in the application's [`QueryableStores`] once it is restored and initialized, and
//! removes them before it closes. A query locks one task's store for one read (a `get`,
//! or one task's share of a range), so it reads through the record cache, as Kafka's IQ
//! does, and sees what the thread has processed so far, flushed or not.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use parking_lot::Mutex;
use state_store::{Direction, KeyValue, SessionEntry, StoreError, WindowEntry};

use crate::error::{Result, StreamsError};
use crate::serde::{SerdeRegistry, SharedSerde};
use crate::store::{
    spec_serdes, timestamped, SerdePair, SharedTaskStore, StoreBuilder, StoreIter, StoreKind,
    TaskStore, ValueAndTimestamp, Window, Windowed,
};
use crate::task::TaskId;

pub(crate) mod metadata;

/// Who asks, in serde errors of queries.
const QUERY: &str = "interactive query";

/// One task's store, as the registry holds it.
#[derive(Clone)]
pub(crate) struct Registered {
    pub(crate) store: SharedTaskStore,
}

/// The stores of an application instance's tasks that queries may read: per store name,
/// per task, the active task's store, and standby tasks' stores separately (the hook for
/// standby replicas: a standby task registers with `standby = true` once it is
/// initialized).
#[derive(Default)]
pub(crate) struct QueryableStores {
    /// (store, task, standby) → store.
    stores: Mutex<BTreeMap<(String, TaskId, bool), Registered>>,
}

impl QueryableStores {
    /// Makes a task's stores queryable (after its restore and initialization).
    pub(crate) fn register_task(
        &self,
        task: TaskId,
        standby: bool,
        stores: impl IntoIterator<Item = (String, SharedTaskStore)>,
    ) {
        let mut all = self.stores.lock();
        for (name, store) in stores {
            all.insert((name, task, standby), Registered { store });
        }
    }

    /// Removes a task's stores (before the task closes them).
    pub(crate) fn unregister_task(&self, task: TaskId, standby: bool) {
        self.stores
            .lock()
            .retain(|(_, t, s), _| !(*t == task && *s == standby));
    }

    /// The registered instances of `name`, by task (active ones; standby ones too when
    /// `stale`), restricted to `partition` if given.
    pub(crate) fn stores(
        &self,
        name: &str,
        partition: Option<i32>,
        stale: bool,
    ) -> Vec<(TaskId, SharedTaskStore)> {
        self.stores
            .lock()
            .iter()
            .filter(|((n, t, standby), _)| {
                n == name && (stale || !*standby) && partition.is_none_or(|p| t.partition == p)
            })
            .map(|((_, t, _), r)| (*t, Arc::clone(&r.store)))
            .collect()
    }
}

/// What a query handle asks the application for on every call (Kafka's
/// `WrappingStoreProvider`): the current local instances of a store, or why there are
/// none (not running, rebalancing, not local, no such partition).
pub(crate) trait StoreProvider: Send + Sync {
    /// The instances to read, in task order.
    fn stores(
        &self,
        name: &str,
        partition: Option<i32>,
        stale: bool,
    ) -> Result<Vec<SharedTaskStore>>;
}

/// Everything a query handle is built from.
pub(crate) struct QueryTarget {
    pub(crate) name: String,
    /// The topic name store serdes see (`<application.id>-<store>-changelog`).
    pub(crate) topic: String,
    pub(crate) spec: StoreBuilder,
    pub(crate) registry: SerdeRegistry,
    pub(crate) provider: Arc<dyn StoreProvider>,
    pub(crate) partition: Option<i32>,
    pub(crate) stale: bool,
}

/// The kind of a queryable store and the typed handle it gives (Kafka's
/// `QueryableStoreType`); made by [`QueryableStoreTypes`].
pub struct QueryableStoreType<S> {
    requested: &'static str,
    accepts: fn(StoreKind) -> bool,
    make: fn(QueryTarget) -> Result<S>,
    _handle: PhantomData<fn() -> S>,
}

impl<S> Clone for QueryableStoreType<S> {
    fn clone(&self) -> Self {
        QueryableStoreType {
            requested: self.requested,
            accepts: self.accepts,
            make: self.make,
            _handle: PhantomData,
        }
    }
}

impl<S> std::fmt::Debug for QueryableStoreType<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("QueryableStoreType")
            .field(&self.requested)
            .finish()
    }
}

impl<S> QueryableStoreType<S> {
    /// The handle for `target`, if the store is of an accepted kind.
    pub(crate) fn create(&self, target: QueryTarget) -> Result<S> {
        let kind = target.spec.kind();
        if !(self.accepts)(kind) {
            return Err(StreamsError::InvalidStoreType {
                store: target.name,
                requested: self.requested,
                actual: kind.type_name(),
            });
        }
        (self.make)(target)
    }
}

/// The queryable store types (Kafka's `QueryableStoreTypes`), with the key and value types
/// to read; serdes are the store's declared ones, else the application's defaults for
/// the types, as for processors.
///
/// As in Kafka, [`key_value`](QueryableStoreTypes::key_value) also reads timestamped
/// key-value stores (what the DSL's tables and aggregations materialize), giving the
/// values without their timestamps, and [`window`](QueryableStoreTypes::window) also reads
/// timestamped window stores; the `timestamped_*` types read only timestamped stores.
#[derive(Debug, Clone, Copy)]
pub struct QueryableStoreTypes;

fn kv_kind(k: StoreKind) -> bool {
    matches!(k, StoreKind::KeyValue | StoreKind::TimestampedKeyValue)
}
fn ts_kv_kind(k: StoreKind) -> bool {
    matches!(k, StoreKind::TimestampedKeyValue)
}
fn window_kind(k: StoreKind) -> bool {
    matches!(
        k,
        StoreKind::Window { .. } | StoreKind::TimestampedWindow { .. }
    )
}
fn ts_window_kind(k: StoreKind) -> bool {
    matches!(k, StoreKind::TimestampedWindow { .. })
}
fn session_kind(k: StoreKind) -> bool {
    matches!(k, StoreKind::Session { .. })
}

impl QueryableStoreTypes {
    /// A key-value store (plain or timestamped) read as [`ReadOnlyKeyValueStore<K, V>`].
    pub fn key_value<K: 'static, V: 'static>() -> QueryableStoreType<ReadOnlyKeyValueStore<K, V>> {
        QueryableStoreType {
            requested: "key-value store",
            accepts: kv_kind,
            make: |t| {
                let (key, value) = spec_serdes::<K, V>(&t.spec, QUERY, &t.registry)?;
                let value = Values::new(value, t.spec.kind().is_timestamped());
                Ok(ReadOnlyKeyValueStore {
                    target: Target::new(t),
                    key,
                    value,
                })
            },
            _handle: PhantomData,
        }
    }

    /// A timestamped key-value store read with the timestamps, as
    /// [`ReadOnlyKeyValueStore<K, ValueAndTimestamp<V>>`].
    pub fn timestamped_key_value<K: 'static, V: 'static>(
    ) -> QueryableStoreType<ReadOnlyKeyValueStore<K, ValueAndTimestamp<V>>> {
        QueryableStoreType {
            requested: "timestamped key-value store",
            accepts: ts_kv_kind,
            make: |t| {
                let (key, value) = spec_serdes::<K, V>(&t.spec, QUERY, &t.registry)?;
                Ok(ReadOnlyKeyValueStore {
                    target: Target::new(t),
                    key,
                    value: Values::Plain(timestamped(value)),
                })
            },
            _handle: PhantomData,
        }
    }

    /// A window store (plain or timestamped) read as [`ReadOnlyWindowStore<K, V>`].
    pub fn window<K: 'static, V: 'static>() -> QueryableStoreType<ReadOnlyWindowStore<K, V>> {
        QueryableStoreType {
            requested: "window store",
            accepts: window_kind,
            make: |t| {
                let (key, value) = spec_serdes::<K, V>(&t.spec, QUERY, &t.registry)?;
                let value = Values::new(value, t.spec.kind().is_timestamped());
                ReadOnlyWindowStore::new(t, key, value)
            },
            _handle: PhantomData,
        }
    }

    /// A timestamped window store read with the timestamps, as
    /// [`ReadOnlyWindowStore<K, ValueAndTimestamp<V>>`].
    pub fn timestamped_window<K: 'static, V: 'static>(
    ) -> QueryableStoreType<ReadOnlyWindowStore<K, ValueAndTimestamp<V>>> {
        QueryableStoreType {
            requested: "timestamped window store",
            accepts: ts_window_kind,
            make: |t| {
                let (key, value) = spec_serdes::<K, V>(&t.spec, QUERY, &t.registry)?;
                ReadOnlyWindowStore::new(t, key, Values::Plain(timestamped(value)))
            },
            _handle: PhantomData,
        }
    }

    /// A session store read as [`ReadOnlySessionStore<K, V>`].
    pub fn session<K: 'static, V: 'static>() -> QueryableStoreType<ReadOnlySessionStore<K, V>> {
        QueryableStoreType {
            requested: "session store",
            accepts: session_kind,
            make: |t| {
                let (key, value): SerdePair<K, V> =
                    spec_serdes::<K, V>(&t.spec, QUERY, &t.registry)?;
                Ok(ReadOnlySessionStore {
                    target: Target::new(t),
                    key,
                    value: Values::Plain(value),
                })
            },
            _handle: PhantomData,
        }
    }
}

/// Which store to query and how (Kafka's `StoreQueryParameters`): its name and
/// [`QueryableStoreType`], optionally one partition only, and whether standby (stale)
/// copies may answer.
#[derive(Debug, Clone)]
pub struct StoreQueryParameters<S> {
    pub(crate) name: String,
    pub(crate) store_type: QueryableStoreType<S>,
    pub(crate) partition: Option<i32>,
    pub(crate) stale: bool,
}

impl<S> StoreQueryParameters<S> {
    /// Every local active instance of store `name`, read as `store_type`.
    pub fn from_name_and_type(name: impl Into<String>, store_type: QueryableStoreType<S>) -> Self {
        StoreQueryParameters {
            name: name.into(),
            store_type,
            partition: None,
            stale: false,
        }
    }

    /// Only the instance of partition `partition` (Kafka's `withPartition`); a call finds
    /// no local task of that partition → [`StreamsError::InvalidStateStorePartition`].
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Kafka's `enableStaleStores`: also read the stores of standby tasks, and read while
    /// the application is rebalancing. Standby tasks register their stores as standby in
    /// the query registry; an instance without standby tasks has only active stores, so
    /// this then only allows reads during a rebalance (from tasks still open).
    pub fn enable_stale_stores(mut self) -> Self {
        self.stale = true;
        self
    }

    /// The store name.
    pub fn store_name(&self) -> &str {
        &self.name
    }

    /// The partition asked for, if any.
    pub fn partition(&self) -> Option<i32> {
        self.partition
    }

    /// True if stale (standby) stores may answer.
    pub fn stale_stores_enabled(&self) -> bool {
        self.stale
    }
}

/// The part every handle shares: which store, and where to find its instances.
struct Target {
    name: Arc<str>,
    topic: Arc<str>,
    provider: Arc<dyn StoreProvider>,
    partition: Option<i32>,
    stale: bool,
}

impl Target {
    fn new(t: QueryTarget) -> Self {
        Target {
            name: t.name.into(),
            topic: t.topic.into(),
            provider: t.provider,
            partition: t.partition,
            stale: t.stale,
        }
    }

    fn stores(&self) -> Result<Vec<SharedTaskStore>> {
        self.provider.stores(&self.name, self.partition, self.stale)
    }

    fn key_bytes<K: 'static>(&self, serde: &SharedSerde<K>, key: &K) -> Result<Vec<u8>> {
        match serde.serialize(&self.topic, key) {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Err(StreamsError::Store(StoreError::InvalidArgument(format!(
                "a key of store `{}` serialized to null",
                self.name
            )))),
            Err(source) => Err(StreamsError::Serde {
                what: format!("key of store `{}`", self.name),
                topic: self.topic.to_string(),
                source,
            }),
        }
    }
}

/// Reads one task's store under its lock; a store its task closed meanwhile is reported
/// as migrated (Kafka's composite stores turn `InvalidStateStoreException` into
/// "may have been migrated").
fn read<T>(
    name: &str,
    store: &SharedTaskStore,
    f: impl FnOnce(&TaskStore) -> Result<T>,
) -> Result<T> {
    let guard = store.lock();
    f(&guard).map_err(|e| match e {
        StreamsError::Store(StoreError::Closed { .. }) => StreamsError::StateStoreMigrated {
            store: name.to_owned(),
            reason: "its task was closed while the query ran".to_owned(),
        },
        other => other,
    })
}

fn wrong_store(name: &str) -> StreamsError {
    StreamsError::IllegalState(format!(
        "store `{name}` changed type while the application runs"
    ))
}

/// Values as stored: plain, or behind the 8-byte timestamp of a timestamped store that is
/// read without it.
enum Values<V> {
    Plain(SharedSerde<V>),
    WithoutTimestamp(SharedSerde<V>),
}

impl<V> Clone for Values<V> {
    fn clone(&self) -> Self {
        match self {
            Values::Plain(s) => Values::Plain(Arc::clone(s)),
            Values::WithoutTimestamp(s) => Values::WithoutTimestamp(Arc::clone(s)),
        }
    }
}

impl<V: 'static> Values<V> {
    fn new(serde: SharedSerde<V>, timestamped: bool) -> Self {
        if timestamped {
            Values::WithoutTimestamp(serde)
        } else {
            Values::Plain(serde)
        }
    }

    fn decode(&self, name: &str, topic: &str, bytes: &[u8]) -> Result<V> {
        let (serde, raw) = match self {
            Values::Plain(s) => (s, bytes),
            Values::WithoutTimestamp(s) => match bytes.get(8..) {
                Some(raw) => (s, raw),
                None => {
                    return Err(StreamsError::Store(StoreError::InvalidArgument(format!(
                        "a value of timestamped store `{name}` has no 8-byte timestamp"
                    ))))
                }
            },
        };
        serde
            .deserialize(topic, Some(raw))
            .map_err(|source| StreamsError::Serde {
                what: format!("value of store `{name}`"),
                topic: topic.to_owned(),
                source,
            })
    }
}

fn decode_key<K: 'static>(
    serde: &SharedSerde<K>,
    name: &str,
    topic: &str,
    bytes: &[u8],
) -> Result<K> {
    serde
        .deserialize(topic, Some(bytes))
        .map_err(|source| StreamsError::Serde {
            what: format!("key of store `{name}`"),
            topic: topic.to_owned(),
            source,
        })
}

/// Visits `stores` one at a time: `fetch` collects one store's raw entries under its
/// lock, `decode` turns each into an item as the iterator reaches it. A store is read only
/// when the iterator gets to it.
fn per_store<E: 'static, T: 'static>(
    name: Arc<str>,
    stores: Vec<SharedTaskStore>,
    fetch: impl Fn(&TaskStore) -> Result<Vec<E>> + 'static,
    decode: impl Fn(E) -> Result<T> + Clone + 'static,
) -> StoreIter<'static, T> {
    StoreIter::from_iter(stores.into_iter().flat_map(move |s| {
        let items: Box<dyn Iterator<Item = Result<T>>> = match read(&name, &s, &fetch) {
            Ok(entries) => Box::new(entries.into_iter().map(decode.clone())),
            Err(e) => Box::new(std::iter::once(Err(e))),
        };
        items
    }))
}

/// A read-only key-value store over every local task's instance of a store (Kafka's
/// `ReadOnlyKeyValueStore`, as `CompositeReadOnlyKeyValueStore`). Get one with
/// [`StreamsApp::store`](crate::StreamsApp::store) and
/// [`QueryableStoreTypes::key_value`]. Each call finds the current instances again, so a
/// handle stays usable across rebalances (calls in between fail with
/// [`StreamsError::StateStoreMigrated`]).
///
/// Ranges visit the tasks' instances one after the other (each instance in key order,
/// instances in task order — not one merged order, as in Kafka); one instance is read
/// under its lock when the iterator reaches it.
pub struct ReadOnlyKeyValueStore<K, V> {
    target: Target,
    key: SharedSerde<K>,
    value: Values<V>,
}

impl<K, V> std::fmt::Debug for ReadOnlyKeyValueStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyKeyValueStore")
            .field("store", &self.target.name)
            .finish_non_exhaustive()
    }
}

fn kv<'a>(s: &'a TaskStore, name: &str) -> Result<&'a dyn crate::store::TaskKeyValueStore> {
    match s {
        TaskStore::KeyValue(kv) => Ok(kv.as_ref()),
        _ => Err(wrong_store(name)),
    }
}

impl<K: 'static, V: 'static> ReadOnlyKeyValueStore<K, V> {
    /// The value of `key`, from the instance that has it.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let t = &self.target;
        let k = t.key_bytes(&self.key, key)?;
        for s in t.stores()? {
            if let Some(v) = read(&t.name, &s, |s| Ok(kv(s, &t.name)?.get(&k)?))? {
                return self.value.decode(&t.name, &t.topic, &v).map(Some);
            }
        }
        Ok(None)
    }

    fn scan(
        &self,
        bounds: Option<(Vec<u8>, Vec<u8>)>,
        prefix: Option<Vec<u8>>,
        direction: Direction,
    ) -> Result<StoreIter<'static, (K, V)>> {
        let t = &self.target;
        let name = Arc::clone(&t.name);
        let fetch_name = Arc::clone(&t.name);
        let fetch = move |s: &TaskStore| -> Result<Vec<KeyValue>> {
            let store = kv(s, &fetch_name)?;
            let iter = match (&bounds, &prefix) {
                (Some((from, to)), _) => store.range(from, to, direction)?,
                (None, Some(p)) => store.prefix_scan(p, direction)?,
                (None, None) => store.all(direction)?,
            };
            Ok(iter.collect::<state_store::Result<Vec<_>>>()?)
        };
        let (key, value, topic, dname) = (
            Arc::clone(&self.key),
            self.value.clone(),
            Arc::clone(&t.topic),
            Arc::clone(&t.name),
        );
        let decode = move |(k, v): KeyValue| -> Result<(K, V)> {
            Ok((
                decode_key(&key, &dname, &topic, &k)?,
                value.decode(&dname, &topic, &v)?,
            ))
        };
        Ok(per_store(name, t.stores()?, fetch, decode))
    }

    /// Entries with keys in `[from, to]` (serialized order), per instance.
    pub fn range(&self, from: &K, to: &K) -> Result<StoreIter<'static, (K, V)>> {
        let t = &self.target;
        let bounds = (t.key_bytes(&self.key, from)?, t.key_bytes(&self.key, to)?);
        self.scan(Some(bounds), None, Direction::Forward)
    }

    /// [`range`](Self::range) in descending key order per instance (Kafka's
    /// `reverseRange`).
    pub fn reverse_range(&self, from: &K, to: &K) -> Result<StoreIter<'static, (K, V)>> {
        let t = &self.target;
        let bounds = (t.key_bytes(&self.key, from)?, t.key_bytes(&self.key, to)?);
        self.scan(Some(bounds), None, Direction::Reverse)
    }

    /// Every entry, per instance.
    pub fn all(&self) -> Result<StoreIter<'static, (K, V)>> {
        self.scan(None, None, Direction::Forward)
    }

    /// Every entry, descending per instance (Kafka's `reverseAll`).
    pub fn reverse_all(&self) -> Result<StoreIter<'static, (K, V)>> {
        self.scan(None, None, Direction::Reverse)
    }

    /// Entries whose serialized key starts with the serialized `prefix`.
    pub fn prefix_scan(&self, prefix: &K) -> Result<StoreIter<'static, (K, V)>> {
        let p = self.target.key_bytes(&self.key, prefix)?;
        self.scan(None, Some(p), Direction::Forward)
    }

    /// The instances' estimates of their entry counts, summed (saturating).
    pub fn approximate_num_entries(&self) -> Result<u64> {
        let t = &self.target;
        let mut total = 0u64;
        for s in t.stores()? {
            let n = read(&t.name, &s, |s| {
                Ok(kv(s, &t.name)?.approximate_num_entries()?)
            })?;
            total = total.saturating_add(n);
        }
        Ok(total)
    }
}

fn window_store<'a>(s: &'a TaskStore, name: &str) -> Result<&'a dyn crate::store::TaskWindowStore> {
    match s {
        TaskStore::Window(w) => Ok(w.as_ref()),
        _ => Err(wrong_store(name)),
    }
}

/// A read-only window store over every local task's instance of a store (Kafka's
/// `ReadOnlyWindowStore`, as `CompositeReadOnlyWindowStore`); windows are `[start, start +
/// size)`. Get one with [`StreamsApp::store`](crate::StreamsApp::store) and
/// [`QueryableStoreTypes::window`].
pub struct ReadOnlyWindowStore<K, V> {
    target: Target,
    key: SharedSerde<K>,
    value: Values<V>,
    window_size: i64,
}

impl<K, V> std::fmt::Debug for ReadOnlyWindowStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyWindowStore")
            .field("store", &self.target.name)
            .finish_non_exhaustive()
    }
}

impl<K: 'static, V: 'static> ReadOnlyWindowStore<K, V> {
    fn new(t: QueryTarget, key: SharedSerde<K>, value: Values<V>) -> Result<Self> {
        let window_size = match t.spec.kind() {
            StoreKind::Window { window_size_ms, .. }
            | StoreKind::TimestampedWindow { window_size_ms, .. } => window_size_ms,
            _ => 0,
        };
        Ok(ReadOnlyWindowStore {
            target: Target::new(t),
            key,
            value,
            window_size,
        })
    }

    /// The value of `key` in the window starting at `window_start` (Kafka's
    /// `fetch(key, time)`).
    pub fn fetch(&self, key: &K, window_start: i64) -> Result<Option<V>> {
        let t = &self.target;
        let k = t.key_bytes(&self.key, key)?;
        for s in t.stores()? {
            let found = read(&t.name, &s, |s| {
                Ok(window_store(s, &t.name)?.fetch(&k, window_start)?)
            })?;
            if let Some(v) = found {
                return self.value.decode(&t.name, &t.topic, &v).map(Some);
            }
        }
        Ok(None)
    }

    /// The windows of `key` starting in `[time_from, time_to]`, as (window start, value)
    /// in start order (Kafka's `fetch(key, timeFrom, timeTo)`).
    pub fn fetch_range(
        &self,
        key: &K,
        time_from: i64,
        time_to: i64,
    ) -> Result<StoreIter<'static, (i64, V)>> {
        let t = &self.target;
        let k = t.key_bytes(&self.key, key)?;
        let name = Arc::clone(&t.name);
        let fetch = move |s: &TaskStore| -> Result<Vec<WindowEntry>> {
            Ok(window_store(s, &name)?.fetch_range(&k, time_from, time_to)?)
        };
        let (value, topic, dname) = (
            self.value.clone(),
            Arc::clone(&t.topic),
            Arc::clone(&t.name),
        );
        let decode = move |e: WindowEntry| -> Result<(i64, V)> {
            Ok((e.window_start, value.decode(&dname, &topic, &e.value)?))
        };
        Ok(per_store(Arc::clone(&t.name), t.stores()?, fetch, decode))
    }

    fn windowed(
        &self,
        fetch: impl Fn(&dyn crate::store::TaskWindowStore) -> state_store::Result<Vec<WindowEntry>>
            + 'static,
    ) -> Result<StoreIter<'static, (Windowed<K>, V)>> {
        let t = &self.target;
        let name = Arc::clone(&t.name);
        let raw = move |s: &TaskStore| -> Result<Vec<WindowEntry>> {
            Ok(fetch(window_store(s, &name)?)?)
        };
        let (key, value, topic, dname, size) = (
            Arc::clone(&self.key),
            self.value.clone(),
            Arc::clone(&t.topic),
            Arc::clone(&t.name),
            self.window_size,
        );
        let decode = move |e: WindowEntry| -> Result<(Windowed<K>, V)> {
            let window = Window {
                start: e.window_start,
                end: e.window_start.saturating_add(size),
            };
            Ok((
                Windowed {
                    key: decode_key(&key, &dname, &topic, &e.key)?,
                    window,
                },
                value.decode(&dname, &topic, &e.value)?,
            ))
        };
        Ok(per_store(Arc::clone(&t.name), t.stores()?, raw, decode))
    }

    /// Windows of keys in `[key_from, key_to]` starting in `[time_from, time_to]`, per
    /// instance.
    pub fn fetch_key_range(
        &self,
        key_from: &K,
        key_to: &K,
        time_from: i64,
        time_to: i64,
    ) -> Result<StoreIter<'static, (Windowed<K>, V)>> {
        let t = &self.target;
        let (from, to) = (
            t.key_bytes(&self.key, key_from)?,
            t.key_bytes(&self.key, key_to)?,
        );
        self.windowed(move |s| s.fetch_key_range(&from, &to, time_from, time_to))
    }

    /// Every window starting in `[time_from, time_to]`, per instance (Kafka's
    /// `fetchAll`).
    pub fn fetch_all(
        &self,
        time_from: i64,
        time_to: i64,
    ) -> Result<StoreIter<'static, (Windowed<K>, V)>> {
        self.windowed(move |s| s.fetch_all(time_from, time_to))
    }

    /// Every retained window, per instance.
    pub fn all(&self) -> Result<StoreIter<'static, (Windowed<K>, V)>> {
        self.fetch_all(i64::MIN, i64::MAX)
    }
}

fn session_store<'a>(
    s: &'a TaskStore,
    name: &str,
) -> Result<&'a dyn crate::store::TaskSessionStore> {
    match s {
        TaskStore::Session(w) => Ok(w.as_ref()),
        _ => Err(wrong_store(name)),
    }
}

/// A read-only session store over every local task's instance of a store (Kafka's
/// `ReadOnlySessionStore`, as `CompositeReadOnlySessionStore`); sessions are `[start,
/// end]`, both inclusive. Get one with [`StreamsApp::store`](crate::StreamsApp::store)
/// and [`QueryableStoreTypes::session`].
pub struct ReadOnlySessionStore<K, V> {
    target: Target,
    key: SharedSerde<K>,
    value: Values<V>,
}

impl<K, V> std::fmt::Debug for ReadOnlySessionStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlySessionStore")
            .field("store", &self.target.name)
            .finish_non_exhaustive()
    }
}

impl<K: 'static, V: 'static> ReadOnlySessionStore<K, V> {
    fn sessions(
        &self,
        fetch: impl Fn(&dyn crate::store::TaskSessionStore) -> state_store::Result<Vec<SessionEntry>>
            + 'static,
    ) -> Result<StoreIter<'static, (Windowed<K>, V)>> {
        let t = &self.target;
        let name = Arc::clone(&t.name);
        let raw = move |s: &TaskStore| -> Result<Vec<SessionEntry>> {
            Ok(fetch(session_store(s, &name)?)?)
        };
        let (key, value, topic, dname) = (
            Arc::clone(&self.key),
            self.value.clone(),
            Arc::clone(&t.topic),
            Arc::clone(&t.name),
        );
        let decode = move |e: SessionEntry| -> Result<(Windowed<K>, V)> {
            Ok((
                Windowed {
                    key: decode_key(&key, &dname, &topic, &e.key)?,
                    window: Window {
                        start: e.start,
                        end: e.end,
                    },
                },
                value.decode(&dname, &topic, &e.value)?,
            ))
        };
        Ok(per_store(Arc::clone(&t.name), t.stores()?, raw, decode))
    }

    /// Every retained session of `key` (Kafka's `fetch(key)`).
    pub fn fetch(&self, key: &K) -> Result<StoreIter<'static, (Windowed<K>, V)>> {
        let k = self.target.key_bytes(&self.key, key)?;
        self.sessions(move |s| s.fetch_key(&k))
    }

    /// Every retained session of keys in `[key_from, key_to]`, per instance.
    pub fn fetch_key_range(
        &self,
        key_from: &K,
        key_to: &K,
    ) -> Result<StoreIter<'static, (Windowed<K>, V)>> {
        let t = &self.target;
        let (from, to) = (
            t.key_bytes(&self.key, key_from)?,
            t.key_bytes(&self.key, key_to)?,
        );
        self.sessions(move |s| s.fetch_key_range(&from, &to))
    }

    /// Sessions of `key` ending at or after `earliest_session_end` and starting at or
    /// before `latest_session_start` (Kafka's `findSessions`).
    pub fn find_sessions(
        &self,
        key: &K,
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Result<StoreIter<'static, (Windowed<K>, V)>> {
        let k = self.target.key_bytes(&self.key, key)?;
        self.sessions(move |s| s.find_sessions(&k, earliest_session_end, latest_session_start))
    }

    /// The value of the session of `key` that is exactly `[start, end]` (Kafka's
    /// `fetchSession`).
    pub fn fetch_session(&self, key: &K, start: i64, end: i64) -> Result<Option<V>> {
        let t = &self.target;
        let k = t.key_bytes(&self.key, key)?;
        for s in t.stores()? {
            let found = read(&t.name, &s, |s| {
                Ok(session_store(s, &t.name)?.fetch_session(&k, start, end)?)
            })?;
            if let Some(v) = found {
                return self.value.decode(&t.name, &t.topic, &v).map(Some);
            }
        }
        Ok(None)
    }
}
