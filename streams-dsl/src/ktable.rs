//! `KTable`: a changelog stream seen as a table, one current value per key.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use streams_core::{Change, Nullable, Record, SharedSerde};

use crate::builder::Shared;
use crate::kstream::KStream;
use crate::processors::stateless;
use crate::value_getter::ValueGetter;

/// Whether a table node forwards old values (Kafka's `enableSendingOldValues`): set at build
/// time by a downstream operation that needs them (`group_by`), read by the node's processor
/// supplier when the topology is instantiated. Enabling a node enables its upstream tables
/// too, as Kafka's does.
#[derive(Debug, Default)]
pub(crate) struct OldValues {
    enabled: AtomicBool,
    /// The upstream table nodes (two for a table-table join).
    parents: Vec<Arc<OldValues>>,
}

impl OldValues {
    /// A node whose upstream table node is `parent`.
    pub(crate) fn child_of(parent: &Arc<OldValues>) -> Arc<OldValues> {
        Arc::new(OldValues {
            enabled: AtomicBool::new(false),
            parents: vec![Arc::clone(parent)],
        })
    }

    /// A node with two upstream table nodes (a table-table join's result, as Kafka's
    /// `KTableKTableJoinMerger#enableSendingOldValues` enables both join sides).
    pub(crate) fn child_of_both(left: &Arc<OldValues>, right: &Arc<OldValues>) -> Arc<OldValues> {
        Arc::new(OldValues {
            enabled: AtomicBool::new(false),
            parents: vec![Arc::clone(left), Arc::clone(right)],
        })
    }

    /// Asks this node (and its upstream tables) to forward old values.
    pub(crate) fn enable(&self) {
        self.enabled.store(true, Ordering::SeqCst);
        for p in &self.parents {
            p.enable();
        }
    }

    /// Whether a downstream operation asked for old values.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }
}

