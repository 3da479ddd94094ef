//! `KStream` operations as Kafka's `KStreamImpl` builds them: `split`, `merge`,
//! `repartition`, `to_table` and `to_dynamic` (a sink with a `TopicNameExtractor`).

use std::rc::Rc;
use std::sync::Arc;

use streams_core::{
    Change, Processor, ProcessorContext, Record, Result, SharedSerde, Sink, StreamsError,
};

use crate::branched::BranchedKStream;
use crate::kstream::KStream;
use crate::ktable::{KTable, OldValues};
use crate::options::{Materialized, Produced};
use crate::processors::stateless;
use crate::repartition::{RepartitionTopic, repartition_with};
use crate::repartitioned::Repartitioned;
use crate::table::{TableSourceProcessor, table_store};

/// Kafka's `KStreamImpl#toTable` processor: a `KTableSource` over the stream, where a value
/// its serde makes null (e.g. `None` under `Nullable`) deletes the key.
struct ToTableProcessor<K, V> {
    inner: TableSourceProcessor<K, V>,
    value_serde: Option<SharedSerde<V>>,
}

impl<K, V> Processor<K, V, K, Change<V>> for ToTableProcessor<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> Result<()> {
        if self.value_serde.is_none() {
            self.value_serde = ctx.serdes().get::<V>();
        }
        self.inner.init(ctx)
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, Change<V>>,
        record: Record<K, V>,
    ) -> Result<()> {
        let null = self
            .value_serde
            .as_ref()
            .is_some_and(|s| s.is_null(&record.value));
        let value = (!null).then_some(record.value);
        self.inner.process(
            ctx,
            Record {
                key: record.key,
                value,
                timestamp: record.timestamp,
                headers: record.headers,
            },
        )
    }
}

