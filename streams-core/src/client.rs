//! The client layer: the narrow set of cluster operations the runtime needs, and its
//! implementation over the in-process [`Broker`].
//!
//! The runtime talks to a cluster only through [`Cluster`] (metadata, topic creation, a
//! changelog reader) and the per-thread [`ClusterProducer`] and [`ClusterConsumer`] it
//! hands out. Group membership is the consumer's business: it delivers partition
//! assignments as [`AssignmentEvent`]s computed by the leader with the runtime's
//! [`crate::TaskAssignor`], as Kafka's classic group protocol with a client-side assignor
//! does. [`EmbeddedCluster`] implements all of it in-process: its consumers are members of
//! the broker's own group coordinator ([`Broker::group_coordinator`]), the same one wire
//! clients use, so every `EmbeddedCluster` over one broker — and every process on it — shares
//! one group per application id. The protocol is eager (every rebalance revokes all
//! partitions). An rdkafka-backed implementation plugs in behind the same traits.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use broker_embedded::record::Record as RawRecord;
use broker_embedded::{
    decode_fetched_committed, Broker, BrokerError, CommitMember, GroupError,
    IsolationLevel as BrokerIsolation, JoinGroupRequest, NewTopic, OffsetAndMetadata, PendingJoin,
    ProduceRecord, SyncGroupRequest, TransactionalProducer, TxnProducerError,
};
use state_store::{ChangelogRecord, TopicPartition};

use std::sync::Arc;

use crate::assignment::{
    decode_assignment, encode_subscription, now_ms, AssignmentInfo, AssignmentSpec, HostInfo,
    HostPartitions, SubscriptionInfo, CONSUMER_PROTOCOL_TYPE, NO_REBALANCE, STREAMS_PROTOCOL,
};
use crate::error::{ClusterErrorKind, Result, StreamsError};
use crate::record::{ConsumedRecord, Header, ProducedRecord};
use crate::task::TaskId;
use crate::topology::OffsetReset;

/// What an internal topic is for, which decides the `cleanup.policy` an existing topic must
/// have (Kafka Streams' `InternalTopicManager` validation of its `InternalTopicConfig`
/// kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InternalTopicKind {
    /// A repartition topic: its records are deleted once consumed, so its `cleanup.policy`
    /// must not contain `compact`.
    Repartition,
    /// The changelog of a key-value store (or a suppression buffer): compacted, and its
    /// `cleanup.policy` must not contain `delete` (retention would lose state).
    Changelog,
    /// The changelog of a window or session store: `compact,delete` with a retention; any
    /// policy is accepted (Kafka checks the retention when it contains `delete`).
    WindowedChangelog,
}

impl InternalTopicKind {
    /// Why an existing topic of this kind with `cleanup.policy` = `policy` is unusable, or
    /// `None` if it is fine: a changelog's policy must not contain `delete`, a repartition
    /// topic's must not contain `compact` (Kafka's rules; the policy is a comma-separated
    /// list).
    pub fn cleanup_policy_violation(self, policy: &str) -> Option<&'static str> {
        let has = |p: &str| policy.split(',').any(|v| v.trim() == p);
        match self {
            InternalTopicKind::Changelog if has("delete") => Some("delete"),
            InternalTopicKind::Repartition if has("compact") => Some("compact"),
            _ => None,
        }
    }
}

impl std::fmt::Display for InternalTopicKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InternalTopicKind::Repartition => "repartition topic",
            InternalTopicKind::Changelog => "changelog topic",
            InternalTopicKind::WindowedChangelog => "windowed changelog topic",
        })
    }
}

/// A topic the runtime creates (changelog or repartition topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalTopicSpec {
    /// Physical name.
    pub name: String,
    /// What the topic is for.
    pub kind: InternalTopicKind,
    /// Partitions.
    pub partitions: i32,
    /// Replication factor.
    pub replication_factor: i16,
    /// Topic configs (e.g. `cleanup.policy=compact`).
    pub configs: BTreeMap<String, String>,
}

/// A change of a consumer's partitions or tasks.
///
/// After every rebalance a consumer delivers, in this order: `Assigned` (its active
/// partitions), then `Standby` (its standby tasks) and `PartitionsByHost` (the group's
/// interactive-query metadata), all three decoded from the leader's [`AssignmentInfo`]
/// (see `read_sync_assignment`, shared by the consumer implementations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentEvent {
    /// These partitions are taken away: commit what was processed and close their tasks.
    Revoked(Vec<TopicPartition>),
    /// These partitions are now this consumer's.
    Assigned(Vec<TopicPartition>),
    /// The standby tasks (warm-up replicas included) this consumer should keep for the new
    /// generation, with their input partitions (Kafka's `AssignmentInfo.standbyTasks`):
    /// the complete set, so a standby task not listed any more is to be closed. Empty when
    /// there are none. Standby tasks are not revoked by a rebalance (as in Kafka's eager
    /// protocol, only active partitions are).
    Standby(BTreeMap<TaskId, Vec<TopicPartition>>),
    /// Every instance endpoint (`application.server`) with the input partitions of its
    /// active tasks and of its standby tasks, for the new generation (Kafka's
    /// `partitionsByHost` / `standbyPartitionsByHost`; instances without an endpoint are
    /// absent).
    PartitionsByHost {
        /// Endpoint -> input partitions of its active tasks.
        active: HostPartitions,
        /// Endpoint -> input partitions of its standby tasks.
        standby: HostPartitions,
    },
    /// These partitions were taken away without a chance to commit (the member fell out of
    /// the group: session timeout, or a stale generation): close their tasks without
    /// committing (Kafka's `onPartitionsLost`).
    Lost(Vec<TopicPartition>),
}

/// The result of a poll.
#[derive(Debug, Default)]
pub struct PollResult {
    /// Assignment changes, in order, to apply before the records.
    pub events: Vec<AssignmentEvent>,
    /// Fetched records by partition, in offset order.
    pub records: Vec<(TopicPartition, Vec<ConsumedRecord>)>,
}

/// Reports, when a member (re)joins, the offset sum of every task it has local state for
/// (Kafka's `TaskManager.getTaskOffsetSums`): given the active tasks the consumer owned until
/// now, it returns [`crate::LATEST_OFFSET`] for those and, for the other tasks with a state
/// directory, the sum of their checkpointed changelog offsets.
pub type TaskOffsetSumsFn = Arc<dyn Fn(&BTreeSet<TaskId>) -> BTreeMap<TaskId, i64> + Send + Sync>;