/// A table (Kafka's `KTable`): the latest value per key, backed by a state store.
pub struct KTable<K, V> {
    pub(crate) state: Shared,
    pub(crate) node: String,
    store: Option<String>,
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    pub(crate) old_values: Arc<OldValues>,
    /// How a join reads this table when it is not materialized itself (a filter or an
    /// unmaterialized `map_values` over a materialized table); `None`: its store, if any.
    pub(crate) getter: Option<ValueGetter<K, V>>,
    /// The grace period that closes this table's windows (Kafka's
    /// `GraphGraceSearchUtil.findAndVerifyWindowGrace`): set by windowed aggregations and
    /// kept by table operations downstream; `None` for a table that is not windowed.
    pub(crate) window_grace: Option<i64>,
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
            store: Some(store),
            key_serde,
            value_serde,
            old_values: Arc::default(),
            getter: None,
            window_grace: None,
        }
    }

    /// The same table, its windows closing `grace` ms after their end (set by windowed
    /// aggregations; kept by table operations downstream).
    pub(crate) fn with_window_grace(mut self, grace: Option<i64>) -> Self {
        self.window_grace = grace;
        self
    }

    /// A table whose node is `node`, materialized in `store` if any, with the given
    /// old-values switch.
    pub(crate) fn with_parts(
        state: Shared,
        node: String,
        store: Option<String>,
        key_serde: Option<SharedSerde<K>>,
        value_serde: Option<SharedSerde<V>>,
        old_values: Arc<OldValues>,
    ) -> Self {
        KTable {
            state,
            node,
            store,
            key_serde,
            value_serde,
            old_values,
            getter: None,
            window_grace: None,
        }
    }

    /// The value getter a stream-table join reads this table with (Kafka's
    /// `valueGetterSupplier`): its store when materialized, else its chain of filters and
    /// value mappers over a materialized ancestor; `None` if there is none.
    pub(crate) fn value_getter(&self) -> Option<ValueGetter<K, V>> {
        match (&self.store, &self.getter) {
            (Some(store), _) => Some(crate::value_getter::store_getter(store.clone())),
            (None, g) => g.clone(),
        }
    }

    /// The name of the store holding the table (Kafka's `queryableStoreName`), `None` for a
    /// table that is not materialized (such as the result of [`KTable::filter`]).
    ///
    /// ```
    /// use streams_core::StringSerde;
    /// use streams_dsl::{Consumed, Grouped, Materialized, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let table = builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::new());
    /// assert_eq!(table.store_name(), Some("KSTREAM-AGGREGATE-STATE-STORE-0000000001"));
    /// assert_eq!(table.filter(|_k: &String, n: &i64| *n > 1).store_name(), None);
    /// ```
    pub fn store_name(&self) -> Option<&str> {
        self.store.as_deref()
    }

    /// Keeps the rows whose key and value satisfy `predicate` (Kafka's `KTable#filter`).
    ///
    /// As in Kafka, the result is a table: an update whose new value fails the predicate
    /// (or is a delete) becomes a delete of its key downstream, so [`KTable::to_stream`]
    /// emits a tombstone for it, whether or not the key was ever in the filtered table
    /// (Kafka forwards those deletes too unless a downstream operation asks the table for
    /// old values, as [`KTable::group_by`] does: then a row that was not in the filtered
    /// table and still is not is not forwarded). The filtered table is not materialized.
    ///
    /// ```
    /// use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::new().with_caching_disabled())
    ///     .filter(|_k: &String, n: &i64| n % 2 == 0)
    ///     .to_stream()
    ///     .to("even", Produced::with(StringSerde, Nullable(I64Serde)));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("in", StringSerde, StringSerde)?;
    /// for v in ["a", "b", "c"] {
    ///     input.pipe_input("k".into(), v.into())?;
    /// }
    /// let out = driver.create_output_topic("even", StringSerde, Nullable(I64Serde));
    /// assert_eq!(
    ///     out.read_key_values_to_vec()?,
    ///     vec![("k".into(), None), ("k".into(), Some(2)), ("k".into(), None)]
    /// );
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn filter<F>(&self, predicate: F) -> KTable<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.do_filter(predicate, false)
    }

    /// Keeps the rows whose key and value do not satisfy `predicate` (Kafka's
    /// `KTable#filterNot`); rows that do become deletes, as with [`KTable::filter`].
    ///
    /// ```
    /// use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::new().with_caching_disabled())
    ///     .filter_not(|_k: &String, n: &i64| *n > 1)
    ///     .to_stream()
    ///     .to("first", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("in", StringSerde, StringSerde)?;
    /// input.pipe_input("k".into(), "a".into())?;
    /// input.pipe_input("k".into(), "b".into())?;
    /// let out = driver.create_output_topic("first", StringSerde, Nullable(I64Serde));
    /// assert_eq!(out.read_key_values_to_vec()?, vec![("k".into(), Some(1)), ("k".into(), None)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn filter_not<F>(&self, predicate: F) -> KTable<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.do_filter(predicate, true)
    }

    fn do_filter<F>(&self, predicate: F, filter_not: bool) -> KTable<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        let name = self.state.borrow_mut().next_name("KTABLE-FILTER-");
        let parent = self.node.clone();
        let predicate = Arc::new(predicate);
        let getter = self
            .value_getter()
            .map(|g| crate::value_getter::filtered(g, Arc::clone(&predicate), filter_not));
        let old_values = OldValues::child_of(&self.old_values);
        let switch = Arc::clone(&old_values);
        let supplier = move || {
            let predicate = Arc::clone(&predicate);
            let send_old = switch.enabled();
            stateless(move |ctx, r: Record<K, Change<V>>| {
                // Kafka's KTableFilter: the new value if it passes, else a delete; with old
                // values on, the old value filtered the same way, and nothing forwarded when
                // both are absent (the row was not in the filtered table and still is not).
                let new = r.value.new.filter(|v| filter_not ^ predicate(&r.key, v));
                let old = if send_old {
                    r.value.old.filter(|v| filter_not ^ predicate(&r.key, v))
                } else {
                    None
                };
                if send_old && new.is_none() && old.is_none() {
                    return Ok(());
                }
                ctx.forward(Record {
                    key: r.key,
                    value: Change { new, old },
                    timestamp: r.timestamp,
                    headers: r.headers,
                })
            })
        };
        self.state
            .borrow_mut()
            .apply(|t| t.add_processor(&name, supplier, &[&parent]).map(|_| ()));
        KTable {
            state: Rc::clone(&self.state),
            node: name,
            store: None,
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            old_values,
            getter,
            window_grace: self.window_grace,
        }
    }

    /// The table's changelog as a stream (Kafka's `KTable#toStream`): one record per update
    /// with the row's key, the update's timestamp and headers, and its new value: `Some(v)`
    /// for an insert or update, `None` for a delete. Written to a topic with a
    /// [`Nullable`](streams_core::Nullable) value serde, a delete is a tombstone (a record
    /// with a null value), exactly the records Kafka Streams writes. A table that never
    /// deletes (an aggregation) only ever emits `Some`; drop the deletes with
    /// `flat_map_values(|v: Option<V>| v)` to get a `KStream<K, V>`.
    ///
    /// The stream's value serde is the table's, made nullable, when the table's is known;
    /// otherwise the default serde of `Option<V>` (registered for every built-in serde).
    ///
    /// ```
    /// use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let counts = builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::new().with_caching_disabled());
    /// counts.to_stream().to("out", Produced::with(StringSerde, Nullable(I64Serde)));
    /// // Only counts of at least 2; smaller ones are deleted from the filtered table.
    /// counts.filter(|_k: &String, n: &i64| *n >= 2)
    ///     .to_stream()
    ///     .to("frequent", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("in", StringSerde, StringSerde)?;
    /// input.pipe_input_with_timestamp("k".into(), "a".into(), 10)?;
    /// input.pipe_input_with_timestamp("k".into(), "b".into(), 20)?;
    /// // Without caching, every update is emitted.
    /// let out = driver.create_output_topic("out", StringSerde, Nullable(I64Serde));
    /// assert_eq!(out.read_key_values_to_vec()?, vec![("k".into(), Some(1)), ("k".into(), Some(2))]);
    /// // The delete is a tombstone with the key and the timestamp of the update.
    /// let frequent = driver.create_output_topic("frequent", StringSerde, Nullable(I64Serde));
    /// let tombstone = frequent.read_record()?;
    /// assert_eq!((tombstone.key, tombstone.value, tombstone.timestamp), ("k".into(), None, 10));
    /// assert_eq!(frequent.read_value()?, Some(2));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        let name = self.state.borrow_mut().next_name("KTABLE-TOSTREAM-");
        let parent = self.node.clone();
        let supplier = || {
            stateless(|ctx, r: Record<K, Change<V>>| {
                ctx.forward(Record {
                    key: r.key,
                    value: r.value.new,
                    timestamp: r.timestamp,
                    headers: r.headers,
                })
            })
        };
        self.state
            .borrow_mut()
            .apply(|t| t.add_processor(&name, supplier, &[&parent]).map(|_| ()));
        let value_serde = self
            .value_serde
            .clone()
            .map(|s| Arc::new(Nullable(s)) as SharedSerde<Option<V>>);
        KStream::new(
            Rc::clone(&self.state),
            name,
            self.key_serde.clone(),
            value_serde,
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, TopologyTestDriver};

    use crate::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};

    /// `count -> filter(even) -> toStream -> to` with and without caching, and the records
    /// Kafka Streams writes for the same input: a filtered-out update is a tombstone (key,
    /// null value, the update's timestamp), whether or not the key was in the table.
    #[test]
    fn filtered_out_updates_reach_the_topic_as_tombstones() {
        for caching in [false, true] {
            let builder = StreamsBuilder::new();
            let mut materialized = Materialized::as_store("counts");
            if !caching {
                materialized = materialized.with_caching_disabled();
            }
            builder
                .stream("in", Consumed::with(StringSerde, StringSerde))
                .group_by_key(Grouped::default())
                .count(materialized)
                .filter(|_k: &String, n: &i64| n % 2 == 0)
                .to_stream()
                .to("out", Produced::with(StringSerde, Nullable(I64Serde)));
            let driver =
                TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app"))
                    .unwrap();
            let input = driver
                .create_input_topic("in", StringSerde, StringSerde)
                .unwrap();
            for (k, ts) in [("k", 10), ("k", 20), ("j", 30), ("k", 40)] {
                input
                    .pipe_input_with_timestamp(k.into(), "v".into(), ts)
                    .unwrap();
            }
            let out = driver.create_output_topic("out", StringSerde, Nullable(I64Serde));
            let records: Vec<(String, Option<i64>, i64)> = out
                .read_records_to_vec()
                .unwrap()
                .into_iter()
                .map(|r| (r.key, r.value, r.timestamp))
                .collect();
            assert_eq!(
                records,
                vec![
                    ("k".into(), None, 10),
                    ("k".into(), Some(2), 20),
                    ("j".into(), None, 30),
                    ("k".into(), None, 40),
                ],
                "caching {caching}"
            );
        }
    }

    /// `filterNot` keeps what `filter` drops; `toStream` of the unfiltered table only
    /// carries `Some` (an aggregation never deletes), and its default value serde is the
    /// table's made nullable.
    #[test]
    fn filter_not_and_the_unfiltered_stream() {
        let builder = StreamsBuilder::new();
        let counts = builder
            .stream("in", Consumed::with(StringSerde, StringSerde))
            .group_by_key(Grouped::default())
            .count(Materialized::new().with_caching_disabled());
        counts.to_stream().to("all", Produced::default());
        counts
            .filter_not(|k: &String, _n: &i64| k == "skip")
            .to_stream()
            .to("kept", Produced::default());
        let driver =
            TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app")).unwrap();
        let input = driver
            .create_input_topic("in", StringSerde, StringSerde)
            .unwrap();
        input.pipe_input("a".into(), "x".into()).unwrap();
        input.pipe_input("skip".into(), "x".into()).unwrap();
        let all = driver.create_output_topic("all", StringSerde, I64Serde);
        assert_eq!(
            all.read_key_values_to_vec().unwrap(),
            vec![("a".into(), 1), ("skip".into(), 1)]
        );
        let kept = driver.create_output_topic("kept", StringSerde, Nullable(I64Serde));
        assert_eq!(
            kept.read_key_values_to_vec().unwrap(),
            vec![("a".into(), Some(1)), ("skip".into(), None)]
        );
    }

    /// Kafka's names: `KTABLE-FILTER-` and `KTABLE-TOSTREAM-` from the one counter, no
    /// store for an unmaterialized filter.
    #[test]
    fn filter_and_to_stream_are_named_as_kafka_names_them() {
        let builder = StreamsBuilder::new();
        let table = builder
            .stream("in", Consumed::with(StringSerde, StringSerde))
            .group_by_key(Grouped::default())
            .count(Materialized::new())
            .filter(|_k: &String, n: &i64| *n > 1);
        assert_eq!(table.store_name(), None);
        table.to_stream().to("out", Produced::default());
        let text = builder.build().unwrap().describe().unwrap().to_string();
        for node in [
            "Processor: KTABLE-FILTER-0000000003",
            "Processor: KTABLE-TOSTREAM-0000000004",
            "Sink: KSTREAM-SINK-0000000005 (topic: out)",
        ] {
            assert!(text.contains(node), "{node} missing in\n{text}");
        }
    }
}
