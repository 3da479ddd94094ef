//! `KGroupedStream`: a stream grouped by key, ready for an aggregation.

use std::rc::Rc;
use std::sync::Arc;

use streams_core::{SharedSerde, StoreBuilder};

use crate::kstream::KStream;
use crate::ktable::KTable;
use crate::options::{Grouped, Materialized};
use crate::processors::{AggregateProcessor, Combine};
use crate::repartition::repartition;
use crate::session_windowed::SessionWindowedKStream;
use crate::sliding_windowed::SlidingWindowedKStream;
use crate::time_windowed::TimeWindowedKStream;
use crate::windows::{SessionWindows, SlidingWindows, TimeWindows};

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
    /// use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::as_store("counts").in_memory())
    ///     .to_stream()
    ///     .to("out", Produced::with(StringSerde, Nullable(I64Serde)));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("in", StringSerde, StringSerde)?;
    /// input.pipe_input("k".into(), "a".into())?;
    /// input.pipe_input("k".into(), "b".into())?;
    /// assert_eq!(driver.read_key_value_store::<String, i64>("counts")?, vec![("k".into(), 2)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn count(self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        self.build(
            Arc::new(|_k: &K, _v: V, n: Option<i64>| n.unwrap_or(0) + 1),
            materialized,
            "KSTREAM-AGGREGATE-",
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
        let mut m: Materialized<K, V> = materialized;
        if m.value_serde.is_none() {
            m.value_serde = self
                .grouped
                .value_serde
                .clone()
                .or_else(|| self.stream.value_serde.clone());
        }
        self.build(
            Arc::new(move |_k: &K, v: V, old: Option<V>| match old {
                Some(agg) => reducer(agg, v),
                None => v,
            }),
            m,
            "KSTREAM-REDUCE-",
        )
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
        self.build(
            Arc::new(move |k: &K, v: V, old: Option<VA>| {
                aggregator(k, v, old.unwrap_or_else(&initializer))
            }),
            materialized,
            "KSTREAM-AGGREGATE-",
        )
    }

    /// Cuts the grouped stream into windows, for a windowed `count`, `reduce` or
    /// `aggregate` (Kafka's `windowedBy`, one overload per kind of windows): tumbling or
    /// hopping [`TimeWindows`] give a [`TimeWindowedKStream`], [`SlidingWindows`] a
    /// [`SlidingWindowedKStream`], [`SessionWindows`] a [`SessionWindowedKStream`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, StreamsBuilder, TimeWindows};
    /// let builder = StreamsBuilder::new();
    /// let table = builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(TimeWindows::of_size_and_grace(Duration::from_secs(60), Duration::from_secs(5))?)
    ///     // keep windows for an hour (the default, size + grace, forgets them sooner)
    ///     .count(Materialized::as_store("per-minute").with_retention(Duration::from_secs(3600)));
    /// assert_eq!(table.store_name(), Some("per-minute"));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("in", StringSerde, StringSerde)?;
    /// input.pipe_input_with_timestamp("k".into(), "v".into(), 62_000)?;
    /// input.pipe_input_with_timestamp("k".into(), "late".into(), 30_000)?; // within grace
    /// input.pipe_input_with_timestamp("k".into(), "v".into(), 200_000)?;
    /// input.pipe_input_with_timestamp("k".into(), "too late".into(), 10_000)?; // dropped
    /// assert_eq!(driver.read_window_store::<String, i64>("per-minute")?,
    ///     vec![("k".into(), 0, 1), ("k".into(), 60_000, 1), ("k".into(), 180_000, 1)]);
    /// assert_eq!(driver.dropped_records(), 1);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn windowed_by<W: WindowedBy<K, V>>(self, windows: W) -> W::Stream {
        windows.windowed(self)
    }

    /// The node an aggregation reads from and the grouped serdes, as Kafka's
    /// `GroupedStreamAggregateBuilder` decides them once the store and processor names are
    /// drawn: the repartition step if the key may have changed (topic named after the
    /// `Grouped` name, else the store), else the stream's node.
    pub(crate) fn source_for(
        self,
        store_name: &str,
    ) -> (String, Option<SharedSerde<K>>, Option<SharedSerde<V>>) {
        let KGroupedStream { stream, grouped } = self;
        let key_serde = grouped
            .key_serde
            .clone()
            .or_else(|| stream.key_serde.clone());
        let value_serde = grouped
            .value_serde
            .clone()
            .or_else(|| stream.value_serde.clone());
        let parent = if stream.repartition_required {
            let base = grouped
                .name
                .clone()
                .unwrap_or_else(|| store_name.to_owned());
            repartition(
                &stream.state,
                &stream.node,
                &base,
                key_serde.clone(),
                value_serde.clone(),
            )
        } else {
            stream.node.clone()
        };
        (parent, key_serde, value_serde)
    }

    /// The state shared with the builder.
    pub(crate) fn state(&self) -> &crate::builder::Shared {
        &self.stream.state
    }

    /// Prepares the `Materialized` of a windowed `count`: as Kafka's windowed
    /// `count(Materialized)`, an unnamed store first draws (and discards) one generated store
    /// name, for compatibility with older topologies; the count's serde defaults to `i64`.
    pub(crate) fn windowed_count_materialized(
        &self,
        mut m: crate::Materialized<K, i64>,
    ) -> crate::Materialized<K, i64> {
        if m.name.is_none() {
            self.state()
                .borrow_mut()
                .next_name("KSTREAM-AGGREGATE-STATE-STORE-");
        }
        if m.value_serde.is_none() {
            m.value_serde = Some(std::sync::Arc::new(streams_core::I64Serde));
        }
        m
    }

    /// The value serde known for the grouped values (the `Grouped` one, else the
    /// stream's).
    pub(crate) fn value_serde(&self) -> Option<SharedSerde<V>> {
        self.grouped
            .value_serde
            .clone()
            .or_else(|| self.stream.value_serde.clone())
    }

    /// Compiles an aggregation as Kafka's `GroupedStreamAggregateBuilder` does: the store
    /// name (`<prefix>STATE-STORE-<n>` unless materialized with a name), then the processor
    /// name (`<prefix><n>`), then the repartition step if the key may have changed (topic
    /// named after the `Grouped` name, else the store), then the processor and its store.
    fn build<VA>(
        self,
        combine: Combine<K, V, VA>,
        materialized: Materialized<K, VA>,
        prefix: &str,
    ) -> KTable<K, VA>
    where
        VA: Clone + Send + Sync + 'static,
    {
        let state = Rc::clone(&self.stream.state);
        let store_name = match &materialized.name {
            Some(n) => n.clone(),
            None => state
                .borrow_mut()
                .next_name(&format!("{prefix}STATE-STORE-")),
        };
        let name = state.borrow_mut().next_name(prefix);
        let (parent, key_serde, value_serde) = self.source_for(&store_name);
        let mut store = StoreBuilder::timestamped_key_value(store_name.clone())
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
        let (agg_key_serde, agg_value_serde) = (key_serde.clone(), value_serde.clone());
        let supplier = move || AggregateProcessor::<K, V, VA> {
            store: supplier_store.clone(),
            combine: Arc::clone(&combine),
            cached: false,
            key_serde: agg_key_serde.clone(),
            value_serde: agg_value_serde.clone(),
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

/// Windows a [`KGroupedStream`] can be cut into with [`KGroupedStream::windowed_by`] (the
/// overloads of Kafka's `windowedBy`), and the windowed stream each kind gives.
pub trait WindowedBy<K, V> {
    /// The windowed stream: [`TimeWindowedKStream`], [`SlidingWindowedKStream`] or
    /// [`SessionWindowedKStream`].
    type Stream;

    /// Cuts `grouped` into these windows.
    fn windowed(self, grouped: KGroupedStream<K, V>) -> Self::Stream;
}

impl<K, V> WindowedBy<K, V> for TimeWindows
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    type Stream = TimeWindowedKStream<K, V>;

    fn windowed(self, grouped: KGroupedStream<K, V>) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream::new(grouped, self)
    }
}

impl<K, V> WindowedBy<K, V> for SessionWindows
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    type Stream = SessionWindowedKStream<K, V>;

    fn windowed(self, grouped: KGroupedStream<K, V>) -> SessionWindowedKStream<K, V> {
        SessionWindowedKStream::new(grouped, self)
    }
}

impl<K, V> WindowedBy<K, V> for SlidingWindows
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    type Stream = SlidingWindowedKStream<K, V>;

    fn windowed(self, grouped: KGroupedStream<K, V>) -> SlidingWindowedKStream<K, V> {
        SlidingWindowedKStream::new(grouped, self)
    }
}
