//! `StreamsBuilder`: the entry point of the DSL.

use std::cell::RefCell;
use std::rc::Rc;

use streams_core::{Source, StoreBuilder, StreamsError, Topology};

use crate::global_table::GlobalKTable;
use crate::kstream::KStream;
use crate::ktable::KTable;
use crate::options::{Consumed, Materialized};

pub(crate) struct BuilderState {
    pub(crate) topology: Topology,
    counter: usize,
    error: Option<StreamsError>,
    /// Joins' repartition steps by the node they repartition (when named after it): the
    /// source reading the repartition topic back, reused by a later join of the same
    /// stream (Kafka's `KStreamImpl#repartitionForJoin` keeps its repartition node).
    pub(crate) join_repartitions: std::collections::BTreeMap<String, String>,
}

pub(crate) type Shared = Rc<RefCell<BuilderState>>;

impl BuilderState {
    /// Kafka's generated names: `<PREFIX><10-digit index>`, one counter for nodes and stores.
    pub(crate) fn next_name(&mut self, prefix: &str) -> String {
        let n = self.counter;
        self.counter += 1;
        format!("{prefix}{n:010}")
    }

    /// Runs `f` unless an earlier operation failed; keeps the first error for `build`.
    pub(crate) fn apply(&mut self, f: impl FnOnce(&mut Topology) -> streams_core::Result<()>) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = f(&mut self.topology) {
            self.error = Some(e);
        }
    }
}

/// Builds a topology with the DSL (Kafka's `StreamsBuilder`). Operations never fail on the
/// spot: the first problem (a name clash, a bad pattern) is reported by
/// [`StreamsBuilder::build`].
///
/// ```
/// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
/// use streams_dsl::{Consumed, Produced, StreamsBuilder};
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream("input", Consumed::with(StringSerde, StringSerde))
///     .map_values(|v: String| v.len() as i64)
///     .to("lengths", Produced::default());
/// let topology = builder.build()?;
///
/// let driver = TopologyTestDriver::new(topology, StreamsConfig::new("doc"))?;
/// let input = driver.create_input_topic("input", StringSerde, StringSerde)?;
/// let output = driver.create_output_topic("lengths", StringSerde, streams_core::I64Serde);
/// input.pipe_input("k".into(), "four".into())?;
/// assert_eq!(output.read_key_value()?, ("k".into(), 4));
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
#[derive(Clone)]
pub struct StreamsBuilder {
    state: Shared,
}

impl Default for StreamsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for StreamsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsBuilder").finish_non_exhaustive()
    }
}

