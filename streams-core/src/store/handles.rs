//! Typed store handles: what [`ProcessorContext`](crate::ProcessorContext) hands a processor
//! for a store, with keys and values (de)serialized by the store's serdes (Kafka's metered
//! store layer). Errors name the store.

use std::any::Any;
use std::sync::Arc;

use state_store::{Direction, KeyValueIter, SessionEntry, WindowEntry};

use super::builder::{StoreBuilder, StoreKind, StoreSerdes};
use super::open::{OpenStore, TaskKeyValueStore, TaskSessionStore, TaskStore, TaskWindowStore};
use crate::error::{Result, SerdeError, StreamsError};
use crate::serde::{Serde, SerdeRegistry, SharedSerde};

/// A value with the timestamp of the record that wrote it (Kafka's `ValueAndTimestamp`),
/// what timestamped stores hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueAndTimestamp<V> {
    /// The value.
    pub value: V,
    /// The record timestamp, in milliseconds.
    pub timestamp: i64,
}

impl<V> ValueAndTimestamp<V> {
    /// A value with its timestamp.
    pub fn new(value: V, timestamp: i64) -> Self {
        ValueAndTimestamp { value, timestamp }
    }
}

/// A time window `[start, end)` (Kafka's `Window`; session windows are `[start, end]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// Start, in milliseconds.
    pub start: i64,
    /// End, in milliseconds.
    pub end: i64,
}

/// A key and the window it belongs to (Kafka's `Windowed<K>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Windowed<K> {
    /// The record key.
    pub key: K,
    /// The window.
    pub window: Window,
}

/// Kafka's `ValueAndTimestampSerde`: the 8-byte big-endian timestamp, then the value bytes;
/// a value that serializes to null makes the whole value null (a delete).
struct TimestampedSerde<V>(SharedSerde<V>);

impl<V: 'static> Serde<ValueAndTimestamp<V>> for TimestampedSerde<V> {
    fn serialize(
        &self,
        topic: &str,
        value: &ValueAndTimestamp<V>,
    ) -> std::result::Result<Option<Vec<u8>>, SerdeError> {
        Ok(self.0.serialize(topic, &value.value)?.map(|raw| {
            let mut out = Vec::with_capacity(8 + raw.len());
            out.extend_from_slice(&value.timestamp.to_be_bytes());
            out.extend_from_slice(&raw);
            out
        }))
    }

    fn deserialize(
        &self,
        topic: &str,
        bytes: Option<&[u8]>,
    ) -> std::result::Result<ValueAndTimestamp<V>, SerdeError> {
        let Some((ts, raw)) = bytes.and_then(<[u8]>::split_first_chunk::<8>) else {
            return Err(SerdeError::new(format!(
                "a timestamped value needs an 8-byte timestamp prefix; got {}",
                bytes.map_or_else(|| "null".to_owned(), |b| format!("{} bytes", b.len()))
            )));
        };
        Ok(ValueAndTimestamp {
            value: self.0.deserialize(topic, Some(raw))?,
            timestamp: i64::from_be_bytes(*ts),
        })
    }
}

pub(crate) type SerdePair<K, V> = (SharedSerde<K>, SharedSerde<V>);

/// The resolved serdes cached in an open store, with the types' names for errors.
pub(crate) struct Resolved {
    serdes: Box<dyn Any + Send>,
    types: &'static str,
}

/// Which typed view of a store a processor asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    KeyValue,
    TimestampedKeyValue,
    Window,
    TimestampedWindow,
    Session,
    TimeOrderedBuffer,
}

impl View {
    fn name(self) -> &'static str {
        match self {
            View::KeyValue => "key-value store",
            View::TimestampedKeyValue => "timestamped key-value store",
            View::Window => "window store",
            View::TimestampedWindow => "timestamped window store",
            View::Session => "session store",
            View::TimeOrderedBuffer => "time-ordered key-value buffer",
        }
    }

    fn matches(self, kind: StoreKind) -> bool {
        matches!(
            (self, kind),
            (View::KeyValue, StoreKind::KeyValue)
                | (View::TimestampedKeyValue, StoreKind::TimestampedKeyValue)
                | (View::Window, StoreKind::Window { .. })
                | (View::TimestampedWindow, StoreKind::TimestampedWindow { .. })
                | (View::Session, StoreKind::Session { .. })
                | (View::TimeOrderedBuffer, StoreKind::TimeOrderedBuffer)
        )
    }

    fn timestamped(self) -> bool {
        matches!(self, View::TimestampedKeyValue | View::TimestampedWindow)
    }
}

