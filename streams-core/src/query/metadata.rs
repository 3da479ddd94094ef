//! Where a store's keys live (Kafka's `StreamsMetadataState`, `StreamsMetadata`,
//! `KeyQueryMetadata` and `HostInfo`): computed from host → partitions maps of the latest
//! assignment and from the topology (which stores live on which source topics).

use std::collections::{BTreeMap, BTreeSet};

use state_store::TopicPartition;

use crate::assignment::{HostInfo, HostPartitions};
use crate::error::Result;

/// One application instance as the assignment describes it (Kafka's `StreamsMetadata`):
/// its endpoint, the stores of its active and standby tasks, and their input partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamsMetadata {
    /// The instance's `application.server`.
    pub host_info: HostInfo,
    /// Stores of its active tasks (and every global store).
    pub state_store_names: BTreeSet<String>,
    /// Input partitions of its active tasks.
    pub topic_partitions: BTreeSet<TopicPartition>,
    /// Stores of its standby tasks.
    pub standby_state_store_names: BTreeSet<String>,
    /// Input partitions of its standby tasks.
    pub standby_topic_partitions: BTreeSet<TopicPartition>,
}

/// Where one key of one store lives (Kafka's `KeyQueryMetadata`): the instance with the
/// active task, the instances with standby copies, and the partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyQueryMetadata {
    /// The instance whose active task holds the key ([`HostInfo::unavailable`] if none
    /// is known).
    pub active_host: HostInfo,
    /// Instances with a standby copy of the key's partition.
    pub standby_hosts: BTreeSet<HostInfo>,
    /// The key's partition (-1 when not available, or for a global store).
    pub partition: i32,
}

impl KeyQueryMetadata {
    /// Kafka's `KeyQueryMetadata.NOT_AVAILABLE`: no assignment known yet (not started, or
    /// no rebalance completed).
    pub fn not_available() -> Self {
        KeyQueryMetadata {
            active_host: HostInfo::unavailable(),
            standby_hosts: BTreeSet::new(),
            partition: -1,
        }
    }

    /// False for [`KeyQueryMetadata::not_available`] and whenever no active host is known.
    pub fn is_available(&self) -> bool {
        self.active_host.is_available()
    }
}

/// The stores of a topology and the (physical) source topics of the sub-topology each
/// lives in: a key of a store is on the partition its serialized key hashes to over
/// those topics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StoreTopics {
    /// Store → source topics of its sub-topology (repartition topics included).
    pub(crate) sources: BTreeMap<String, BTreeSet<String>>,
    /// Global stores: on every instance.
    pub(crate) globals: BTreeSet<String>,
}

/// Kafka's `StreamsMetadataState`: the metadata of every instance of the application,
/// rebuilt by [`StreamsMetadataState::on_change`] after each rebalance from the
/// assignment's host → partitions maps (active and standby) and the partition counts of
/// the source topics.
#[derive(Debug, Clone)]
pub(crate) struct StreamsMetadataState {
    this_host: HostInfo,
    topics: StoreTopics,
    /// Partition count per source topic; empty until the first `on_change`.
    partitions_by_topic: BTreeMap<String, i32>,
    all: Vec<StreamsMetadata>,
    local: Option<StreamsMetadata>,
}

impl StreamsMetadataState {
    /// Nothing known yet; `this_host` is this instance's `application.server`
    /// ([`HostInfo::unavailable`] if not configured).
    pub(crate) fn new(this_host: HostInfo, topics: StoreTopics) -> Self {
        StreamsMetadataState {
            this_host,
            topics,
            partitions_by_topic: BTreeMap::new(),
            all: Vec::new(),
            local: None,
        }
    }

    /// Replaces the topology facts (known once the application resolved its topics).
    pub(crate) fn set_topics(&mut self, topics: StoreTopics) {
        self.topics = topics;
    }

