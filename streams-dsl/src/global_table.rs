//! `StreamsBuilder::global_table` (Kafka's `InternalStreamsBuilder#globalTable`) and
//! [`GlobalKTable`].

use std::marker::PhantomData;

use streams_core::{SharedSerde, Source, StoreBuilder};

use crate::builder::Shared;
use crate::options::{Consumed, Materialized};

/// A table replicated in full to every application instance (Kafka's `GlobalKTable`): its
/// store holds every partition of its topic, is restored before stream processing starts
/// and is kept up to date while the application runs. Processors read it through
/// [`ProcessorContext::global_store`](streams_core::ProcessorContext::global_store) with
/// [`GlobalKTable::store_name`].
pub struct GlobalKTable<K, V> {
    store: String,
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    _t: PhantomData<fn(K, V)>,
}

impl<K, V> std::fmt::Debug for GlobalKTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalKTable")
            .field("store", &self.store)
            .finish()
    }
}

impl<K, V> Clone for GlobalKTable<K, V> {
    fn clone(&self) -> Self {
        GlobalKTable {
            store: self.store.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            _t: PhantomData,
        }
    }
}

impl<K, V> GlobalKTable<K, V> {
    /// The name of the global store holding the table (Kafka's `queryableStoreName`; a
    /// global table is always materialized).
    pub fn store_name(&self) -> &str {
        &self.store
    }
}

/// Kafka's `globalTable`: the store name first (`<topic>-STATE-STORE-<n>` unless
/// `materialized` names it), then the source (`KSTREAM-SOURCE-<n>`, or `<name>-source`
/// for a named `Consumed`), then the processor (`KTABLE-SOURCE-<n>`, or the `Consumed`
/// name). The store takes the `Consumed` serdes ("always use the serdes from consumed")
/// and is never change-logged.
pub(crate) fn global_table<K, V>(
    state: &Shared,
    topic: &str,
    consumed: Consumed<K, V>,
    materialized: Materialized<K, V>,
) -> GlobalKTable<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let mut s = state.borrow_mut();
    let store_name = match &materialized.name {
        Some(n) => n.clone(),
        None => s.next_name(&format!("{topic}-STATE-STORE-")),
    };
    let (source_name, processor_name) = match &consumed.name {
        Some(n) => (format!("{n}-source"), n.clone()),
        None => (
            s.next_name("KSTREAM-SOURCE-"),
            s.next_name("KTABLE-SOURCE-"),
        ),
    };
    let key_serde = consumed.key_serde.clone();
    let value_serde = consumed.value_serde.clone();
    let mut store = StoreBuilder::timestamped_key_value(store_name.clone())
        .with_serdes(key_serde.clone(), value_serde.clone());
    if materialized.in_memory {
        store = store.in_memory();
    }
    let source =
        Source::<K, V>::new(source_name, [topic]).serdes(key_serde.clone(), value_serde.clone());
    s.apply(|t| {
        t.add_global_store(store, source, &processor_name)
            .map(|_| ())
    });
    GlobalKTable {
        store: store_name,
        key_serde,
        value_serde,
        _t: PhantomData,
    }
}