fn access_error(node: &str, store: &str, reason: String) -> StreamsError {
    StreamsError::StoreAccess {
        node: node.to_owned(),
        store: store.to_owned(),
        reason,
    }
}

/// Checks that `open` is a store of the kind `view` and returns its serdes for keys `K`
/// and stored values `V` (for timestamped views, `V` is `ValueAndTimestamp<_>` and
/// `make_value` wraps the declared value serde), resolving them once.
pub(crate) fn resolve_store<K: 'static, V: 'static, D: 'static>(
    open: &mut OpenStore,
    node: &str,
    view: View,
    registry: &SerdeRegistry,
    make_value: fn(SharedSerde<D>) -> SharedSerde<V>,
) -> Result<SerdePair<K, V>> {
    let store = open.spec.name();
    if !view.matches(open.spec.kind()) {
        return Err(access_error(
            node,
            store,
            format!(
                "it is a {}, not a {}",
                open.spec.kind().type_name(),
                view.name()
            ),
        ));
    }
    let types = std::any::type_name::<SerdePair<K, V>>();
    if let Some(resolved) = &open.resolved_serdes {
        return match resolved.serdes.downcast_ref::<SerdePair<K, V>>() {
            Some((k, v)) => Ok((Arc::clone(k), Arc::clone(v))),
            None => Err(access_error(
                node,
                store,
                format!(
                    "it was opened with serdes {} and is now asked for {types}",
                    resolved.types
                ),
            )),
        };
    }
    let (key, value) = spec_serdes::<K, D>(&open.spec, node, registry)?;
    let value = make_value(value);
    debug_assert_eq!(view.timestamped(), open.spec.kind().is_timestamped());
    open.resolved_serdes = Some(Resolved {
        serdes: Box::new((Arc::clone(&key), Arc::clone(&value))),
        types,
    });
    Ok((key, value))
}

/// The serdes of store `spec` for keys `K` and (plain) values `D`: the declared ones, else
/// the registry's defaults for the types. `node` names who asks, for errors.
pub(crate) fn spec_serdes<K: 'static, D: 'static>(
    spec: &StoreBuilder,
    node: &str,
    registry: &SerdeRegistry,
) -> Result<SerdePair<K, D>> {
    let store = spec.name();
    let (declared_key, declared_value) = match &spec.serdes {
        None => (None, None),
        Some(declared) => match declared.0.downcast_ref::<StoreSerdes<K, D>>() {
            Some(s) => (s.key.clone(), s.value.clone()),
            None => {
                return Err(access_error(
                    node,
                    store,
                    format!(
                        "its serdes were declared for other key or value types than {} and {}",
                        std::any::type_name::<K>(),
                        std::any::type_name::<D>()
                    ),
                ))
            }
        },
    };
    let missing = |what: &'static str, type_name: &'static str| StreamsError::MissingSerde {
        what,
        type_name,
        node: format!("{node} (store `{store}`)"),
    };
    let key = match declared_key.or_else(|| registry.get::<K>()) {
        Some(k) => k,
        None => return Err(missing("key", std::any::type_name::<K>())),
    };
    let value = match declared_value.or_else(|| registry.get::<D>()) {
        Some(v) => v,
        None => return Err(missing("value", std::any::type_name::<D>())),
    };
    Ok((key, value))
}

pub(crate) fn same<V>(serde: SharedSerde<V>) -> SharedSerde<V> {
    serde
}

pub(crate) fn timestamped<V: 'static>(serde: SharedSerde<V>) -> SharedSerde<ValueAndTimestamp<V>> {
    Arc::new(TimestampedSerde(serde))
}

/// Serializes and deserializes for one store, with errors that name it.
pub(super) struct Codec<'a, K, V> {
    pub(super) store: &'a str,
    topic: &'a str,
    key: &'a SharedSerde<K>,
    value: &'a SharedSerde<V>,
}

