//! `TopologyDescription`: Kafka's text description of a topology and a Graphviz rendering.

use super::*;

impl Topology {
    /// A readable description of the topology (Kafka's `TopologyDescription`). Fails if the
    /// topology is invalid as a whole (e.g. a store connected to nothing).
    pub fn describe(&self) -> Result<TopologyDescription> {
        let subs = self.subtopologies()?;
        let mut out = TopologyDescription {
            subtopologies: Vec::new(),
            global_stores: self
                .global_ids(&subs)
                .into_iter()
                .zip(&self.globals)
                .map(|(id, g)| GlobalStoreDescription {
                    id,
                    source: g.source.clone(),
                    topic: g.topic.clone(),
                    processor: g.processor.clone(),
                    store: g.store.name().to_owned(),
                })
                .collect(),
        };
        for s in &subs {
            let linked = KafkaLinks::of(self, &s.nodes);
            // `SubtopologyDescription` puts the nodes in a `TreeSet` once every size is
            // final: larger sub-graph first, then by name.
            let mut members = s.nodes.clone();
            members.sort_by(|a, b| linked.compare(*a, *b));
            let name = |i: &usize| self.nodes[*i].name.clone();
            let nodes = members
                .iter()
                .map(|&i| {
                    let n = &self.nodes[i];
                    let kind = match &n.kind {
                        NodeKind::Source { topics, .. } => {
                            NodeDescriptionKind::Source(match topics {
                                SourceTopics::Names(t) => format!("topics: [{}]", t.join(", ")),
                                SourceTopics::Pattern(p) => {
                                    format!("topicPattern: {}", strip_anchors(p))
                                }
                            })
                        }
                        NodeKind::Processor { stores, .. } => {
                            NodeDescriptionKind::Processor(stores.clone())
                        }
                        NodeKind::Sink { topic, .. } => NodeDescriptionKind::Sink(match topic {
                            SinkTopic::Fixed(t) => t.clone(),
                            SinkTopic::Dynamic => String::new(),
                        }),
                    };
                    NodeDescription {
                        name: n.name.clone(),
                        kind,
                        successors: linked.successors(i).iter().map(name).collect(),
                        predecessors: linked.predecessors(i).iter().map(name).collect(),
                    }
                })
                .collect();
            out.subtopologies
                .push(SubtopologyDescription { id: s.id, nodes });
        }
        Ok(out)
    }
}

fn strip_anchors(re: &Regex) -> String {
    let s = re.as_str();
    s.strip_prefix("^(?:")
        .and_then(|s| s.strip_suffix(")$"))
        .unwrap_or(s)
        .to_owned()
}

/// One node in a [`TopologyDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDescription {
    /// Node name.
    pub name: String,
    /// What the node is.
    pub kind: NodeDescriptionKind,
    /// Children.
    pub successors: Vec<String>,
    /// Parents.
    pub predecessors: Vec<String>,
}

/// Kinds of nodes in a [`TopologyDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeDescriptionKind {
    /// A source and its topics (`topics: [a, b]` or `topicPattern: x.*`).
    Source(String),
    /// A processor and its stores.
    Processor(Vec<String>),
    /// A sink and its topic (empty when chosen per record).
    Sink(String),
}

/// One sub-topology in a [`TopologyDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtopologyDescription {
    /// Its id (the first part of its task ids).
    pub id: usize,
    /// Its nodes in Kafka's order: larger sub-graph (node plus successors, counted per
    /// path) first, then by name.
    pub nodes: Vec<NodeDescription>,
}

/// A global store in a [`TopologyDescription`] (Kafka's `TopologyDescription.GlobalStore`):
/// a sub-topology of a source and the processor keeping the store, which generates no
/// tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalStoreDescription {
    /// Its sub-topology id (numbered with the others, by first node).
    pub id: usize,
    /// The source node.
    pub source: String,
    /// The topic it reads.
    pub topic: String,
    /// The processor writing the store.
    pub processor: String,
    /// The store.
    pub store: String,
}

