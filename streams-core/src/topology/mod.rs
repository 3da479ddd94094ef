//! `Topology`: the processor graph a streams application runs, its validation, its split
//! into sub-topologies and its description.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::marker::PhantomData;
use std::sync::Arc;

use regex::Regex;

use crate::error::{Result, StreamsError, TopologyError};
use crate::processor::{ErasedProcessor, Processor, TypedProcessor};
use crate::serde::{SerdeRegistry, SharedSerde};
use crate::sink::{ErasedSink, TypedSink};
use crate::source::{SourceDeserializer, TypedSource};
use crate::store::StoreBuilder;

mod describe;
mod nodes;

pub use describe::{
    GlobalStoreDescription, NodeDescription, NodeDescriptionKind, SubtopologyDescription,
    TopologyDescription,
};
pub use nodes::{
    OffsetReset, Sink, SinkTopic, Source, SourceTopics, StreamPartitioner, TimestampExtractor,
    TopicNameExtractor,
};

/// Key and value types of records entering or leaving a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordType {
    key: TypeId,
    value: TypeId,
    key_name: &'static str,
    value_name: &'static str,
}

impl RecordType {
    fn of<K: Any, V: Any>() -> Self {
        RecordType {
            key: TypeId::of::<K>(),
            value: TypeId::of::<V>(),
            key_name: std::any::type_name::<K>(),
            value_name: std::any::type_name::<V>(),
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Record<{}, {}>", self.key_name, self.value_name)
    }
}

type SourceFactory =
    Arc<dyn Fn(&SerdeRegistry) -> Result<Box<dyn SourceDeserializer>> + Send + Sync>;
type ProcessorFactory = Arc<dyn Fn() -> Box<dyn ErasedProcessor> + Send + Sync>;
type SinkFactory = Arc<dyn Fn(&SerdeRegistry) -> Result<Box<dyn ErasedSink>> + Send + Sync>;

pub(crate) enum NodeKind {
    Source {
        topics: SourceTopics,
        offset_reset: OffsetReset,
        make: SourceFactory,
    },
    Processor {
        make: ProcessorFactory,
        stores: Vec<String>,
    },
    Sink {
        topic: SinkTopic,
        make: SinkFactory,
    },
}

pub(crate) struct NodeDef {
    pub(crate) name: String,
    pub(crate) kind: NodeKind,
    pub(crate) parents: Vec<usize>,
    pub(crate) children: Vec<usize>,
    output: Option<RecordType>,
}

impl NodeDef {
    pub(crate) fn is_sink(&self) -> bool {
        matches!(self.kind, NodeKind::Sink { .. })
    }
}

/// Kinds of internal topics a topology declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InternalTopic {
    /// Partitions, if fixed by the topology (otherwise derived from the upstream sources).
    pub(crate) partitions: Option<i32>,
}

/// A sub-topology: the nodes connected without going through a topic, and what they read,
/// write and keep.
#[derive(Debug, Clone)]
pub(crate) struct Subtopology {
    pub(crate) id: usize,
    /// Node indexes in topology order.
    pub(crate) nodes: Vec<usize>,
    /// Store names.
    pub(crate) stores: Vec<String>,
}