    /// Rebuilds the metadata from a new assignment: `active` and `standby` host →
    /// partitions maps, and the partition count of every source topic.
    pub(crate) fn on_change(
        &mut self,
        active: &HostPartitions,
        standby: &HostPartitions,
        partitions_by_topic: BTreeMap<String, i32>,
    ) {
        self.partitions_by_topic = partitions_by_topic;
        let empty = BTreeSet::new();
        if active.is_empty() && standby.is_empty() {
            self.all = Vec::new();
            self.local = Some(StreamsMetadata {
                host_info: self.this_host.clone(),
                state_store_names: BTreeSet::new(),
                topic_partitions: BTreeSet::new(),
                standby_state_store_names: BTreeSet::new(),
                standby_topic_partitions: BTreeSet::new(),
            });
            return;
        }
        let hosts: BTreeSet<&HostInfo> = active.keys().chain(standby.keys()).collect();
        let mut all = Vec::with_capacity(hosts.len());
        let mut local = None;
        for host in hosts {
            let active_partitions = active.get(host).unwrap_or(&empty);
            let standby_partitions = standby.get(host).unwrap_or(&empty);
            let mut stores = self.stores_on(active_partitions);
            stores.extend(self.topics.globals.iter().cloned());
            let metadata = StreamsMetadata {
                host_info: host.clone(),
                state_store_names: stores,
                topic_partitions: active_partitions.clone(),
                standby_state_store_names: self.stores_on(standby_partitions),
                standby_topic_partitions: standby_partitions.clone(),
            };
            if *host == self.this_host {
                local = Some(metadata.clone());
            }
            all.push(metadata);
        }
        self.all = all;
        self.local = local;
    }

    /// Stores with a source topic among `partitions`' topics.
    fn stores_on(&self, partitions: &BTreeSet<TopicPartition>) -> BTreeSet<String> {
        self.topics
            .sources
            .iter()
            .filter(|(_, topics)| partitions.iter().any(|tp| topics.contains(&tp.topic)))
            .map(|(store, _)| store.clone())
            .collect()
    }

    /// Kafka's `isInitialized`: an assignment was seen.
    fn is_initialized(&self) -> bool {
        !self.partitions_by_topic.is_empty() && self.local.is_some()
    }

    /// Every instance, sorted by host and port (empty before the first assignment).
    pub(crate) fn all_metadata(&self) -> Vec<StreamsMetadata> {
        self.all.clone()
    }

    /// This instance (None before the first assignment, or when `application.server`
    /// is not configured and the assignment names other hosts only).
    pub(crate) fn local_metadata(&self) -> Option<StreamsMetadata> {
        self.local.clone()
    }

    /// True if the topology has a store of this name (global stores included).
    pub(crate) fn has_store(&self, store: &str) -> bool {
        self.topics.sources.contains_key(store) || self.topics.globals.contains(store)
    }

    /// The instances with an active or standby task of `store` (every instance for a
    /// global store). Empty before the first assignment or for an unknown store.
    pub(crate) fn all_metadata_for_store(&self, store: &str) -> Vec<StreamsMetadata> {
        if !self.is_initialized() {
            return Vec::new();
        }
        if self.topics.globals.contains(store) {
            return self.all.clone();
        }
        self.all
            .iter()
            .filter(|m| {
                m.state_store_names.contains(store) || m.standby_state_store_names.contains(store)
            })
            .cloned()
            .collect()
    }

    /// The source topics of `store` and the partition count keys are hashed over (the
    /// largest among them, as Kafka's `SourceTopicsInfo`), and the topic with that count.
    pub(crate) fn source_topics_info(&self, store: &str) -> Option<(&BTreeSet<String>, &str, i32)> {
        let topics = self.topics.sources.get(store)?;
        let mut best: Option<(&str, i32)> = None;
        for t in topics {
            let n = self.partitions_by_topic.get(t).copied().unwrap_or(0);
            if best.is_none_or(|(_, m)| n > m) {
                best = Some((t, n));
            }
        }
        best.map(|(t, n)| (topics, t, n))
    }