impl<K: 'static, V: 'static> Codec<'_, K, V> {
    /// A lazy iterator deserializing `entries` with `decode` and a copy of this codec.
    fn lazy<E: 'static, T>(
        &self,
        entries: Vec<E>,
        decode: impl Fn(&Codec<'_, K, V>, E) -> Result<T> + 'static,
    ) -> StoreIter<'static, T> {
        let (store, topic) = (self.store.to_owned(), self.topic.to_owned());
        let (key, value) = (Arc::clone(self.key), Arc::clone(self.value));
        StoreIter {
            inner: Box::new(entries.into_iter().map(move |e| {
                let codec = Codec {
                    store: &store,
                    topic: &topic,
                    key: &key,
                    value: &value,
                };
                decode(&codec, e)
            })),
        }
    }

    fn err(&self, what: &str, source: SerdeError) -> StreamsError {
        StreamsError::Serde {
            what: format!("{what} of store `{}`", self.store),
            topic: self.topic.to_owned(),
            source,
        }
    }

    pub(super) fn key_bytes(&self, key: &K) -> Result<Vec<u8>> {
        match self.key.serialize(self.topic, key) {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Err(StreamsError::Store(
                state_store::StoreError::InvalidArgument(format!(
                    "a key of store `{}` serialized to null",
                    self.store
                )),
            )),
            Err(e) => Err(self.err("key", e)),
        }
    }

    pub(super) fn value_bytes(&self, value: &V) -> Result<Option<Vec<u8>>> {
        self.value
            .serialize(self.topic, value)
            .map_err(|e| self.err("value", e))
    }

    pub(super) fn key_of(&self, bytes: &[u8]) -> Result<K> {
        self.key
            .deserialize(self.topic, Some(bytes))
            .map_err(|e| self.err("key", e))
    }

    pub(super) fn value_of(&self, bytes: &[u8]) -> Result<V> {
        self.value
            .deserialize(self.topic, Some(bytes))
            .map_err(|e| self.err("value", e))
    }
}

/// Where typed handles find their store and send what its cache pushed down: the task's
/// context (implemented in `task`, so that this module does not depend on tasks).
pub(crate) trait StoreHost {
    /// The open store `name`.
    fn store(&self, name: &str) -> Option<&OpenStore>;
    /// The open store `name`, to write.
    fn store_mut(&mut self, name: &str) -> Option<&mut OpenStore>;
    /// Hands what the last call pushed out of `name`'s cache to the listener of the
    /// processor that owns its flushes, before the handle call returns.
    fn forward_cache_flushes(&mut self, name: &str) -> Result<()>;
}

/// A handle's way to its store: the host, the store's name and its resolved serdes. Each
/// call looks the store up (no borrow of it outlives the call, so the cache's flushes can
/// be forwarded downstream — where processors may use the same store — before the call
/// returns).
pub(super) struct Access<'a, K, V> {
    host: &'a mut dyn StoreHost,
    name: &'a str,
    key: SharedSerde<K>,
    value: SharedSerde<V>,
}

fn not_open(name: &str) -> StreamsError {
    StreamsError::IllegalState(format!("store `{name}` is not open in this task"))
}

pub(super) fn wrong_kind(store: &str, kind: &str) -> StreamsError {
    StreamsError::IllegalState(format!("store `{store}` is not a {kind}"))
}

impl<'a, K, V> Access<'a, K, V> {
    pub(super) fn new(
        host: &'a mut dyn StoreHost,
        name: &'a str,
        (key, value): SerdePair<K, V>,
        kind: (&str, fn(&TaskStore) -> bool),
    ) -> Result<Self> {
        let open = host.store(name).ok_or_else(|| not_open(name))?;
        if !(kind.1)(open.store.get()) {
            return Err(wrong_kind(name, kind.0));
        }
        Ok(Access {
            host,
            name,
            key,
            value,
        })
    }

    /// The store and a codec, to read.
    pub(super) fn read(&self) -> Result<(&TaskStore, Codec<'_, K, V>)> {
        let open = self
            .host
            .store(self.name)
            .ok_or_else(|| not_open(self.name))?;
        let codec = Codec {
            store: open.spec.name(),
            topic: &open.serde_topic,
            key: &self.key,
            value: &self.value,
        };
        Ok((open.store.get(), codec))
    }

    /// The store and a codec, to write; call [`Access::written`] after the write.
    pub(super) fn write(&mut self) -> Result<(&mut TaskStore, Codec<'_, K, V>)> {
        let open = self
            .host
            .store_mut(self.name)
            .ok_or_else(|| not_open(self.name))?;
        let codec = Codec {
            store: open.spec.name(),
            topic: &open.serde_topic,
            key: &self.key,
            value: &self.value,
        };
        Ok((open.store.get_mut(), codec))
    }

