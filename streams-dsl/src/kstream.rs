//! `KStream`: an unbounded stream of key-value records.

use std::rc::Rc;
use std::sync::Arc;

use streams_core::{Processor, Record, SharedSerde, Sink};

use crate::builder::Shared;
use crate::kgrouped::KGroupedStream;
use crate::options::{Grouped, Named, Produced};
use crate::processors::stateless;

/// A stream of records with keys of type `K` and values of type `V` (Kafka's `KStream`).
/// Each operation adds a processor to the topology and returns the stream it outputs.
pub struct KStream<K, V> {
    pub(crate) state: Shared,
    pub(crate) node: String,
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    /// The key may have changed since the source: grouping must repartition.
    pub(crate) repartition_required: bool,
    pub(crate) pending_name: Option<String>,
}

impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        KStream {
            state: Rc::clone(&self.state),
            node: self.node.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            repartition_required: self.repartition_required,
            pending_name: None,
        }
    }
}

impl<K, V> std::fmt::Debug for KStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KStream").field("node", &self.node).finish()
    }
}

impl<K, V> KStream<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(crate) fn new(
        state: Shared,
        node: String,
        key_serde: Option<SharedSerde<K>>,
        value_serde: Option<SharedSerde<V>>,
    ) -> Self {
        KStream {
            state,
            node,
            key_serde,
            value_serde,
            repartition_required: false,
            pending_name: None,
        }
    }

    /// The name of the node this stream comes out of.
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// Names the processor that the next operation on this stream creates (instead of a
    /// generated `KSTREAM-...-0000000042` name).
    ///
    /// ```
    /// use streams_core::StringSerde;
    /// use streams_dsl::{Consumed, Named, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .named(Named::as_name("shout"))
    ///     .map_values(|v: String| v.to_uppercase())
    ///     .to("out", Produced::default());
    /// assert!(builder.build()?.describe()?.to_string().contains("Processor: shout"));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn named(mut self, name: Named) -> Self {
        self.pending_name = Some(name.0);
        self
    }

    pub(crate) fn name_for(&mut self, prefix: &str) -> String {
        match self.pending_name.take() {
            Some(n) => n,
            None => self.state.borrow_mut().next_name(prefix),
        }
    }

    /// Adds processor `P` after this stream and returns its output stream.
    fn then<K2, V2, P, F>(mut self, prefix: &str, supplier: F) -> (KStream<K2, V2>, Self)
    where
        K2: Clone + Send + Sync + 'static,
        V2: Clone + Send + Sync + 'static,
        P: Processor<K, V, K2, V2>,
        F: Fn() -> P + Send + Sync + 'static,
    {
        let name = self.name_for(prefix);
        let parent = self.node.clone();
        self.state
            .borrow_mut()
            .apply(|t| t.add_processor(&name, supplier, &[&parent]).map(|_| ()));
        let out = KStream {
            state: Rc::clone(&self.state),
            node: name,
            key_serde: None,
            value_serde: None,
            repartition_required: self.repartition_required,
            pending_name: None,
        };
        (out, self)
    }

    /// Transforms each record into a new key and value (marks the stream for
    /// repartitioning before a grouping).
    ///
    /// ```
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .map(|k: String, v: String| (v, k.len() as i64))
    ///     .to("out", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("doc"))?;
    /// driver.create_input_topic("in", StringSerde, StringSerde)?.pipe_input("abc".into(), "x".into())?;
    /// let out = driver.create_output_topic("out", StringSerde, I64Serde);
    /// assert_eq!(out.read_key_value()?, ("x".into(), 3));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn map<K2, V2, F>(self, f: F) -> KStream<K2, V2>
    where
        K2: Clone + Send + Sync + 'static,
        V2: Clone + Send + Sync + 'static,
        F: Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let (mut out, _) = self.then("KSTREAM-MAP-", move || {
            let f = Arc::clone(&f);
            stateless(move |ctx, r: Record<K, V>| {
                let (k, v) = f(r.key, r.value);
                ctx.forward(Record {
                    key: k,
                    value: v,
                    timestamp: r.timestamp,
                    headers: r.headers,
                })
            })
        });
        out.repartition_required = true;
        out
    }

    /// Transforms each value, keeping the key (no repartitioning needed).
    ///
    /// ```
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .map_values(|v: String| v.to_uppercase())
    ///     .to("out", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("doc"))?;
    /// driver.create_input_topic("in", StringSerde, StringSerde)?.pipe_input("k".into(), "hi".into())?;
    /// assert_eq!(driver.create_output_topic("out", StringSerde, StringSerde).read_value()?, "HI");
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn map_values<V2, F>(self, f: F) -> KStream<K, V2>
    where
        V2: Clone + Send + Sync + 'static,
        F: Fn(V) -> V2 + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let key_serde = self.key_serde.clone();
        let (mut out, _) = self.then("KSTREAM-MAPVALUES-", move || {
            let f = Arc::clone(&f);
            stateless(move |ctx, r: Record<K, V>| {
                let v = f(r.value);
                ctx.forward(Record {
                    key: r.key,
                    value: v,
                    timestamp: r.timestamp,
                    headers: r.headers,
                })
            })
        });
        out.key_serde = key_serde;
        out
    }

    /// Turns each record into zero or more records with new keys and values.
    ///
    /// ```
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .flat_map(|k: String, v: String| v.chars().map(move |c| (c.to_string(), k.clone())).collect::<Vec<_>>())
    ///     .to("out", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("doc"))?;
    /// driver.create_input_topic("in", StringSerde, StringSerde)?.pipe_input("k".into(), "ab".into())?;
    /// let out = driver.create_output_topic("out", StringSerde, StringSerde);
    /// assert_eq!(out.read_key_values_to_vec()?, vec![("a".into(), "k".into()), ("b".into(), "k".into())]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn flat_map<K2, V2, I, F>(self, f: F) -> KStream<K2, V2>
    where
        K2: Clone + Send + Sync + 'static,
        V2: Clone + Send + Sync + 'static,
        I: IntoIterator<Item = (K2, V2)>,
        F: Fn(K, V) -> I + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let (mut out, _) = self.then("KSTREAM-FLATMAP-", move || {
            let f = Arc::clone(&f);
            stateless(move |ctx, r: Record<K, V>| {
                for (k, v) in f(r.key, r.value) {
                    ctx.forward(Record {
                        key: k,
                        value: v,
                        timestamp: r.timestamp,
                        headers: r.headers.clone(),
                    })?;
                }
                Ok(())
            })
        });
        out.repartition_required = true;
        out
    }

    /// Turns each value into zero or more values, each with the record's key.
    ///
    /// ```
    /// use streams_core::{StreamsConfig, StringSerde, VoidSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("lines", Consumed::with(VoidSerde, StringSerde))
    ///     .flat_map_values(|line: String| line.split(' ').map(str::to_owned).collect::<Vec<_>>())
    ///     .to("words", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("doc"))?;
    /// driver.create_input_topic("lines", VoidSerde, StringSerde)?.pipe_input((), "to be".into())?;
    /// let out = driver.create_output_topic("words", VoidSerde, StringSerde);
    /// assert_eq!(out.read_records_to_vec()?.into_iter().map(|r| r.value).collect::<Vec<_>>(), ["to", "be"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn flat_map_values<V2, I, F>(self, f: F) -> KStream<K, V2>
    where
        V2: Clone + Send + Sync + 'static,
        I: IntoIterator<Item = V2>,
        F: Fn(V) -> I + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let key_serde = self.key_serde.clone();
        let (mut out, _) = self.then("KSTREAM-FLATMAPVALUES-", move || {
            let f = Arc::clone(&f);
            stateless(move |ctx, r: Record<K, V>| {
                for v in f(r.value) {
                    ctx.forward(Record {
                        key: r.key.clone(),
                        value: v,
                        timestamp: r.timestamp,
                        headers: r.headers.clone(),
                    })?;
                }
                Ok(())
            })
        });
        out.key_serde = key_serde;
        out
    }

    fn filter_impl<F>(self, f: F, keep: bool) -> KStream<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let (ks, vs) = (self.key_serde.clone(), self.value_serde.clone());
        let (mut out, _) = self.then("KSTREAM-FILTER-", move || {
            let f = Arc::clone(&f);
            stateless(move |ctx, r: Record<K, V>| {
                if f(&r.key, &r.value) == keep {
                    ctx.forward(r)?;
                }
                Ok(())
            })
        });
        out.key_serde = ks;
        out.value_serde = vs;
        out
    }

    /// Keeps the records for which `predicate` is true.
    ///
    /// ```
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, I64Serde))
    ///     .filter(|_k: &String, v: &i64| *v > 10)
    ///     .to("big", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("doc"))?;
    /// let input = driver.create_input_topic("in", StringSerde, I64Serde)?;
    /// input.pipe_input("a".into(), 5)?;
    /// input.pipe_input("b".into(), 50)?;
    /// assert_eq!(driver.create_output_topic("big", StringSerde, I64Serde).read_key_values_to_vec()?, vec![("b".into(), 50)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn filter<F>(self, predicate: F) -> KStream<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.filter_impl(predicate, true)
    }

    /// Drops the records for which `predicate` is true.
    ///
    /// ```
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, I64Serde))
    ///     .filter_not(|_k: &String, v: &i64| *v > 10)
    ///     .to("small", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("doc"))?;
    /// let input = driver.create_input_topic("in", StringSerde, I64Serde)?;
    /// input.pipe_input("a".into(), 5)?;
    /// input.pipe_input("b".into(), 50)?;
    /// assert_eq!(driver.create_output_topic("small", StringSerde, I64Serde).read_key_values_to_vec()?, vec![("a".into(), 5)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn filter_not<F>(self, predicate: F) -> KStream<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.filter_impl(predicate, false)
    }

    /// Replaces each record's key (marks the stream for repartitioning before a grouping).
    ///
    /// ```
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .select_key(|_k: &String, v: &String| v.to_lowercase())
    ///     .to("out", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("doc"))?;
    /// driver.create_input_topic("in", StringSerde, StringSerde)?.pipe_input("k".into(), "Hi".into())?;
    /// assert_eq!(driver.create_output_topic("out", StringSerde, StringSerde).read_key_value()?, ("hi".into(), "Hi".into()));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn select_key<K2, F>(self, f: F) -> KStream<K2, V>
    where
        K2: Clone + Send + Sync + 'static,
        F: Fn(&K, &V) -> K2 + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let vs = self.value_serde.clone();
        let (mut out, _) = self.then("KSTREAM-KEY-SELECT-", move || {
            let f = Arc::clone(&f);
            stateless(move |ctx, r: Record<K, V>| {
                let k = f(&r.key, &r.value);
                ctx.forward(r.with_key(k))
            })
        });
        out.value_serde = vs;
        out.repartition_required = true;
        out
    }

    /// Calls `action` on each record and passes it on unchanged.
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Produced, StreamsBuilder};
    /// let seen = Arc::new(AtomicUsize::new(0));
    /// let s = seen.clone();
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .peek(move |_k: &String, _v: &String| { s.fetch_add(1, Ordering::Relaxed); })
    ///     .to("out", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("doc"))?;
    /// driver.create_input_topic("in", StringSerde, StringSerde)?.pipe_input("k".into(), "v".into())?;
    /// assert_eq!(seen.load(Ordering::Relaxed), 1);
    /// assert!(!driver.create_output_topic("out", StringSerde, StringSerde).is_empty());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn peek<F>(self, action: F) -> KStream<K, V>
    where
        F: Fn(&K, &V) + Send + Sync + 'static,
    {
        let f = Arc::new(action);
        let (ks, vs) = (self.key_serde.clone(), self.value_serde.clone());
        let (mut out, _) = self.then("KSTREAM-PEEK-", move || {
            let f = Arc::clone(&f);
            stateless(move |ctx, r: Record<K, V>| {
                f(&r.key, &r.value);
                ctx.forward(r)
            })
        });
        out.key_serde = ks;
        out.value_serde = vs;
        out
    }

    /// Calls `action` on each record (a terminal operation).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, StreamsBuilder};
    /// let got = Arc::new(Mutex::new(Vec::new()));
    /// let g = got.clone();
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .foreach(move |k: &String, v: &String| g.lock().unwrap().push(format!("{k}={v}")));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("doc"))?;
    /// driver.create_input_topic("in", StringSerde, StringSerde)?.pipe_input("k".into(), "v".into())?;
    /// assert_eq!(*got.lock().unwrap(), ["k=v"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn foreach<F>(self, action: F)
    where
        F: Fn(&K, &V) + Send + Sync + 'static,
    {
        let f = Arc::new(action);
        let _ = self.then::<K, V, _, _>("KSTREAM-FOREACH-", move || {
            let f = Arc::clone(&f);
            stateless(
                move |_ctx: &mut streams_core::ProcessorContext<'_, K, V>, r: Record<K, V>| {
                    f(&r.key, &r.value);
                    Ok(())
                },
            )
        });
    }

    /// Writes the stream to `topic` (which must exist when the application starts).
    ///
    /// ```
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, I64Serde))
    ///     .to("out", Produced::with(StringSerde, I64Serde).with_name("write-out"));
    /// let topology = builder.build()?;
    /// assert!(topology.describe()?.to_string().contains("Sink: write-out (topic: out)"));
    /// let driver = TopologyTestDriver::new(topology, StreamsConfig::new("doc"))?;
    /// driver.create_input_topic("in", StringSerde, I64Serde)?.pipe_input("k".into(), 7)?;
    /// assert_eq!(driver.create_output_topic("out", StringSerde, I64Serde).read_value()?, 7);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn to(mut self, topic: &str, produced: Produced<K, V>) {
        let name = match produced.name.clone() {
            Some(n) => n,
            None => self.name_for("KSTREAM-SINK-"),
        };
        let mut sink = Sink::<K, V>::new(name, topic).serdes(
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

    /// Runs a Processor API processor on the stream, connected to the named stores (added
    /// with [`StreamsBuilder::add_state_store`](crate::StreamsBuilder::add_state_store)); its
    /// output is a new stream (marked for repartitioning, as the key may have changed).
    ///
    /// ```
    /// use streams_core::{I64Serde, Processor, ProcessorContext, Record, Result, StoreBuilder,
    ///     StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Produced, StreamsBuilder};
    ///
    /// /// Numbers each key's records: 1, 2, 3...
    /// struct Sequence;
    /// impl Processor<String, String, String, i64> for Sequence {
    ///     fn process(&mut self, ctx: &mut ProcessorContext<'_, String, i64>, r: Record<String, String>) -> Result<()> {
    ///         let mut store = ctx.key_value_store::<String, i64>("seq")?;
    ///         let n = store.get(&r.key)?.unwrap_or(0) + 1;
    ///         store.put(&r.key, &n)?;
    ///         ctx.forward(r.with_value(n))
    ///     }
    /// }
    ///
    /// let builder = StreamsBuilder::new();
    /// builder.add_state_store(StoreBuilder::key_value("seq").in_memory());
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .process(|| Sequence, &["seq"])
    ///     .to("out", Produced::with(StringSerde, I64Serde));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("doc"))?;
    /// let input = driver.create_input_topic("in", StringSerde, StringSerde)?;
    /// input.pipe_input("a".into(), "x".into())?;
    /// input.pipe_input("a".into(), "y".into())?;
    /// let out = driver.create_output_topic("out", StringSerde, I64Serde);
    /// assert_eq!(out.read_key_values_to_vec()?, vec![("a".into(), 1), ("a".into(), 2)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn process<K2, V2, P, F>(self, supplier: F, stores: &[&str]) -> KStream<K2, V2>
    where
        K2: Clone + Send + Sync + 'static,
        V2: Clone + Send + Sync + 'static,
        P: Processor<K, V, K2, V2>,
        F: Fn() -> P + Send + Sync + 'static,
    {
        let (mut out, _) = self.then("KSTREAM-PROCESSOR-", supplier);
        let stores: Vec<String> = stores.iter().map(|s| (*s).to_owned()).collect();
        let node = out.node.clone();
        out.state.borrow_mut().apply(|t| {
            for s in &stores {
                t.connect_processor_and_store(&node, s)?;
            }
            Ok(())
        });
        out.repartition_required = true;
        out
    }

    /// Groups the records by their current key, for an aggregation. If the key may have
    /// changed (after `map`, `select_key`, ...), the aggregation reads through a repartition
    /// topic so that each key is aggregated by one task.
    ///
    /// ```
    /// use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("clicks", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::as_store("clicks-per-user"))
    ///     .to_stream()
    ///     .to("click-counts", Produced::with(StringSerde, Nullable(I64Serde)));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("doc"))?;
    /// let input = driver.create_input_topic("clicks", StringSerde, StringSerde)?;
    /// input.pipe_input("ann".into(), "/home".into())?;
    /// input.pipe_input("ann".into(), "/cart".into())?;
    /// let out = driver.create_output_topic("click-counts", StringSerde, I64Serde);
    /// assert_eq!(out.read_key_values_to_map()?["ann"], 2);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn group_by_key(self, grouped: Grouped<K, V>) -> KGroupedStream<K, V> {
        KGroupedStream::new(self, grouped)
    }

    /// Groups the records by a new key computed from each record (always through a
    /// repartition topic).
    ///
    /// ```
    /// use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, VoidSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("words", Consumed::with(VoidSerde, StringSerde))
    ///     .group_by(|_k: &(), word: &String| word.clone(), Grouped::with(StringSerde, StringSerde))
    ///     .count(Materialized::as_store("word-counts"))
    ///     .to_stream()
    ///     .to("counts", Produced::with(StringSerde, Nullable(I64Serde)));
    /// let topology = builder.build()?;
    /// assert!(topology.describe()?.to_string().contains("(topic: word-counts-repartition)"));
    /// let driver = TopologyTestDriver::new(topology, StreamsConfig::new("doc"))?;
    /// let input = driver.create_input_topic("words", VoidSerde, StringSerde)?;
    /// for w in ["a", "b", "a"] { input.pipe_input((), w.into())?; }
    /// let counts = driver.create_output_topic("counts", StringSerde, I64Serde).read_key_values_to_map()?;
    /// assert_eq!((counts["a"], counts["b"]), (2, 1));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn group_by<K2, F>(self, key_selector: F, grouped: Grouped<K2, V>) -> KGroupedStream<K2, V>
    where
        K2: Clone + Send + Sync + 'static,
        F: Fn(&K, &V) -> K2 + Send + Sync + 'static,
    {
        self.select_key(key_selector).group_by_key(grouped)
    }
}