/// What a stream thread subscribes with: its topics, and what the group leader needs to
/// assign tasks (Kafka Streams' `StreamsPartitionAssignor` configuration).
#[derive(Clone)]
pub struct Subscription {
    /// Source and repartition topics, with where to start without a committed offset.
    pub topics: Vec<(String, OffsetReset)>,
    /// The application instance the thread belongs to (one per `StreamsApp`).
    pub process_id: uuid::Uuid,
    /// The instance's `application.server` endpoint, sent in the subscription.
    pub endpoint: Option<HostInfo>,
    /// The task offset sums the member reports at each join.
    pub task_offset_sums: TaskOffsetSumsFn,
    /// The tasks and the assignor the leader runs.
    pub assignment: AssignmentSpec,
    /// The member's session timeout (`session.timeout.ms`).
    pub session_timeout: Duration,
    /// How long a rebalance waits for the member (`max.poll.interval.ms`).
    pub rebalance_timeout: Duration,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("topics", &self.topics)
            .field("process_id", &self.process_id)
            .field("endpoint", &self.endpoint)
            .field("assignment", &self.assignment)
            .field("session_timeout", &self.session_timeout)
            .field("rebalance_timeout", &self.rebalance_timeout)
            .finish_non_exhaustive()
    }
}

/// A member's assignment as read from its SyncGroup answer: what every consumer
/// implementation (embedded or over the wire) does with the bytes, in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncedAssignment {
    /// The active partitions.
    pub(crate) partitions: Vec<TopicPartition>,
    /// The active tasks (reported as owned at the next join).
    pub(crate) owned_tasks: BTreeSet<TaskId>,
    /// The decoded user data.
    pub(crate) info: AssignmentInfo,
}

impl SyncedAssignment {
    /// The events after the consumer took `assigned` (its partitions, positioned):
    /// `Assigned`, `Standby`, `PartitionsByHost`.
    pub(crate) fn events(&self, assigned: Vec<TopicPartition>) -> Vec<AssignmentEvent> {
        vec![
            AssignmentEvent::Assigned(assigned),
            AssignmentEvent::Standby(self.info.standby_tasks.clone()),
            AssignmentEvent::PartitionsByHost {
                active: self.info.partitions_by_host.clone(),
                standby: self.info.standby_partitions_by_host.clone(),
            },
        ]
    }

    /// When this member must rejoin for a probing rebalance (ms since the epoch;
    /// [`NO_REBALANCE`] for never).
    pub(crate) fn next_rebalance_ms(&self) -> i64 {
        self.info.next_rebalance_ms
    }
}

/// Decodes a SyncGroup assignment (see [`crate::decode_assignment`]). A non-zero error code
/// from the leader (Kafka's `AssignorError`) is a fatal error.
pub(crate) fn read_sync_assignment(bytes: &[u8]) -> Result<SyncedAssignment> {
    let (partitions, info) = decode_assignment(bytes).map_err(|e| {
        StreamsError::cluster_source(ClusterErrorKind::Fatal, "reading the assignment", e)
    })?;
    if info.error_code != 0 {
        return Err(StreamsError::cluster_fatal(format!(
            "the group leader reported assignment error {}",
            info.error_code
        )));
    }
    Ok(SyncedAssignment {
        owned_tasks: info.active_tasks.iter().copied().collect(),
        partitions,
        info,
    })
}

/// Whether a member whose assignment asked for a rebalance at `next_rebalance_ms` must
/// rejoin at `now_ms` (Kafka's probing and follow-up rebalances).
pub(crate) fn probing_rebalance_due(next_rebalance_ms: i64, now_ms: i64) -> bool {
    next_rebalance_ms != NO_REBALANCE && now_ms >= next_rebalance_ms
}

/// Which records a consumer reads (Kafka's `isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Every record, aborted transactions' included (`read_uncommitted`, Kafka's default).
    #[default]
    ReadUncommitted,
    /// Only records of committed transactions, up to the last stable offset
    /// (`read_committed`).
    ReadCommitted,
}

/// The group membership a consumer's offsets are committed with inside a transaction
/// (Kafka's `ConsumerGroupMetadata`, KIP-447): the group coordinator refuses a
/// `TxnOffsetCommit` from a member of an older generation, which fences a zombie thread
/// whose tasks moved to another member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    /// The group (the application id).
    pub group_id: String,
    /// The generation the member joined (-1 when not in a generation).
    pub generation_id: i32,
    /// The member id the coordinator gave (empty when not in a generation).
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
}

/// Produces records for one stream thread.
///
/// Under `exactly_once_v2` the producer is transactional (made by
/// [`Cluster::transactional_producer`]): the runtime calls
/// [`ClusterProducer::begin_transaction`] before the first send of each commit interval and
/// ends every interval with [`ClusterProducer::send_offsets_to_transaction`] and
/// [`ClusterProducer::commit_transaction`], or [`ClusterProducer::abort_transaction`] after
/// an error. Errors that mean another producer with the same `transactional.id` took over
/// are [`StreamsError::Cluster`] with [`ClusterErrorKind::Fenced`](crate::ClusterErrorKind):
/// the producer cannot be used again.
pub trait ClusterProducer: Send {
    /// Sends records to one partition (may return before they are acknowledged).
    fn send(&mut self, partition: &TopicPartition, records: Vec<ProducedRecord>) -> Result<()>;
    /// Waits until everything sent is acknowledged; returns the offset of the last record
    /// acknowledged per partition since the previous flush.
    fn flush(&mut self) -> Result<BTreeMap<TopicPartition, i64>>;
    /// Starts a transaction. The default (a producer that is not transactional) refuses.
    fn begin_transaction(&mut self) -> Result<()> {
        Err(not_transactional("begin_transaction"))
    }
    /// Adds the next offsets to read of the consumed partitions, with their commit metadata,
    /// to the open transaction, as the member `group` describes (`TxnOffsetCommit`). They
    /// become the group's committed offsets when the transaction commits.
    fn send_offsets_to_transaction(
        &mut self,
        offsets: &BTreeMap<TopicPartition, (i64, String)>,
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        let _ = (offsets, group);
        Err(not_transactional("send_offsets_to_transaction"))
    }
    /// Flushes what was sent and commits the open transaction: its records and offsets
    /// become visible to `read_committed` readers, all together.
    fn commit_transaction(&mut self) -> Result<()> {
        Err(not_transactional("commit_transaction"))
    }
    /// Aborts the open transaction: its records are never visible to `read_committed`
    /// readers and its offsets are dropped.
    fn abort_transaction(&mut self) -> Result<()> {
        Err(not_transactional("abort_transaction"))
    }
}