    /// After a write (successful or not): forwards what it pushed out of the cache.
    fn written<T>(&mut self, result: Result<T>) -> Result<T> {
        let forwarded = self.host.forward_cache_flushes(self.name);
        let value = result?;
        forwarded.map(|()| value)
    }
}

/// An iterator over typed store entries, deserializing each entry as it is reached.
///
/// Key-value ranges are lazy all the way down (a RocksDB iterator or a range of the
/// in-memory map, merged with the cached entries of the range): the iterator borrows the
/// handle, so the store cannot be written while it lives; collect it first to write
/// what it yields back. Window and session ranges are still collected by the store below
/// (only their deserialization is lazy).
pub struct StoreIter<'a, T> {
    inner: Box<dyn Iterator<Item = Result<T>> + 'a>,
}

impl<'a, T> StoreIter<'a, T> {
    /// An iterator over what `inner` yields.
    pub(crate) fn from_iter(inner: impl Iterator<Item = Result<T>> + 'a) -> Self {
        StoreIter {
            inner: Box::new(inner),
        }
    }
}

impl<T> std::fmt::Debug for StoreIter<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreIter").finish_non_exhaustive()
    }
}

impl<T> Iterator for StoreIter<'_, T> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        self.inner.next()
    }
}

/// A key-value store seen with its types (Kafka's `KeyValueStore<K, V>`); for a timestamped
/// key-value store `V` is [`ValueAndTimestamp<_>`]. Get one from
/// [`ProcessorContext::key_value_store`](crate::ProcessorContext::key_value_store).
///
/// ```
/// use streams_core::{Processor, ProcessorContext, Record, Result, Sink, Source, StoreBuilder,
///     StreamsConfig, StringSerde, I64Serde, Topology, TopologyTestDriver};
///
/// /// Counts records per key and forwards the running count.
/// struct Count;
/// impl Processor<String, String, String, i64> for Count {
///     fn process(&mut self, ctx: &mut ProcessorContext<'_, String, i64>, r: Record<String, String>) -> Result<()> {
///         let mut store = ctx.key_value_store::<String, i64>("counts")?;
///         let n = store.get(&r.key)?.unwrap_or(0) + 1;
///         store.put(&r.key, &n)?;
///         ctx.forward(r.with_value(n))
///     }
/// }
///
/// let mut t = Topology::new();
/// t.add_source(Source::<String, String>::new("in", ["words"]))?;
/// t.add_processor("count", || Count, &["in"])?;
/// t.add_state_store(StoreBuilder::key_value("counts").in_memory(), &["count"])?;
/// t.add_sink(Sink::<String, i64>::new("out", "counts"), &["count"])?;
/// let driver = TopologyTestDriver::new(t, StreamsConfig::new("doc"))?;
/// let input = driver.create_input_topic("words", StringSerde, StringSerde)?;
/// input.pipe_input("a".into(), "x".into())?;
/// input.pipe_input("a".into(), "y".into())?;
/// let out = driver.create_output_topic("counts", StringSerde, I64Serde);
/// assert_eq!(out.read_key_values_to_vec()?, vec![("a".into(), 1), ("a".into(), 2)]);
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct KeyValueStoreHandle<'a, K, V> {
    access: Access<'a, K, V>,
}

fn is_key_value(s: &TaskStore) -> bool {
    matches!(s, TaskStore::KeyValue(_))
}

fn is_window(s: &TaskStore) -> bool {
    matches!(s, TaskStore::Window(_))
}

fn is_session(s: &TaskStore) -> bool {
    matches!(s, TaskStore::Session(_))
}

impl<'a, K: 'static, V: 'static> KeyValueStoreHandle<'a, K, V> {
    pub(crate) fn new(
        host: &'a mut dyn StoreHost,
        name: &'a str,
        serdes: SerdePair<K, V>,
    ) -> Result<Self> {
        Ok(KeyValueStoreHandle {
            access: Access::new(host, name, serdes, ("key-value store", is_key_value))?,
        })
    }

    fn read(&self) -> Result<(&dyn TaskKeyValueStore, Codec<'_, K, V>)> {
        match self.access.read()? {
            (TaskStore::KeyValue(s), codec) => Ok((s.as_ref(), codec)),
            (_, codec) => Err(wrong_kind(codec.store, "key-value store")),
        }
    }