/// A processor topology: sources, processors, sinks and state stores (Kafka's `Topology`).
///
/// Build one with the Processor API (below) or with the DSL (`streams-dsl`), then run it
/// with [`StreamsApp`](crate::StreamsApp) or the test driver.
///
/// ```
/// use streams_core::{Processor, ProcessorContext, Record, Result, Sink, Source, StringSerde, Topology};
///
/// struct Upper;
/// impl Processor<String, String> for Upper {
///     fn process(&mut self, ctx: &mut ProcessorContext<'_, String, String>, r: Record<String, String>) -> Result<()> {
///         let v = r.value.to_uppercase();
///         ctx.forward(r.with_value(v))
///     }
/// }
///
/// let mut topology = Topology::new();
/// topology.add_source(Source::<String, String>::new("in", ["words"]))?;
/// topology.add_processor("upper", || Upper, &["in"])?;
/// topology.add_sink(Sink::<String, String>::new("out", "shouted"), &["upper"])?;
/// let text = topology.describe()?.to_string();
/// assert!(text.contains("Processor: upper (stores: [])"));
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
#[derive(Default)]
pub struct Topology {
    pub(crate) nodes: Vec<NodeDef>,
    pub(crate) stores: BTreeMap<String, StoreBuilder>,
    pub(crate) internal_topics: BTreeMap<String, InternalTopic>,
    by_name: BTreeMap<String, usize>,
    /// Global stores, each with its source and processor (outside `nodes`: they make no
    /// tasks).
    pub(crate) globals: Vec<crate::global::GlobalStoreDef>,
    /// Stores of source tables that may be restored from their source topic (store ->
    /// topic), for `topology.optimization=reuse.ktable.source.topics`.
    pub(crate) source_table_stores: BTreeMap<String, String>,
    /// The stores whose source topic is their changelog in this run (store -> topic), set
    /// by [`Topology::apply_optimizations`].
    pub(crate) source_changelogs: BTreeMap<String, String>,
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topology")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| &n.name).collect::<Vec<_>>(),
            )
            .field("stores", &self.stores.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn check_name(name: &str) -> std::result::Result<(), TopologyError> {
    if name.is_empty() {
        return Err(TopologyError::InvalidName {
            name: name.to_owned(),
            reason: "empty".into(),
        });
    }
    if name.len() > 249 || name.chars().any(|c| c.is_control()) {
        return Err(TopologyError::InvalidName {
            name: name.to_owned(),
            reason: "longer than 249 characters or has control characters".into(),
        });
    }
    Ok(())
}

impl Topology {
    /// An empty topology.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn claim_name(&self, name: &str) -> std::result::Result<(), TopologyError> {
        check_name(name)?;
        if self.by_name.contains_key(name)
            || self.stores.contains_key(name)
            || self
                .globals
                .iter()
                .any(|g| g.source == name || g.processor == name || g.store.name() == name)
        {
            return Err(TopologyError::NameClash(name.to_owned()));
        }
        Ok(())
    }

    fn resolve_parents(
        &self,
        node: &str,
        parents: &[&str],
        input: RecordType,
    ) -> std::result::Result<Vec<usize>, TopologyError> {
        if parents.is_empty() {
            return Err(TopologyError::NoParent(node.to_owned()));
        }
        let mut out = Vec::with_capacity(parents.len());
        for p in parents {
            let idx = *self
                .by_name
                .get(*p)
                .ok_or_else(|| TopologyError::UnknownParent {
                    node: node.to_owned(),
                    parent: (*p).to_owned(),
                })?;
            let parent = &self.nodes[idx];
            if parent.is_sink() {
                return Err(TopologyError::SinkAsParent {
                    node: node.to_owned(),
                    parent: (*p).to_owned(),
                });
            }
            if let Some(actual) = parent.output {
                if actual != input {
                    return Err(TopologyError::TypeMismatch {
                        node: node.to_owned(),
                        parent: (*p).to_owned(),
                        expected: input.to_string(),
                        actual: actual.to_string(),
                    });
                }
            }
            if !out.contains(&idx) {
                out.push(idx);
            }
        }
        Ok(out)
    }

    fn push(&mut self, def: NodeDef) -> &mut Self {
        let idx = self.nodes.len();
        for &p in &def.parents {
            self.nodes[p].children.push(idx);
        }
        self.by_name.insert(def.name.clone(), idx);
        self.nodes.push(def);
        self
    }

    /// Adds a source node. Its key and value serdes default to the registry's serdes for
    /// `K` and `V` (resolved when the application starts).
    pub fn add_source<K, V>(&mut self, source: Source<K, V>) -> Result<&mut Self>
    where
        K: Any + Send + Sync + Clone,
        V: Any + Send + Sync + Clone,
    {
        self.claim_name(&source.name)?;
        if let SourceTopics::Names(topics) = &source.topics {
            if topics.is_empty() {
                return Err(TopologyError::InvalidSource {
                    node: source.name,
                    reason: "no topics".into(),
                }
                .into());
            }
            let taken = self.source_topic_names();
            for t in topics {
                check_name(t)?;
                if taken.contains(t.as_str()) {
                    return Err(TopologyError::InvalidSource {
                        node: source.name.clone(),
                        reason: format!("topic `{t}` is already read by another source"),
                    }
                    .into());
                }
            }
        }
        let name = source.name.clone();
        let topics = source.topics.clone();
        let offset_reset = source.offset_reset;
        let key_serde = source.key_serde.clone();
        let value_serde = source.value_serde.clone();
        let extractor = source.extractor.clone();
        let node = name.clone();
        let make: SourceFactory = Arc::new(move |registry: &SerdeRegistry| {
            Ok(Box::new(TypedSource::<K, V> {
                key_serde: resolve(&key_serde, registry, "key", &node)?,
                value_serde: resolve(&value_serde, registry, "value", &node)?,
                extractor: extractor.clone(),
            }) as Box<dyn SourceDeserializer>)
        });
        Ok(self.push(NodeDef {
            name,
            kind: NodeKind::Source {
                topics,
                offset_reset,
                make,
            },
            parents: Vec::new(),
            children: Vec::new(),
            output: Some(RecordType::of::<K, V>()),
        }))
    }

    /// Adds a processor node fed by `parents`; `supplier` builds one processor instance per
    /// task. The record types of the parents must match what the processor accepts.
    pub fn add_processor<KIn, VIn, KOut, VOut, P, F>(
        &mut self,
        name: &str,
        supplier: F,
        parents: &[&str],
    ) -> Result<&mut Self>
    where
        P: Processor<KIn, VIn, KOut, VOut>,
        F: Fn() -> P + Send + Sync + 'static,
        KIn: Any + Send + Clone,
        VIn: Any + Send + Clone,
        KOut: Any + Send + Clone,
        VOut: Any + Send + Clone,
    {
        self.claim_name(name)?;
        let input = RecordType::of::<KIn, VIn>();
        let parents = self.resolve_parents(name, parents, input)?;
        let make: ProcessorFactory = Arc::new(move || {
            Box::new(TypedProcessor {
                inner: supplier(),
                _types: PhantomData::<fn(KIn, VIn, KOut, VOut)>,
            }) as Box<dyn ErasedProcessor>
        });
        Ok(self.push(NodeDef {
            name: name.to_owned(),
            kind: NodeKind::Processor {
                make,
                stores: Vec::new(),
            },
            parents,
            children: Vec::new(),
            output: Some(RecordType::of::<KOut, VOut>()),
        }))
    }

    /// Adds a sink node fed by `parents`.
    pub fn add_sink<K, V>(&mut self, sink: Sink<K, V>, parents: &[&str]) -> Result<&mut Self>
    where
        K: Any + Send + Sync + Clone,
        V: Any + Send + Sync + Clone,
    {
        self.claim_name(&sink.name)?;
        if let SinkTopic::Fixed(t) = &sink.topic {
            check_name(t)?;
        }
        let input = RecordType::of::<K, V>();
        let parents = self.resolve_parents(&sink.name, parents, input)?;
        let node = sink.name.clone();
        let topic = sink.topic.clone();
        let fixed = match &sink.topic {
            SinkTopic::Fixed(t) => Some(t.clone()),
            SinkTopic::Dynamic => None,
        };
        let Sink {
            extractor,
            key_serde,
            value_serde,
            partitioner,
            skip_null_keys,
            ..
        } = sink;
        let factory_node = node.clone();
        let make: SinkFactory = Arc::new(move |registry: &SerdeRegistry| {
            Ok(Box::new(TypedSink::<K, V> {
                topic: fixed.clone(),
                extractor: extractor.clone(),
                key_serde: resolve(&key_serde, registry, "key", &factory_node)?,
                value_serde: resolve(&value_serde, registry, "value", &factory_node)?,
                partitioner: partitioner.clone(),
                skip_null_keys,
                physical: None,
            }) as Box<dyn ErasedSink>)
        });
        Ok(self.push(NodeDef {
            name: node,
            kind: NodeKind::Sink { topic, make },
            parents,
            children: Vec::new(),
            output: None,
        }))
    }

    /// Adds a state store and connects it to `processors` (which may be empty; connect later
    /// with [`Topology::connect_processor_and_store`]).
    pub fn add_state_store(
        &mut self,
        store: StoreBuilder,
        processors: &[&str],
    ) -> Result<&mut Self> {
        self.claim_name(store.name())?;
        let name = store.name().to_owned();
        self.stores.insert(name.clone(), store);
        for p in processors {
            self.connect_processor_and_store(p, &name)?;
        }
        Ok(self)
    }

    /// Gives processor `processor` access to store `store`.
    pub fn connect_processor_and_store(
        &mut self,
        processor: &str,
        store: &str,
    ) -> Result<&mut Self> {
        if !self.stores.contains_key(store) {
            return Err(TopologyError::UnknownStore {
                node: processor.to_owned(),
                store: store.to_owned(),
            }
            .into());
        }
        let idx = self.by_name.get(processor).copied();
        match idx.map(|i| &mut self.nodes[i].kind) {
            Some(NodeKind::Processor { stores, .. }) => {
                if !stores.iter().any(|s| s == store) {
                    stores.push(store.to_owned());
                }
                Ok(self)
            }
            _ => Err(TopologyError::UnknownProcessor {
                store: store.to_owned(),
                node: processor.to_owned(),
            }
            .into()),
        }
    }

    /// Declares `topic` an internal repartition topic: it is created by the application as
    /// `<application.id>-<topic>`, and sources and sinks naming `topic` use that name. Its
    /// partition count is that of the sub-topology writing to it unless given.
    pub fn add_repartition_topic(
        &mut self,
        topic: &str,
        partitions: Option<i32>,
    ) -> Result<&mut Self> {
        check_name(topic)?;
        self.internal_topics
            .insert(topic.to_owned(), InternalTopic { partitions });
        Ok(self)
    }

    /// Marks `store` as the store of a source table reading `topic` (Kafka's
    /// `TableSourceNode`): with `topology.optimization=reuse.ktable.source.topics` it is
    /// restored from `topic` instead of its own changelog (Kafka's
    /// `connectSourceStoreAndTopic`).
    pub fn mark_source_table_store(&mut self, store: &str, topic: &str) -> Result<&mut Self> {
        if !self.stores.contains_key(store) {
            return Err(TopologyError::UnknownStore {
                node: format!("source table of `{topic}`"),
                store: store.to_owned(),
            }
            .into());
        }
        self.source_table_stores
            .insert(store.to_owned(), topic.to_owned());
        Ok(self)
    }

    /// Applies the optimizations `config` asks for before a run: with
    /// `reuse.ktable.source.topics`, the stores of source tables stop logging and take
    /// their source topic as changelog.
    pub(crate) fn apply_optimizations(&mut self, config: &crate::StreamsConfig) {
        self.source_changelogs.clear();
        if !config.reuse_ktable_source_topics {
            return;
        }
        for (store, topic) in &self.source_table_stores {
            if let Some(spec) = self.stores.remove(store) {
                self.stores.insert(store.clone(), spec.with_logging(false));
                self.source_changelogs.insert(store.clone(), topic.clone());
            }
        }
    }

    /// True if `topic` is an internal topic of this topology (named without the
    /// application id).
    pub fn is_internal_topic(&self, topic: &str) -> bool {
        self.internal_topics.contains_key(topic)
    }

    /// The name a topic has in the cluster: internal topics get the application id prefix.
    pub fn physical_topic_name(&self, application_id: &str, topic: &str) -> String {
        if self.is_internal_topic(topic) {
            crate::names::internal_topic(application_id, topic)
        } else {
            topic.to_owned()
        }
    }

    pub(crate) fn source_topic_names(&self) -> BTreeSet<&str> {
        self.nodes
            .iter()
            .filter_map(|n| match &n.kind {
                NodeKind::Source {
                    topics: SourceTopics::Names(t),
                    ..
                } => Some(t.iter().map(String::as_str)),
                _ => None,
            })
            .flatten()
            .chain(self.globals.iter().map(|g| g.topic.as_str()))
            .collect()
    }

    /// The stores declared in this topology.
    pub fn stores(&self) -> impl Iterator<Item = &StoreBuilder> {
        self.stores.values()
    }

    /// The sub-topology id of each global store (in `globals` order): Kafka numbers node
    /// groups by their first node, so a global store declared before a stream takes an id
    /// before that stream's sub-topology.
    pub(crate) fn global_ids(&self, subs: &[Subtopology]) -> Vec<usize> {
        self.globals
            .iter()
            .enumerate()
            .map(|(gi, g)| {
                gi + subs
                    .iter()
                    .filter(|s| s.nodes.first().is_some_and(|&n| n < g.position))
                    .count()
            })
            .collect()
    }

    /// Checks what can only be checked on the whole graph: every store is connected, and
    /// stores do not span sub-topologies. Returns the sub-topologies.
    pub(crate) fn subtopologies(&self) -> Result<Vec<Subtopology>> {
        if self.globals.is_empty()
            && !self
                .nodes
                .iter()
                .any(|n| matches!(n.kind, NodeKind::Source { .. }))
        {
            return Err(TopologyError::Empty.into());
        }
        // Union-find over parent links and shared stores.
        let mut parent: Vec<usize> = (0..self.nodes.len()).collect();
        fn find(p: &mut [usize], mut x: usize) -> usize {
            while p[x] != x {
                p[x] = p[p[x]];
                x = p[x];
            }
            x
        }
        let mut store_owner: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for &q in &n.parents {
                let (a, b) = (find(&mut parent, i), find(&mut parent, q));
                parent[a] = b;
            }
            if let NodeKind::Processor { stores, .. } = &n.kind {
                for s in stores {
                    match store_owner.get(s.as_str()) {
                        Some(&o) => {
                            let (a, b) = (find(&mut parent, i), find(&mut parent, o));
                            parent[a] = b;
                        }
                        None => {
                            store_owner.insert(s, i);
                        }
                    }
                }
            }
        }
        for s in self.stores.keys() {
            if !store_owner.contains_key(s.as_str()) {
                return Err(TopologyError::UnconnectedStore(s.clone()).into());
            }
        }
        let mut by_root: BTreeMap<usize, usize> = BTreeMap::new();
        let mut subs: Vec<Subtopology> = Vec::new();
        // Ids as Kafka's `makeNodeGroups` numbers node groups: in the order of their first
        // node, global stores included (their ids generate no tasks).
        let mut next_id = 0;
        let mut globals_before = 0;
        for i in 0..self.nodes.len() {
            while self
                .globals
                .get(globals_before)
                .is_some_and(|g| g.position <= i)
            {
                globals_before += 1;
                next_id += 1;
            }
            let root = find(&mut parent, i);
            let id = match by_root.get(&root) {
                Some(&idx) => idx,
                None => {
                    subs.push(Subtopology {
                        id: next_id,
                        nodes: Vec::new(),
                        stores: Vec::new(),
                    });
                    next_id += 1;
                    by_root.insert(root, subs.len() - 1);
                    subs.len() - 1
                }
            };
            subs[id].nodes.push(i);
            if let NodeKind::Processor { stores, .. } = &self.nodes[i].kind {
                for s in stores {
                    if !subs[id].stores.contains(s) {
                        subs[id].stores.push(s.clone());
                    }
                }
            }
        }
        Ok(subs)
    }
}

pub(crate) fn resolve<T: 'static>(
    given: &Option<SharedSerde<T>>,
    registry: &SerdeRegistry,
    what: &'static str,
    node: &str,
) -> Result<SharedSerde<T>> {
    match given {
        Some(s) => Ok(Arc::clone(s)),
        None => registry
            .get::<T>()
            .ok_or_else(|| StreamsError::MissingSerde {
                what,
                type_name: std::any::type_name::<T>(),
                node: node.to_owned(),
            }),
    }
}
