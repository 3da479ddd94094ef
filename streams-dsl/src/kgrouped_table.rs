//! `KGroupedTable`: a table re-grouped by [`KTable::group_by`], ready for an aggregation
//! (Kafka's `KGroupedTableImpl`, `KTableAggregate` and `KTableReduce`).

use std::rc::Rc;
use std::sync::Arc;

use streams_core::{
    Change, Processor, ProcessorContext, Record, Result, SharedSerde, Sink, Source, StreamsError,
    ValueAndTimestamp, repartition_topic,
};

use crate::builder::Shared;
use crate::changed::ChangedSerde;
use crate::ktable::{KTable, OldValues};
use crate::options::{Grouped, Materialized};
use crate::table::table_store;

/// Adds a value to an aggregate: `(key, value, aggregate)`, the aggregate absent for a new
/// group (`count` and `aggregate` start from their initializer, `reduce` from the value).
type Adder<K, V, VA> = Arc<dyn Fn(&K, V, Option<VA>) -> VA + Send + Sync>;
/// Removes a value from an aggregate: `(key, value, aggregate)`.
type Subtractor<K, V, VA> = Arc<dyn Fn(&K, V, VA) -> VA + Send + Sync>;

/// A table grouped by a new key (Kafka's `KGroupedTable`): `count`, `reduce` or
/// `aggregate` it into a [`KTable`]. Made by [`KTable::group_by`].
pub struct KGroupedTable<K, V> {
    state: Shared,
    node: String,
    grouped: Grouped<K, V>,
}

impl<K, V> std::fmt::Debug for KGroupedTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KGroupedTable")
            .field("node", &self.node)
            .finish()
    }
}

/// Kafka's `KTableAggregate` / `KTableReduce` over a timestamped key-value store: the old
/// value is subtracted from the group's aggregate, then the new value added; the result's
/// timestamp is the record's, or the larger of the record's and the stored aggregate's when
/// an existing aggregate changed.
struct TableAggregateProcessor<K, V, VA> {
    store: String,
    adder: Adder<K, V, VA>,
    subtractor: Subtractor<K, V, VA>,
    cached: bool,
}

impl<K, V, VA> Processor<K, Change<V>, K, Change<VA>> for TableAggregateProcessor<K, V, VA>
where
    K: Clone + Send + 'static,
    V: Send + 'static,
    VA: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VA>>) -> Result<()> {
        self.cached = ctx
            .set_timestamped_cache_flush_listener::<K, VA, _>(&self.store, |ctx, r| {
                ctx.forward(r)
            })?;
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, Change<VA>>,
        record: Record<K, Change<V>>,
    ) -> Result<()> {
        let mut store = ctx.timestamped_key_value_store::<K, VA>(&self.store)?;
        let stored = store.get(&record.key)?;
        let stored_ts = stored.as_ref().map(|s| s.timestamp);
        let old_agg = stored.map(|s| s.value);
        let Change { new, old } = record.value;
        let mut changed = false;
        let intermediate = match (old, old_agg.clone()) {
            (Some(old), Some(agg)) => {
                changed = true;
                Some((self.subtractor)(&record.key, old, agg))
            }
            (_, agg) => agg,
        };
        let new_agg = match new {
            Some(new) => {
                changed |= intermediate.is_some() || old_agg.is_some();
                Some((self.adder)(&record.key, new, intermediate))
            }
            None => intermediate,
        };
        let timestamp = match stored_ts {
            Some(ts) if changed => record.timestamp.max(ts),
            _ => record.timestamp,
        };
        match &new_agg {
            Some(v) => store.put(&record.key, &ValueAndTimestamp::new(v.clone(), timestamp))?,
            None => {
                store.delete(&record.key)?;
            }
        }
        if !self.cached {
            ctx.forward(Record {
                key: record.key,
                value: Change {
                    new: new_agg,
                    old: old_agg,
                },
                timestamp,
                headers: record.headers,
            })?;
        }
        Ok(())
    }
}