    fn write(&mut self) -> Result<(&mut dyn TaskKeyValueStore, Codec<'_, K, V>)> {
        match self.access.write()? {
            (TaskStore::KeyValue(s), codec) => Ok((s.as_mut(), codec)),
            (_, codec) => Err(wrong_kind(codec.store, "key-value store")),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let (store, codec) = self.read()?;
        let k = codec.key_bytes(key)?;
        match store.get(&k)? {
            Some(b) => codec.value_of(&b).map(Some),
            None => Ok(None),
        }
    }

    /// Sets the value of `key` (a value that serializes to null deletes the key). What
    /// the write evicts from the store's cache reaches downstream before this returns.
    pub fn put(&mut self, key: &K, value: &V) -> Result<()> {
        let result = self.put_unforwarded(key, value);
        self.access.written(result)
    }

    fn put_unforwarded(&mut self, key: &K, value: &V) -> Result<()> {
        let (store, codec) = self.write()?;
        let k = codec.key_bytes(key)?;
        match codec.value_bytes(value)? {
            Some(v) => Ok(store.put(&k, &v)?),
            None => store.delete(&k).map(|_| ()).map_err(Into::into),
        }
    }

    /// Sets the value of `key` unless it has one; returns the value it had.
    pub fn put_if_absent(&mut self, key: &K, value: &V) -> Result<Option<V>> {
        match self.get(key)? {
            Some(old) => Ok(Some(old)),
            None => {
                self.put(key, value)?;
                Ok(None)
            }
        }
    }

    /// Sets several values.
    pub fn put_all<'k>(&mut self, entries: impl IntoIterator<Item = (&'k K, &'k V)>) -> Result<()>
    where
        K: 'k,
        V: 'k,
    {
        for (k, v) in entries {
            self.put(k, v)?;
        }
        Ok(())
    }

    /// Deletes `key`; returns the value it had.
    pub fn delete(&mut self, key: &K) -> Result<Option<V>> {
        let result = self.delete_unforwarded(key);
        self.access.written(result)
    }

    fn delete_unforwarded(&mut self, key: &K) -> Result<Option<V>> {
        let (store, codec) = self.write()?;
        let k = codec.key_bytes(key)?;
        match store.delete(&k)? {
            Some(b) => codec.value_of(&b).map(Some),
            None => Ok(None),
        }
    }

    fn typed<'s>(codec: Codec<'s, K, V>, entries: KeyValueIter<'s>) -> StoreIter<'s, (K, V)> {
        StoreIter {
            inner: Box::new(entries.map(move |entry| {
                let (k, v) = entry?;
                Ok((codec.key_of(&k)?, codec.value_of(&v)?))
            })),
        }
    }

    /// Entries with keys in `[from, to]` by serialized key order (both ends inclusive, as
    /// Kafka's `range`); `Direction::Reverse` for `reverseRange`.
    pub fn range(&self, from: &K, to: &K, direction: Direction) -> Result<StoreIter<'_, (K, V)>> {
        let (store, codec) = self.read()?;
        let (f, t) = (codec.key_bytes(from)?, codec.key_bytes(to)?);
        Ok(Self::typed(codec, store.range(&f, &t, direction)?))
    }

    /// Every entry, by serialized key order.
    pub fn all(&self, direction: Direction) -> Result<StoreIter<'_, (K, V)>> {
        let (store, codec) = self.read()?;
        Ok(Self::typed(codec, store.all(direction)?))
    }

    /// Entries whose serialized key starts with the serialized `prefix` (Kafka's
    /// `prefixScan` with the store's key serde).
    pub fn prefix_scan(&self, prefix: &K) -> Result<StoreIter<'_, (K, V)>> {
        let (store, codec) = self.read()?;
        let p = codec.key_bytes(prefix)?;
        Ok(Self::typed(
            codec,
            store.prefix_scan(&p, Direction::Forward)?,
        ))
    }

    /// An estimate of the number of entries.
    pub fn approximate_num_entries(&self) -> Result<u64> {
        Ok(self.read()?.0.approximate_num_entries()?)
    }
}