impl fmt::Display for GlobalStoreDescription {
    /// Kafka's `GlobalStore#toString` (no blank line after it, unlike a sub-topology).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "   Sub-topology: {} for global store (will not generate tasks)",
            self.id
        )?;
        writeln!(f, "    Source: {} (topics: [{}])", self.source, self.topic)?;
        writeln!(f, "      --> {}", self.processor)?;
        writeln!(
            f,
            "    Processor: {} (stores: [{}])",
            self.processor, self.store
        )?;
        writeln!(f, "      --> none")?;
        writeln!(f, "      <-- {}", self.source)
    }
}

/// A description of a topology: `Display` prints Kafka's `TopologyDescription` text;
/// [`TopologyDescription::to_dot`] gives Graphviz.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyDescription {
    /// The sub-topologies.
    pub subtopologies: Vec<SubtopologyDescription>,
    /// The global stores.
    pub global_stores: Vec<GlobalStoreDescription>,
}

impl fmt::Display for TopologyDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Topologies:")?;
        // Sub-topologies and global stores by id, as Kafka interleaves them.
        let mut globals = self.global_stores.iter().peekable();
        for s in &self.subtopologies {
            while let Some(g) = globals.next_if(|g| g.id < s.id) {
                write!(f, "{g}")?;
            }
            writeln!(f, "   Sub-topology: {}", s.id)?;
            for n in &s.nodes {
                match &n.kind {
                    NodeDescriptionKind::Source(t) => writeln!(f, "    Source: {} ({t})", n.name)?,
                    NodeDescriptionKind::Processor(st) => {
                        writeln!(f, "    Processor: {} (stores: [{}])", n.name, st.join(", "))?
                    }
                    NodeDescriptionKind::Sink(t) if t.is_empty() => {
                        writeln!(f, "    Sink: {} (extractor: dynamic)", n.name)?
                    }
                    NodeDescriptionKind::Sink(t) => {
                        writeln!(f, "    Sink: {} (topic: {t})", n.name)?
                    }
                }
                if !n.successors.is_empty() {
                    writeln!(f, "      --> {}", n.successors.join(", "))?;
                } else if !matches!(n.kind, NodeDescriptionKind::Sink(_)) {
                    writeln!(f, "      --> none")?;
                }
                if !n.predecessors.is_empty() {
                    writeln!(f, "      <-- {}", n.predecessors.join(", "))?;
                }
            }
            writeln!(f)?;
        }
        for g in globals {
            write!(f, "{g}")?;
        }
        Ok(())
    }
}

