//! Table value getters (Kafka's `KTableValueGetter` chain): how a stream-table join reads
//! a table's current value for a key. A materialized table reads its store; a filtered or
//! (unmaterialized) value-mapped table applies its predicate or mapper to what its parent's
//! getter returns, as Kafka's `KTableFilter` / `KTableMapValues` getters do.

use std::sync::Arc;

use streams_core::{Result, StoreAccess, StoreKind, StreamsError};

/// Reads the value of a key through the stores of the calling processor.
pub(crate) type GetFn<K, V> =
    Arc<dyn Fn(&mut StoreAccess<'_>, &K) -> Result<Option<V>> + Send + Sync>;

/// A value mapper of a `map_values` table: (key, value) → new value.
pub(crate) type Mapper<K, V, VR> = Arc<dyn Fn(&K, &V) -> VR + Send + Sync>;

/// A table's value getter: the store it finally reads and how.
pub(crate) struct ValueGetter<K, V> {
    /// The materialized store at the root of the chain (connected to the reader).
    pub(crate) store: String,
    pub(crate) get: GetFn<K, V>,
}

impl<K, V> Clone for ValueGetter<K, V> {
    fn clone(&self) -> Self {
        ValueGetter {
            store: self.store.clone(),
            get: Arc::clone(&self.get),
        }
    }
}

/// The getter of a materialized table: its key-value store, timestamped or not (Kafka's
/// `KTableMaterializedValueGetter` / `KTableSourceValueGetter`).
pub(crate) fn store_getter<K, V>(store: String) -> ValueGetter<K, V>
where
    K: 'static,
    V: 'static,
{
    let name = store.clone();
    ValueGetter {
        store,
        get: Arc::new(move |access: &mut StoreAccess<'_>, key: &K| {
            match access.store_kind(&name) {
                Some(StoreKind::TimestampedKeyValue) => Ok(access
                    .timestamped_key_value_store::<K, V>(&name)?
                    .get(key)?
                    .map(|v| v.value)),
                Some(StoreKind::KeyValue) => access.key_value_store::<K, V>(&name)?.get(key),
                other => Err(StreamsError::IllegalState(format!(
                    "table store `{name}` is {}, not a key-value store",
                    other.map_or("not connected", |k| k.type_name())
                ))),
            }
        }),
    }
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
    let inner = parent.get;
    ValueGetter {
        store: parent.store,
        get: Arc::new(move |access: &mut StoreAccess<'_>, key: &K| {
            Ok(inner(access, key)?.filter(|v| filter_not ^ predicate(key, v)))
        }),
    }
}

/// Kafka's `KTableMapValues` getter: the parent's value, mapped.
pub(crate) fn mapped<K, V, VR>(
    parent: ValueGetter<K, V>,
    mapper: Mapper<K, V, VR>,
) -> ValueGetter<K, VR>
where
    K: 'static,
    V: 'static,
    VR: 'static,
{
    let inner = parent.get;
    ValueGetter {
        store: parent.store,
        get: Arc::new(move |access: &mut StoreAccess<'_>, key: &K| {
            Ok(inner(access, key)?.map(|v| mapper(key, &v)))
        }),
    }
}