/// A window store seen with its types (Kafka's `WindowStore<K, V>`); for a timestamped
/// window store `V` is [`ValueAndTimestamp<_>`]. Windows are `[start, start + size)`.
///
/// ```
/// use std::time::Duration;
/// use streams_core::{Processor, ProcessorContext, Record, Result, Source, StoreBuilder,
///     StreamsConfig, StringSerde, Topology, TopologyTestDriver};
///
/// /// Counts records per key in tumbling one-minute windows.
/// struct PerMinute;
/// impl Processor<String, String, String, i64> for PerMinute {
///     fn process(&mut self, ctx: &mut ProcessorContext<'_, String, i64>, r: Record<String, String>) -> Result<()> {
///         let start = r.timestamp - r.timestamp.rem_euclid(60_000);
///         let mut store = ctx.window_store::<String, i64>("per-minute")?;
///         let n = store.fetch(&r.key, start)?.unwrap_or(0) + 1;
///         store.put(&r.key, Some(&n), start)
///     }
/// }
///
/// let mut t = Topology::new();
/// t.add_source(Source::<String, String>::new("in", ["clicks"]))?;
/// t.add_processor("count", || PerMinute, &["in"])?;
/// t.add_state_store(StoreBuilder::window("per-minute", Duration::from_secs(3600),
///     Duration::from_secs(60), false)?, &["count"])?;
/// let driver = TopologyTestDriver::new(t, StreamsConfig::new("doc"))?;
/// let input = driver.create_input_topic("clicks", StringSerde, StringSerde)?;
/// for ts in [1_000, 2_000, 61_000] {
///     input.pipe_input_with_timestamp("u".into(), "click".into(), ts)?;
/// }
/// assert_eq!(driver.read_window_store::<String, i64>("per-minute")?,
///     vec![("u".to_owned(), 0, 2), ("u".to_owned(), 60_000, 1)]);
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct WindowStoreHandle<'a, K, V> {
    access: Access<'a, K, V>,
    window_size: i64,
}

impl<'a, K: 'static, V: 'static> WindowStoreHandle<'a, K, V> {
    pub(crate) fn new(
        host: &'a mut dyn StoreHost,
        name: &'a str,
        serdes: SerdePair<K, V>,
    ) -> Result<Self> {
        let window_size = match host.store(name).map(|o| o.spec.kind()) {
            Some(
                StoreKind::Window { window_size_ms, .. }
                | StoreKind::TimestampedWindow { window_size_ms, .. },
            ) => window_size_ms,
            _ => 0,
        };
        Ok(WindowStoreHandle {
            access: Access::new(host, name, serdes, ("window store", is_window))?,
            window_size,
        })
    }

    fn read(&self) -> Result<(&dyn TaskWindowStore, Codec<'_, K, V>)> {
        match self.access.read()? {
            (TaskStore::Window(s), codec) => Ok((s.as_ref(), codec)),
            (_, codec) => Err(wrong_kind(codec.store, "window store")),
        }
    }

    /// Stores `value` for `key` in the window starting at `window_start`; `None` (or a
    /// value serializing to null) deletes it. Writes to expired windows are dropped. What
    /// the write evicts from the store's cache reaches downstream before this returns.
    pub fn put(&mut self, key: &K, value: Option<&V>, window_start: i64) -> Result<()> {
        let result = self.put_unforwarded(key, value, window_start);
        self.access.written(result)
    }

    fn put_unforwarded(&mut self, key: &K, value: Option<&V>, window_start: i64) -> Result<()> {
        let (store, codec) = match self.access.write()? {
            (TaskStore::Window(s), codec) => (s, codec),
            (_, codec) => return Err(wrong_kind(codec.store, "window store")),
        };
        let k = codec.key_bytes(key)?;
        let v = match value {
            Some(v) => codec.value_bytes(v)?,
            None => None,
        };
        store.put(&k, v.as_deref(), window_start)?;
        Ok(())
    }

    /// The value of `key` in the window starting at `window_start`.
    pub fn fetch(&self, key: &K, window_start: i64) -> Result<Option<V>> {
        let (store, codec) = self.read()?;
        let k = codec.key_bytes(key)?;
        match store.fetch(&k, window_start)? {
            Some(b) => codec.value_of(&b).map(Some),
            None => Ok(None),
        }
    }