    /// Where the key whose partition is `partition` of `store` lives (Kafka's
    /// `keyQueryMetadataForKey` once the partitioner ran): the instance whose active
    /// partitions include that partition of one of the store's source topics, and those
    /// with it as standby. `None` for a store the topology does not have;
    /// [`KeyQueryMetadata::not_available`] before the first assignment.
    pub(crate) fn key_query_metadata_for_partition(
        &self,
        store: &str,
        partition: impl FnOnce(&str, i32) -> Result<i32>,
    ) -> Result<Option<KeyQueryMetadata>> {
        if !self.has_store(store) {
            return Ok(None);
        }
        if !self.is_initialized() {
            return Ok(Some(KeyQueryMetadata::not_available()));
        }
        if self.topics.globals.contains(store) {
            // On every instance: this one if it has an endpoint, else the first.
            let host = if self.this_host.is_available() {
                Some(self.this_host.clone())
            } else {
                self.all.first().map(|m| m.host_info.clone())
            };
            return Ok(Some(KeyQueryMetadata {
                active_host: host.unwrap_or_else(HostInfo::unavailable),
                standby_hosts: BTreeSet::new(),
                partition: -1,
            }));
        }
        let Some((topics, topic, count)) = self.source_topics_info(store) else {
            return Ok(None);
        };
        if count <= 0 {
            return Ok(Some(KeyQueryMetadata::not_available()));
        }
        let partition = partition(topic, count)?;
        let matching: BTreeSet<TopicPartition> = topics
            .iter()
            .map(|t| TopicPartition::new(t.clone(), partition))
            .collect();
        let mut result = KeyQueryMetadata {
            active_host: HostInfo::unavailable(),
            standby_hosts: BTreeSet::new(),
            partition,
        };
        for m in &self.all {
            if m.state_store_names.contains(store)
                && m.topic_partitions.iter().any(|tp| matching.contains(tp))
            {
                result.active_host = m.host_info.clone();
            }
            if m.standby_state_store_names.contains(store)
                && m.standby_topic_partitions
                    .iter()
                    .any(|tp| matching.contains(tp))
            {
                result.standby_hosts.insert(m.host_info.clone());
            }
        }
        Ok(Some(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> HostInfo {
        s.parse().unwrap()
    }

    fn tps(list: &[(&str, i32)]) -> BTreeSet<TopicPartition> {
        list.iter()
            .map(|(t, p)| TopicPartition::new(*t, *p))
            .collect()
    }

    /// `counts` on `words` (2 partitions), `windowed` on `app-rekey-repartition` and
    /// `clicks` (4 partitions), a global `regions`.
    fn topics() -> StoreTopics {
        StoreTopics {
            sources: BTreeMap::from([
                ("counts".to_owned(), BTreeSet::from(["words".to_owned()])),
                (
                    "windowed".to_owned(),
                    BTreeSet::from(["app-rekey-repartition".to_owned(), "clicks".to_owned()]),
                ),
            ]),
            globals: BTreeSet::from(["regions".to_owned()]),
        }
    }

    fn counts() -> BTreeMap<String, i32> {
        BTreeMap::from([
            ("words".to_owned(), 2),
            ("clicks".to_owned(), 4),
            ("app-rekey-repartition".to_owned(), 4),
        ])
    }

    /// a: words-0, clicks-0/1 (+ repartition 0/1), standby words-1;
    /// b: words-1, clicks-2/3 (+ repartition 2/3), standby words-0 and clicks-0.
    fn two_hosts() -> StreamsMetadataState {
        let mut state = StreamsMetadataState::new(host("a:1"), topics());
        let active = BTreeMap::from([
            (
                host("a:1"),
                tps(&[
                    ("words", 0),
                    ("clicks", 0),
                    ("clicks", 1),
                    ("app-rekey-repartition", 0),
                    ("app-rekey-repartition", 1),
                ]),
            ),
            (
                host("b:2"),
                tps(&[
                    ("words", 1),
                    ("clicks", 2),
                    ("clicks", 3),
                    ("app-rekey-repartition", 2),
                    ("app-rekey-repartition", 3),
                ]),
            ),
        ]);
        let standby = BTreeMap::from([
            (host("a:1"), tps(&[("words", 1)])),
            (host("b:2"), tps(&[("words", 0), ("clicks", 0)])),
        ]);
        state.on_change(&active, &standby, counts());
        state
    }

    #[test]
    fn host_info_parses_host_port_and_refuses_the_rest() {
        assert_eq!(host("example.com:80"), HostInfo::new("example.com", 80));
        assert_eq!(host("[fe80::1]:443").host, "fe80::1");
        assert_eq!(host("[fe80::1]:443").to_string(), "[fe80::1]:443");
        for bad in ["", "nohost", ":80", "h:", "h:-1", "h:65536", "h:x"] {
            assert!(HostInfo::parse(bad).is_err(), "{bad}");
        }
        assert!(host("h:0").is_available());
        assert!(!HostInfo::unavailable().is_available());
    }

    #[test]
    fn before_any_assignment_nothing_is_known() {
        let state = StreamsMetadataState::new(host("a:1"), topics());
        assert!(state.all_metadata().is_empty());
        assert!(state.local_metadata().is_none());
        assert!(state.all_metadata_for_store("counts").is_empty());
        let md = state
            .key_query_metadata_for_partition("counts", |_, _| Ok(0))
            .unwrap();
        assert_eq!(md, Some(KeyQueryMetadata::not_available()));
        assert!(!md.unwrap().is_available());
    }

    #[test]
    fn metadata_lists_every_host_with_its_stores_and_partitions() {
        let state = two_hosts();
        let all = state.all_metadata();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].host_info, host("a:1"));
        assert_eq!(
            all[0].state_store_names,
            BTreeSet::from(["counts".into(), "windowed".into(), "regions".into()])
        );
        assert_eq!(
            all[0].standby_state_store_names,
            BTreeSet::from(["counts".into()])
        );
        assert_eq!(all[0].standby_topic_partitions, tps(&[("words", 1)]));
        assert_eq!(
            all[1].standby_state_store_names,
            BTreeSet::from(["counts".into(), "windowed".into()])
        );
        assert_eq!(state.local_metadata(), Some(all[0].clone()));
    }

    #[test]
    fn metadata_for_a_store_names_hosts_with_it_active_or_standby() {
        let mut state = StreamsMetadataState::new(host("a:1"), topics());
        // b holds nothing of `windowed`, c only a standby of it.
        let active = BTreeMap::from([
            (host("a:1"), tps(&[("words", 0), ("clicks", 0)])),
            (host("b:2"), tps(&[("words", 1)])),
        ]);
        let standby = BTreeMap::from([(host("c:3"), tps(&[("clicks", 0)]))]);
        state.on_change(&active, &standby, counts());
        let hosts = |store: &str| -> Vec<HostInfo> {
            state
                .all_metadata_for_store(store)
                .into_iter()
                .map(|m| m.host_info)
                .collect()
        };
        assert_eq!(hosts("counts"), vec![host("a:1"), host("b:2")]);
        assert_eq!(hosts("windowed"), vec![host("a:1"), host("c:3")]);
        assert_eq!(hosts("regions").len(), 3, "global stores are everywhere");
        assert!(hosts("nope").is_empty());
    }

    #[test]
    fn key_metadata_finds_the_active_and_standby_hosts_of_the_keys_partition() {
        let state = two_hosts();
        for (partition, active, standby) in [(0, "a:1", vec!["b:2"]), (1, "b:2", vec!["a:1"])] {
            let md = state
                .key_query_metadata_for_partition("counts", |topic, n| {
                    assert_eq!((topic, n), ("words", 2));
                    Ok(partition)
                })
                .unwrap()
                .unwrap();
            assert_eq!(md.partition, partition);
            assert_eq!(md.active_host, host(active));
            assert_eq!(
                md.standby_hosts,
                standby.into_iter().map(host).collect::<BTreeSet<_>>()
            );
        }
        // Hashed over the topic with the most partitions (4: both have 4; the first).
        let md = state
            .key_query_metadata_for_partition("windowed", |topic, n| {
                assert_eq!((topic, n), ("app-rekey-repartition", 4));
                Ok(3)
            })
            .unwrap()
            .unwrap();
        assert_eq!((md.active_host, md.partition), (host("b:2"), 3));
        assert!(md.standby_hosts.is_empty());
        assert_eq!(
            state
                .key_query_metadata_for_partition("nope", |_, _| Ok(0))
                .unwrap(),
            None
        );
        let global = state
            .key_query_metadata_for_partition("regions", |_, _| Ok(0))
            .unwrap()
            .unwrap();
        assert_eq!((global.active_host, global.partition), (host("a:1"), -1));
    }

    #[test]
    fn a_partition_nobody_holds_has_no_active_host() {
        let mut state = StreamsMetadataState::new(host("a:1"), topics());
        let active = BTreeMap::from([(host("a:1"), tps(&[("words", 0)]))]);
        state.on_change(&active, &BTreeMap::new(), counts());
        let md = state
            .key_query_metadata_for_partition("counts", |_, _| Ok(1))
            .unwrap()
            .unwrap();
        assert_eq!(md.partition, 1);
        assert!(!md.is_available());
    }

    #[test]
    fn an_empty_assignment_leaves_an_empty_local_metadata() {
        let mut state = two_hosts();
        state.on_change(&BTreeMap::new(), &BTreeMap::new(), counts());
        assert!(state.all_metadata().is_empty());
        let local = state.local_metadata().unwrap();
        assert_eq!(local.host_info, host("a:1"));
        assert!(local.state_store_names.is_empty());
        let md = state
            .key_query_metadata_for_partition("counts", |_, _| Ok(1))
            .unwrap()
            .unwrap();
        assert_eq!((md.is_available(), md.partition), (false, 1));
    }
}
