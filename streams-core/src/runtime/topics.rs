//! Topic preparation at start: pattern sources resolved, source topics checked,
//! repartition partition counts derived, co-partitioning checked, internal topics created
//! or checked.

use super::*;
use crate::client::InternalTopicKind;
use crate::store::StoreKind;

/// Resolves source topics, checks co-partitioning, sizes and creates internal topics.
pub(crate) fn prepare_topics(
    topology: &Topology,
    config: &StreamsConfig,
    cluster: &dyn Cluster,
) -> Result<Vec<ResolvedSubtopology>> {
    let app = &config.application_id;
    let subs = topology.subtopologies()?;
    let all_topics = cluster.topic_names()?;
    let mut resolved = Vec::new();
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    for sub in &subs {
        let mut inputs = BTreeMap::new();
        for &i in &sub.nodes {
            let node = &topology.nodes[i];
            if let NodeKind::Source { topics, .. } = &node.kind {
                let names: Vec<String> = match topics {
                    SourceTopics::Names(n) => n
                        .iter()
                        .map(|t| topology.physical_topic_name(app, t))
                        .collect(),
                    SourceTopics::Pattern(re) => all_topics
                        .iter()
                        .filter(|t| re.is_match(t) && !t.starts_with("__"))
                        .cloned()
                        .collect(),
                };
                for t in names {
                    if let Some(other) = claimed.insert(t.clone(), node.name.clone()) {
                        return Err(StreamsError::Topology(
                            crate::error::TopologyError::InvalidSource {
                                node: node.name.clone(),
                                reason: format!("topic `{t}` is also read by source `{other}`"),
                            },
                        ));
                    }
                    inputs.insert(t, i);
                }
            }
        }
        resolved.push(ResolvedSubtopology {
            sub: sub.clone(),
            inputs,
            partitions: 0,
        });
    }
    // Partition counts of repartition topics: fixed, or those of the sub-topology writing
    // to them (its own inputs' count), iterated until every count is known.
    let mut counts: BTreeMap<String, i32> = BTreeMap::new();
    for (name, t) in &topology.internal_topics {
        if let Some(n) = t.partitions {
            counts.insert(topology.physical_topic_name(app, name), n);
        }
    }
    for _round in 0..=subs.len() {
        for r in &resolved {
            let mut max = 0;
            let mut known = true;
            for t in r.inputs.keys() {
                let is_internal = topology
                    .internal_topics
                    .keys()
                    .any(|n| &topology.physical_topic_name(app, n) == t);
                match (counts.get(t), is_internal) {
                    (Some(&n), _) => max = max.max(n),
                    (None, true) => known = false,
                    (None, false) => match cluster.partitions(t)? {
                        Some(n) => {
                            counts.insert(t.clone(), n);
                            max = max.max(n);
                        }
                        None => return Err(StreamsError::MissingSourceTopic(t.clone())),
                    },
                }
            }
            if !known || max == 0 {
                continue;
            }
            for &i in &r.sub.nodes {
                if let NodeKind::Sink {
                    topic: SinkTopic::Fixed(t),
                    ..
                } = &topology.nodes[i].kind
                {
                    if topology.is_internal_topic(t) {
                        counts
                            .entry(topology.physical_topic_name(app, t))
                            .or_insert(max);
                    }
                }
            }
        }
    }
    // Kafka's `CopartitionedTopicsEnforcer`: the repartition topics a sub-topology reads
    // (a join after a key change) take the partition count of its other source topics
    // (which must agree, checked below), else the largest among them; a repartition topic
    // with a fixed count that disagrees is not co-partitioned.
    for r in &resolved {
        let is_internal = |t: &String| {
            topology
                .internal_topics
                .keys()
                .any(|n| &topology.physical_topic_name(app, n) == t)
        };
        let internal: Vec<&String> = r.inputs.keys().filter(|t| is_internal(t)).collect();
        let external: BTreeSet<i32> = r
            .inputs
            .keys()
            .filter(|t| !is_internal(t))
            .filter_map(|t| counts.get(t).copied())
            .collect();
        if internal.is_empty() || external.len() > 1 {
            continue;
        }
        let target = match external.first() {
            Some(&n) => n,
            None => match internal.iter().filter_map(|t| counts.get(*t)).max() {
                Some(&n) => n,
                None => continue,
            },
        };
        for t in internal {
            let fixed = topology
                .internal_topics
                .iter()
                .find(|(n, _)| &topology.physical_topic_name(app, n) == t)
                .and_then(|(_, spec)| spec.partitions);
            match fixed {
                Some(n) if n != target => {
                    return Err(StreamsError::NotCopartitioned {
                        subtopology: r.sub.id,
                        counts: r
                            .inputs
                            .keys()
                            .filter_map(|x| counts.get(x).map(|c| format!("{x}: {c}")))
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                _ => {
                    counts.insert(t.clone(), target);
                }
            }
        }
    }
    for r in &mut resolved {
        let mut per_topic = Vec::new();
        for t in r.inputs.keys() {
            let n = counts.get(t).copied().ok_or_else(|| StreamsError::InternalTopic {
                topic: t.clone(),
                reason: "its partition count cannot be derived (no upstream sub-topology with known inputs)".into(),
            })?;
            per_topic.push((t.clone(), n));
        }
        let distinct: BTreeSet<i32> = per_topic.iter().map(|(_, n)| *n).collect();
        if distinct.len() > 1 {
            return Err(StreamsError::NotCopartitioned {
                subtopology: r.sub.id,
                counts: per_topic
                    .iter()
                    .map(|(t, n)| format!("{t}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        r.partitions = distinct.into_iter().next().unwrap_or(0);
    }
    // Create repartition topics and changelogs (or check the existing ones).
    let mut wanted = Vec::new();
    for name in topology.internal_topics.keys() {
        let physical = topology.physical_topic_name(app, name);
        let Some(&n) = counts.get(&physical) else {
            continue;
        };
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".to_owned(), "delete".to_owned());
        configs.insert("retention.ms".to_owned(), "-1".to_owned());
        configs.insert("segment.bytes".to_owned(), (50 << 20).to_string());
        wanted.push(InternalTopicSpec {
            name: physical,
            kind: InternalTopicKind::Repartition,
            partitions: n,
            replication_factor: config.replication_factor,
            configs,
        });
    }
    for r in &resolved {
        for store in &r.sub.stores {
            let Some(spec) = topology.stores.get(store) else {
                continue;
            };
            if !spec.is_logging() {
                continue;
            }
            let kind = match spec.kind() {
                StoreKind::Window { .. }
                | StoreKind::TimestampedWindow { .. }
                | StoreKind::Session { .. } => InternalTopicKind::WindowedChangelog,
                StoreKind::KeyValue
                | StoreKind::TimestampedKeyValue
                | StoreKind::TimeOrderedBuffer => InternalTopicKind::Changelog,
            };
            wanted.push(InternalTopicSpec {
                name: crate::names::changelog_topic(app, store),
                kind,
                partitions: r.partitions,
                replication_factor: config.replication_factor,
                configs: spec.changelog_config(),
            });
        }
    }
    for spec in wanted {
        match cluster.partitions(&spec.name)? {
            Some(n) if n != spec.partitions => {
                return Err(StreamsError::InternalTopic {
                    topic: spec.name,
                    reason: format!(
                        "it has {n} partitions, the topology needs {}",
                        spec.partitions
                    ),
                })
            }
            Some(_) => validate_cleanup_policy(cluster, &spec)?,
            None => {
                tracing::info!(topic = %spec.name, partitions = spec.partitions, "creating internal topic");
                cluster.create_topic(&spec)?;
            }
        }
    }
    Ok(resolved)
}

/// Checks an existing internal topic's `cleanup.policy` against its kind (see
/// [`InternalTopicKind::cleanup_policy_violation`]); skipped when the cluster cannot
/// describe topic configs.
fn validate_cleanup_policy(cluster: &dyn Cluster, spec: &InternalTopicSpec) -> Result<()> {
    let Some(configs) = cluster.topic_configs(&spec.name)? else {
        return Ok(());
    };
    // Kafka's default when a broker leaves it out.
    let policy = configs
        .get("cleanup.policy")
        .map_or("delete", String::as_str);
    match spec.kind.cleanup_policy_violation(policy) {
        None => Ok(()),
        Some(forbidden) => Err(StreamsError::InternalTopicCleanupPolicy {
            topic: spec.name.clone(),
            kind: spec.kind,
            policy: policy.to_owned(),
            forbidden,
        }),
    }
}
