//! The client layer: the narrow set of cluster operations the runtime needs, and its
//! implementation over the in-process [`Broker`].
//!
//! The runtime talks to a cluster only through [`Cluster`] (metadata, topic creation, a
//! changelog reader) and the per-thread [`ClusterProducer`] and [`ClusterConsumer`] it
//! hands out. Group membership is the consumer's business: it delivers partition
//! assignments as [`AssignmentEvent`]s computed by the runtime's [`PartitionAssignor`], as
//! Kafka's classic group protocol with a client-side assignor does. [`EmbeddedCluster`]
//! implements all of it in-process (an eager rebalance among the stream threads of the
//! process); an rdkafka-backed implementation plugs in behind the same traits.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_embedded::record::Record as RawRecord;
use broker_embedded::{
    decode_fetched_shared, Broker, BrokerError, IsolationLevel, NewTopic, OffsetAndMetadata,
    ProduceRecord,
};
use parking_lot::{Condvar, Mutex};
use state_store::{ChangelogRecord, TopicPartition};

use crate::error::{Result, StreamsError};
use crate::topology::OffsetReset;

/// A topic the runtime creates (changelog or repartition topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalTopicSpec {
    /// Physical name.
    pub name: String,
    /// Partitions.
    pub partitions: i32,
    /// Replication factor.
    pub replication_factor: i16,
    /// Topic configs (e.g. `cleanup.policy=compact`).
    pub configs: BTreeMap<String, String>,
}

/// A change of a consumer's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentEvent {
    /// These partitions are taken away: commit what was processed and close their tasks.
    Revoked(Vec<TopicPartition>),
    /// These partitions are now this consumer's.
    Assigned(Vec<TopicPartition>),
}

/// The result of a poll.
#[derive(Debug, Default)]
pub struct PollResult {
    /// Assignment changes, in order, to apply before the records.
    pub events: Vec<AssignmentEvent>,
    /// Fetched records by partition, in offset order.
    pub records: Vec<(TopicPartition, Vec<RawRecord>)>,
}

/// One member of a group as an assignor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Member id.
    pub id: String,
    /// Topics it subscribes to.
    pub topics: Vec<String>,
    /// Partitions it owned before this rebalance (for stickiness).
    pub owned: Vec<TopicPartition>,
}

/// Computes the partitions of each member, given the partition counts of the subscribed
/// topics (Kafka's client-side `ConsumerPartitionAssignor`).
pub trait PartitionAssignor: Send + Sync {
    /// Member id -> its partitions. Every partition of every subscribed topic should be
    /// assigned to exactly one member.
    fn assign(
        &self,
        members: &[GroupMember],
        partitions: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Vec<TopicPartition>>;
}

/// Produces records for one stream thread.
pub trait ClusterProducer: Send {
    /// Sends records to one partition (may return before they are acknowledged).
    fn send(&mut self, partition: &TopicPartition, records: Vec<ProduceRecord>) -> Result<()>;
    /// Waits until everything sent is acknowledged; returns the offset of the last record
    /// acknowledged per partition since the previous flush.
    fn flush(&mut self) -> Result<BTreeMap<TopicPartition, i64>>;
}

/// Consumes as one member of the application's group.
pub trait ClusterConsumer: Send {
    /// Joins the group subscribing to `topics` (with where to start without a committed
    /// offset). Assignments arrive through [`ClusterConsumer::poll`].
    fn subscribe(
        &mut self,
        topics: Vec<(String, OffsetReset)>,
        assignor: Arc<dyn PartitionAssignor>,
    ) -> Result<()>;
    /// Waits up to `timeout` for records of the assigned partitions (returns early on
    /// assignment changes).
    fn poll(&mut self, timeout: Duration, max_records: usize) -> Result<PollResult>;
    /// Stops fetching these partitions until resumed (their buffers are full).
    fn pause(&mut self, partitions: &[TopicPartition]);
    /// Fetches these partitions again.
    fn resume(&mut self, partitions: &[TopicPartition]);
    /// Commits the next offsets to read for the group.
    fn commit(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()>;
    /// Leaves the group.
    fn close(&mut self) -> Result<()>;
}

/// Reads changelog partitions for restoration.
pub trait ChangelogSource: Send {
    /// Log start and end offsets of a partition.
    fn offsets(&mut self, partition: &TopicPartition) -> Result<(i64, i64)>;
    /// Records from `from` on (possibly fewer than exist; empty at the end).
    fn read(&mut self, partition: &TopicPartition, from: i64) -> Result<Vec<ChangelogRecord>>;
}

/// What the runtime needs from a Kafka-protocol cluster.
pub trait Cluster: Send + Sync + 'static {
    /// Partition count of `topic`, or `None` if it does not exist.
    fn partitions(&self, topic: &str) -> Result<Option<i32>>;
    /// Names of all topics (for pattern subscriptions).
    fn topic_names(&self) -> Result<Vec<String>>;
    /// Creates a topic; an existing topic is not an error (the caller checks its partitions).
    fn create_topic(&self, spec: &InternalTopicSpec) -> Result<()>;
    /// A producer for one stream thread.
    fn producer(&self, client_id: &str) -> Result<Box<dyn ClusterProducer>>;
    /// A consumer in group `group` for one stream thread.
    fn consumer(&self, group: &str, client_id: &str) -> Result<Box<dyn ClusterConsumer>>;
    /// A reader of changelog partitions.
    fn changelog_source(&self) -> Result<Box<dyn ChangelogSource>>;
    /// The end offset (high watermark) of a partition.
    fn end_offset(&self, partition: &TopicPartition) -> Result<i64>;
    /// The offset committed by `group` for a partition, if any.
    fn committed_offset(&self, group: &str, partition: &TopicPartition) -> Result<Option<i64>>;
}

fn cluster_err(e: BrokerError) -> StreamsError {
    StreamsError::cluster(e)
}

fn to_broker_tp(tp: &TopicPartition) -> broker_embedded::TopicPartition {
    broker_embedded::TopicPartition::new(tp.topic.clone(), tp.partition)
}

/// The in-process cluster: a [`Broker`] handle plus an in-process group coordinator for the
/// stream threads of this process.
#[derive(Clone)]
pub struct EmbeddedCluster {
    broker: Broker,
    groups: Arc<Mutex<BTreeMap<String, Arc<EmbeddedGroup>>>>,
}

impl std::fmt::Debug for EmbeddedCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedCluster").finish_non_exhaustive()
    }
}

