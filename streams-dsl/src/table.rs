//! Source tables (Kafka's `KTableSource`), `KTable::map_values` (`KTableMapValues`) and
//! `KTable::group_by` (`KTableRepartitionMap`).

use std::rc::Rc;
use std::sync::Arc;

use streams_core::{
    Change, Nullable, Processor, ProcessorContext, Record, Result, SharedSerde, Source,
    StoreBuilder, ValueAndTimestamp,
};

use crate::builder::Shared;
use crate::kgrouped_table::KGroupedTable;
use crate::ktable::{KTable, OldValues};
use crate::options::{Consumed, Grouped, Materialized};

/// A table value mapper: `(key, value) -> new value`.
type ValueMapper<K, V, VR> = Arc<dyn Fn(&K, &V) -> VR + Send + Sync>;
/// A `group_by` selector: `(key, value) -> (group, value)`.
type Selector<K, V, KR, VR> = Arc<dyn Fn(&K, &V) -> (KR, VR) + Send + Sync>;

/// Logs a skipped record with its origin and counts it in `dropped-records`.
pub(crate) fn skip_record<K, V>(ctx: &mut ProcessorContext<'_, K, V>, reason: &'static str) {
    let (topic, partition, offset) = ctx.record_metadata().map_or((String::new(), -1, -1), |m| {
        (m.topic.clone(), m.partition, m.offset)
    });
    tracing::warn!(node = ctx.node_name(), topic, partition, offset, "{reason}");
    ctx.record_dropped();
}

/// The store of a table operation: a timestamped key-value store as `materialized` says.
pub(crate) fn table_store<K: 'static, V: 'static>(
    name: &str,
    materialized: &Materialized<K, V>,
    key_serde: Option<SharedSerde<K>>,
    value_serde: Option<SharedSerde<V>>,
) -> StoreBuilder {
    let mut store = StoreBuilder::timestamped_key_value(name.to_owned())
        .with_caching(materialized.caching)
        .with_logging(materialized.logging);
    if materialized.in_memory {
        store = store.in_memory();
    }
    for (k, v) in &materialized.changelog_config {
        store = store.with_changelog_config(k.clone(), v.clone());
    }
    store.with_serdes(
        materialized.key_serde.clone().or(key_serde),
        materialized.value_serde.clone().or(value_serde),
    )
}

/// Forwards a timestamped store's cache flushes, without old values unless asked.
pub(crate) fn forward_flushes<K, V>(
    ctx: &mut ProcessorContext<'_, K, Change<V>>,
    store: &str,
    send_old: bool,
) -> Result<bool>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    ctx.set_timestamped_cache_flush_listener::<K, V, _>(store, move |ctx, mut r| {
        if !send_old {
            r.value.old = None;
        }
        ctx.forward(r)
    })
}

/// Kafka's `KTableSource` processor over a timestamped key-value store.
pub(crate) struct TableSourceProcessor<K, V> {
    pub(crate) store: String,
    pub(crate) cached: bool,
    pub(crate) send_old: bool,
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) _v: std::marker::PhantomData<fn(V)>,
}

impl<K, V> Processor<K, Option<V>, K, Change<V>> for TableSourceProcessor<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> Result<()> {
        self.cached = forward_flushes(ctx, &self.store, self.send_old)?;
        if self.key_serde.is_none() {
            self.key_serde = ctx.serdes().get::<K>();
        }
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, Change<V>>,
        record: Record<K, Option<V>>,
    ) -> Result<()> {
        if self
            .key_serde
            .as_ref()
            .is_some_and(|s| s.is_null(&record.key))
        {
            skip_record(ctx, "Skipping record due to null key");
            return Ok(());
        }
        let mut store = ctx.timestamped_key_value_store::<K, V>(&self.store)?;
        let old = store.get(&record.key)?;
        if let Some(o) = old.as_ref().filter(|o| record.timestamp < o.timestamp) {
            // Kafka 3.x applies an out-of-order update to a (non-versioned) table and
            // only warns.
            tracing::warn!(
                store = self.store,
                old_timestamp = o.timestamp,
                new_timestamp = record.timestamp,
                "Detected out-of-order KTable update"
            );
        }
        match &record.value {
            Some(v) => store.put(
                &record.key,
                &ValueAndTimestamp::new(v.clone(), record.timestamp),
            )?,
            None => {
                store.delete(&record.key)?;
            }
        }
        if !self.cached {
            let old = if self.send_old {
                old.map(|o| o.value)
            } else {
                None
            };
            ctx.forward(Record {
                key: record.key,
                value: Change {
                    new: record.value,
                    old,
                },
                timestamp: record.timestamp,
                headers: record.headers,
            })?;
        }
        Ok(())
    }
}

