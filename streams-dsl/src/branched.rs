//! `KStream::split` (Kafka's `BranchedKStreamImpl`, `KStreamBranch` and `Branched`): one
//! splitter processor routes each record to the first branch whose predicate it passes
//! (or to the default branch), each branch being a pass-through child node.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};

use streams_core::{Processor, ProcessorContext, Record, Result};

use crate::kstream::KStream;
use crate::processors::stateless;

/// A branch predicate: `(key, value) -> routed here?`.
type Predicate<K, V> = Arc<dyn Fn(&K, &V) -> bool + Send + Sync>;

/// A `Branched::with_function` chain.
type ChainFunction<K, V> = Box<dyn FnOnce(KStream<K, V>) -> KStream<K, V>>;

/// What happens to a branch once it exists (Kafka's `Branched` chain function/consumer).
enum Chain<K, V> {
    /// The branch itself goes into the result map.
    None,
    /// The branch goes through this function; its result goes into the map.
    Function(ChainFunction<K, V>),
    /// The branch goes to this consumer; nothing goes into the map.
    Consumer(Box<dyn FnOnce(KStream<K, V>)>),
}

/// How a branch of [`KStream::split`] is named and what is done with it (Kafka's
/// `Branched`): its name (the suffix of the branch node name and of its key in the map of
/// branches, else its index: `"1"`, `"2"`, ..., `"0"` for the default branch) and an
/// optional function (whose result stream is put in the map) or consumer (the branch is
/// not put in the map).
///
/// ```
/// use streams_core::StringSerde;
/// use streams_dsl::{Branched, Consumed, Produced, StreamsBuilder};
/// let builder = StreamsBuilder::new();
/// let branches = builder.stream("in", Consumed::with(StringSerde, StringSerde))
///     .split()
///     .branch(|_k: &String, v: &String| v.is_empty(), Branched::with_consumer(|s| s.to("empty", Produced::default())))
///     .branch(|_k: &String, v: &String| v.len() < 10,
///         Branched::with_function(|s| s.map_values(|v: String| v.to_uppercase())).with_name("short"))
///     .default_branch(Branched::as_name("long"));
/// assert_eq!(branches.keys().map(String::as_str).collect::<Vec<_>>(),
///     ["KSTREAM-BRANCH-0000000001long", "KSTREAM-BRANCH-0000000001short"]);
/// ```
pub struct Branched<K, V> {
    pub(crate) name: Option<String>,
    chain: Chain<K, V>,
}

impl<K, V> Default for Branched<K, V> {
    fn default() -> Self {
        Branched {
            name: None,
            chain: Chain::None,
        }
    }
}

impl<K, V> std::fmt::Debug for Branched<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Branched")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<K, V> Branched<K, V> {
    /// A branch named by its index.
    pub fn new() -> Self {
        Self::default()
    }

    /// A branch named `name` (Kafka's `Branched.as`): its node is `<split name><name>`.
    pub fn as_name(name: impl Into<String>) -> Self {
        Branched {
            name: Some(name.into()),
            chain: Chain::None,
        }
    }

    /// The branch goes through `f` when it is created; the stream `f` returns is the one in
    /// the map of branches (Kafka's `Branched.withFunction`).
    pub fn with_function(f: impl FnOnce(KStream<K, V>) -> KStream<K, V> + 'static) -> Self {
        Branched {
            name: None,
            chain: Chain::Function(Box::new(f)),
        }
    }

    /// The branch goes to `f` when it is created and is left out of the map of branches
    /// (Kafka's `Branched.withConsumer`).
    pub fn with_consumer(f: impl FnOnce(KStream<K, V>) + 'static) -> Self {
        Branched {
            name: None,
            chain: Chain::Consumer(Box::new(f)),
        }
    }

    /// Names the branch (Kafka's `Branched#withName`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// The routing table of one splitter: per branch in order its predicate (none for the
/// default branch, which is last) and its node name. Shared with the processor supplier,
/// which copies it when tasks are created (after the topology is built).
type Routes<K, V> = Arc<Mutex<Vec<(Option<Predicate<K, V>>, String)>>>;