impl StreamsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        StreamsBuilder {
            state: Rc::new(RefCell::new(BuilderState {
                topology: Topology::new(),
                counter: 0,
                error: None,
                join_repartitions: std::collections::BTreeMap::new(),
            })),
        }
    }

    /// A stream of the records of `topic`.
    ///
    /// ```
    /// use streams_core::{StreamsConfig, StringSerde, VoidSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Produced, StreamsBuilder};
    ///
    /// let builder = StreamsBuilder::new();
    /// // Lines without keys: read keys with the Void serde.
    /// builder.stream("lines", Consumed::with(VoidSerde, StringSerde)).to("copy", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("doc"))?;
    /// driver.create_input_topic("lines", VoidSerde, StringSerde)?.pipe_input((), "a line".into())?;
    /// let out = driver.create_output_topic("copy", VoidSerde, StringSerde);
    /// assert_eq!(out.read_value()?, "a line");
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn stream<K, V>(&self, topic: &str, consumed: Consumed<K, V>) -> KStream<K, V>
    where
        K: Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        self.source(Source::<K, V>::new(String::new(), [topic]), consumed)
    }

    /// A stream of the records of several topics (co-partitioned: same partition counts).
    ///
    /// ```
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Produced, StreamsBuilder};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream_from(&["a", "b"], Consumed::with(StringSerde, StringSerde))
    ///     .to("merged", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("doc"))?;
    /// driver.create_input_topic("a", StringSerde, StringSerde)?.pipe_input("k".into(), "1".into())?;
    /// driver.create_input_topic("b", StringSerde, StringSerde)?.pipe_input("k".into(), "2".into())?;
    /// let out = driver.create_output_topic("merged", StringSerde, StringSerde);
    /// assert_eq!(out.read_key_values_to_vec()?.len(), 2);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn stream_from<K, V>(&self, topics: &[&str], consumed: Consumed<K, V>) -> KStream<K, V>
    where
        K: Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        self.source(
            Source::<K, V>::new(String::new(), topics.iter().copied()),
            consumed,
        )
    }

    /// A stream of every topic matching `pattern` when the application starts.
    ///
    /// ```
    /// use streams_core::StringSerde;
    /// use streams_dsl::{Consumed, Produced, StreamsBuilder};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder.stream_pattern("orders-.*", Consumed::with(StringSerde, StringSerde)).to("all-orders", Produced::default());
    /// let text = builder.build()?.describe()?.to_string();
    /// assert!(text.contains("topicPattern: orders-.*"));
    ///
    /// let bad = StreamsBuilder::new();
    /// bad.stream_pattern::<String, String>("(", Consumed::default()).to("x", Produced::default());
    /// assert!(bad.build().is_err()); // the pattern does not compile
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn stream_pattern<K, V>(&self, pattern: &str, consumed: Consumed<K, V>) -> KStream<K, V>
    where
        K: Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        match Source::<K, V>::pattern(String::new(), pattern) {
            Ok(source) => self.source(source, consumed),
            Err(e) => {
                let mut s = self.state.borrow_mut();
                s.apply(|_| Err(e));
                let node = s.next_name("KSTREAM-SOURCE-");
                KStream::new(Rc::clone(&self.state), node, None, None)
            }
        }
    }

    fn source<K, V>(&self, source: Source<K, V>, consumed: Consumed<K, V>) -> KStream<K, V>
    where
        K: Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let mut s = self.state.borrow_mut();
        let name = consumed
            .name
            .clone()
            .unwrap_or_else(|| s.next_name("KSTREAM-SOURCE-"));
        let mut source = source
            .with_name(name.clone())
            .serdes(consumed.key_serde.clone(), consumed.value_serde.clone())
            .offset_reset(consumed.offset_reset);
        if let Some(x) = consumed.extractor.clone() {
            source = source.timestamp_extractor(x);
        }
        s.apply(|t| t.add_source(source).map(|_| ()));
        KStream::new(
            Rc::clone(&self.state),
            name,
            consumed.key_serde,
            consumed.value_serde,
        )
    }

    /// A table of the records of `topic` (Kafka's `StreamsBuilder#table`): each record
    /// upserts its key, a record with a null value (a tombstone) deletes it, and every
    /// change goes downstream (a delete as a delete: [`KTable::to_stream`] emits the
    /// tombstone). A record with a null key is skipped, logged and counted in
    /// `dropped-records`; an update older than the stored one is applied (and logged), as
    /// Kafka 3.x does for non-versioned tables.
    ///
    /// The table is materialized in a timestamped key-value store (named
    /// `<topic>-STATE-STORE-<n>` unless `materialized` names it), cached and change-logged
    /// to `<application.id>-<store>-changelog` by default, restored from it on start; with
    /// `topology.optimization=reuse.ktable.source.topics` it writes no changelog and is
    /// restored from `topic` itself (up to the committed offset).
    /// Names as Kafka's: `KSTREAM-SOURCE-<n>` reading the topic, then the processor
    /// `KTABLE-SOURCE-<n>` (with a `Consumed` name: `<name>-source` and `<name>`).
    ///
    /// ```
    /// use streams_core::{Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let table = builder.table("users", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// assert_eq!(table.store_name(), Some("users-STATE-STORE-0000000000"));
    /// table.to_stream().to("changes", Produced::with(StringSerde, Nullable(StringSerde)));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("users", StringSerde, Nullable(StringSerde))?;
    /// input.pipe_input_with_timestamp("alice".into(), Some("eu".into()), 10)?;
    /// input.pipe_input_with_timestamp("alice".into(), None, 20)?; // deletes alice
    /// let out = driver.create_output_topic("changes", StringSerde, Nullable(StringSerde));
    /// assert_eq!(out.read_key_values_to_vec()?,
    ///     vec![("alice".into(), Some("eu".into())), ("alice".into(), None)]);
    /// assert!(driver.read_key_value_store::<String, String>("users-STATE-STORE-0000000000")?.is_empty());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn table<K, V>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V>
    where
        K: Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        crate::table::source_table(&self.state, topic, consumed, materialized)
    }

    /// A table of every partition of `topic` in every application instance (Kafka's
    /// `StreamsBuilder#globalTable`): a record upserts its key, a null value (tombstone)
    /// deletes it, a null key is skipped and counted in `dropped-records`. The store is a
    /// timestamped key-value store named `<topic>-STATE-STORE-<n>` unless `materialized`
    /// names it (RocksDB, or in memory with [`Materialized::in_memory`]), with the serdes
    /// of `consumed`. Its topic is its changelog: no `-changelog` topic is created; the
    /// store is restored from the topic (from its checkpoint in
    /// `<state.dir>/<application.id>/global/`) before any stream thread starts and kept
    /// up to date by the global thread. Names as Kafka's: the store, then
    /// `KSTREAM-SOURCE-<n>`, then `KTABLE-SOURCE-<n>` (with a `Consumed` name:
    /// `<name>-source` and `<name>`), in a sub-topology of its own that generates no tasks.
    /// Processors read it with
    /// [`ProcessorContext::global_store`](streams_core::ProcessorContext::global_store).
    ///
    /// ```
    /// use streams_core::{Processor, ProcessorContext, Record, Result, StreamsConfig, StringSerde,
    ///     TopologyTestDriver};
    /// use streams_dsl::{Consumed, Materialized, Produced, StreamsBuilder};
    ///
    /// /// Looks the country of each order's customer up in the global table.
    /// struct Country(String);
    /// impl Processor<String, String, String, String> for Country {
    ///     fn process(&mut self, ctx: &mut ProcessorContext<'_, String, String>, r: Record<String, String>) -> Result<()> {
    ///         let country = ctx.global_store::<String, String>(&self.0)?.get(&r.key)?;
    ///         let v = country.unwrap_or_else(|| "unknown".into());
    ///         ctx.forward(r.with_value(v))
    ///     }
    /// }
    ///
    /// let builder = StreamsBuilder::new();
    /// let countries = builder.global_table("countries", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// assert_eq!(countries.store_name(), "countries-STATE-STORE-0000000000");
    /// let store = countries.store_name().to_owned();
    /// builder.stream("orders", Consumed::with(StringSerde, StringSerde))
    ///     .process(move || Country(store.clone()), &[])
    ///     .to("order-countries", Produced::with(StringSerde, StringSerde));
    /// let topology = builder.build()?;
    /// assert!(topology.describe()?.to_string().starts_with(&[
    ///     "Topologies:",
    ///     "   Sub-topology: 0 for global store (will not generate tasks)",
    ///     "    Source: KSTREAM-SOURCE-0000000001 (topics: [countries])",
    ///     "      --> KTABLE-SOURCE-0000000002",
    ///     "    Processor: KTABLE-SOURCE-0000000002 (stores: [countries-STATE-STORE-0000000000])",
    ///     "      --> none",
    ///     "      <-- KSTREAM-SOURCE-0000000001",
    ///     "   Sub-topology: 1",
    /// ].join("\n")));
    ///
    /// let driver = TopologyTestDriver::new(topology, StreamsConfig::new("app"))?;
    /// let table = driver.create_input_topic("countries", StringSerde, StringSerde)?;
    /// let orders = driver.create_input_topic("orders", StringSerde, StringSerde)?;
    /// table.pipe_input("ann".into(), "NO".into())?;
    /// orders.pipe_input("ann".into(), "book".into())?;
    /// orders.pipe_input("bob".into(), "pen".into())?;
    /// let out = driver.create_output_topic("order-countries", StringSerde, StringSerde);
    /// assert_eq!(out.read_values_to_vec()?, ["NO", "unknown"]);
    /// assert_eq!(driver.read_key_value_store::<String, String>("countries-STATE-STORE-0000000000")?,
    ///     [("ann".to_string(), "NO".to_string())]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn global_table<K, V>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<K, V>,
    ) -> GlobalKTable<K, V>
    where
        K: Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        crate::global_table::global_table(&self.state, topic, consumed, materialized)
    }

    /// Adds a state store for processors added with [`KStream::process`].
    ///
    /// ```
    /// use streams_core::StoreBuilder;
    /// use streams_dsl::StreamsBuilder;
    /// let builder = StreamsBuilder::new();
    /// builder.add_state_store(StoreBuilder::key_value("seen").in_memory());
    /// // A store nobody uses is an error when building.
    /// assert!(builder.build().is_err());
    /// ```
    pub fn add_state_store(&self, store: StoreBuilder) -> &Self {
        self.state
            .borrow_mut()
            .apply(|t| t.add_state_store(store, &[]).map(|_| ()));
        self
    }

    /// The topology built so far, or the first error an operation ran into. The builder is
    /// left empty.
    ///
    /// ```
    /// use streams_core::StringSerde;
    /// use streams_dsl::{Consumed, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde)).to("out", Produced::default());
    /// let topology = builder.build()?;
    /// assert!(topology.describe()?.to_string().contains("Sink: KSTREAM-SINK-0000000001 (topic: out)"));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn build(&self) -> streams_core::Result<Topology> {
        let mut s = self.state.borrow_mut();
        if let Some(e) = s.error.take() {
            return Err(e);
        }
        let topology = std::mem::take(&mut s.topology);
        topology.describe()?;
        Ok(topology)
    }
}