impl<K, V> KGroupedTable<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(crate) fn new(state: Shared, node: String, grouped: Grouped<K, V>) -> Self {
        KGroupedTable {
            state,
            node,
            grouped,
        }
    }

    /// Counts the rows per group (Kafka's `KGroupedTable#count`): a row moving to another
    /// group is subtracted from the old one (whose count goes down, to 0 rather than
    /// disappearing) and added to the new one; a deleted row is subtracted.
    ///
    /// ```
    /// use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.table("regions", Consumed::with(StringSerde, StringSerde), Materialized::new())
    ///     .group_by(|_user: &String, region: &String| (region.clone(), region.clone()),
    ///               Grouped::with(StringSerde, StringSerde))
    ///     .count(Materialized::new().with_caching_disabled())
    ///     .to_stream()
    ///     .to("per-region", Produced::with(StringSerde, Nullable(I64Serde)));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("regions", StringSerde, StringSerde)?;
    /// input.pipe_input("alice".into(), "eu".into())?;
    /// input.pipe_input("alice".into(), "us".into())?;
    /// let out = driver.create_output_topic("per-region", StringSerde, Nullable(I64Serde));
    /// assert_eq!(out.read_key_values_to_vec()?, vec![
    ///     ("eu".into(), Some(1)), ("eu".into(), Some(0)), ("us".into(), Some(1))]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn count(self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        self.build(
            Arc::new(|_k: &K, _v: V, n: Option<i64>| n.unwrap_or(0) + 1),
            Arc::new(|_k: &K, _v: V, n: i64| n - 1),
            materialized,
            "KTABLE-AGGREGATE-",
        )
    }

    /// Combines the values of each group (Kafka's `KGroupedTable#reduce`): `adder(aggregate,
    /// value)` for a value joining the group (the first value is the initial aggregate),
    /// `subtractor(aggregate, value)` for a value leaving it.
    ///
    /// ```
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// // account -> balance; total per bank (the key's prefix).
    /// builder.table("balances", Consumed::with(StringSerde, I64Serde), Materialized::new())
    ///     .group_by(|account: &String, balance: &i64| (account[..1].to_owned(), *balance),
    ///               Grouped::with(StringSerde, I64Serde))
    ///     .reduce(|a: i64, b: i64| a + b, |a: i64, b: i64| a - b, Materialized::as_store("totals"));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("balances", StringSerde, I64Serde)?;
    /// input.pipe_input("a1".into(), 10)?;
    /// input.pipe_input("a2".into(), 5)?;
    /// input.pipe_input("a1".into(), 7)?; // -10, +7
    /// assert_eq!(driver.read_key_value_store::<String, i64>("totals")?, vec![("a".into(), 12)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn reduce<A, S>(
        self,
        adder: A,
        subtractor: S,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V>
    where
        A: Fn(V, V) -> V + Send + Sync + 'static,
        S: Fn(V, V) -> V + Send + Sync + 'static,
    {
        let mut m = materialized;
        if m.value_serde.is_none() {
            m.value_serde = self.grouped.value_serde.clone();
        }
        self.build(
            Arc::new(move |_k: &K, v: V, agg: Option<V>| match agg {
                Some(agg) => adder(agg, v),
                None => v,
            }),
            Arc::new(move |_k: &K, v: V, agg: V| subtractor(agg, v)),
            m,
            "KTABLE-REDUCE-",
        )
    }

    /// Folds the values of each group (Kafka's `KGroupedTable#aggregate`): `initializer()`
    /// for a new group, `adder(key, value, aggregate)` for a value joining it,
    /// `subtractor(key, value, aggregate)` for a value leaving it.
    ///
    /// ```
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// // user -> name; total name length per first letter.
    /// builder.table("names", Consumed::with(StringSerde, StringSerde), Materialized::new())
    ///     .group_by(|_id: &String, name: &String| (name[..1].to_owned(), name.clone()),
    ///               Grouped::with(StringSerde, StringSerde))
    ///     .aggregate(|| 0i64,
    ///                |_k: &String, v: String, agg: i64| agg + v.len() as i64,
    ///                |_k: &String, v: String, agg: i64| agg - v.len() as i64,
    ///                Materialized::as_store("lengths").with_value_serde(I64Serde));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("names", StringSerde, StringSerde)?;
    /// input.pipe_input("1".into(), "ann".into())?;
    /// input.pipe_input("2".into(), "anna".into())?;
    /// input.pipe_input("1".into(), "bo".into())?;
    /// assert_eq!(driver.read_key_value_store::<String, i64>("lengths")?,
    ///     vec![("a".into(), 4), ("b".into(), 2)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn aggregate<VA, I, A, S>(
        self,
        initializer: I,
        adder: A,
        subtractor: S,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA>
    where
        VA: Clone + Send + Sync + 'static,
        I: Fn() -> VA + Send + Sync + 'static,
        A: Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        S: Fn(&K, V, VA) -> VA + Send + Sync + 'static,
    {
        self.build(
            Arc::new(move |k: &K, v: V, agg: Option<VA>| {
                adder(k, v, agg.unwrap_or_else(&initializer))
            }),
            Arc::new(subtractor),
            materialized,
            "KTABLE-AGGREGATE-",
        )
    }

    /// Compiles an aggregation as Kafka's `KGroupedTableImpl` does: the store name
    /// (`KTABLE-AGGREGATE-STATE-STORE-<n>` unless named), the repartition sink and source
    /// (`KSTREAM-SINK-<n>`, `KSTREAM-SOURCE-<n>`), then the processor (`<prefix><n>`); the
    /// repartition topic is named after the `Grouped` name, else the store.
    fn build<VA>(
        self,
        adder: Adder<K, V, VA>,
        subtractor: Subtractor<K, V, VA>,
        materialized: Materialized<K, VA>,
        prefix: &str,
    ) -> KTable<K, VA>
    where
        VA: Clone + Send + Sync + 'static,
    {
        let state = Rc::clone(&self.state);
        let mut s = state.borrow_mut();
        let store_name = match &materialized.name {
            Some(n) => n.clone(),
            None => s.next_name("KTABLE-AGGREGATE-STATE-STORE-"),
        };
        let sink_name = s.next_name("KSTREAM-SINK-");
        let source_name = s.next_name("KSTREAM-SOURCE-");
        let name = s.next_name(prefix);
        let topic = repartition_topic(self.grouped.name.as_deref().unwrap_or(&store_name));
        let key_serde = self.grouped.key_serde.clone();
        let changed: Option<SharedSerde<Change<V>>> = self
            .grouped
            .value_serde
            .clone()
            .map(|inner| Arc::new(ChangedSerde { inner }) as SharedSerde<Change<V>>);
        let Some(changed) = changed else {
            s.apply(|_| {
                Err(StreamsError::Config {
                    key: "default.value.serde".to_owned(),
                    reason: format!(
                        "KGroupedTable aggregation `{name}`: give the grouped value serde \
                         with Grouped::with(key_serde, value_serde); the repartition topic \
                         writes old and new values with it"
                    ),
                })
            });
            drop(s);
            return KTable::with_parts(
                Rc::clone(&state),
                name,
                Some(store_name),
                None,
                None,
                Arc::default(),
            );
        };
        let sink = Sink::<K, Change<V>>::new(sink_name.clone(), topic.clone())
            .serdes(key_serde.clone(), Some(Arc::clone(&changed)))
            .skip_null_keys();
        let source = Source::<K, Change<V>>::new(source_name.clone(), [topic.clone()])
            .serdes(key_serde.clone(), Some(changed));
        let store = table_store(&store_name, &materialized, key_serde.clone(), None);
        let supplier_store = store_name.clone();
        let supplier = move || TableAggregateProcessor::<K, V, VA> {
            store: supplier_store.clone(),
            adder: Arc::clone(&adder),
            subtractor: Arc::clone(&subtractor),
            cached: false,
        };
        let select = self.node.clone();
        s.apply(|t| {
            t.add_repartition_topic(&topic, None)?;
            t.add_sink(sink, &[&select])?;
            t.add_source(source)?;
            t.add_processor(&name, supplier, &[&source_name])?;
            t.add_state_store(store, &[&name])?;
            Ok(())
        });
        drop(s);
        let old_values: Arc<OldValues> = Arc::default();
        KTable::with_parts(
            state,
            name,
            Some(store_name),
            materialized.key_serde.or(key_serde),
            materialized.value_serde,
            old_values,
        )
    }
}