impl EmbeddedCluster {
    /// A cluster over `broker`.
    pub fn new(broker: Broker) -> Self {
        EmbeddedCluster {
            broker,
            groups: Arc::default(),
        }
    }

    /// The broker.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }
}

impl Cluster for EmbeddedCluster {
    fn partitions(&self, topic: &str) -> Result<Option<i32>> {
        if !self.broker.topic_exists(topic) {
            return Ok(None);
        }
        let n = self.broker.partition_count(topic).map_err(cluster_err)?;
        Ok(Some(i32::try_from(n).unwrap_or(i32::MAX)))
    }

    fn topic_names(&self) -> Result<Vec<String>> {
        Ok(self.broker.list_topics())
    }

    fn create_topic(&self, spec: &InternalTopicSpec) -> Result<()> {
        let mut new = NewTopic::new(
            spec.name.clone(),
            u32::try_from(spec.partitions.max(1)).unwrap_or(1),
        )
        .replication_factor(spec.replication_factor);
        for (k, v) in &spec.configs {
            new = new.config(k.clone(), v.clone());
        }
        match self.broker.create_topic(new) {
            Ok(_) | Err(BrokerError::TopicAlreadyExists(_)) => Ok(()),
            Err(e) => Err(cluster_err(e)),
        }
    }

    fn producer(&self, _client_id: &str) -> Result<Box<dyn ClusterProducer>> {
        Ok(Box::new(EmbeddedProducer {
            broker: self.broker.clone(),
            acked: BTreeMap::new(),
        }))
    }

    fn consumer(&self, group: &str, client_id: &str) -> Result<Box<dyn ClusterConsumer>> {
        let g = Arc::clone(
            self.groups
                .lock()
                .entry(group.to_owned())
                .or_insert_with(|| Arc::new(EmbeddedGroup::new(group))),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| StreamsError::Io {
                path: "tokio runtime".into(),
                source: e,
            })?;
        Ok(Box::new(EmbeddedConsumer {
            broker: self.broker.clone(),
            group: g,
            member: format!("{client_id}-{}", uuid_like()),
            topics: Vec::new(),
            generation: -1,
            assigned: Vec::new(),
            positions: BTreeMap::new(),
            joined: false,
            runtime,
            next_partition: 0,
            paused: BTreeSet::new(),
        }))
    }