/// `StreamsBuilder::table`, as Kafka's `InternalStreamsBuilder#table` names things: the
/// store (`<topic>-STATE-STORE-<n>` unless named), then the source (`KSTREAM-SOURCE-<n>`,
/// or `<name>-source` for a named `Consumed`), then the table source (`KTABLE-SOURCE-<n>`,
/// or the `Consumed` name).
pub(crate) fn source_table<K, V>(
    state: &Shared,
    topic: &str,
    consumed: Consumed<K, V>,
    materialized: Materialized<K, V>,
) -> KTable<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let mut s = state.borrow_mut();
    let store_name = match &materialized.name {
        Some(n) => n.clone(),
        None => s.next_name(&format!("{topic}-STATE-STORE-")),
    };
    let (source_name, table_name) = match &consumed.name {
        Some(n) => (format!("{n}-source"), n.clone()),
        None => (
            s.next_name("KSTREAM-SOURCE-"),
            s.next_name("KTABLE-SOURCE-"),
        ),
    };
    let key_serde = consumed.key_serde.clone();
    let value_serde = consumed.value_serde.clone();
    let nullable = value_serde
        .clone()
        .map(|v| Arc::new(Nullable(v)) as SharedSerde<Option<V>>);
    let mut source = Source::<K, Option<V>>::new(source_name.clone(), [topic])
        .serdes(key_serde.clone(), nullable)
        .offset_reset(consumed.offset_reset);
    if let Some(x) = consumed.extractor.clone() {
        // The extractor sees the value as read: wrap it for the nullable record.
        source = source.timestamp_extractor(Arc::new(
            move |k: &K, v: &Option<V>, ts: i64, prev: i64| match v {
                Some(v) => x(k, v, ts, prev),
                None => ts,
            },
        ));
    }
    let store = table_store(
        &store_name,
        &materialized,
        key_serde.clone(),
        value_serde.clone(),
    );
    let old_values: Arc<OldValues> = Arc::default();
    let switch = Arc::clone(&old_values);
    let supplier_store = store_name.clone();
    let supplier_key_serde = key_serde.clone();
    let supplier = move || TableSourceProcessor::<K, V> {
        store: supplier_store.clone(),
        cached: false,
        send_old: switch.enabled(),
        key_serde: supplier_key_serde.clone(),
        _v: std::marker::PhantomData,
    };
    s.apply(|t| {
        t.add_source(source)?;
        t.add_processor(&table_name, supplier, &[&source_name])?;
        t.add_state_store(store, &[&table_name])?;
        t.mark_source_table_store(&store_name, topic)?;
        Ok(())
    });
    drop(s);
    KTable::with_parts(
        Rc::clone(state),
        table_name,
        Some(store_name),
        materialized.key_serde.or(key_serde),
        materialized.value_serde.or(value_serde),
        old_values,
    )
}

/// Kafka's `KTableMapValues` processor, materialized or not.
struct MapValuesProcessor<K, V, VR> {
    mapper: ValueMapper<K, V, VR>,
    store: Option<String>,
    cached: bool,
    send_old: bool,
}

