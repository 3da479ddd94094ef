//! Table value getters (Kafka's `KTableValueGetter` chain): how a join reads a table's
//! current value (and its timestamp) for a key. A materialized table reads its store; a
//! filtered or (unmaterialized) value-mapped table applies its predicate or mapper to what
//! its parent's getter returns, as Kafka's `KTableFilter` / `KTableMapValues` getters do;
//! an unmaterialized table-table join result joins what both sides' getters return
//! (Kafka's `KTableKTable*JoinValueGetter`, see `table_table_join.rs`).

use std::sync::Arc;

use streams_core::{Result, StoreAccess, StoreKind, StreamsError, ValueAndTimestamp};

/// Reads the value of a key through the stores of the calling processor.
pub(crate) type GetFn<K, V> =
    Arc<dyn Fn(&mut StoreAccess<'_>, &K) -> Result<Option<V>> + Send + Sync>;

/// Reads the value of a key and the timestamp of the update that wrote it (Kafka's
/// `KTableValueGetter#get`, a `ValueAndTimestamp`).
pub(crate) type GetTsFn<K, V> =
    Arc<dyn Fn(&mut StoreAccess<'_>, &K) -> Result<Option<ValueAndTimestamp<V>>> + Send + Sync>;

/// A value mapper of a `map_values` table: (key, value) → new value.
pub(crate) type Mapper<K, V, VR> = Arc<dyn Fn(&K, &V) -> VR + Send + Sync>;

/// Kafka's `ConsumerRecord.NO_TIMESTAMP` / `KTableKTable*Join`'s `UNKNOWN`.
pub(crate) const UNKNOWN_TIMESTAMP: i64 = -1;

/// A table's value getter: the stores it finally reads and how.
pub(crate) struct ValueGetter<K, V> {
    /// The materialized store at the root of the chain (connected to the reader).
    pub(crate) store: String,
    /// Further stores the getter reads, to connect to the reader too (the second side of
    /// an unmaterialized table-table join; Kafka's `storeNames()`).
    pub(crate) more_stores: Vec<String>,
    /// The value without its timestamp.
    pub(crate) get: GetFn<K, V>,
    /// The value with its timestamp.
    pub(crate) get_ts: GetTsFn<K, V>,
}

impl<K, V> Clone for ValueGetter<K, V> {
    fn clone(&self) -> Self {
        ValueGetter {
            store: self.store.clone(),
            more_stores: self.more_stores.clone(),
            get: Arc::clone(&self.get),
            get_ts: Arc::clone(&self.get_ts),
        }
    }
}

impl<K: 'static, V: 'static> ValueGetter<K, V> {
    /// A getter reading `stores` (at least one) with `get_ts`.
    pub(crate) fn new(store: String, more_stores: Vec<String>, get_ts: GetTsFn<K, V>) -> Self {
        let inner = Arc::clone(&get_ts);
        ValueGetter {
            store,
            more_stores,
            get: Arc::new(move |access: &mut StoreAccess<'_>, key: &K| {
                Ok(inner(access, key)?.map(|v| v.value))
            }),
            get_ts,
        }
    }

    /// Every store the getter reads (each must be connected to the reading processor).
    pub(crate) fn stores(&self) -> Vec<String> {
        let mut all = vec![self.store.clone()];
        for s in &self.more_stores {
            if !all.contains(s) {
                all.push(s.clone());
            }
        }
        all
    }
}

/// The getter of a materialized table: its key-value store, timestamped or not (Kafka's
/// `KTableMaterializedValueGetter` / `KTableSourceValueGetter`); a plain key-value store
/// has no timestamps (`-1`).
pub(crate) fn store_getter<K, V>(store: String) -> ValueGetter<K, V>
where
    K: 'static,
    V: 'static,
{
    let name = store.clone();
    ValueGetter::new(
        store,
        Vec::new(),
        Arc::new(
            move |access: &mut StoreAccess<'_>, key: &K| match access.store_kind(&name) {
                Some(StoreKind::TimestampedKeyValue) => {
                    access.timestamped_key_value_store::<K, V>(&name)?.get(key)
                }
                Some(StoreKind::KeyValue) => Ok(access
                    .key_value_store::<K, V>(&name)?
                    .get(key)?
                    .map(|v| ValueAndTimestamp::new(v, UNKNOWN_TIMESTAMP))),
                other => Err(StreamsError::IllegalState(format!(
                    "table store `{name}` is {}, not a key-value store",
                    other.map_or("not connected", |k| k.type_name())
                ))),
            },
        ),
    )
}

/// Kafka's `KTableFilter` getter: the parent's value if it passes the predicate (fails it,
/// for `filter_not`), else none.
pub(crate) fn filtered<K, V, F>(
    parent: ValueGetter<K, V>,
    predicate: Arc<F>,
    filter_not: bool,
) -> ValueGetter<K, V>
where
    K: 'static,
    V: 'static,
    F: Fn(&K, &V) -> bool + Send + Sync + 'static,
{
    let inner = parent.get_ts;
    ValueGetter::new(
        parent.store,
        parent.more_stores,
        Arc::new(move |access: &mut StoreAccess<'_>, key: &K| {
            Ok(inner(access, key)?.filter(|v| filter_not ^ predicate(key, &v.value)))
        }),
    )
}

/// Kafka's `KTableMapValues` getter: the parent's value, mapped (same timestamp).
pub(crate) fn mapped<K, V, VR>(
    parent: ValueGetter<K, V>,
    mapper: Mapper<K, V, VR>,
) -> ValueGetter<K, VR>
where
    K: 'static,
    V: 'static,
    VR: 'static,
{
    let inner = parent.get_ts;
    ValueGetter::new(
        parent.store,
        parent.more_stores,
        Arc::new(move |access: &mut StoreAccess<'_>, key: &K| {
            Ok(inner(access, key)?
                .map(|v| ValueAndTimestamp::new(mapper(key, &v.value), v.timestamp)))
        }),
    )
}
