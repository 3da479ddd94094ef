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
        // Kafka's `NodeComparator`: the size of the sub-graph a node roots (itself plus
        // its successors' sizes, so paths are counted), larger first, then by name. Nodes,
        // successors and predecessors are listed in that order.
        let mut size = vec![0usize; self.nodes.len()];
        for i in (0..self.nodes.len()).rev() {
            // Children are always added after their parents.
            size[i] = 1 + self.nodes[i]
                .children
                .iter()
                .map(|&c| size[c])
                .sum::<usize>();
        }
        let order = |a: &usize, b: &usize| {
            size[*b]
                .cmp(&size[*a])
                .then_with(|| self.nodes[*a].name.cmp(&self.nodes[*b].name))
        };
        let sorted = |idx: &[usize]| {
            let mut v = idx.to_vec();
            v.sort_by(order);
            v.into_iter()
                .map(|c| self.nodes[c].name.clone())
                .collect::<Vec<_>>()
        };
        for s in &subs {
            let mut nodes = Vec::new();
            let mut members = s.nodes.clone();
            members.sort_by(order);
            for &i in &members {
                let n = &self.nodes[i];
                let kind = match &n.kind {
                    NodeKind::Source { topics, .. } => NodeDescriptionKind::Source(match topics {
                        SourceTopics::Names(t) => format!("topics: [{}]", t.join(", ")),
                        SourceTopics::Pattern(p) => format!("topicPattern: {}", strip_anchors(p)),
                    }),
                    NodeKind::Processor { stores, .. } => {
                        NodeDescriptionKind::Processor(stores.clone())
                    }
                    NodeKind::Sink { topic, .. } => NodeDescriptionKind::Sink(match topic {
                        SinkTopic::Fixed(t) => t.clone(),
                        SinkTopic::Dynamic => String::new(),
                    }),
                };
                nodes.push(NodeDescription {
                    name: n.name.clone(),
                    kind,
                    successors: sorted(&n.children),
                    predecessors: sorted(&n.parents),
                });
            }
            // Kafka's `NodeComparator`: by sub-tree size (1 + the sizes of the children, a
            // node reached by two paths counted twice), largest first, then by name.
            let mut sizes: BTreeMap<usize, u64> = BTreeMap::new();
            fn size(t: &Topology, i: usize, memo: &mut BTreeMap<usize, u64>) -> u64 {
                if let Some(&s) = memo.get(&i) {
                    return s;
                }
                let s = 1 + t.nodes[i]
                    .children
                    .iter()
                    .map(|&c| size(t, c, memo))
                    .sum::<u64>();
                memo.insert(i, s);
                s
            }
            // (Paired with `members`, the order `nodes` was built in.)
            let mut keyed: Vec<(u64, NodeDescription)> = members
                .iter()
                .map(|&i| size(self, i, &mut sizes))
                .zip(nodes)
                .collect();
            keyed.sort_by(|(sa, a), (sb, b)| sb.cmp(sa).then_with(|| a.name.cmp(&b.name)));
            let nodes = keyed.into_iter().map(|(_, n)| n).collect();
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