    fn windowed(
        codec: &Codec<'_, K, V>,
        size: i64,
        entries: Vec<WindowEntry>,
    ) -> StoreIter<'static, (Windowed<K>, V)> {
        codec.lazy(entries, move |c, e| {
            let window = Window {
                start: e.window_start,
                end: e.window_start.saturating_add(size),
            };
            let key = c.key_of(&e.key)?;
            Ok((Windowed { key, window }, c.value_of(&e.value)?))
        })
    }

    /// The windows of `key` starting in `[time_from, time_to]`, by start: (start, value).
    pub fn fetch_range(
        &self,
        key: &K,
        time_from: i64,
        time_to: i64,
    ) -> Result<StoreIter<'_, (i64, V)>> {
        let (store, codec) = self.read()?;
        let k = codec.key_bytes(key)?;
        let entries = store.fetch_range(&k, time_from, time_to)?;
        let inner = Self::windowed(&codec, self.window_size, entries);
        Ok(StoreIter {
            inner: Box::new(inner.map(|r| r.map(|(w, v)| (w.window.start, v)))),
        })
    }

    /// The windows of keys in `[key_from, key_to]` starting in `[time_from, time_to]`.
    pub fn fetch_key_range(
        &self,
        key_from: &K,
        key_to: &K,
        time_from: i64,
        time_to: i64,
    ) -> Result<StoreIter<'_, (Windowed<K>, V)>> {
        let (store, codec) = self.read()?;
        let (f, t) = (codec.key_bytes(key_from)?, codec.key_bytes(key_to)?);
        let entries = store.fetch_key_range(&f, &t, time_from, time_to)?;
        Ok(Self::windowed(&codec, self.window_size, entries))
    }

    /// Every window starting in `[time_from, time_to]`.
    pub fn fetch_all(
        &self,
        time_from: i64,
        time_to: i64,
    ) -> Result<StoreIter<'_, (Windowed<K>, V)>> {
        let (store, codec) = self.read()?;
        let entries = store.fetch_all(time_from, time_to)?;
        Ok(Self::windowed(&codec, self.window_size, entries))
    }

    /// Every retained window.
    pub fn all(&self) -> Result<StoreIter<'_, (Windowed<K>, V)>> {
        self.fetch_all(i64::MIN, i64::MAX)
    }
}

/// A session store seen with its types (Kafka's `SessionStore<K, V>`). Sessions are
/// `[start, end]`, both inclusive.
///
/// ```
/// use std::time::Duration;
/// use streams_core::{Processor, ProcessorContext, Record, Result, Source, StoreBuilder,
///     StreamsConfig, StringSerde, Topology, TopologyTestDriver, Window, Windowed};
///
/// /// Records one session per record, one second long.
/// struct Sessions;
/// impl Processor<String, String, String, String> for Sessions {
///     fn process(&mut self, ctx: &mut ProcessorContext<'_, String, String>, r: Record<String, String>) -> Result<()> {
///         let mut store = ctx.session_store::<String, String>("sessions")?;
///         let w = Windowed { key: r.key.clone(), window: Window { start: r.timestamp, end: r.timestamp + 1_000 } };
///         store.put(&w, &r.value)
///     }
/// }
///
/// let mut t = Topology::new();
/// t.add_source(Source::<String, String>::new("in", ["events"]))?;
/// t.add_processor("s", || Sessions, &["in"])?;
/// t.add_state_store(StoreBuilder::session("sessions", Duration::from_secs(3600)), &["s"])?;
/// let driver = TopologyTestDriver::new(t, StreamsConfig::new("doc"))?;
/// driver.create_input_topic("events", StringSerde, StringSerde)?
///     .pipe_input_with_timestamp("u".into(), "login".into(), 5_000)?;
/// assert_eq!(driver.read_session_store::<String, String>("sessions")?,
///     vec![("u".to_owned(), 5_000, 6_000, "login".to_owned())]);
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct SessionStoreHandle<'a, K, V> {
    access: Access<'a, K, V>,
}

impl<'a, K: 'static, V: 'static> SessionStoreHandle<'a, K, V> {
    pub(crate) fn new(
        host: &'a mut dyn StoreHost,
        name: &'a str,
        serdes: SerdePair<K, V>,
    ) -> Result<Self> {
        Ok(SessionStoreHandle {
            access: Access::new(host, name, serdes, ("session store", is_session))?,
        })
    }