    fn changelog_source(&self) -> Result<Box<dyn ChangelogSource>> {
        Ok(Box::new(EmbeddedChangelogSource {
            broker: self.broker.clone(),
        }))
    }

    fn end_offset(&self, tp: &TopicPartition) -> Result<i64> {
        Ok(self
            .broker
            .partition_offsets(&tp.topic, tp.partition)
            .map_err(cluster_err)?
            .high_watermark)
    }

    fn committed_offset(&self, group: &str, tp: &TopicPartition) -> Result<Option<i64>> {
        Ok(self
            .broker
            .committed_offset(group, &to_broker_tp(tp))
            .map(|o| o.offset))
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

struct EmbeddedProducer {
    broker: Broker,
    acked: BTreeMap<TopicPartition, i64>,
}

impl ClusterProducer for EmbeddedProducer {
    fn send(&mut self, tp: &TopicPartition, records: Vec<ProduceRecord>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let info = self
            .broker
            .produce(&tp.topic, tp.partition, &records)
            .map_err(|e| StreamsError::Cluster(format!("producing to {tp}: {e}")))?;
        let e = self.acked.entry(tp.clone()).or_insert(info.last_offset);
        *e = (*e).max(info.last_offset);
        Ok(())
    }

    fn flush(&mut self) -> Result<BTreeMap<TopicPartition, i64>> {
        Ok(std::mem::take(&mut self.acked))
    }
}

struct EmbeddedChangelogSource {
    broker: Broker,
}

impl ChangelogSource for EmbeddedChangelogSource {
    fn offsets(&mut self, tp: &TopicPartition) -> Result<(i64, i64)> {
        let o = self
            .broker
            .partition_offsets(&tp.topic, tp.partition)
            .map_err(cluster_err)?;
        Ok((o.log_start_offset, o.high_watermark))
    }

    fn read(&mut self, tp: &TopicPartition, from: i64) -> Result<Vec<ChangelogRecord>> {
        let data = self
            .broker
            .read_partition(
                &tp.topic,
                tp.partition,
                from,
                4 << 20,
                IsolationLevel::ReadCommitted,
            )
            .map_err(cluster_err)?;
        let records = decode_fetched_shared(&tp.topic, &data.records, from).map_err(cluster_err)?;
        Ok(records
            .into_iter()
            .map(|r| ChangelogRecord {
                offset: r.offset,
                key: r.key.map(|k| k.to_vec()).unwrap_or_default(),
                value: r.value.map(|v| v.to_vec()),
                timestamp: r.timestamp,
            })
            .collect())
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum GroupPhase {
    /// Waiting for every member to (re)join.
    Rebalancing,
    /// Assignment computed.
    Stable,
}

struct GroupState {
    generation: i64,
    phase: GroupPhase,
    /// Member id -> (subscription, joined this generation, owned before).
    members: BTreeMap<String, MemberState>,
    assignor: Option<Arc<dyn PartitionAssignor>>,
    assignment: BTreeMap<String, Vec<TopicPartition>>,
    resets: BTreeMap<String, OffsetReset>,
}

struct MemberState {
    topics: Vec<String>,
    joined: bool,
    owned: Vec<TopicPartition>,
}

/// An in-process consumer group with the eager protocol: any membership change revokes
/// every member's partitions; once every member has rejoined, the assignor runs.
struct EmbeddedGroup {
    name: String,
    state: Mutex<GroupState>,
    changed: Condvar,
}

impl EmbeddedGroup {
    fn new(name: &str) -> Self {
        EmbeddedGroup {
            name: name.to_owned(),
            state: Mutex::new(GroupState {
                generation: 0,
                phase: GroupPhase::Stable,
                members: BTreeMap::new(),
                assignor: None,
                assignment: BTreeMap::new(),
                resets: BTreeMap::new(),
            }),
            changed: Condvar::new(),
        }
    }

    fn start_rebalance(&self, s: &mut GroupState) {
        s.generation += 1;
        s.phase = GroupPhase::Rebalancing;
        for m in s.members.values_mut() {
            m.joined = false;
        }
        tracing::info!(group = %self.name, generation = s.generation, members = s.members.len(), "rebalance started");
        self.changed.notify_all();
    }

    fn try_complete(&self, s: &mut GroupState, partitions: impl Fn(&str) -> Option<i32>) {
        if s.phase != GroupPhase::Rebalancing || !s.members.values().all(|m| m.joined) {
            return;
        }
        let Some(assignor) = s.assignor.clone() else {
            return;
        };
        let topics: BTreeSet<&String> = s.members.values().flat_map(|m| m.topics.iter()).collect();
        let counts: BTreeMap<String, i32> = topics
            .into_iter()
            .filter_map(|t| partitions(t).map(|n| (t.clone(), n)))
            .collect();
        let members: Vec<GroupMember> = s
            .members
            .iter()
            .map(|(id, m)| GroupMember {
                id: id.clone(),
                topics: m.topics.clone(),
                owned: m.owned.clone(),
            })
            .collect();
        s.assignment = assignor.assign(&members, &counts);
        for (id, m) in s.members.iter_mut() {
            m.owned = s.assignment.get(id).cloned().unwrap_or_default();
        }
        s.phase = GroupPhase::Stable;
        tracing::info!(group = %self.name, generation = s.generation, "rebalance complete");
        self.changed.notify_all();
    }
}

struct EmbeddedConsumer {
    broker: Broker,
    group: Arc<EmbeddedGroup>,
    member: String,
    topics: Vec<String>,
    generation: i64,
    assigned: Vec<TopicPartition>,
    positions: BTreeMap<TopicPartition, i64>,
    joined: bool,
    runtime: tokio::runtime::Runtime,
    next_partition: usize,
    paused: BTreeSet<TopicPartition>,
}

/// Bytes read per partition per fetch (Kafka's `max.partition.fetch.bytes` is 1 MiB; smaller
/// reads keep polls short when a thread has many partitions).
const FETCH_MAX_BYTES: usize = 256 << 10;

impl EmbeddedConsumer {
    fn partition_count(broker: &Broker, topic: &str) -> Option<i32> {
        broker
            .partition_count(topic)
            .ok()
            .and_then(|n| i32::try_from(n).ok())
    }

    /// Follows the group protocol. Returns true when the caller should return to the
    /// application (an assignment event was produced).
    fn sync_group(&mut self, events: &mut Vec<AssignmentEvent>, wait: Duration) -> Result<bool> {
        let group = Arc::clone(&self.group);
        let broker = self.broker.clone();
        let mut s = group.state.lock();
        if !s.members.contains_key(&self.member) {
            return Err(StreamsError::IllegalState(format!(
                "consumer {} is not a member of group {}",
                self.member, group.name
            )));
        }
        if s.generation != self.generation {
            if !self.assigned.is_empty() {
                // Eager protocol: give everything back first; the caller commits and closes
                // the tasks, then polls again to rejoin.
                events.push(AssignmentEvent::Revoked(std::mem::take(&mut self.assigned)));
                self.positions.clear();
                self.paused.clear();
                return Ok(true);
            }
            if let Some(m) = s.members.get_mut(&self.member) {
                m.joined = true;
            }
            self.generation = s.generation;
            self.joined = false;
            group.try_complete(&mut s, |t| Self::partition_count(&broker, t));
        }
        if s.phase == GroupPhase::Rebalancing {
            let _ = group.changed.wait_for(&mut s, wait);
            return Ok(false);
        }
        if !self.joined && s.generation == self.generation {
            self.joined = true;
            let mine = s.assignment.get(&self.member).cloned().unwrap_or_default();
            let resets = s.resets.clone();
            drop(s);
            for tp in &mine {
                let committed = self
                    .broker
                    .committed_offset(&self.group.name, &to_broker_tp(tp))
                    .map(|o| o.offset);
                let pos = match committed {
                    Some(o) => o,
                    None => {
                        let o = self
                            .broker
                            .partition_offsets(&tp.topic, tp.partition)
                            .map_err(cluster_err)?;
                        match resets.get(&tp.topic).copied().unwrap_or_default() {
                            OffsetReset::Earliest => o.log_start_offset,
                            OffsetReset::Latest => o.high_watermark,
                        }
                    }
                };
                self.positions.insert(tp.clone(), pos);
            }
            self.assigned.clone_from(&mine);
            events.push(AssignmentEvent::Assigned(mine));
            return Ok(true);
        }
        Ok(false)
    }

    fn fetch(&mut self, max_records: usize) -> Result<Vec<(TopicPartition, Vec<RawRecord>)>> {
        let mut out = Vec::new();
        let mut total = 0;
        let n = self.assigned.len();
        for i in 0..n {
            if total >= max_records {
                break;
            }
            let tp = self.assigned[(self.next_partition + i) % n].clone();
            let Some(&pos) = self.positions.get(&tp) else {
                continue;
            };
            if self.paused.contains(&tp) {
                continue;
            }
            let data = match self.broker.read_partition(
                &tp.topic,
                tp.partition,
                pos,
                FETCH_MAX_BYTES,
                IsolationLevel::ReadCommitted,
            ) {
                Ok(d) => d,
                Err(BrokerError::OffsetOutOfRange { .. }) => {
                    let o = self
                        .broker
                        .partition_offsets(&tp.topic, tp.partition)
                        .map_err(cluster_err)?;
                    tracing::warn!(partition = %tp, position = pos, log_start = o.log_start_offset,
                        "position out of range; resetting to the log start");
                    self.positions.insert(tp.clone(), o.log_start_offset);
                    continue;
                }
                Err(e) => return Err(cluster_err(e)),
            };
            if data.records.is_empty() {
                continue;
            }
            let records =
                decode_fetched_shared(&tp.topic, &data.records, pos).map_err(cluster_err)?;
            // Everything decoded is returned (max_records is a soft limit checked between
            // partitions): dropping decoded records would mean decoding them again.
            if let Some(last) = records.last() {
                self.positions.insert(tp.clone(), last.offset + 1);
            } else {
                // Only control records or compacted gaps: move past the fetched batches.
                if let Some(next) = last_offset_of(&data.records) {
                    self.positions.insert(tp.clone(), next.max(pos));
                }
                continue;
            }
            total += records.len();
            out.push((tp, records));
        }
        if n > 0 {
            self.next_partition = (self.next_partition + 1) % n;
        }
        Ok(out)
    }
}

fn last_offset_of(batches: &[u8]) -> Option<i64> {
    broker_embedded::record::BatchIter::new(batches)
        .filter_map(std::result::Result::ok)
        .last()
        .map(|b| b.header.next_offset())
}

impl ClusterConsumer for EmbeddedConsumer {
    fn subscribe(
        &mut self,
        topics: Vec<(String, OffsetReset)>,
        assignor: Arc<dyn PartitionAssignor>,
    ) -> Result<()> {
        let mut s = self.group.state.lock();
        for (t, r) in &topics {
            s.resets.insert(t.clone(), *r);
        }
        self.topics = topics.into_iter().map(|(t, _)| t).collect();
        s.assignor = Some(assignor);
        s.members.insert(
            self.member.clone(),
            MemberState {
                topics: self.topics.clone(),
                joined: false,
                owned: Vec::new(),
            },
        );
        self.group.start_rebalance(&mut s);
        Ok(())
    }

    fn poll(&mut self, timeout: Duration, max_records: usize) -> Result<PollResult> {
        let deadline = Instant::now() + timeout;
        let mut result = PollResult::default();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if self.sync_group(&mut result.events, remaining.min(Duration::from_millis(50)))? {
                return Ok(result);
            }
            if self.joined && self.generation == self.group.state.lock().generation {
                let broker = self.broker.clone();
                // Created before reading, so an append in between still wakes us.
                let notified = broker.appended_anywhere();
                result.records = self.fetch(max_records)?;
                if !result.records.is_empty() {
                    return Ok(result);
                }
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    return Ok(result);
                }
                // Wake up on the next append anywhere, or re-check the group every 50 ms.
                let wait = remaining.min(Duration::from_millis(50));
                let _ = self
                    .runtime
                    .block_on(async { tokio::time::timeout(wait, notified).await });
            }
            if Instant::now() >= deadline {
                return Ok(result);
            }
        }
    }

    fn pause(&mut self, partitions: &[TopicPartition]) {
        self.paused.extend(partitions.iter().cloned());
    }

    fn resume(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.paused.remove(tp);
        }
    }

    fn commit(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let list: Vec<_> = offsets
            .iter()
            .map(|(tp, o)| (to_broker_tp(tp), OffsetAndMetadata::new(*o)))
            .collect();
        self.broker
            .commit_offsets(&self.group.name, &list)
            .map_err(cluster_err)
    }

    fn close(&mut self) -> Result<()> {
        let mut s = self.group.state.lock();
        if s.members.remove(&self.member).is_some() {
            if s.members.is_empty() {
                s.phase = GroupPhase::Stable;
                s.generation += 1;
            } else {
                self.group.start_rebalance(&mut s);
                let broker = self.broker.clone();
                self.group
                    .try_complete(&mut s, |t| Self::partition_count(&broker, t));
            }
        }
        self.assigned.clear();
        Ok(())
    }
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
