//! `KGroupedStream`: a stream grouped by key, ready for an aggregation.

use std::rc::Rc;
use std::sync::Arc;

use streams_core::{SharedSerde, Sink, Source, StoreBuilder};

use crate::kstream::KStream;
use crate::ktable::KTable;
use crate::options::{Grouped, Materialized};
use crate::processors::{AggregateProcessor, Aggregator, Initializer};

/// A grouped stream (Kafka's `KGroupedStream`): `count`, `reduce` or `aggregate` it into a
/// [`KTable`].
pub struct KGroupedStream<K, V> {
    stream: KStream<K, V>,
    grouped: Grouped<K, V>,
}

impl<K, V> std::fmt::Debug for KGroupedStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KGroupedStream")
            .field("stream", &self.stream)
            .finish()
    }
}

impl<K, V> KGroupedStream<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(crate) fn new(stream: KStream<K, V>, grouped: Grouped<K, V>) -> Self {
        KGroupedStream { stream, grouped }
    }

    /// Counts the records per key.
    ///
    /// ```
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::as_store("counts").in_memory())
    ///     .to_stream()
    ///     .to("out", Produced::with(StringSerde, I64Serde));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("in", StringSerde, StringSerde)?;
    /// input.pipe_input("k".into(), "a".into())?;
    /// input.pipe_input("k".into(), "b".into())?;
    /// assert_eq!(driver.read_key_value_store::<String, i64>("counts")?, vec![("k".into(), 2)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn count(self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        self.build_aggregate(
            Arc::new(|| 0i64),
            Arc::new(|_k: &K, _v: V, n: i64| n + 1),
            materialized,
        )
    }

    /// Combines the values of each key with `reducer(aggregate, value)`; the first value of
    /// a key is its initial aggregate.
    ///
    /// ```
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("amounts", Consumed::with(StringSerde, I64Serde))
    ///     .group_by_key(Grouped::default())
    ///     .reduce(|a: i64, b: i64| a.max(b), Materialized::as_store("max"))
    ///     .to_stream()
    ///     .to("max-amounts", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("amounts", StringSerde, I64Serde)?;
    /// for v in [3, 9, 4] { input.pipe_input("k".into(), v)?; }
    /// let out = driver.create_output_topic("max-amounts", StringSerde, I64Serde);
    /// assert_eq!(out.read_key_values_to_map()?["k"], 9);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn reduce<F>(self, reducer: F, materialized: Materialized<K, V>) -> KTable<K, V>
    where
        F: Fn(V, V) -> V + Send + Sync + 'static,
    {
        // The aggregate is Option<V> internally: None until the first value.
        let reducer = Arc::new(reducer);
        let mut m: Materialized<K, V> = materialized;
        if m.value_serde.is_none() {
            m.value_serde = self
                .stream
                .value_serde
                .clone()
                .or_else(|| self.grouped.value_serde.clone());
        }
        self.build_reduce(reducer, m)
    }

    fn build_reduce(
        self,
        reducer: Arc<dyn Fn(V, V) -> V + Send + Sync>,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        // A reduce is an aggregate whose initial value is "no value yet": keep the first
        // value as is. Represented with a sentinel-free closure over Option.
        let init: Initializer<Option<V>> = Arc::new(|| None);
        let adder: Aggregator<K, V, Option<V>> = Arc::new(move |_k: &K, v: V, agg: Option<V>| {
            Some(match agg {
                Some(a) => reducer(a, v),
                None => v,
            })
        });
        let Materialized {
            name,
            key_serde,
            value_serde,
            in_memory,
            caching,
            logging,
            changelog_config,
        } = materialized;
        let table_value_serde = value_serde.clone();
        let inner: Materialized<K, Option<V>> = Materialized {
            name,
            key_serde,
            value_serde: value_serde.map(|s| Arc::new(OptionOf(s)) as SharedSerde<Option<V>>),
            in_memory,
            caching,
            logging,
            changelog_config,
        };
        let table = self.build_aggregate_named(init, adder, inner, "KSTREAM-REDUCE-");
        table.flatten_option(table_value_serde)
    }

    /// Folds the values of each key into an aggregate: `initializer()` for a new key, then
    /// `aggregator(key, value, aggregate)` for each record.
    ///
    /// ```
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .aggregate(|| 0i64, |_k: &String, v: String, total: i64| total + v.len() as i64,
    ///                Materialized::as_store("chars").with_value_serde(I64Serde))
    ///     .to_stream()
    ///     .to("out", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("in", StringSerde, StringSerde)?;
    /// input.pipe_input("k".into(), "abc".into())?;
    /// input.pipe_input("k".into(), "de".into())?;
    /// assert_eq!(driver.create_output_topic("out", StringSerde, I64Serde).read_key_values_to_map()?["k"], 5);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn aggregate<VA, I, F>(
        self,
        initializer: I,
        aggregator: F,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA>
    where
        VA: Clone + Send + Sync + 'static,
        I: Fn() -> VA + Send + Sync + 'static,
        F: Fn(&K, V, VA) -> VA + Send + Sync + 'static,
    {
        self.build_aggregate(Arc::new(initializer), Arc::new(aggregator), materialized)
    }

    fn build_aggregate<VA>(
        self,
        init: Initializer<VA>,
        adder: Aggregator<K, V, VA>,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA>
    where
        VA: Clone + Send + Sync + 'static,
    {
        self.build_aggregate_named(init, adder, materialized, "KSTREAM-AGGREGATE-")
    }

    fn build_aggregate_named<VA>(
        self,
        init: Initializer<VA>,
        adder: Aggregator<K, V, VA>,
        materialized: Materialized<K, VA>,
        prefix: &str,
    ) -> KTable<K, VA>
    where
        VA: Clone + Send + Sync + 'static,
    {
        let KGroupedStream { stream, grouped } = self;
        let state = Rc::clone(&stream.state);
        let store_name = match &materialized.name {
            Some(n) => n.clone(),
            None => state
                .borrow_mut()
                .next_name("KSTREAM-AGGREGATE-STATE-STORE-"),
        };
        let key_serde = grouped
            .key_serde
            .clone()
            .or_else(|| stream.key_serde.clone());
        let value_serde = grouped
            .value_serde
            .clone()
            .or_else(|| stream.value_serde.clone());
        let mut parent = stream.node.clone();
        if stream.repartition_required {
            let base = grouped.name.clone().unwrap_or_else(|| store_name.clone());
            let topic = format!("{base}-repartition");
            let mut s = state.borrow_mut();
            let sink_name = s.next_name("KSTREAM-SINK-");
            let source_name = s.next_name("KSTREAM-SOURCE-");
            let sink = Sink::<K, V>::new(sink_name, topic.clone())
                .serdes(key_serde.clone(), value_serde.clone());
            let source = Source::<K, V>::new(source_name.clone(), [topic.clone()])
                .serdes(key_serde.clone(), value_serde.clone());
            let from = parent.clone();
            s.apply(|t| {
                t.add_repartition_topic(&topic, None)?;
                t.add_sink(sink, &[&from])?;
                t.add_source(source)?;
                Ok(())
            });
            parent = source_name;
        }
        let name = state.borrow_mut().next_name(prefix);
        let mut store = StoreBuilder::key_value(store_name.clone())
            .with_caching(materialized.caching)
            .with_logging(materialized.logging);
        if materialized.in_memory {
            store = store.in_memory();
        }
        for (k, v) in &materialized.changelog_config {
            store = store.with_changelog_config(k.clone(), v.clone());
        }
        let store = store.with_serdes(
            materialized.key_serde.clone().or(key_serde.clone()),
            materialized.value_serde.clone(),
        );
        let supplier_store = store_name.clone();
        let supplier = move || AggregateProcessor::<K, V, VA> {
            store: supplier_store.clone(),
            init: Arc::clone(&init),
            adder: Arc::clone(&adder),
        };
        state.borrow_mut().apply(|t| {
            t.add_processor(&name, supplier, &[&parent])?;
            t.add_state_store(store, &[&name])?;
            Ok(())
        });
        KTable::new(
            state,
            name,
            store_name,
            materialized.key_serde.or(key_serde),
            materialized.value_serde,
        )
    }
}

/// `Option<V>` over a serde of `V` where `None` never reaches the store (a reduce's
/// aggregate is `None` only before its first value).
struct OptionOf<V>(SharedSerde<V>);

impl<V: 'static> streams_core::Serde<Option<V>> for OptionOf<V> {
    fn serialize(
        &self,
        topic: &str,
        value: &Option<V>,
    ) -> Result<Option<Vec<u8>>, streams_core::SerdeError> {
        match value {
            Some(v) => self.0.serialize(topic, v),
            None => Ok(None),
        }
    }
    fn deserialize(
        &self,
        topic: &str,
        bytes: Option<&[u8]>,
    ) -> Result<Option<V>, streams_core::SerdeError> {
        match bytes {
            Some(b) => self.0.deserialize(topic, Some(b)).map(Some),
            None => Ok(None),
        }
    }
}