impl<K, V, VR> Processor<K, Change<V>, K, Change<VR>> for MapValuesProcessor<K, V, VR>
where
    K: Clone + Send + 'static,
    V: Send + 'static,
    VR: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VR>>) -> Result<()> {
        if let Some(store) = &self.store {
            self.cached = forward_flushes(ctx, store, self.send_old)?;
        }
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, Change<VR>>,
        record: Record<K, Change<V>>,
    ) -> Result<()> {
        let new = record
            .value
            .new
            .as_ref()
            .map(|v| (self.mapper)(&record.key, v));
        let old = if self.send_old {
            record
                .value
                .old
                .as_ref()
                .map(|v| (self.mapper)(&record.key, v))
        } else {
            None
        };
        if let Some(store) = &self.store {
            let mut handle = ctx.timestamped_key_value_store::<K, VR>(store)?;
            match &new {
                Some(v) => handle.put(
                    &record.key,
                    &ValueAndTimestamp::new(v.clone(), record.timestamp),
                )?,
                None => {
                    handle.delete(&record.key)?;
                }
            }
            if self.cached {
                return Ok(());
            }
        }
        ctx.forward(Record {
            key: record.key,
            value: Change { new, old },
            timestamp: record.timestamp,
            headers: record.headers,
        })
    }
}

/// Kafka's `KTableRepartitionMap`: re-keys each update for the grouped aggregation, the
/// old value towards its old group and the new one towards its new group (one record when
/// both land in the same group).
struct RepartitionMapProcessor<K, V, KR, VR> {
    selector: Selector<K, V, KR, VR>,
    key_serde: Option<SharedSerde<KR>>,
    value_serde: Option<SharedSerde<VR>>,
}

impl<K, V, KR: 'static, VR: 'static> RepartitionMapProcessor<K, V, KR, VR> {
    fn select(&self, key: &K, value: Option<&V>) -> Option<(KR, VR)> {
        let (k, v) = (self.selector)(key, value?);
        let null_key = self.key_serde.as_ref().is_some_and(|s| s.is_null(&k));
        let null_value = self.value_serde.as_ref().is_some_and(|s| s.is_null(&v));
        (!null_key && !null_value).then_some((k, v))
    }
}

impl<K, V, KR, VR> Processor<K, Change<V>, KR, Change<VR>> for RepartitionMapProcessor<K, V, KR, VR>
where
    K: Send + 'static,
    V: Send + 'static,
    KR: PartialEq + Clone + Send + Sync + 'static,
    VR: Clone + Send + Sync + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, KR, Change<VR>>) -> Result<()> {
        if self.key_serde.is_none() {
            self.key_serde = ctx.serdes().get::<KR>();
        }
        if self.value_serde.is_none() {
            self.value_serde = ctx.serdes().get::<VR>();
        }
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, KR, Change<VR>>,
        record: Record<K, Change<V>>,
    ) -> Result<()> {
        let new = self.select(&record.key, record.value.new.as_ref());
        let old = self.select(&record.key, record.value.old.as_ref());
        let (timestamp, headers) = (record.timestamp, record.headers);
        let out = |key, new, old| Record {
            key,
            value: Change { new, old },
            timestamp,
            headers: headers.clone(),
        };
        match (old, new) {
            (Some((ok, ov)), Some((nk, nv))) if ok == nk => {
                ctx.forward(out(nk, Some(nv), Some(ov)))
            }
            (old, new) => {
                // The old value first, as Kafka: subtract, then add.
                if let Some((ok, ov)) = old {
                    ctx.forward(out(ok, None, Some(ov)))?;
                }
                if let Some((nk, nv)) = new {
                    ctx.forward(out(nk, Some(nv), None))?;
                }
                Ok(())
            }
        }
    }
}