fn dot_id(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl TopologyDescription {
    /// The topology as a Graphviz `digraph`: one cluster per sub-topology, topics as
    /// ellipses, processors as boxes, stores as cylinders.
    pub fn to_dot(&self) -> String {
        let mut s = String::from("digraph topology {\n  rankdir=LR;\n  node [shape=box];\n");
        let mut topics = BTreeSet::new();
        for sub in &self.subtopologies {
            let _ = writeln!(
                s,
                "  subgraph cluster_{} {{\n    label=\"Sub-topology {}\";",
                sub.id, sub.id
            );
            for n in &sub.nodes {
                let _ = writeln!(s, "    {};", dot_id(&n.name));
            }
            s.push_str("  }\n");
            for n in &sub.nodes {
                for c in &n.successors {
                    let _ = writeln!(s, "  {} -> {};", dot_id(&n.name), dot_id(c));
                }
                match &n.kind {
                    NodeDescriptionKind::Source(t) => {
                        let list = t
                            .trim_start_matches("topics: [")
                            .trim_start_matches("topicPattern: ")
                            .trim_end_matches(']');
                        for topic in list.split(", ").filter(|t| !t.is_empty()) {
                            topics.insert(topic.to_owned());
                            let _ = writeln!(
                                s,
                                "  {} -> {};",
                                dot_id(&format!("topic:{topic}")),
                                dot_id(&n.name)
                            );
                        }
                    }
                    NodeDescriptionKind::Sink(t) if !t.is_empty() => {
                        topics.insert(t.clone());
                        let _ = writeln!(
                            s,
                            "  {} -> {};",
                            dot_id(&n.name),
                            dot_id(&format!("topic:{t}"))
                        );
                    }
                    NodeDescriptionKind::Processor(stores) => {
                        for st in stores {
                            let _ = writeln!(
                                s,
                                "  {} [shape=cylinder, label={}];\n  {} -> {} [dir=both, style=dashed];",
                                dot_id(&format!("store:{st}")),
                                dot_id(st),
                                dot_id(&n.name),
                                dot_id(&format!("store:{st}"))
                            );
                        }
                    }
                    NodeDescriptionKind::Sink(_) => {}
                }
            }
        }
        for g in &self.global_stores {
            let _ = writeln!(
                s,
                "  subgraph cluster_{} {{\n    label=\"Sub-topology {} (global store)\";\n    {};\n    {};\n  }}",
                g.id,
                g.id,
                dot_id(&g.source),
                dot_id(&g.processor)
            );
            topics.insert(g.topic.clone());
            let _ = writeln!(
                s,
                "  {} -> {};\n  {} -> {};\n  {} [shape=cylinder, label={}];\n  {} -> {} [dir=both, style=dashed];",
                dot_id(&format!("topic:{}", g.topic)),
                dot_id(&g.source),
                dot_id(&g.source),
                dot_id(&g.processor),
                dot_id(&format!("store:{}", g.store)),
                dot_id(&g.store),
                dot_id(&g.processor),
                dot_id(&format!("store:{}", g.store))
            );
        }
        for t in topics {
            let _ = writeln!(
                s,
                "  {} [shape=ellipse, label={}];",
                dot_id(&format!("topic:{t}")),
                dot_id(&t)
            );
        }
        s.push_str("}\n");
        s
    }
}

/// How Kafka's `InternalTopologyBuilder#describeSubtopology` links the nodes of one
/// sub-topology, simulated step by step because its order depends on the steps: the nodes
/// are visited in `HashMap` order (`java_hash_order`); for each, its predecessors (in the
/// order they were given) are connected — the predecessor goes into the node's
/// predecessor `TreeSet` and the node into the predecessor's successor `TreeSet`, both
/// ordered by `NodeComparator` (larger sub-graph first, then name) *with the sizes of that
/// moment* — and then the node's size is added to the predecessor and, recursively, to
/// the predecessor's predecessors linked so far (`updateSize`: paths are counted). A
/// `TreeSet` does not reorder when sizes change later, so its iteration order is the one
/// its insertions made (`JavaTreeSet`).
struct KafkaLinks {
    size: BTreeMap<usize, i64>,
    names: BTreeMap<usize, String>,
    preds: BTreeMap<usize, JavaTreeSet>,
    succs: BTreeMap<usize, JavaTreeSet>,
}

impl KafkaLinks {
    fn of(t: &Topology, members: &[usize]) -> Self {
        let mut links = KafkaLinks {
            size: members.iter().map(|&i| (i, 1)).collect(),
            names: members
                .iter()
                .map(|&i| (i, t.nodes[i].name.clone()))
                .collect(),
            preds: members
                .iter()
                .map(|&i| (i, JavaTreeSet::default()))
                .collect(),
            succs: members
                .iter()
                .map(|&i| (i, JavaTreeSet::default()))
                .collect(),
        };
        for node in java_hash_order(t, members) {
            for &pred in &t.nodes[node].parents {
                if !links.size.contains_key(&pred) {
                    continue;
                }
                let mut set = links.preds.remove(&node).unwrap_or_default();
                set.insert(pred, |a, b| links.compare(a, b));
                links.preds.insert(node, set);
                let mut set = links.succs.remove(&pred).unwrap_or_default();
                set.insert(node, |a, b| links.compare(a, b));
                links.succs.insert(pred, set);
                let delta = links.size.get(&node).copied().unwrap_or(1);
                links.update_size(pred, delta);
            }
        }
        links
    }

    fn update_size(&mut self, node: usize, delta: i64) {
        if let Some(s) = self.size.get_mut(&node) {
            *s += delta;
        }
        let preds = self
            .preds
            .get(&node)
            .map(JavaTreeSet::in_order)
            .unwrap_or_default();
        for p in preds {
            self.update_size(p, delta);
        }
    }

    /// Kafka's `NodeComparator` with the current sizes.
    fn compare(&self, a: usize, b: usize) -> std::cmp::Ordering {
        if a == b {
            return std::cmp::Ordering::Equal;
        }
        let size = |i| self.size.get(&i).copied().unwrap_or(1);
        size(b)
            .cmp(&size(a))
            .then_with(|| self.names.get(&a).cmp(&self.names.get(&b)))
    }

    fn successors(&self, node: usize) -> Vec<usize> {
        self.succs
            .get(&node)
            .map(JavaTreeSet::in_order)
            .unwrap_or_default()
    }

    fn predecessors(&self, node: usize) -> Vec<usize> {
        self.preds
            .get(&node)
            .map(JavaTreeSet::in_order)
            .unwrap_or_default()
    }
}

/// The order in which Java iterates a `HashSet<String>` / `HashMap<String, _>` (default
/// capacity 16, load factor 0.75) filled with the members' names in creation order (Kafka's
/// `nodeFactories` is a `LinkedHashMap`): by bucket (`(h ^ h >>> 16) & (capacity - 1)` of
/// `String.hashCode`), then insertion order within a bucket (resizes keep it).
fn java_hash_order(t: &Topology, members: &[usize]) -> Vec<usize> {
    let mut capacity: usize = 16;
    while members.len() * 4 > capacity * 3 {
        capacity *= 2;
    }
    let mut order: Vec<usize> = members.to_vec();
    order.sort_unstable();
    order.sort_by_key(|&i| {
        let h = t.nodes[i]
            .name
            .encode_utf16()
            .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
        let spread = (h ^ ((h as u32) >> 16) as i32) as u32;
        spread as usize & (capacity - 1)
    });
    order
}

/// A Java `TreeSet` (a `TreeMap`'s red-black tree) of node indexes: insertion walks from
/// the root with the comparator of the moment and rebalances as `TreeMap` does; iteration
/// is in tree order, whatever the comparator says later.
#[derive(Default)]
struct JavaTreeSet {
    root: Option<usize>,
    nodes: Vec<TreeNode>,
}

/// A red-black tree node: (value, left, right, parent, red).
type TreeNode = (usize, Option<usize>, Option<usize>, Option<usize>, bool);

impl JavaTreeSet {
    fn insert(&mut self, value: usize, cmp: impl Fn(usize, usize) -> std::cmp::Ordering) {
        let Some(mut t) = self.root else {
            self.nodes.push((value, None, None, None, false));
            self.root = Some(0);
            return;
        };
        let (parent, left) = loop {
            match cmp(value, self.nodes[t].0) {
                std::cmp::Ordering::Less => match self.nodes[t].1 {
                    Some(l) => t = l,
                    None => break (t, true),
                },
                std::cmp::Ordering::Greater => match self.nodes[t].2 {
                    Some(r) => t = r,
                    None => break (t, false),
                },
                std::cmp::Ordering::Equal => return,
            }
        };
        let x = self.nodes.len();
        self.nodes.push((value, None, None, Some(parent), true));
        if left {
            self.nodes[parent].1 = Some(x);
        } else {
            self.nodes[parent].2 = Some(x);
        }
        self.fix_after_insertion(x);
    }

    fn parent(&self, x: Option<usize>) -> Option<usize> {
        x.and_then(|x| self.nodes[x].3)
    }
    fn left(&self, x: Option<usize>) -> Option<usize> {
        x.and_then(|x| self.nodes[x].1)
    }
    fn right(&self, x: Option<usize>) -> Option<usize> {
        x.and_then(|x| self.nodes[x].2)
    }
    fn red(&self, x: Option<usize>) -> bool {
        x.is_some_and(|x| self.nodes[x].4)
    }
    fn set_red(&mut self, x: Option<usize>, red: bool) {
        if let Some(x) = x {
            self.nodes[x].4 = red;
        }
    }

    /// `TreeMap.fixAfterInsertion`.
    fn fix_after_insertion(&mut self, x: usize) {
        let mut x = Some(x);
        while x.is_some() && x != self.root && self.red(self.parent(x)) {
            let p = self.parent(x);
            let g = self.parent(p);
            if p == self.left(g) {
                let y = self.right(g);
                if self.red(y) {
                    self.set_red(p, false);
                    self.set_red(y, false);
                    self.set_red(g, true);
                    x = g;
                } else {
                    if x == self.right(p) {
                        x = p;
                        self.rotate_left(x);
                    }
                    let p = self.parent(x);
                    let g = self.parent(p);
                    self.set_red(p, false);
                    self.set_red(g, true);
                    self.rotate_right(g);
                }
            } else {
                let y = self.left(g);
                if self.red(y) {
                    self.set_red(p, false);
                    self.set_red(y, false);
                    self.set_red(g, true);
                    x = g;
                } else {
                    if x == self.left(p) {
                        x = p;
                        self.rotate_right(x);
                    }
                    let p = self.parent(x);
                    let g = self.parent(p);
                    self.set_red(p, false);
                    self.set_red(g, true);
                    self.rotate_left(g);
                }
            }
        }
        let root = self.root;
        self.set_red(root, false);
    }

    fn rotate_left(&mut self, p: Option<usize>) {
        let Some(p) = p else { return };
        let Some(r) = self.nodes[p].2 else { return };
        self.nodes[p].2 = self.nodes[r].1;
        if let Some(rl) = self.nodes[r].1 {
            self.nodes[rl].3 = Some(p);
        }
        self.nodes[r].3 = self.nodes[p].3;
        match self.nodes[p].3 {
            None => self.root = Some(r),
            Some(pp) if self.nodes[pp].1 == Some(p) => self.nodes[pp].1 = Some(r),
            Some(pp) => self.nodes[pp].2 = Some(r),
        }
        self.nodes[r].1 = Some(p);
        self.nodes[p].3 = Some(r);
    }

    fn rotate_right(&mut self, p: Option<usize>) {
        let Some(p) = p else { return };
        let Some(l) = self.nodes[p].1 else { return };
        self.nodes[p].1 = self.nodes[l].2;
        if let Some(lr) = self.nodes[l].2 {
            self.nodes[lr].3 = Some(p);
        }
        self.nodes[l].3 = self.nodes[p].3;
        match self.nodes[p].3 {
            None => self.root = Some(l),
            Some(pp) if self.nodes[pp].2 == Some(p) => self.nodes[pp].2 = Some(l),
            Some(pp) => self.nodes[pp].1 = Some(l),
        }
        self.nodes[l].2 = Some(p);
        self.nodes[p].3 = Some(l);
    }

    fn in_order(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack = Vec::new();
        let mut cur = self.root;
        while cur.is_some() || !stack.is_empty() {
            while let Some(c) = cur {
                stack.push(c);
                cur = self.nodes[c].1;
            }
            if let Some(c) = stack.pop() {
                out.push(self.nodes[c].0);
                cur = self.nodes[c].2;
            }
        }
        out
    }
}