    fn read(&self) -> Result<(&dyn TaskSessionStore, Codec<'_, K, V>)> {
        match self.access.read()? {
            (TaskStore::Session(s), codec) => Ok((s.as_ref(), codec)),
            (_, codec) => Err(wrong_kind(codec.store, "session store")),
        }
    }

    fn write(&mut self) -> Result<(&mut dyn TaskSessionStore, Codec<'_, K, V>)> {
        match self.access.write()? {
            (TaskStore::Session(s), codec) => Ok((s.as_mut(), codec)),
            (_, codec) => Err(wrong_kind(codec.store, "session store")),
        }
    }

    /// Stores the aggregate of a session (a value serializing to null removes it). What
    /// the write evicts from the store's cache reaches downstream before this returns.
    pub fn put(&mut self, session: &Windowed<K>, value: &V) -> Result<()> {
        let result = self.put_unforwarded(session, value);
        self.access.written(result)
    }

    fn put_unforwarded(&mut self, session: &Windowed<K>, value: &V) -> Result<()> {
        let (store, codec) = self.write()?;
        let k = codec.key_bytes(&session.key)?;
        let (start, end) = (session.window.start, session.window.end);
        match codec.value_bytes(value)? {
            Some(v) => store.put(&k, start, end, &v)?,
            None => store.remove(&k, start, end)?,
        }
        Ok(())
    }

    /// Removes a session.
    pub fn remove(&mut self, session: &Windowed<K>) -> Result<()> {
        let result = self.write().and_then(|(store, codec)| {
            let k = codec.key_bytes(&session.key)?;
            Ok(store.remove(&k, session.window.start, session.window.end)?)
        });
        self.access.written(result)
    }

    /// The aggregate of exactly the session `[start, end]` of `key`.
    pub fn fetch_session(&self, key: &K, start: i64, end: i64) -> Result<Option<V>> {
        let (store, codec) = self.read()?;
        let k = codec.key_bytes(key)?;
        match store.fetch_session(&k, start, end)? {
            Some(b) => codec.value_of(&b).map(Some),
            None => Ok(None),
        }
    }

    fn sessions(
        codec: &Codec<'_, K, V>,
        entries: Vec<SessionEntry>,
    ) -> StoreIter<'static, (Windowed<K>, V)> {
        codec.lazy(entries, |c, e| {
            let window = Window {
                start: e.start,
                end: e.end,
            };
            let key = c.key_of(&e.key)?;
            Ok((Windowed { key, window }, c.value_of(&e.value)?))
        })
    }

    /// Sessions of `key` ending at or after `earliest_session_end` and starting at or
    /// before `latest_session_start`: the sessions a new record can merge with.
    pub fn find_sessions(
        &self,
        key: &K,
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Result<StoreIter<'_, (Windowed<K>, V)>> {
        let (store, codec) = self.read()?;
        let k = codec.key_bytes(key)?;
        let entries = store.find_sessions(&k, earliest_session_end, latest_session_start)?;
        Ok(Self::sessions(&codec, entries))
    }

    /// Sessions of every key ending in `[earliest_session_end, latest_session_end]`, by
    /// end, then key bytes, then start (Kafka's `findSessions(earliestSessionEndTime,
    /// latestSessionEndTime)`, what emit-on-window-close reads).
    pub fn find_sessions_by_end(
        &self,
        earliest_session_end: i64,
        latest_session_end: i64,
    ) -> Result<StoreIter<'_, (Windowed<K>, V)>> {
        let (store, codec) = self.read()?;
        let entries = store.find_sessions_by_end(earliest_session_end, latest_session_end)?;
        Ok(Self::sessions(&codec, entries))
    }

    /// Every retained session of `key`.
    pub fn fetch(&self, key: &K) -> Result<StoreIter<'_, (Windowed<K>, V)>> {
        let (store, codec) = self.read()?;
        let k = codec.key_bytes(key)?;
        Ok(Self::sessions(&codec, store.fetch_key(&k)?))
    }

    /// Every retained session of keys in `[key_from, key_to]`.
    pub fn fetch_key_range(
        &self,
        key_from: &K,
        key_to: &K,
    ) -> Result<StoreIter<'_, (Windowed<K>, V)>> {
        let (store, codec) = self.read()?;
        let (f, t) = (codec.key_bytes(key_from)?, codec.key_bytes(key_to)?);
        Ok(Self::sessions(&codec, store.fetch_key_range(&f, &t)?))
    }
}