/// Kafka's `KStreamBranch` processor: the first matching branch gets the record, else the
/// default branch if there is one, else nobody.
struct BranchProcessor<K, V> {
    routes: Vec<(Option<Predicate<K, V>>, String)>,
}

impl<K, V> Processor<K, V, K, V> for BranchProcessor<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, V>,
        record: Record<K, V>,
    ) -> Result<()> {
        for (predicate, child) in &self.routes {
            match predicate {
                Some(p) if !p(&record.key, &record.value) => {}
                _ => return ctx.forward_to(child, record),
            }
        }
        Ok(())
    }
}

/// The result of [`KStream::split`] (Kafka's `BranchedKStream`): add branches with
/// [`branch`](BranchedKStream::branch), then finish with
/// [`default_branch`](BranchedKStream::default_branch) or
/// [`no_default_branch`](BranchedKStream::no_default_branch), which return the branches
/// by name.
pub struct BranchedKStream<K, V> {
    source: KStream<K, V>,
    splitter: String,
    routes: Routes<K, V>,
    /// Branches created so far (predicates given).
    count: usize,
    outputs: BTreeMap<String, KStream<K, V>>,
}

impl<K, V> std::fmt::Debug for BranchedKStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BranchedKStream")
            .field("splitter", &self.splitter)
            .field("branches", &self.outputs.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<K, V> BranchedKStream<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Adds the splitter node after `source` (named `splitter`).
    pub(crate) fn new(source: KStream<K, V>, splitter: String) -> Self {
        let routes: Routes<K, V> = Arc::default();
        let shared = Arc::clone(&routes);
        let supplier = move || BranchProcessor {
            routes: shared
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        };
        let parent = source.node.clone();
        let name = splitter.clone();
        source
            .state
            .borrow_mut()
            .apply(|t| t.add_processor(&name, supplier, &[&parent]).map(|_| ()));
        BranchedKStream {
            source,
            splitter,
            routes,
            count: 0,
            outputs: BTreeMap::new(),
        }
    }

    /// Routes the records passing `predicate` (and no earlier branch's) to a new branch
    /// (Kafka's `BranchedKStream#branch`). Its node is `<split name><n>` for the `n`-th
    /// branch (from 1), or `<split name><name>` for a [`Branched::as_name`].
    ///
    /// ```
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Branched, Consumed, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let branches = builder.stream("numbers", Consumed::with(StringSerde, I64Serde))
    ///     .split()
    ///     .branch(|_k: &String, v: &i64| *v < 0, Branched::as_name("negative"))
    ///     .branch(|_k: &String, v: &i64| *v < 10, Branched::new())
    ///     .no_default_branch();
    /// // Kafka's names: the splitter's name, then the branch name or index.
    /// let keys: Vec<&str> = branches.keys().map(String::as_str).collect();
    /// assert_eq!(keys, ["KSTREAM-BRANCH-00000000012", "KSTREAM-BRANCH-0000000001negative"]);
    /// for (name, stream) in branches {
    ///     let topic = if name.ends_with("negative") { "negative" } else { "small" };
    ///     stream.to(topic, Produced::default());
    /// }
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("doc"))?;
    /// let input = driver.create_input_topic("numbers", StringSerde, I64Serde)?;
    /// for v in [-1, 5, 50] { input.pipe_input("k".into(), v)?; }
    /// // 50 matches no branch and there is no default branch: it is dropped.
    /// assert_eq!(driver.create_output_topic("negative", StringSerde, I64Serde).read_values_to_vec()?, [-1]);
    /// assert_eq!(driver.create_output_topic("small", StringSerde, I64Serde).read_values_to_vec()?, [5]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn branch<F>(mut self, predicate: F, branched: Branched<K, V>) -> Self
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.count += 1;
        let index = self.count;
        self.create_branch(Some(Arc::new(predicate)), branched, index);
        self
    }

    /// Routes the records no branch took to a default branch (node `<split name>0`, or
    /// `<split name><name>`) and returns the branches by node name (Kafka's
    /// `BranchedKStream#defaultBranch`).
    ///
    /// ```
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Branched, Consumed, Named, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let mut branches = builder.stream("numbers", Consumed::with(StringSerde, I64Serde))
    ///     .named(Named::as_name("sign-"))
    ///     .split()
    ///     .branch(|_k: &String, v: &i64| *v < 0, Branched::as_name("negative"))
    ///     // A consumer takes its branch: it is not in the map.
    ///     .branch(|_k: &String, v: &i64| *v == 0, Branched::with_consumer(|zeros| {
    ///         zeros.to("zeros", Produced::default())
    ///     }))
    ///     .default_branch(Branched::with_function(|s| s.map_values(|v: i64| v * 10)));
    /// assert_eq!(branches.keys().map(String::as_str).collect::<Vec<_>>(), ["sign-0", "sign-negative"]);
    /// branches.remove("sign-0").unwrap().to("positive", Produced::with(StringSerde, I64Serde));
    /// branches.remove("sign-negative").unwrap().to("negative", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("doc"))?;
    /// let input = driver.create_input_topic("numbers", StringSerde, I64Serde)?;
    /// for v in [-1, 0, 7] { input.pipe_input("k".into(), v)?; }
    /// assert_eq!(driver.create_output_topic("negative", StringSerde, I64Serde).read_values_to_vec()?, [-1]);
    /// assert_eq!(driver.create_output_topic("zeros", StringSerde, I64Serde).read_values_to_vec()?, [0]);
    /// assert_eq!(driver.create_output_topic("positive", StringSerde, I64Serde).read_values_to_vec()?, [70]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn default_branch(mut self, branched: Branched<K, V>) -> BTreeMap<String, KStream<K, V>> {
        self.create_branch(None, branched, 0);
        self.outputs
    }

    /// Returns the branches by node name, without a default branch: records no branch
    /// takes are dropped (Kafka's `BranchedKStream#noDefaultBranch`).
    ///
    /// ```
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Branched, Consumed, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let branches = builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .split()
    ///     .branch(|k: &String, _v: &String| k == "keep", Branched::as_name("kept"))
    ///     .no_default_branch();
    /// assert_eq!(branches.len(), 1);
    /// for (_, s) in branches { s.to("out", Produced::default()); }
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("doc"))?;
    /// let input = driver.create_input_topic("in", StringSerde, StringSerde)?;
    /// input.pipe_input("keep".into(), "a".into())?;
    /// input.pipe_input("drop".into(), "b".into())?;
    /// assert_eq!(driver.create_output_topic("out", StringSerde, StringSerde).read_values_to_vec()?, ["a"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn no_default_branch(self) -> BTreeMap<String, KStream<K, V>> {
        self.outputs
    }

    /// Kafka's `BranchedKStreamImpl#createBranch`: the child name is the splitter name
    /// plus the branch name or index; one name is drawn from the counter for it all the
    /// same (`newProcessorName`), then a pass-through node is added under the splitter.
    fn create_branch(
        &mut self,
        predicate: Option<Predicate<K, V>>,
        branched: Branched<K, V>,
        index: usize,
    ) {
        let child = match &branched.name {
            Some(n) => format!("{}{n}", self.splitter),
            None => format!("{}{index}", self.splitter),
        };
        self.routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((predicate, child.clone()));
        let state = Rc::clone(&self.source.state);
        {
            let mut s = state.borrow_mut();
            let _ = s.next_name(&child);
            let splitter = self.splitter.clone();
            s.apply(|t| {
                t.add_processor(
                    &child,
                    || stateless(|ctx, r: Record<K, V>| ctx.forward(r)),
                    &[&splitter],
                )
                .map(|_| ())
            });
        }
        let mut stream = KStream::new(
            state,
            child.clone(),
            self.source.key_serde.clone(),
            self.source.value_serde.clone(),
        );
        stream.repartition_required = self.source.repartition_required;
        match branched.chain {
            Chain::None => {
                self.outputs.insert(child, stream);
            }
            Chain::Function(f) => {
                self.outputs.insert(child, f(stream));
            }
            Chain::Consumer(f) => f(stream),
        }
    }
}