fn not_transactional(call: &str) -> StreamsError {
    StreamsError::IllegalState(format!("{call} on a producer that is not transactional"))
}

/// Consumes as one member of the application's group.
pub trait ClusterConsumer: Send {
    /// Joins the group with `subscription`. Assignments arrive through
    /// [`ClusterConsumer::poll`].
    fn subscribe(&mut self, subscription: Subscription) -> Result<()>;
    /// Waits up to `timeout` for records of the assigned partitions (returns early on
    /// assignment changes).
    fn poll(&mut self, timeout: Duration, max_records: usize) -> Result<PollResult>;
    /// Stops fetching these partitions until resumed (their buffers are full).
    fn pause(&mut self, partitions: &[TopicPartition]);
    /// Fetches these partitions again.
    fn resume(&mut self, partitions: &[TopicPartition]);
    /// Commits the next offsets to read for the group, as a member of its current
    /// generation. A member that is no longer in the group, or whose generation is stale,
    /// gets [`StreamsError::TaskMigrated`] (its partitions belong to someone else now).
    fn commit(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()>;
    /// Commits offsets with their metadata strings (Kafka Streams' `TopicPartitionMetadata`).
    /// The default drops the metadata and commits the offsets.
    fn commit_with_metadata(
        &mut self,
        offsets: &BTreeMap<TopicPartition, (i64, String)>,
    ) -> Result<()> {
        let plain = offsets
            .iter()
            .map(|(tp, (o, _))| (tp.clone(), *o))
            .collect();
        self.commit(&plain)
    }
    /// Records of an assigned partition that are on the broker but not fetched yet (end
    /// offset, or last stable offset, minus the fetch position); `None` when unknown (not
    /// assigned, or no position yet). Tasks use it for `max.task.idle.ms`.
    fn fetched_lag(&self, partition: &TopicPartition) -> Option<i64>;
    /// The member's current group membership, for offsets committed in a transaction.
    fn group_metadata(&self) -> ConsumerGroupMetadata;
    /// Positions every assigned partition at its committed offset again, dropping what was
    /// fetched beyond it (what the runtime does after aborting a transaction: the records
    /// processed in it are processed again). Offsets of transactions still open are waited
    /// for (Kafka's `require_stable`), up to the transaction timeout.
    fn reset_to_committed(&mut self) -> Result<()>;
    /// Rejoins the group at the next poll (Kafka's `Consumer#enforceRebalance`): every
    /// partition is revoked and the group assigns them again, possibly elsewhere. What a
    /// thread does after its tasks migrated or its producer was fenced.
    fn enforce_rebalance(&mut self);
    /// The offset of the next record this consumer will return for an assigned partition
    /// (past transaction markers and aborted records it skipped), `None` when unknown.
    /// A task whose buffer of the partition is empty commits it (Kafka Streams commits
    /// `Consumer#position` the same way).
    fn position(&self, partition: &TopicPartition) -> Option<i64>;
    /// Leaves the group.
    fn close(&mut self) -> Result<()>;
}

/// Reads changelog partitions for restoration.
pub trait ChangelogSource: Send {
    /// Log start and end offsets of a partition.
    fn offsets(&mut self, partition: &TopicPartition) -> Result<(i64, i64)>;
    /// Records from `from` on (possibly fewer than exist; empty at the end).
    fn read(&mut self, partition: &TopicPartition, from: i64) -> Result<Vec<ChangelogRecord>>;
    /// Records from `from` on as consumed records, null keys kept as `None` (what global
    /// stores read: a null key is skipped there, not stored under an empty key). The
    /// default reads [`ChangelogSource::read`], where a null key is already empty.
    fn read_consumed(
        &mut self,
        partition: &TopicPartition,
        from: i64,
    ) -> Result<Vec<ConsumedRecord>> {
        Ok(self
            .read(partition, from)?
            .into_iter()
            .map(|r| ConsumedRecord {
                offset: r.offset,
                timestamp: r.timestamp,
                key: Some(r.key.into()),
                value: r.value.map(Into::into),
                headers: Vec::new(),
            })
            .collect())
    }

    /// Only `partitions` are read from now on: a reader that fetches its partitions in the
    /// background stops fetching the others. The default does nothing.
    fn retain(&mut self, partitions: &BTreeSet<TopicPartition>) {
        let _ = partitions;
    }
}

/// What the runtime needs from a Kafka-protocol cluster.
pub trait Cluster: Send + Sync + 'static {
    /// Partition count of `topic`, or `None` if it does not exist.
    fn partitions(&self, topic: &str) -> Result<Option<i32>>;
    /// Names of all topics (for pattern subscriptions).
    fn topic_names(&self) -> Result<Vec<String>>;
    /// Creates a topic; an existing topic is not an error (the caller checks its partitions).
    fn create_topic(&self, spec: &InternalTopicSpec) -> Result<()>;
    /// The configs of an existing topic (Kafka's DescribeConfigs: every config, defaults
    /// included), or `None` when the cluster cannot tell (it does not support describing
    /// configs) or the topic does not exist. The default cannot tell.
    fn topic_configs(&self, topic: &str) -> Result<Option<BTreeMap<String, String>>> {
        let _ = topic;
        Ok(None)
    }
    /// A producer for one stream thread.
    fn producer(&self, client_id: &str) -> Result<Box<dyn ClusterProducer>>;
    /// A transactional producer for one stream thread (`exactly_once_v2`), initialized
    /// (Kafka's `initTransactions`): a previous producer with the same `transactional_id` is
    /// fenced and its open transaction aborted before this returns. Its consumers must read
    /// with `read_committed` isolation ([`Cluster::consumer`] with `read_committed`).
    /// The default refuses: the cluster has no transactions.
    fn transactional_producer(
        &self,
        client_id: &str,
        transactional_id: &str,
        transaction_timeout: Duration,
    ) -> Result<Box<dyn ClusterProducer>> {
        let _ = (client_id, transaction_timeout);
        Err(StreamsError::config(
            "processing.guarantee",
            format!(
                "this cluster does not support transactions (transactional.id {transactional_id})"
            ),
        ))
    }
    /// A consumer in group `group` for one stream thread, reading with `isolation`
    /// (`read_committed` under `exactly_once_v2`, as Kafka Streams sets it).
    fn consumer(
        &self,
        group: &str,
        client_id: &str,
        isolation: IsolationLevel,
    ) -> Result<Box<dyn ClusterConsumer>>;
    /// A reader of changelog partitions.
    fn changelog_source(&self) -> Result<Box<dyn ChangelogSource>>;
    /// The reader of a stream thread's standby tasks, read in every loop of the thread: a
    /// read returns what has arrived without waiting (empty: nothing new yet). The default
    /// is [`Cluster::changelog_source`], for clusters whose reads do not wait.
    fn standby_source(&self) -> Result<Box<dyn ChangelogSource>> {
        self.changelog_source()
    }
    /// The end offset (high watermark) of a partition.
    fn end_offset(&self, partition: &TopicPartition) -> Result<i64>;
    /// The offset committed by `group` for a partition, if any.
    fn committed_offset(&self, group: &str, partition: &TopicPartition) -> Result<Option<i64>>;
    /// The metadata committed with `group`'s offset of `partition` (empty or `None` if
    /// none). The default knows none.
    fn committed_metadata(
        &self,
        group: &str,
        partition: &TopicPartition,
    ) -> Result<Option<String>> {
        let _ = (group, partition);
        Ok(None)
    }
}