impl<K, V> KTable<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Maps each row's value (Kafka's `KTable#mapValues`), keeping its key; a delete stays
    /// a delete (the mapper never sees it). The result is not materialized; see
    /// [`KTable::map_values_materialized`].
    ///
    /// ```
    /// use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.table("words", Consumed::with(StringSerde, StringSerde), Materialized::new())
    ///     .map_values(|w: &String| w.len() as i64)
    ///     .to_stream()
    ///     .to("lengths", Produced::with(StringSerde, Nullable(I64Serde)));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("words", StringSerde, Nullable(StringSerde))?;
    /// input.pipe_input("k".into(), Some("four".into()))?;
    /// input.pipe_input("k".into(), None)?; // a delete
    /// let out = driver.create_output_topic("lengths", StringSerde, Nullable(I64Serde));
    /// assert_eq!(out.read_key_values_to_vec()?, vec![("k".into(), Some(4)), ("k".into(), None)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn map_values<VR, F>(&self, mapper: F) -> KTable<K, VR>
    where
        VR: Clone + Send + Sync + 'static,
        F: Fn(&V) -> VR + Send + Sync + 'static,
    {
        self.do_map_values(Arc::new(move |_k: &K, v: &V| mapper(v)), None)
    }

    /// [`KTable::map_values`] into a table materialized as `materialized` says (Kafka's
    /// `mapValues(mapper, Materialized)`): a timestamped key-value store named
    /// `KTABLE-MAPVALUES-STATE-STORE-<n>` unless named, cached and change-logged by
    /// default; with the cache on, updates go downstream as the cache flushes them.
    ///
    /// ```
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Materialized, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let lengths = builder
    ///     .table("words", Consumed::with(StringSerde, StringSerde), Materialized::new())
    ///     .map_values_materialized(
    ///         |w: &String| w.len() as i64,
    ///         Materialized::as_store("lengths").with_value_serde(I64Serde),
    ///     );
    /// assert_eq!(lengths.store_name(), Some("lengths"));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("words", StringSerde, StringSerde)?;
    /// input.pipe_input("k".into(), "four".into())?;
    /// assert_eq!(driver.read_key_value_store::<String, i64>("lengths")?.len(), 1);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn map_values_materialized<VR, F>(
        &self,
        mapper: F,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR>
    where
        VR: Clone + Send + Sync + 'static,
        F: Fn(&V) -> VR + Send + Sync + 'static,
    {
        self.do_map_values(Arc::new(move |_k: &K, v: &V| mapper(v)), Some(materialized))
    }

    fn do_map_values<VR>(
        &self,
        mapper: ValueMapper<K, V, VR>,
        materialized: Option<Materialized<K, VR>>,
    ) -> KTable<K, VR>
    where
        VR: Clone + Send + Sync + 'static,
    {
        let mut s = self.state.borrow_mut();
        let store_name = materialized.as_ref().map(|m| match &m.name {
            Some(n) => n.clone(),
            None => s.next_name("KTABLE-MAPVALUES-STATE-STORE-"),
        });
        let name = s.next_name("KTABLE-MAPVALUES-");
        let parent = self.node.clone();
        let old_values = OldValues::child_of(&self.old_values);
        let switch = Arc::clone(&old_values);
        let supplier_store = store_name.clone();
        let getter_mapper = Arc::clone(&mapper);
        let supplier = move || MapValuesProcessor::<K, V, VR> {
            mapper: Arc::clone(&mapper),
            store: supplier_store.clone(),
            cached: false,
            send_old: switch.enabled(),
        };
        let store = match (&store_name, &materialized) {
            (Some(n), Some(m)) => Some(table_store(n, m, self.key_serde.clone(), None)),
            _ => None,
        };
        s.apply(|t| {
            t.add_processor(&name, supplier, &[&parent])?;
            if let Some(store) = store {
                t.add_state_store(store, &[&name])?;
            }
            Ok(())
        });
        drop(s);
        let (key_serde, value_serde) = match materialized {
            Some(m) => (m.key_serde.or(self.key_serde.clone()), m.value_serde),
            None => (self.key_serde.clone(), None),
        };
        // Unmaterialized, a join reads it through the parent's getter and the mapper
        // (Kafka's KTableMapValues value getter).
        let getter = match &store_name {
            Some(_) => None,
            None => self
                .value_getter()
                .map(|g| crate::value_getter::mapped(g, Arc::clone(&getter_mapper))),
        };
        let mut table = KTable::with_parts(
            Rc::clone(&self.state),
            name,
            store_name,
            key_serde,
            value_serde,
            old_values,
        )
        .with_window_grace(self.window_grace);
        table.getter = getter;
        table
    }

    /// Re-groups the table by a new key (Kafka's `KTable#groupBy`): `selector(key, value)`
    /// gives each row's group and the value it contributes, for a [`KGroupedTable`]
    /// aggregation. The table is asked for old values, so that each update removes the
    /// row's old value from its old group before adding the new one to its new group.
    /// A selected key or value that its serde makes null is skipped, as in Kafka.
    ///
    /// The repartition topic carries both old and new values in Kafka's `Change` format,
    /// each written with the `Grouped` value serde: give it with `Grouped::with` (without
    /// it, the aggregation's `build` fails with `StreamsError::Config`). A `Grouped` name
    /// names the select node and the repartition topic (`<app>-<name>-repartition`).
    ///
    /// ```
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// // user -> region; count users per region.
    /// builder.table("regions", Consumed::with(StringSerde, StringSerde), Materialized::new())
    ///     .group_by(|_user: &String, region: &String| (region.clone(), 1i64),
    ///               Grouped::with(StringSerde, I64Serde))
    ///     .count(Materialized::as_store("per-region"));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("regions", StringSerde, StringSerde)?;
    /// input.pipe_input("alice".into(), "eu".into())?;
    /// input.pipe_input("bob".into(), "eu".into())?;
    /// input.pipe_input("alice".into(), "us".into())?; // alice moves
    /// assert_eq!(driver.read_key_value_store::<String, i64>("per-region")?,
    ///     vec![("eu".into(), 1), ("us".into(), 1)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn group_by<KR, VR, F>(
        &self,
        selector: F,
        grouped: Grouped<KR, VR>,
    ) -> KGroupedTable<KR, VR>
    where
        KR: PartialEq + Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(&K, &V) -> (KR, VR) + Send + Sync + 'static,
    {
        let name = match &grouped.name {
            Some(n) => n.clone(),
            None => self.state.borrow_mut().next_name("KTABLE-SELECT-"),
        };
        let parent = self.node.clone();
        let selector: Selector<K, V, KR, VR> = Arc::new(selector);
        let (key_serde, value_serde) = (grouped.key_serde.clone(), grouped.value_serde.clone());
        let supplier = move || RepartitionMapProcessor::<K, V, KR, VR> {
            selector: Arc::clone(&selector),
            key_serde: key_serde.clone(),
            value_serde: value_serde.clone(),
        };
        self.state
            .borrow_mut()
            .apply(|t| t.add_processor(&name, supplier, &[&parent]).map(|_| ()));
        self.old_values.enable();
        KGroupedTable::new(Rc::clone(&self.state), name, grouped)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, TopologyTestDriver};

    use crate::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};

    type Out<V> = Vec<(String, Option<V>, i64)>;

    fn materialized<K: 'static, V: 'static>(name: &str, caching: bool) -> Materialized<K, V> {
        let m = Materialized::as_store(name);
        if caching {
            m
        } else {
            m.with_caching_disabled()
        }
    }

    fn read<V: 'static>(
        driver: &TopologyTestDriver,
        topic: &str,
        serde: impl streams_core::Serde<V>,
    ) -> Out<V> {
        driver
            .create_output_topic(topic, StringSerde, Nullable(serde))
            .read_records_to_vec()
            .unwrap()
            .into_iter()
            .map(|r| (r.key, r.value, r.timestamp))
            .collect()
    }

    fn s(k: &str, v: Option<&str>, ts: i64) -> (String, Option<String>, i64) {
        (k.into(), v.map(str::to_owned), ts)
    }

    /// A source table → toStream, as Kafka Streams emits: updates, a tombstone for a
    /// delete, an out-of-order update applied; a tombstone for a key never in the table is
    /// forwarded without a cache and not with one (Kafka's caching store skips a delete of
    /// an absent key); a null key is dropped and counted.
    #[test]
    fn source_table_updates_and_tombstones() {
        for caching in [false, true] {
            let builder = StreamsBuilder::new();
            let table = builder.table(
                "in",
                Consumed::with(Nullable(StringSerde), StringSerde),
                materialized("t", caching),
            );
            table.to_stream().to(
                "out",
                Produced::with(Nullable(StringSerde), Nullable(StringSerde)),
            );
            let driver =
                TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app"))
                    .unwrap();
            let input = driver
                .create_input_topic("in", Nullable(StringSerde), Nullable(StringSerde))
                .unwrap();
            let k = |k: &str| Some(k.to_owned());
            let v = |v: &str| Some(v.to_owned());
            input.pipe_input_with_timestamp(k("a"), v("1"), 10).unwrap();
            input.pipe_input_with_timestamp(k("b"), v("2"), 20).unwrap();
            input.pipe_input_with_timestamp(k("a"), v("3"), 30).unwrap();
            input.pipe_input_with_timestamp(k("a"), None, 40).unwrap();
            input.pipe_input_with_timestamp(k("c"), None, 50).unwrap();
            input.pipe_input_with_timestamp(None, v("x"), 60).unwrap();
            input.pipe_input_with_timestamp(k("b"), v("4"), 15).unwrap();
            let out: Vec<_> = driver
                .create_output_topic("out", Nullable(StringSerde), Nullable(StringSerde))
                .read_records_to_vec()
                .unwrap()
                .into_iter()
                .map(|r| (r.key.unwrap(), r.value, r.timestamp))
                .collect();
            let mut expected = vec![
                s("a", Some("1"), 10),
                s("b", Some("2"), 20),
                s("a", Some("3"), 30),
                s("a", None, 40),
            ];
            if !caching {
                expected.push(s("c", None, 50));
            }
            expected.push(s("b", Some("4"), 15));
            assert_eq!(out, expected, "caching {caching}");
            assert_eq!(driver.dropped_records(), 1);
            assert_eq!(
                driver
                    .read_key_value_store::<Option<String>, String>("t")
                    .unwrap(),
                vec![(k("b"), "4".to_owned())]
            );
        }
    }

    /// mapValues: the mapper sees values, deletes stay deletes; materialized or not.
    #[test]
    fn map_values_forwards_deletes() {
        for caching in [false, true] {
            let builder = StreamsBuilder::new();
            let table = builder.table(
                "in",
                Consumed::with(StringSerde, StringSerde),
                materialized("t", caching),
            );
            table
                .map_values(|v: &String| v.len() as i64)
                .to_stream()
                .to("plain", Produced::with(StringSerde, Nullable(I64Serde)));
            table
                .map_values_materialized(
                    |v: &String| v.len() as i64 * 10,
                    materialized("m", caching).with_value_serde(I64Serde),
                )
                .to_stream()
                .to("mat", Produced::with(StringSerde, Nullable(I64Serde)));
            let driver =
                TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app"))
                    .unwrap();
            let input = driver
                .create_input_topic("in", StringSerde, Nullable(StringSerde))
                .unwrap();
            input
                .pipe_input_with_timestamp("a".into(), Some("xy".into()), 5)
                .unwrap();
            input
                .pipe_input_with_timestamp("a".into(), Some("xyz".into()), 7)
                .unwrap();
            input
                .pipe_input_with_timestamp("a".into(), None, 9)
                .unwrap();
            let expected = |f: i64| {
                vec![
                    ("a".to_owned(), Some(2 * f), 5),
                    ("a".to_owned(), Some(3 * f), 7),
                    ("a".to_owned(), None, 9),
                ]
            };
            assert_eq!(
                read(&driver, "plain", I64Serde),
                expected(1),
                "caching {caching}"
            );
            assert_eq!(
                read(&driver, "mat", I64Serde),
                expected(10),
                "caching {caching}"
            );
            assert!(
                driver
                    .read_key_value_store::<String, i64>("m")
                    .unwrap()
                    .is_empty()
            );
        }
    }

    /// groupBy + count where a row moves between groups: Kafka subtracts from the old
    /// group first, then adds to the new one; an update within the same group is one
    /// record (subtract and add in one step); a delete subtracts. Timestamps: the largest
    /// of the aggregate's and the record's.
    #[test]
    fn group_by_count_moves_rows_between_groups() {
        for caching in [false, true] {
            let builder = StreamsBuilder::new();
            builder
                .table(
                    "users",
                    Consumed::with(StringSerde, StringSerde),
                    materialized("t", caching),
                )
                .group_by(
                    |_u: &String, region: &String| (region.clone(), region.clone()),
                    Grouped::with(StringSerde, StringSerde),
                )
                .count(materialized("counts", caching))
                .to_stream()
                .to("out", Produced::with(StringSerde, Nullable(I64Serde)));
            let driver =
                TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app"))
                    .unwrap();
            let input = driver
                .create_input_topic("users", StringSerde, Nullable(StringSerde))
                .unwrap();
            input
                .pipe_input_with_timestamp("alice".into(), Some("eu".into()), 10)
                .unwrap();
            input
                .pipe_input_with_timestamp("bob".into(), Some("eu".into()), 20)
                .unwrap();
            input
                .pipe_input_with_timestamp("alice".into(), Some("us".into()), 30)
                .unwrap();
            input
                .pipe_input_with_timestamp("bob".into(), None, 40)
                .unwrap();
            input
                .pipe_input_with_timestamp("alice".into(), Some("us".into()), 35)
                .unwrap();
            input
                .pipe_input_with_timestamp("carol".into(), None, 50)
                .unwrap();
            assert_eq!(
                read(&driver, "out", I64Serde),
                vec![
                    ("eu".to_owned(), Some(1), 10),
                    ("eu".to_owned(), Some(2), 20),
                    ("eu".to_owned(), Some(1), 30),
                    ("us".to_owned(), Some(1), 30),
                    ("eu".to_owned(), Some(0), 40),
                    ("us".to_owned(), Some(1), 35),
                ],
                "caching {caching}"
            );
        }
    }

    /// reduce with adder and subtractor: a sum per group that follows updates and deletes.
    #[test]
    fn group_by_reduce_adds_and_subtracts() {
        for caching in [false, true] {
            let builder = StreamsBuilder::new();
            builder
                .table(
                    "balances",
                    Consumed::with(StringSerde, I64Serde),
                    materialized("t", caching),
                )
                .group_by(
                    |account: &String, balance: &i64| (account[..1].to_owned(), *balance),
                    Grouped::with(StringSerde, I64Serde),
                )
                .reduce(|a, b| a + b, |a, b| a - b, materialized("totals", caching))
                .to_stream()
                .to("out", Produced::with(StringSerde, Nullable(I64Serde)));
            let driver =
                TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app"))
                    .unwrap();
            let input = driver
                .create_input_topic("balances", StringSerde, Nullable(I64Serde))
                .unwrap();
            input
                .pipe_input_with_timestamp("a1".into(), Some(10), 1)
                .unwrap();
            input
                .pipe_input_with_timestamp("a2".into(), Some(5), 2)
                .unwrap();
            input
                .pipe_input_with_timestamp("a1".into(), Some(7), 3)
                .unwrap();
            input
                .pipe_input_with_timestamp("b1".into(), Some(1), 4)
                .unwrap();
            input
                .pipe_input_with_timestamp("a2".into(), None, 5)
                .unwrap();
            assert_eq!(
                read(&driver, "out", I64Serde),
                vec![
                    ("a".to_owned(), Some(10), 1),
                    ("a".to_owned(), Some(15), 2),
                    ("a".to_owned(), Some(12), 3),
                    ("b".to_owned(), Some(1), 4),
                    ("a".to_owned(), Some(7), 5),
                ],
                "caching {caching}"
            );
        }
    }

    /// filter → groupBy → count: the filter is asked for old values, so a row leaving the
    /// filtered table is subtracted from its group, and an update out of the filter both
    /// before and after reaches nothing (Kafka's KTableFilter with old values).
    #[test]
    fn filtered_table_group_by_subtracts_rows_leaving_the_filter() {
        for caching in [false, true] {
            let builder = StreamsBuilder::new();
            builder
                .table(
                    "users",
                    Consumed::with(StringSerde, StringSerde),
                    materialized("t", caching),
                )
                .filter(|_u: &String, region: &String| region != "xx")
                .group_by(
                    |_u: &String, region: &String| (region.clone(), region.clone()),
                    Grouped::with(StringSerde, StringSerde),
                )
                .count(materialized("counts", caching))
                .to_stream()
                .to("out", Produced::with(StringSerde, Nullable(I64Serde)));
            let driver =
                TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app"))
                    .unwrap();
            let input = driver
                .create_input_topic("users", StringSerde, StringSerde)
                .unwrap();
            input
                .pipe_input_with_timestamp("alice".into(), "eu".into(), 10)
                .unwrap();
            input
                .pipe_input_with_timestamp("alice".into(), "xx".into(), 20)
                .unwrap();
            input
                .pipe_input_with_timestamp("bob".into(), "xx".into(), 30)
                .unwrap();
            input
                .pipe_input_with_timestamp("alice".into(), "us".into(), 40)
                .unwrap();
            assert_eq!(
                read(&driver, "out", I64Serde),
                vec![
                    ("eu".to_owned(), Some(1), 10),
                    ("eu".to_owned(), Some(0), 20),
                    ("us".to_owned(), Some(1), 40),
                ],
                "caching {caching}"
            );
        }
    }

    /// aggregate with initializer, adder and subtractor; a `Grouped` name names the select
    /// node and the repartition topic; a named `Consumed` names the sources.
    #[test]
    fn aggregate_and_user_given_names() {
        let builder = StreamsBuilder::new();
        builder
            .table(
                "names",
                Consumed::with(StringSerde, StringSerde).with_name("names-table"),
                Materialized::new().with_caching_disabled(),
            )
            .map_values(|n: &String| n.to_uppercase())
            .group_by(
                |_id: &String, name: &String| (name[..1].to_owned(), name.clone()),
                Grouped::with(StringSerde, StringSerde).with_name("by-initial"),
            )
            .aggregate(
                || 0i64,
                |_k: &String, v: String, agg: i64| agg + v.len() as i64,
                |_k: &String, v: String, agg: i64| agg - v.len() as i64,
                Materialized::new()
                    .with_value_serde(I64Serde)
                    .with_caching_disabled(),
            )
            .to_stream()
            .to("out", Produced::with(StringSerde, Nullable(I64Serde)));
        let topology = builder.build().unwrap();
        let text = topology.describe().unwrap().to_string();
        for line in [
            "Source: names-table-source (topics: [names])",
            "Processor: names-table (stores: [names-STATE-STORE-0000000000])",
            "Processor: KTABLE-MAPVALUES-0000000001 (stores: [])",
            "Processor: by-initial (stores: [])",
            "Sink: KSTREAM-SINK-0000000003 (topic: by-initial-repartition)",
            "Source: KSTREAM-SOURCE-0000000004 (topics: [by-initial-repartition])",
            "Processor: KTABLE-AGGREGATE-0000000005 (stores: [KTABLE-AGGREGATE-STATE-STORE-0000000002])",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        let driver = TopologyTestDriver::new(topology, StreamsConfig::new("app")).unwrap();
        let input = driver
            .create_input_topic("names", StringSerde, Nullable(StringSerde))
            .unwrap();
        input
            .pipe_input_with_timestamp("1".into(), Some("ann".into()), 5)
            .unwrap();
        input
            .pipe_input_with_timestamp("2".into(), Some("al".into()), 3)
            .unwrap();
        input
            .pipe_input_with_timestamp("1".into(), Some("bo".into()), 4)
            .unwrap();
        input
            .pipe_input_with_timestamp("2".into(), None, 9)
            .unwrap();
        assert_eq!(
            read(&driver, "out", I64Serde),
            vec![
                ("A".to_owned(), Some(3), 5),
                ("A".to_owned(), Some(5), 5),
                ("A".to_owned(), Some(2), 5),
                ("B".to_owned(), Some(2), 4),
                ("A".to_owned(), Some(0), 9),
            ]
        );
    }

    /// Kafka's TopologyTest `tableZeroArgCountShouldPreserveTopologyStructure` names.
    #[test]
    fn table_group_by_count_is_named_as_kafka_names_it() {
        let builder = StreamsBuilder::new();
        builder
            .table::<String, String>("input-topic", Consumed::default(), Materialized::new())
            .group_by(
                |k: &String, v: &String| (k.clone(), v.clone()),
                Grouped::with(StringSerde, StringSerde),
            )
            .count(Materialized::new());
        let text = builder.build().unwrap().describe().unwrap().to_string();
        for line in [
            "Source: KSTREAM-SOURCE-0000000001 (topics: [input-topic])",
            "Processor: KTABLE-SOURCE-0000000002 (stores: [input-topic-STATE-STORE-0000000000])",
            "Processor: KTABLE-SELECT-0000000003 (stores: [])",
            "Sink: KSTREAM-SINK-0000000005 (topic: KTABLE-AGGREGATE-STATE-STORE-0000000004-repartition)",
            "Source: KSTREAM-SOURCE-0000000006 (topics: [KTABLE-AGGREGATE-STATE-STORE-0000000004-repartition])",
            "Processor: KTABLE-AGGREGATE-0000000007 (stores: [KTABLE-AGGREGATE-STATE-STORE-0000000004])",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }
}