impl<K, V> KStream<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Splits the stream into branches (Kafka's `KStream#split`): each record goes to the
    /// first branch whose predicate it passes, in the order the branches are added, or to
    /// the default branch, or nowhere. The splitter node is `KSTREAM-BRANCH-<n>` (or the
    /// name given with [`named`](KStream::named), Kafka's `split(Named)`); branch nodes are
    /// named after it (see [`BranchedKStream::branch`]). Branches keep this stream's serdes
    /// and its need to repartition.
    ///
    /// ```
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Branched, Consumed, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("words", Consumed::with(StringSerde, StringSerde))
    ///     .split()
    ///     .branch(|_k: &String, w: &String| w.starts_with('a'),
    ///         Branched::with_consumer(|s| s.to("a-words", Produced::default())))
    ///     .default_branch(Branched::with_consumer(|s| s.to("other-words", Produced::default())));
    /// let text = builder.build()?.describe()?.to_string();
    /// // Successors in Kafka's order (larger sub-graph first, then by name).
    /// assert!(text.contains("Processor: KSTREAM-BRANCH-0000000001 (stores: [])\n      --> KSTREAM-BRANCH-00000000010, KSTREAM-BRANCH-00000000011"));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn split(mut self) -> BranchedKStream<K, V> {
        let name = self.name_for("KSTREAM-BRANCH-");
        BranchedKStream::new(self, name)
    }

    /// Merges this stream and `other` into one stream (Kafka's `KStream#merge`, node
    /// `KSTREAM-MERGE-<n>` unless [`named`](KStream::named)). There is no order between
    /// the records of the two streams other than the order they are processed in. The
    /// merged stream has no serdes (as in Kafka: give them to the next operation that
    /// writes) and must be repartitioned before a grouping if either input had to.
    ///
    /// ```
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let a = builder.stream("a", Consumed::with(StringSerde, StringSerde));
    /// let b = builder.stream("b", Consumed::with(StringSerde, StringSerde));
    /// a.merge(b).to("both", Produced::with(StringSerde, StringSerde));
    /// let topology = builder.build()?;
    /// assert!(topology.describe()?.to_string().contains(
    ///     "Processor: KSTREAM-MERGE-0000000002 (stores: [])\n      --> KSTREAM-SINK-0000000003\n      <-- KSTREAM-SOURCE-0000000000, KSTREAM-SOURCE-0000000001"));
    /// let driver = TopologyTestDriver::new(topology, StreamsConfig::new("doc"))?;
    /// driver.create_input_topic("a", StringSerde, StringSerde)?.pipe_input("k".into(), "from a".into())?;
    /// driver.create_input_topic("b", StringSerde, StringSerde)?.pipe_input("k".into(), "from b".into())?;
    /// let out = driver.create_output_topic("both", StringSerde, StringSerde);
    /// assert_eq!(out.read_values_to_vec()?, ["from a", "from b"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn merge(mut self, other: KStream<K, V>) -> KStream<K, V> {
        let name = self.name_for("KSTREAM-MERGE-");
        let parents = [self.node.clone(), other.node.clone()];
        self.state.borrow_mut().apply(|t| {
            t.add_processor(
                &name,
                || stateless(|ctx, r: Record<K, V>| ctx.forward(r)),
                &[&parents[0], &parents[1]],
            )
            .map(|_| ())
        });
        let mut out = KStream::new(Rc::clone(&self.state), name, None, None);
        out.repartition_required = self.repartition_required || other.repartition_required;
        out
    }

    /// Writes the stream to a repartition topic and reads it back (Kafka's
    /// `KStream#repartition`): `<application.id>-<name>-repartition` for a
    /// [`Repartitioned::as_name`], else `<application.id>-KSTREAM-REPARTITION-<n>-repartition`.
    /// The topic is created when the application starts, with
    /// [`Repartitioned::with_number_of_partitions`] partitions, else as many as the
    /// sub-topology writing it reads. Records are partitioned by key (murmur2 of the key
    /// bytes, or the [`Repartitioned::with_stream_partitioner`]); records with a null key
    /// are dropped. The stream read back needs no further repartitioning.
    ///
    /// ```
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Produced, Repartitioned, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .select_key(|_k: &String, v: &String| v.clone())
    ///     .repartition(Repartitioned::as_name("by-value").with_number_of_partitions(4))
    ///     .to("out", Produced::default());
    /// let text = builder.build()?.describe()?.to_string();
    /// assert!(text.contains("Sink: by-value-repartition-sink (topic: by-value-repartition)"));
    /// assert!(text.contains("Source: by-value-repartition-source (topics: [by-value-repartition])"));
    ///
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .repartition(Repartitioned::new())
    ///     .to("out", Produced::default());
    /// let topology = builder.build()?;
    /// assert!(topology.describe()?.to_string().contains(
    ///     "Sink: KSTREAM-SINK-0000000002 (topic: KSTREAM-REPARTITION-0000000001-repartition)"));
    /// let driver = TopologyTestDriver::new(topology, StreamsConfig::new("doc"))?;
    /// driver.create_input_topic("in", StringSerde, StringSerde)?.pipe_input("k".into(), "v".into())?;
    /// assert_eq!(driver.create_output_topic("out", StringSerde, StringSerde).read_key_value()?, ("k".into(), "v".into()));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn repartition(mut self, repartitioned: Repartitioned<K, V>) -> KStream<K, V> {
        // Kafka's repartition takes no `Named`: a pending name is not used.
        self.pending_name = None;
        let name = match &repartitioned.name {
            Some(n) => n.clone(),
            None => self.state.borrow_mut().next_name("KSTREAM-REPARTITION-"),
        };
        if let Some(n) = repartitioned.partitions.filter(|n| *n < 1) {
            self.state.borrow_mut().apply(|_| {
                Err(StreamsError::Config {
                    key: "Repartitioned#numberOfPartitions".into(),
                    reason: format!(
                        "{n} for `{name}`: the number of partitions must be at least 1"
                    ),
                })
            });
        }
        let key_serde = repartitioned.key_serde.or_else(|| self.key_serde.clone());
        let value_serde = repartitioned
            .value_serde
            .or_else(|| self.value_serde.clone());
        let source = repartition_with(
            &self.state,
            &self.node,
            &name,
            key_serde.clone(),
            value_serde.clone(),
            RepartitionTopic {
                partitions: repartitioned.partitions,
                partitioner: repartitioned.partitioner,
            },
        );
        KStream::new(Rc::clone(&self.state), source, key_serde, value_serde)
    }

    /// The stream as a table (Kafka's `KStream#toTable`): each record upserts its key, a
    /// record whose value its serde makes null (`None` under
    /// [`Nullable`](streams_core::Nullable)) deletes it; a null key is skipped, logged and
    /// counted in `dropped-records`. Names as Kafka draws them: the processor
    /// `KSTREAM-TOTABLE-<n>` (or the [`named`](KStream::named) name), then the store
    /// `KSTREAM-TOTABLE-STATE-STORE-<n>` unless `materialized` names it. If the key may
    /// have changed, the stream goes through a repartition topic named after the processor
    /// first (`<application.id>-KSTREAM-TOTABLE-<n>-repartition`). The store is a
    /// timestamped key-value store, cached and change-logged as `materialized` says.
    ///
    /// ```
    /// use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let table = builder.stream("prices", Consumed::with(StringSerde, Nullable(I64Serde)))
    ///     .to_table(Materialized::as_store("prices").with_caching_disabled());
    /// table.to_stream().to("price-changes", Produced::with(StringSerde, Nullable(Nullable(I64Serde))));
    /// let topology = builder.build()?;
    /// assert!(topology.describe()?.to_string().contains("Processor: KSTREAM-TOTABLE-0000000001 (stores: [prices])"));
    /// let driver = TopologyTestDriver::new(topology, StreamsConfig::new("doc"))?;
    /// let input = driver.create_input_topic("prices", StringSerde, Nullable(I64Serde))?;
    /// input.pipe_input("apple".into(), Some(3))?;
    /// input.pipe_input("pear".into(), Some(5))?;
    /// input.pipe_input("apple".into(), None)?; // a tombstone deletes apple
    /// let store = driver.read_key_value_store::<String, Option<i64>>("prices")?;
    /// assert_eq!(store, [("pear".to_string(), Some(5))]);
    /// let out = driver.create_output_topic("price-changes", StringSerde, Nullable(I64Serde));
    /// assert_eq!(out.read_values_to_vec()?, [Some(3), Some(5), None]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn to_table(mut self, materialized: Materialized<K, V>) -> KTable<K, V> {
        let name = self.name_for("KSTREAM-TOTABLE-");
        let store_name = match &materialized.name {
            Some(n) => n.clone(),
            None => self
                .state
                .borrow_mut()
                .next_name("KSTREAM-TOTABLE-STATE-STORE-"),
        };
        let key_serde = materialized.key_serde.clone().or(self.key_serde.clone());
        let value_serde = materialized
            .value_serde
            .clone()
            .or(self.value_serde.clone());
        let parent = if self.repartition_required {
            repartition_with(
                &self.state,
                &self.node,
                &name,
                key_serde.clone(),
                value_serde.clone(),
                RepartitionTopic::default(),
            )
        } else {
            self.node.clone()
        };
        let store = table_store(
            &store_name,
            &materialized,
            key_serde.clone(),
            value_serde.clone(),
        );
        let old_values: Arc<OldValues> = Arc::default();
        let switch = Arc::clone(&old_values);
        let (supplier_store, supplier_ks, supplier_vs) =
            (store_name.clone(), key_serde.clone(), value_serde.clone());
        let supplier = move || ToTableProcessor::<K, V> {
            inner: TableSourceProcessor {
                store: supplier_store.clone(),
                cached: false,
                send_old: switch.enabled(),
                key_serde: supplier_ks.clone(),
                _v: std::marker::PhantomData,
            },
            value_serde: supplier_vs.clone(),
        };
        self.state.borrow_mut().apply(|t| {
            t.add_processor(&name, supplier, &[&parent])?;
            t.add_state_store(store, &[&name])?;
            Ok(())
        });
        KTable::with_parts(
            Rc::clone(&self.state),
            name,
            Some(store_name),
            key_serde,
            value_serde,
            old_values,
        )
    }

    /// Writes each record to the topic `extractor(key, value)` names (Kafka's
    /// `KStream#to(TopicNameExtractor, Produced)`; node `KSTREAM-SINK-<n>` unless named by
    /// `produced`). The topics must exist: writing to one that does not fails the stream
    /// thread with a fatal cluster error naming the topic, before anything is committed.
    ///
    /// ```
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("events", Consumed::with(StringSerde, StringSerde))
    ///     .to_dynamic(|k: &String, _v: &String| format!("events-{k}"), Produced::default());
    /// let topology = builder.build()?;
    /// assert!(topology.describe()?.to_string().contains("Sink: KSTREAM-SINK-0000000001 (extractor: dynamic)"));
    /// let driver = TopologyTestDriver::new(topology, StreamsConfig::new("doc"))?;
    /// let input = driver.create_input_topic("events", StringSerde, StringSerde)?;
    /// input.pipe_input("eu".into(), "a".into())?;
    /// input.pipe_input("us".into(), "b".into())?;
    /// assert_eq!(driver.create_output_topic("events-eu", StringSerde, StringSerde).read_values_to_vec()?, ["a"]);
    /// assert_eq!(driver.create_output_topic("events-us", StringSerde, StringSerde).read_values_to_vec()?, ["b"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn to_dynamic<F>(mut self, extractor: F, produced: Produced<K, V>)
    where
        F: Fn(&K, &V) -> String + Send + Sync + 'static,
    {
        let name = match produced.name.clone() {
            Some(n) => n,
            None => self.name_for("KSTREAM-SINK-"),
        };
        let mut sink = Sink::<K, V>::dynamic(name, Arc::new(extractor)).serdes(
            produced.key_serde.or_else(|| self.key_serde.clone()),
            produced.value_serde.or_else(|| self.value_serde.clone()),
        );
        if let Some(p) = produced.partitioner {
            sink = sink.partitioner(p);
        }
        let parent = self.node.clone();
        self.state
            .borrow_mut()
            .apply(|t| t.add_sink(sink, &[&parent]).map(|_| ()));
    }
}