fn cluster_err(e: BrokerError) -> StreamsError {
    StreamsError::broker("embedded broker", e)
}

fn from_broker_headers(headers: Vec<broker_embedded::record::Header>) -> Vec<Header> {
    headers
        .into_iter()
        .map(|h| Header {
            key: h.key,
            value: h.value,
        })
        .collect()
}

/// The broker's decoded record as the runtime's (fields moved; headers, when there are
/// any, copied into the runtime's header type).
fn to_consumed_record(r: RawRecord) -> ConsumedRecord {
    ConsumedRecord {
        offset: r.offset,
        timestamp: r.timestamp,
        key: r.key,
        value: r.value,
        headers: from_broker_headers(r.headers),
    }
}

/// The runtime's record to produce as the broker's.
fn to_produce_record(r: ProducedRecord) -> ProduceRecord {
    ProduceRecord {
        key: r.key,
        value: r.value,
        headers: r
            .headers
            .into_iter()
            .map(|h| broker_embedded::record::Header {
                key: h.key,
                value: h.value,
            })
            .collect(),
        timestamp: Some(r.timestamp),
    }
}

fn to_broker_tp(tp: &TopicPartition) -> broker_embedded::TopicPartition {
    broker_embedded::TopicPartition::new(tp.topic.clone(), tp.partition)
}

/// The in-process cluster: a [`Broker`] handle. Its consumers are members of the broker's
/// group coordinator, so several `EmbeddedCluster`s over one broker share groups.
#[derive(Clone)]
pub struct EmbeddedCluster {
    broker: Broker,
}

impl std::fmt::Debug for EmbeddedCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedCluster").finish_non_exhaustive()
    }
}

