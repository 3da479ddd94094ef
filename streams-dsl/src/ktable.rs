//! `KTable`: a changelog stream seen as a table, one current value per key.

use std::rc::Rc;

use streams_core::{Change, Record, SharedSerde};

use crate::builder::Shared;
use crate::kstream::KStream;
use crate::processors::stateless;

/// A table (Kafka's `KTable`): the latest value per key, backed by a state store.
pub struct KTable<K, V> {
    state: Shared,
    node: String,
    store: String,
    key_serde: Option<SharedSerde<K>>,
    value_serde: Option<SharedSerde<V>>,
}

impl<K, V> std::fmt::Debug for KTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KTable")
            .field("node", &self.node)
            .field("store", &self.store)
            .finish()
    }
}

impl<K, V> KTable<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(crate) fn new(
        state: Shared,
        node: String,
        store: String,
        key_serde: Option<SharedSerde<K>>,
        value_serde: Option<SharedSerde<V>>,
    ) -> Self {
        KTable {
            state,
            node,
            store,
            key_serde,
            value_serde,
        }
    }

    /// The name of the store holding the table.
    ///
    /// ```
    /// use streams_core::StringSerde;
    /// use streams_dsl::{Consumed, Grouped, Materialized, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let table = builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::new());
    /// assert_eq!(table.store_name(), "KSTREAM-AGGREGATE-STATE-STORE-0000000001");
    /// ```
    pub fn store_name(&self) -> &str {
        &self.store
    }

    /// The table's updates as a stream: one record per update with the new value (deletes
    /// are not forwarded).
    ///
    /// ```
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::new().with_caching_disabled())
    ///     .to_stream()
    ///     .to("out", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("in", StringSerde, StringSerde)?;
    /// input.pipe_input("k".into(), "a".into())?;
    /// input.pipe_input("k".into(), "b".into())?;
    /// // Without caching, every update is emitted.
    /// let out = driver.create_output_topic("out", StringSerde, I64Serde);
    /// assert_eq!(out.read_key_values_to_vec()?, vec![("k".into(), 1), ("k".into(), 2)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn to_stream(&self) -> KStream<K, V> {
        let name = self.state.borrow_mut().next_name("KTABLE-TOSTREAM-");
        let parent = self.node.clone();
        let supplier = || {
            stateless(|ctx, r: Record<K, Change<V>>| match r.value.new {
                Some(v) => ctx.forward(Record {
                    key: r.key,
                    value: v,
                    timestamp: r.timestamp,
                    headers: r.headers,
                }),
                None => Ok(()),
            })
        };
        self.state
            .borrow_mut()
            .apply(|t| t.add_processor(&name, supplier, &[&parent]).map(|_| ()));
        KStream::new(
            Rc::clone(&self.state),
            name,
            self.key_serde.clone(),
            self.value_serde.clone(),
        )
    }
}