impl EmbeddedCluster {
    /// A cluster over `broker`.
    pub fn new(broker: Broker) -> Self {
        EmbeddedCluster { broker }
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

    fn topic_configs(&self, topic: &str) -> Result<Option<BTreeMap<String, String>>> {
        if !self.broker.topic_exists(topic) {
            return Ok(None);
        }
        let description = self.broker.describe_topic(topic).map_err(cluster_err)?;
        Ok(Some(
            description
                .configs
                .into_iter()
                .map(|e| (e.name, e.value))
                .collect(),
        ))
    }

    fn producer(&self, _client_id: &str) -> Result<Box<dyn ClusterProducer>> {
        Ok(Box::new(EmbeddedProducer {
            broker: self.broker.clone(),
            acked: BTreeMap::new(),
            transaction: None,
        }))
    }

    fn transactional_producer(
        &self,
        _client_id: &str,
        transactional_id: &str,
        transaction_timeout: Duration,
    ) -> Result<Box<dyn ClusterProducer>> {
        let timeout_ms = i32::try_from(transaction_timeout.as_millis()).unwrap_or(i32::MAX);
        let producer = TransactionalProducer::init(&self.broker, transactional_id, timeout_ms)
            .map_err(txn_err)?;
        Ok(Box::new(EmbeddedProducer {
            broker: self.broker.clone(),
            acked: BTreeMap::new(),
            transaction: Some(producer),
        }))
    }

    fn consumer(
        &self,
        group: &str,
        client_id: &str,
        isolation: IsolationLevel,
    ) -> Result<Box<dyn ClusterConsumer>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| StreamsError::Io {
                path: "tokio runtime".into(),
                source: e,
            })?;
        Ok(Box::new(EmbeddedConsumer {
            broker: self.broker.clone(),
            group: group.to_owned(),
            client_id: client_id.to_owned(),
            subscription: None,
            member_id: String::new(),
            generation: -1,
            state: MemberState::Unjoined,
            last_heartbeat: Instant::now(),
            owned_tasks: BTreeSet::new(),
            next_rebalance_ms: NO_REBALANCE,
            joins: 0,
            assigned: Vec::new(),
            positions: BTreeMap::new(),
            runtime,
            next_partition: 0,
            paused: BTreeSet::new(),
            isolation: match isolation {
                IsolationLevel::ReadCommitted => BrokerIsolation::ReadCommitted,
                IsolationLevel::ReadUncommitted => BrokerIsolation::ReadUncommitted,
            },
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

    fn committed_metadata(&self, group: &str, tp: &TopicPartition) -> Result<Option<String>> {
        Ok(self
            .broker
            .committed_offset(group, &to_broker_tp(tp))
            .map(|o| o.metadata))
    }
}

/// The embedded backend's producer: appends in-process; under exactly-once through the
/// broker's [`TransactionalProducer`].
struct EmbeddedProducer {
    broker: Broker,
    acked: BTreeMap<TopicPartition, i64>,
    transaction: Option<TransactionalProducer>,
}

/// A transactional producer's error as the runtime's: fenced, a refused offset commit of
/// a stale member (the tasks migrated, KIP-447), or a cluster error by Kafka's code.
fn txn_err(e: TxnProducerError) -> StreamsError {
    let message = e.to_string();
    if e.is_fenced() {
        StreamsError::cluster_source(ClusterErrorKind::Fenced, message, e)
    } else if e.is_group_membership() {
        StreamsError::TaskMigrated(e.to_string())
    } else {
        let kind = match &e {
            TxnProducerError::Transaction { source, .. } => {
                ClusterErrorKind::of(source.kafka_error())
            }
            TxnProducerError::Produce { source, .. } => ClusterErrorKind::of(source.kafka_error()),
            TxnProducerError::OffsetCommit { source, .. } => {
                ClusterErrorKind::of(source.kafka_error())
            }
            _ => ClusterErrorKind::Fatal,
        };
        StreamsError::cluster_source(kind, message, e)
    }
}

impl EmbeddedProducer {
    /// Appends `records` to `tp` as one batch. A batch the broker refuses as larger than
    /// the topic's `max.message.bytes` is split in halves and each half sent again, in
    /// order, as Kafka's producer splits a batch on `MESSAGE_TOO_LARGE`: only a single
    /// record too large for the topic fails (a fatal `MESSAGE_TOO_LARGE` cluster error
    /// naming the partition; the records before it in `records` are written).
    fn append(&mut self, tp: &TopicPartition, records: &[ProduceRecord]) -> Result<()> {
        let appended = match &mut self.transaction {
            None => self.broker.produce(&tp.topic, tp.partition, records),
            Some(p) => match p.send(&to_broker_tp(tp), records) {
                Ok(info) => Ok(info),
                Err(TxnProducerError::Produce { source, .. })
                    if matches!(*source, BrokerError::MessageTooLarge { .. }) =>
                {
                    Err(*source)
                }
                Err(e) => return Err(txn_err(e)),
            },
        };
        match appended {
            Ok(info) => {
                let e = self.acked.entry(tp.clone()).or_insert(info.last_offset);
                *e = (*e).max(info.last_offset);
                Ok(())
            }
            Err(BrokerError::MessageTooLarge { .. }) if records.len() > 1 => {
                let (first, rest) = records.split_at(records.len() / 2);
                self.append(tp, first)?;
                self.append(tp, rest)
            }
            Err(e) => Err(StreamsError::broker(format!("producing to {tp}"), e)),
        }
    }

    fn transaction(&mut self) -> Result<&mut TransactionalProducer> {
        self.transaction
            .as_mut()
            .ok_or_else(|| not_transactional("a transaction call"))
    }
}

impl ClusterProducer for EmbeddedProducer {
    fn send(&mut self, tp: &TopicPartition, records: Vec<ProducedRecord>) -> Result<()> {
        let records: Vec<ProduceRecord> = records.into_iter().map(to_produce_record).collect();
        if records.is_empty() {
            return Ok(());
        }
        self.append(tp, &records)
    }

    fn flush(&mut self) -> Result<BTreeMap<TopicPartition, i64>> {
        Ok(std::mem::take(&mut self.acked))
    }

    fn begin_transaction(&mut self) -> Result<()> {
        self.transaction()?.begin().map_err(txn_err)
    }

    fn send_offsets_to_transaction(
        &mut self,
        offsets: &BTreeMap<TopicPartition, (i64, String)>,
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        let member = CommitMember {
            generation_id: group.generation_id,
            member_id: group.member_id.clone(),
            group_instance_id: group.group_instance_id.clone(),
        };
        let list: Vec<_> = offsets
            .iter()
            .map(|(tp, (o, metadata))| {
                let mut om = OffsetAndMetadata::new(*o);
                om.metadata.clone_from(metadata);
                (to_broker_tp(tp), om)
            })
            .collect();
        self.transaction()?
            .send_offsets(&group.group_id, &member, &list)
            .map_err(txn_err)
    }

    fn commit_transaction(&mut self) -> Result<()> {
        self.transaction()?.commit().map_err(txn_err)
    }

    fn abort_transaction(&mut self) -> Result<()> {
        self.acked.clear();
        self.transaction()?.abort().map_err(txn_err)
    }
}

struct EmbeddedChangelogSource {
    broker: Broker,
}

impl EmbeddedChangelogSource {
    /// The committed records from `from` on, read as a `read_committed` consumer does:
    /// stretches holding only transaction markers or aborted records are skipped (a read
    /// returns nothing only at the end of what is stable).
    fn read_committed(&self, tp: &TopicPartition, mut from: i64) -> Result<Vec<RawRecord>> {
        loop {
            let read = self
                .broker
                .read_records(
                    &tp.topic,
                    tp.partition,
                    from,
                    4 << 20,
                    BrokerIsolation::ReadCommitted,
                )
                .map_err(cluster_err)?;
            match read.next_offset {
                _ if !read.records.is_empty() => return Ok(read.records),
                Some(next) => from = next,
                None => return Ok(Vec::new()),
            }
        }
    }
}

impl ChangelogSource for EmbeddedChangelogSource {
    /// The log start and the last stable offset (the end a `read_committed` reader sees).
    fn offsets(&mut self, tp: &TopicPartition) -> Result<(i64, i64)> {
        let o = self
            .broker
            .partition_offsets(&tp.topic, tp.partition)
            .map_err(cluster_err)?;
        Ok((o.log_start_offset, o.last_stable_offset))
    }

    fn read(&mut self, tp: &TopicPartition, from: i64) -> Result<Vec<ChangelogRecord>> {
        Ok(self
            .read_committed(tp, from)?
            .into_iter()
            .map(|r| ChangelogRecord {
                offset: r.offset,
                key: r.key.map(|k| k.to_vec()).unwrap_or_default(),
                value: r.value.map(|v| v.to_vec()),
                timestamp: r.timestamp,
            })
            .collect())
    }

    fn read_consumed(&mut self, tp: &TopicPartition, from: i64) -> Result<Vec<ConsumedRecord>> {
        Ok(self
            .read_committed(tp, from)?
            .into_iter()
            .map(to_consumed_record)
            .collect())
    }
}

/// Where a consumer is in the group protocol.
enum MemberState {
    /// Not in a generation: must (re)join.
    Unjoined,
    /// JoinGroup sent; waiting for the rebalance to complete.
    Joining(PendingJoin),
    /// A member of a generation with an assignment; heartbeating.
    Stable,
}

/// A stream thread's consumer: a member of the broker's group coordinator with the eager
/// protocol. It joins with protocol type `consumer` and protocol [`STREAMS_PROTOCOL`]
/// (metadata: a consumer-protocol subscription carrying [`SubscriptionInfo`]); the member
/// elected leader runs the [`AssignmentSpec`]'s assignor over every member's subscription and
/// sends the assignments through SyncGroup. Heartbeats go out from `poll`; a rebalance
/// revokes every partition ([`AssignmentEvent::Revoked`], the runtime commits), then the
/// consumer rejoins. Commits carry the member id and generation.
struct EmbeddedConsumer {
    broker: Broker,
    group: String,
    client_id: String,
    subscription: Option<Subscription>,
    member_id: String,
    generation: i32,
    state: MemberState,
    last_heartbeat: Instant,
    /// Active tasks of the last assignment (reported as running when rejoining).
    owned_tasks: BTreeSet<TaskId>,
    /// When the last assignment asked this member to rejoin (probing rebalance).
    next_rebalance_ms: i64,
    /// Joins sent (Kafka's `uniqueField` of the subscription).
    joins: u8,
    assigned: Vec<TopicPartition>,
    positions: BTreeMap<TopicPartition, i64>,
    runtime: tokio::runtime::Runtime,
    next_partition: usize,
    paused: BTreeSet<TopicPartition>,
    isolation: BrokerIsolation,
}

/// How long a consumer waits for a committed offset in an open transaction to be
/// resolved (the coordinator aborts a transaction after its timeout, at most
/// `transaction.max.timeout.ms`).
const STABLE_OFFSETS_WAIT: Duration = Duration::from_secs(60);

/// Bytes read per partition per fetch (Kafka's `max.partition.fetch.bytes` is 1 MiB; smaller
/// reads keep polls short when a thread has many partitions).
const FETCH_MAX_BYTES: usize = 256 << 10;

/// How often a stable member heartbeats from `poll`. In-process a heartbeat costs one lock
/// of the coordinator, so it can be much shorter than Kafka's `heartbeat.interval.ms` (3 s),
/// which makes members notice rebalances quickly.
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);

/// Extra time a JoinGroup or SyncGroup may take beyond the rebalance timeout.
const GROUP_CALL_SLACK: Duration = Duration::from_secs(5);

fn migrated(e: &GroupError) -> StreamsError {
    StreamsError::TaskMigrated(e.to_string())
}

impl EmbeddedConsumer {
    fn subscription(&self) -> Result<&Subscription> {
        self.subscription.as_ref().ok_or_else(|| {
            StreamsError::IllegalState(format!(
                "consumer {} polled before subscribing",
                self.client_id
            ))
        })
    }

    /// Sends JoinGroup with the current member id and owned tasks.
    fn send_join(&mut self) -> Result<()> {
        self.joins = self.joins.wrapping_add(1);
        let sub = self.subscription()?;
        let topics: Vec<String> = sub.topics.iter().map(|(t, _)| t.clone()).collect();
        let mut info = SubscriptionInfo::new(
            sub.process_id,
            sub.endpoint.clone(),
            (sub.task_offset_sums)(&self.owned_tasks),
        );
        info.unique_field = i8::from_ne_bytes([self.joins]);
        let metadata = encode_subscription(&topics, &self.assigned, &info).map_err(|e| {
            StreamsError::cluster_source(ClusterErrorKind::Fatal, "encoding the subscription", e)
        })?;
        let mut request = JoinGroupRequest::new(
            self.group.clone(),
            CONSUMER_PROTOCOL_TYPE,
            STREAMS_PROTOCOL,
            metadata,
        );
        request.member_id.clone_from(&self.member_id);
        request.client_id.clone_from(&self.client_id);
        request.client_host = "/in-process".to_owned();
        request.session_timeout = sub.session_timeout;
        request.rebalance_timeout = sub.rebalance_timeout;
        self.state = MemberState::Joining(self.broker.group_coordinator().join(request));
        Ok(())
    }

    /// The partitions go away: `Revoked` (the runtime commits first) or `Lost` (no commit).
    /// Returns true if there was anything to give back.
    fn give_back(&mut self, lost: bool, events: &mut Vec<AssignmentEvent>) -> bool {
        self.positions.clear();
        self.paused.clear();
        if self.assigned.is_empty() {
            return false;
        }
        let tps = std::mem::take(&mut self.assigned);
        events.push(if lost {
            AssignmentEvent::Lost(tps)
        } else {
            AssignmentEvent::Revoked(tps)
        });
        true
    }

    /// Reacts to an error of the coordinator: returns true if partitions were given back.
    fn on_group_error(
        &mut self,
        e: &GroupError,
        events: &mut Vec<AssignmentEvent>,
    ) -> Result<bool> {
        match e {
            GroupError::RebalanceInProgress => {
                tracing::info!(group = %self.group, member = %self.member_id, "rebalance: revoking every partition");
                self.state = MemberState::Unjoined;
                Ok(self.give_back(false, events))
            }
            GroupError::IllegalGeneration { .. } => {
                tracing::warn!(group = %self.group, member = %self.member_id, error = %e, "fell out of the generation: partitions lost");
                self.state = MemberState::Unjoined;
                Ok(self.give_back(true, events))
            }
            GroupError::UnknownMemberId | GroupError::FencedInstanceId => {
                tracing::warn!(group = %self.group, member = %self.member_id, error = %e, "no longer a member: partitions lost");
                self.member_id.clear();
                self.generation = -1;
                self.state = MemberState::Unjoined;
                Ok(self.give_back(true, events))
            }
            GroupError::MemberIdRequired { member_id } => {
                self.member_id.clone_from(member_id);
                self.state = MemberState::Unjoined;
                Ok(false)
            }
            GroupError::CoordinatorNotAvailable => {
                self.state = MemberState::Unjoined;
                Ok(self.give_back(true, events))
            }
            other => Err(StreamsError::Cluster {
                kind: ClusterErrorKind::of(other.kafka_error()),
                message: format!("group {}: {other}", self.group),
                source: None,
            }),
        }
    }

    /// Follows the group protocol for up to `wait`. Returns true when the caller should
    /// return to the application (an assignment event was produced).
    fn ensure_active(&mut self, events: &mut Vec<AssignmentEvent>, wait: Duration) -> Result<bool> {
        match &mut self.state {
            MemberState::Stable => {
                if probing_rebalance_due(self.next_rebalance_ms, now_ms()) {
                    // Kafka's follow-up (probing) rebalance: rejoin so the leader can move
                    // tasks to the warm-up replicas that caught up.
                    tracing::info!(group = %self.group, member = %self.member_id, "probing rebalance due: rejoining");
                    self.next_rebalance_ms = NO_REBALANCE;
                    self.state = MemberState::Unjoined;
                    return Ok(self.give_back(false, events));
                }
                if self.last_heartbeat.elapsed() < HEARTBEAT_INTERVAL {
                    return Ok(false);
                }
                self.last_heartbeat = Instant::now();
                match self.broker.group_coordinator().heartbeat(
                    &self.group,
                    self.generation,
                    &self.member_id,
                    None,
                ) {
                    Ok(()) => Ok(false),
                    Err(e) => self.on_group_error(&e, events),
                }
            }
            MemberState::Unjoined => {
                // Eager: everything was given back before the consumer rejoins.
                if self.give_back(false, events) {
                    return Ok(true);
                }
                self.send_join()?;
                Ok(false)
            }
            MemberState::Joining(_) => {
                let MemberState::Joining(mut pending) =
                    std::mem::replace(&mut self.state, MemberState::Unjoined)
                else {
                    return Ok(false);
                };
                let joined = match self
                    .runtime
                    .block_on(async { tokio::time::timeout(wait, &mut pending).await })
                {
                    Err(_) => {
                        self.state = MemberState::Joining(pending);
                        return Ok(false);
                    }
                    Ok(r) => r,
                };
                let joined = match joined {
                    Ok(j) => j,
                    Err(e) => return self.on_group_error(&e, events),
                };
                self.member_id.clone_from(&joined.member_id);
                self.generation = joined.generation_id;
                let assignments = if joined.is_leader() {
                    let sub = self.subscription()?;
                    let members: Vec<(String, bytes::Bytes)> = joined
                        .members
                        .iter()
                        .map(|m| (m.member_id.clone(), m.metadata.clone()))
                        .collect();
                    let out = sub
                        .assignment
                        .assign(&self.member_id, &members)
                        .map_err(|e| {
                            StreamsError::cluster_source(
                                ClusterErrorKind::Fatal,
                                "assigning tasks",
                                e,
                            )
                        })?;
                    tracing::info!(group = %self.group, generation = self.generation, members = members.len(), "leader: tasks assigned");
                    out
                } else {
                    Vec::new()
                };
                let timeout = self.subscription()?.rebalance_timeout + GROUP_CALL_SLACK;
                let pending = self.broker.group_coordinator().sync(SyncGroupRequest {
                    group_id: self.group.clone(),
                    generation_id: self.generation,
                    member_id: self.member_id.clone(),
                    group_instance_id: None,
                    assignments,
                });
                let synced = match self
                    .runtime
                    .block_on(async { tokio::time::timeout(timeout, pending).await })
                {
                    Err(_) => Err(GroupError::RebalanceInProgress),
                    Ok(r) => r,
                };
                let synced = match synced {
                    Ok(s) => s,
                    Err(e) => return self.on_group_error(&e, events),
                };
                let synced = read_sync_assignment(&synced.assignment)?;
                self.owned_tasks.clone_from(&synced.owned_tasks);
                self.next_rebalance_ms = synced.next_rebalance_ms();
                self.assign(synced.partitions.clone())?;
                self.state = MemberState::Stable;
                self.last_heartbeat = Instant::now();
                events.extend(synced.events(self.assigned.clone()));
                tracing::info!(group = %self.group, member = %self.member_id, generation = self.generation,
                    tasks = ?self.owned_tasks.iter().map(ToString::to_string).collect::<Vec<_>>(), "assignment received");
                Ok(true)
            }
        }
    }

    /// Takes `partitions` and positions each at its committed offset, or per the topic's
    /// reset policy.
    fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<()> {
        let resets: BTreeMap<String, OffsetReset> =
            self.subscription()?.topics.iter().cloned().collect();
        let deadline = Instant::now() + STABLE_OFFSETS_WAIT;
        for tp in &partitions {
            // Kafka's `require_stable`: an offset committed in a transaction that is still
            // open (another member's, which may yet commit) is waited for, or this member
            // would process again what that transaction covers.
            while self
                .broker
                .has_pending_txn_offset(&self.group, &to_broker_tp(tp))
            {
                if Instant::now() >= deadline {
                    return Err(StreamsError::cluster(
                        ClusterErrorKind::Retriable,
                        format!("the committed offset of {tp} stays in an open transaction"),
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let committed = self
                .broker
                .committed_offset(&self.group, &to_broker_tp(tp))
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
                        OffsetReset::Latest if self.isolation == BrokerIsolation::ReadCommitted => {
                            o.last_stable_offset
                        }
                        OffsetReset::Latest => o.high_watermark,
                    }
                }
            };
            self.positions.insert(tp.clone(), pos);
        }
        self.assigned = partitions;
        self.next_partition = 0;
        Ok(())
    }

    fn fetch(&mut self, max_records: usize) -> Result<Vec<(TopicPartition, Vec<ConsumedRecord>)>> {
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
                self.isolation,
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
            let records = decode_fetched_committed(&tp.topic, &data, pos).map_err(cluster_err)?;
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
            out.push((tp, records.into_iter().map(to_consumed_record).collect()));
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
    fn subscribe(&mut self, subscription: Subscription) -> Result<()> {
        self.subscription = Some(subscription);
        // Join at once, so the threads of an application land in one rebalance.
        self.state = MemberState::Unjoined;
        self.send_join()
    }

    fn poll(&mut self, timeout: Duration, max_records: usize) -> Result<PollResult> {
        let deadline = Instant::now() + timeout;
        let mut result = PollResult::default();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            // A join may wait for the other members beyond the poll timeout (as Kafka's poll
            // does during a rebalance), bounded by the rebalance timeout.
            let wait = if matches!(self.state, MemberState::Joining(_)) {
                remaining.max(Duration::from_millis(50))
            } else {
                remaining
            };
            if self.ensure_active(&mut result.events, wait)? {
                return Ok(result);
            }
            if matches!(self.state, MemberState::Stable) {
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
                // Wake up on the next append anywhere, or heartbeat again.
                let wait = remaining.min(HEARTBEAT_INTERVAL);
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

    fn reset_to_committed(&mut self) -> Result<()> {
        let assigned = self.assigned.clone();
        self.assign(assigned)
    }

    fn enforce_rebalance(&mut self) {
        // Due at once: the next poll of a stable member rejoins.
        self.next_rebalance_ms = 0;
    }

    fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.positions.get(tp).copied()
    }

    fn group_metadata(&self) -> ConsumerGroupMetadata {
        ConsumerGroupMetadata {
            group_id: self.group.clone(),
            generation_id: self.generation,
            member_id: self.member_id.clone(),
            group_instance_id: None,
        }
    }

    fn commit(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
        let with_metadata = offsets
            .iter()
            .map(|(tp, o)| (tp.clone(), (*o, String::new())))
            .collect();
        self.commit_with_metadata(&with_metadata)
    }

    fn commit_with_metadata(
        &mut self,
        offsets: &BTreeMap<TopicPartition, (i64, String)>,
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let list: Vec<_> = offsets
            .iter()
            .map(|(tp, (o, metadata))| {
                let mut om = OffsetAndMetadata::new(*o);
                om.metadata.clone_from(metadata);
                (to_broker_tp(tp), om)
            })
            .collect();
        let member = CommitMember {
            generation_id: self.generation,
            member_id: self.member_id.clone(),
            group_instance_id: None,
        };
        match self
            .broker
            .commit_group_offsets(&self.group, &member, &list)
        {
            Ok(()) => Ok(()),
            Err(GroupError::Storage(e)) => Err(cluster_err(e)),
            Err(e) => {
                // The partitions belong to another member now: rejoin at the next poll.
                tracing::warn!(group = %self.group, member = %self.member_id, generation = self.generation, error = %e, "commit refused");
                if matches!(
                    e,
                    GroupError::UnknownMemberId | GroupError::FencedInstanceId
                ) {
                    self.member_id.clear();
                    self.generation = -1;
                }
                if !matches!(self.state, MemberState::Joining(_)) {
                    self.state = MemberState::Unjoined;
                }
                // The caller closes the tasks without committing: nothing to revoke.
                self.assigned.clear();
                self.positions.clear();
                self.paused.clear();
                Err(migrated(&e))
            }
        }
    }

    fn fetched_lag(&self, tp: &TopicPartition) -> Option<i64> {
        let position = *self.positions.get(tp)?;
        let offsets = self
            .broker
            .partition_offsets(&tp.topic, tp.partition)
            .ok()?;
        // The consumer reads committed data only (read_committed).
        Some((offsets.last_stable_offset - position).max(0))
    }

    fn close(&mut self) -> Result<()> {
        self.assigned.clear();
        self.positions.clear();
        self.state = MemberState::Unjoined;
        if self.member_id.is_empty() {
            return Ok(());
        }
        let member = std::mem::take(&mut self.member_id);
        match self
            .broker
            .group_coordinator()
            .leave(&self.group, &member, None)
        {
            Ok(()) | Err(GroupError::UnknownMemberId) => Ok(()),
            Err(e) => Err(StreamsError::group(
                format!("leaving group {}", self.group),
                e,
            )),
        }
    }
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

#[cfg(test)]
mod tests {
    use broker_embedded::BrokerConfig;

    use super::*;

    #[test]
    fn cleanup_policy_rules_of_internal_topics_are_kafkas() {
        use InternalTopicKind::*;
        assert_eq!(Changelog.cleanup_policy_violation("compact"), None);
        assert_eq!(Changelog.cleanup_policy_violation("delete"), Some("delete"));
        assert_eq!(
            Changelog.cleanup_policy_violation("compact, delete"),
            Some("delete")
        );
        assert_eq!(
            WindowedChangelog.cleanup_policy_violation("compact,delete"),
            None
        );
        assert_eq!(WindowedChangelog.cleanup_policy_violation("delete"), None);
        assert_eq!(Repartition.cleanup_policy_violation("delete"), None);
        assert_eq!(
            Repartition.cleanup_policy_violation("delete,compact"),
            Some("compact")
        );
    }

    fn record(value: &[u8]) -> ProducedRecord {
        ProducedRecord {
            key: Some(bytes::Bytes::from_static(b"k")),
            value: Some(bytes::Bytes::copy_from_slice(value)),
            headers: Vec::new(),
            timestamp: 1,
        }
    }

    /// A batch of small records larger than the topic's `max.message.bytes` is split (as
    /// Kafka's producer does on MESSAGE_TOO_LARGE) and every record lands, in order; only a
    /// single record too large for the topic fails, with a fatal error naming the partition.
    #[test]
    fn batches_over_max_message_bytes_are_split_and_one_huge_record_fails() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig::new(dir.path().join("log"))).unwrap();
        broker
            .create_topic(NewTopic::new("small", 1).config("max.message.bytes", "300"))
            .unwrap();
        let cluster = EmbeddedCluster::new(broker.clone());
        let mut producer = cluster.producer("p").unwrap();
        let tp = TopicPartition::new("small", 0);
        let values: Vec<Vec<u8>> = (0..200)
            .map(|i| format!("value-{i:04}").into_bytes())
            .collect();
        producer
            .send(&tp, values.iter().map(|v| record(v)).collect())
            .unwrap();
        assert_eq!(
            producer.flush().unwrap(),
            BTreeMap::from([(tp.clone(), 199)])
        );
        let mut got = Vec::new();
        let mut next = 0;
        while next < 200 {
            let data = broker
                .read_partition("small", 0, next, 1 << 20, BrokerIsolation::ReadCommitted)
                .unwrap();
            let records = broker_embedded::decode_fetched("small", &data.records, next).unwrap();
            next = records.last().unwrap().offset + 1;
            got.extend(records.into_iter().map(|r| r.value.unwrap().to_vec()));
        }
        assert_eq!(got, values);

        let err = producer
            .send(
                &tp,
                vec![record(b"ok"), record(&[b'x'; 400]), record(b"never")],
            )
            .unwrap_err();
        assert_eq!(err.cluster_kind(), Some(ClusterErrorKind::Fatal));
        assert!(err.to_string().contains("small-0"), "{err}");
        assert!(err.to_string().contains("max.message.bytes = 300"), "{err}");
        // The record before the huge one was written; nothing after it.
        assert_eq!(
            broker.partition_offsets("small", 0).unwrap().high_watermark,
            201
        );
    }
}
