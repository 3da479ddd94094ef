//! A stream thread's consumer over the wire: group membership through the own classic-group
//! client ([`super::group`]) with the streams assignor run by the leader, and records fetched
//! by a librdkafka consumer in assign mode. The protocol is eager, as the embedded backend's:
//! a rebalance revokes every partition (the runtime commits first), then the member rejoins.
//!
//! Heartbeats go out from a background thread (Kafka's consumer does the same since KIP-62),
//! so a long restoration or a slow batch does not cost the member its place; the thread only
//! reports what the coordinator answers, and the next `poll` acts on it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use state_store::TopicPartition;

use super::group::{GroupClient, JoinParams, MemberIdentityInfo};
use super::{
    consumed_record, is_informational_consumer_error, rdkafka_error, retry_transient, ClientKind,
    WireError, WireSettings,
};
use crate::assignment::{
    encode_subscription, SubscriptionInfo, CONSUMER_PROTOCOL_TYPE, NO_REBALANCE, STREAMS_PROTOCOL,
};
use crate::client::{
    probing_rebalance_due, read_sync_assignment, AssignmentEvent, ClusterConsumer, PollResult,
    Subscription,
};
use crate::client::{ConsumerGroupMetadata, IsolationLevel};
use crate::error::{ClusterErrorKind, Result, StreamsError};
use crate::record::ConsumedRecord;
use crate::task::TaskId;
use crate::topology::OffsetReset;

/// How long a member waits before trying to join again after a retriable failure.
const REJOIN_BACKOFF: Duration = Duration::from_millis(200);

/// Milliseconds since the epoch (the clock of probing-rebalance times).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Records held at most for paused partitions before the consumer stops polling librdkafka
/// (see `pause`).
const MAX_HELD_RECORDS: usize = 20_000;

/// The background heartbeat of one generation.
struct Heartbeat {
    stop: Arc<AtomicBool>,
    /// The coordinator's first error answer (the thread stops after it).
    error: Arc<Mutex<Option<WireError>>>,
}

impl Heartbeat {
    fn start(
        mut client: GroupClient,
        me: MemberIdentityInfo,
        interval: Duration,
        name: String,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let error = Arc::new(Mutex::new(None));
        let (t_stop, t_error) = (Arc::clone(&stop), Arc::clone(&error));
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let mut last = Instant::now();
                while !t_stop.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(20).min(interval));
                    if last.elapsed() < interval {
                        continue;
                    }
                    last = Instant::now();
                    if t_stop.load(Ordering::Acquire) {
                        break;
                    }
                    match client.heartbeat(&me, interval) {
                        Ok(()) => {}
                        Err(e) if e.coordinator_lost() => {
                            tracing::debug!(error = %e, "heartbeat failed; retrying");
                        }
                        Err(e) => {
                            *t_error.lock() = Some(e);
                            break;
                        }
                    }
                }
            })
            .map_err(|e| StreamsError::Io {
                path: "heartbeat thread".into(),
                source: e,
            })?;
        Ok(Heartbeat { stop, error })
    }

    fn take_error(&self) -> Option<WireError> {
        self.error.lock().take()
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

pub(super) struct WireConsumer {
    consumer: BaseConsumer,
    group: GroupClient,
    /// A second client for the heartbeat thread's connection (cloned settings).
    settings: WireSettings,
    client_id: String,
    me: MemberIdentityInfo,
    subscription: Option<Subscription>,
    stable: bool,
    heartbeat: Option<Heartbeat>,
    owned_tasks: BTreeSet<TaskId>,
    assigned: Vec<TopicPartition>,
    /// Next offset to read per assigned partition, when known.
    positions: BTreeMap<TopicPartition, i64>,
    paused: BTreeSet<TopicPartition>,
    /// Records fetched for paused partitions, in offset order, not handed out yet.
    held: BTreeMap<TopicPartition, Vec<ConsumedRecord>>,
    held_count: usize,
    retry_at: Option<Instant>,
    /// When the last assignment asked this member to rejoin (probing rebalance).
    next_rebalance_ms: i64,
    /// Joins sent (Kafka's `uniqueField` of the subscription).
    joins: u8,
}

impl WireConsumer {
    pub(super) fn new(
        settings: &WireSettings,
        group: GroupClient,
        client_id: &str,
        instance_id: Option<String>,
        isolation: IsolationLevel,
    ) -> Result<Self> {
        let mut config = settings.client_config(ClientKind::MainConsumer, client_id);
        config
            .set("enable.auto.commit", "false")
            // librdkafka assigns partitions only with a group id; this client never
            // joins that group nor commits to it (its id is unique to the client).
            .set("group.id", format!("{client_id}-assign-only"))
            .set("enable.auto.offset.store", "false")
            .set(
                "isolation.level",
                match isolation {
                    IsolationLevel::ReadCommitted => "read_committed",
                    IsolationLevel::ReadUncommitted => "read_uncommitted",
                },
            )
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| rdkafka_error("creating a consumer", e))?;
        Ok(WireConsumer {
            consumer,
            group,
            settings: settings.clone(),
            client_id: client_id.to_owned(),
            me: MemberIdentityInfo {
                member_id: String::new(),
                generation: -1,
                instance_id,
            },
            subscription: None,
            stable: false,
            heartbeat: None,
            owned_tasks: BTreeSet::new(),
            assigned: Vec::new(),
            positions: BTreeMap::new(),
            paused: BTreeSet::new(),
            held: BTreeMap::new(),
            held_count: 0,
            retry_at: None,
            next_rebalance_ms: NO_REBALANCE,
            joins: 0,
        })
    }

    fn subscription(&self) -> Result<&Subscription> {
        self.subscription.as_ref().ok_or_else(|| {
            StreamsError::IllegalState(format!(
                "consumer {} polled before subscribing",
                self.client_id
            ))
        })
    }

    /// Gives every partition back: `Revoked` (the runtime commits) or `Lost` (it must not).
    fn give_back(&mut self, lost: bool, events: &mut Vec<AssignmentEvent>) -> bool {
        self.heartbeat = None;
        self.stable = false;
        self.positions.clear();
        self.resume_all_paused();
        if let Err(e) = self.consumer.unassign() {
            tracing::warn!(error = %e, "unassigning the consumer");
        }
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

    /// Acts on a coordinator error; `Ok(true)` if partitions were given back.
    fn on_group_error(&mut self, e: WireError, events: &mut Vec<AssignmentEvent>) -> Result<bool> {
        let group = self.group.group().to_owned();
        match e.response_error() {
            Some(ResponseError::RebalanceInProgress) => {
                tracing::info!(%group, member = %self.me.member_id, "rebalance: revoking every partition");
                Ok(self.give_back(false, events))
            }
            Some(ResponseError::IllegalGeneration) => {
                tracing::warn!(%group, member = %self.me.member_id, error = %e, "fell out of the generation: partitions lost");
                Ok(self.give_back(true, events))
            }
            Some(ResponseError::UnknownMemberId) => {
                tracing::warn!(%group, member = %self.me.member_id, error = %e, "no longer a member: partitions lost");
                self.me.member_id.clear();
                self.me.generation = -1;
                Ok(self.give_back(true, events))
            }
            Some(ResponseError::FencedInstanceId) => {
                self.give_back(true, events);
                Err(e.into_streams(format!(
                    "group {group}: another instance uses group.instance.id {:?}",
                    self.me.instance_id
                )))
            }
            _ if e.coordinator_lost() || matches!(e.kind_of(), ClusterErrorKind::Retriable) => {
                tracing::warn!(%group, error = %e, "group call failed; retrying");
                self.retry_at = Some(Instant::now() + REJOIN_BACKOFF);
                Ok(self.give_back(true, events))
            }
            _ => Err(e.into_streams(format!("group {group}"))),
        }
    }

    /// Joins and syncs (blocking up to the rebalance timeout while the other members join).
    fn join(&mut self, events: &mut Vec<AssignmentEvent>) -> Result<bool> {
        let sub = self.subscription()?.clone();
        let topics: Vec<String> = sub.topics.iter().map(|(t, _)| t.clone()).collect();
        self.joins = self.joins.wrapping_add(1);
        let mut info = SubscriptionInfo::new(
            sub.process_id,
            sub.endpoint.clone(),
            (sub.task_offset_sums)(&self.owned_tasks),
        );
        info.unique_field = i8::from_ne_bytes([self.joins]);
        let metadata = encode_subscription(&topics, &self.assigned, &info).map_err(|e| {
            StreamsError::cluster_source(ClusterErrorKind::Fatal, "encoding the subscription", e)
        })?;
        let params = JoinParams {
            protocol_type: CONSUMER_PROTOCOL_TYPE.to_owned(),
            protocol_name: STREAMS_PROTOCOL.to_owned(),
            metadata,
            session_timeout: sub.session_timeout,
            rebalance_timeout: sub.rebalance_timeout,
        };
        let joined = match self.group.join(&mut self.me, &params) {
            Ok(j) => j,
            Err(e) => return self.on_group_error(e, events),
        };
        let assignments: Vec<(String, Bytes)> = if joined.is_leader() {
            let out = sub
                .assignment
                .assign(&joined.member_id, &joined.members)
                .map_err(|e| {
                    StreamsError::cluster_source(ClusterErrorKind::Fatal, "assigning tasks", e)
                })?;
            tracing::info!(group = %self.group.group(), generation = joined.generation, members = joined.members.len(), "leader: tasks assigned");
            out
        } else {
            Vec::new()
        };
        let synced = self
            .group
            .sync(&self.me, assignments, sub.rebalance_timeout);
        let bytes = match synced {
            Ok(b) => b,
            // librdkafka's mock cluster answers a SyncGroup that arrives after the group left
            // its syncing state with INVALID_REQUEST where Kafka says REBALANCE_IN_PROGRESS or
            // ILLEGAL_GENERATION; librdkafka's own consumer rejoins then, and so do we.
            Err(e) if e.response_error() == Some(ResponseError::InvalidRequest) => {
                tracing::warn!(group = %self.group.group(), error = %e, "SyncGroup refused; rejoining");
                self.retry_at = Some(Instant::now() + REJOIN_BACKOFF);
                self.give_back(true, events);
                return Ok(true);
            }
            Err(e) => return self.on_group_error(e, events),
        };
        if bytes.is_empty() {
            // Kafka's coordinator sends an empty assignment to a member the leader left out
            // (a leader of another protocol); the streams leader assigns every member.
            return Err(StreamsError::cluster_fatal(format!(
                "group {}: empty assignment from the leader",
                self.group.group()
            )));
        }
        let synced = read_sync_assignment(&bytes)?;
        self.owned_tasks.clone_from(&synced.owned_tasks);
        self.next_rebalance_ms = synced.next_rebalance_ms();
        let partitions = synced.partitions.clone();
        self.assign(partitions, &sub)?;
        self.stable = true;
        let hb_client = GroupClient::new(
            self.settings.bootstrap.clone(),
            &self.client_id,
            self.group.group(),
            self.settings.request_timeout,
            self.settings.api_timeout,
        );
        self.heartbeat = Some(Heartbeat::start(
            hb_client,
            self.me.clone(),
            self.settings.heartbeat_interval,
            format!("{}-heartbeat", self.client_id),
        )?);
        events.extend(synced.events(self.assigned.clone()));
        tracing::info!(group = %self.group.group(), member = %self.me.member_id, generation = self.me.generation,
            tasks = ?self.owned_tasks.iter().map(ToString::to_string).collect::<Vec<_>>(), "assignment received");
        Ok(true)
    }

    /// Takes `partitions`, each at its committed offset or per its topic's reset policy.
    fn assign(&mut self, partitions: Vec<TopicPartition>, sub: &Subscription) -> Result<()> {
        let resets: BTreeMap<&str, OffsetReset> =
            sub.topics.iter().map(|(t, r)| (t.as_str(), *r)).collect();
        let committed = if partitions.is_empty() {
            BTreeMap::new()
        } else {
            self.group
                .committed(&partitions)
                .map_err(|e| e.into_streams("reading the committed offsets"))?
        };
        let mut list = TopicPartitionList::new();
        self.positions.clear();
        for tp in &partitions {
            // Every position is made explicit (the committed offset, else the log start or
            // end): `fetched_lag` needs it from the start.
            let position = match committed.get(tp) {
                Some((o, _)) => *o,
                None => {
                    let consumer = &self.consumer;
                    let (low, high) = retry_transient(
                        &self.settings,
                        || format!("offsets of {tp}"),
                        |timeout| consumer.fetch_watermarks(&tp.topic, tp.partition, timeout),
                    )?;
                    match resets.get(tp.topic.as_str()).copied().unwrap_or_default() {
                        OffsetReset::Earliest => low,
                        OffsetReset::Latest => high,
                    }
                }
            };
            self.positions.insert(tp.clone(), position);
            tracing::debug!(partition = %tp, position, "assigning");
            list.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(position))
                .map_err(|e| rdkafka_error(format!("assigning {tp}"), e))?;
        }
        self.consumer
            .assign(&list)
            .map_err(|e| rdkafka_error("assigning partitions", e))?;
        self.assigned = partitions;
        self.resume_all_paused();
        Ok(())
    }

    /// Forgets the paused partitions and the records held for them (the partitions are
    /// given back, or assigned afresh at their committed offsets).
    fn resume_all_paused(&mut self) {
        self.paused.clear();
        self.held.clear();
        self.held_count = 0;
    }

    fn fetch(
        &mut self,
        timeout: Duration,
        max_records: usize,
    ) -> Result<Vec<(TopicPartition, Vec<ConsumedRecord>)>> {
        let mut out: Vec<(TopicPartition, Vec<ConsumedRecord>)> = Vec::new();
        let mut total = 0;
        // First what was held back for partitions that are not paused any more.
        let ready: Vec<TopicPartition> = self
            .held
            .keys()
            .filter(|tp| !self.paused.contains(*tp))
            .cloned()
            .collect();
        for tp in ready {
            if let Some(records) = self.held.remove(&tp) {
                self.held_count -= records.len();
                total += records.len();
                if let Some(last) = records.last() {
                    self.positions.insert(tp.clone(), last.offset + 1);
                }
                out.push((tp, records));
            }
        }
        let mut wait = if total > 0 { Duration::ZERO } else { timeout };
        // Backpressure: with this many records held for paused partitions, librdkafka is not
        // polled until the runtime has worked some of them off.
        while total < max_records && self.held_count < MAX_HELD_RECORDS {
            let m = match self.consumer.poll(wait) {
                None => break,
                Some(Err(KafkaError::PartitionEOF(_))) => continue,
                Some(Err(e)) if is_informational_consumer_error(&e) => {
                    // librdkafka reconnects and fetches again by itself (a broker restart,
                    // a leader moving): not a reason to stop the thread. Hand out what was
                    // fetched so far rather than wait again.
                    tracing::debug!(error = %e, "consumer: transient error; librdkafka recovers by itself");
                    wait = Duration::ZERO;
                    continue;
                }
                Some(Err(e)) => {
                    return Err(rdkafka_error("fetching records", e));
                }
                Some(Ok(m)) => m,
            };
            wait = Duration::ZERO;
            let tp = TopicPartition::new(m.topic(), m.partition());
            if !self.assigned.contains(&tp) {
                continue;
            }
            let record = consumed_record(&m);
            if self.paused.contains(&tp) {
                self.held.entry(tp).or_default().push(record);
                self.held_count += 1;
                continue;
            }
            self.positions.insert(tp.clone(), m.offset() + 1);
            total += 1;
            match out.last_mut() {
                Some((last, records)) if *last == tp => records.push(record),
                _ => match out.iter_mut().find(|(t, _)| *t == tp) {
                    Some((_, records)) => records.push(record),
                    None => out.push((tp, vec![record])),
                },
            }
        }
        Ok(out)
    }
}

impl WireError {
    fn kind_of(&self) -> ClusterErrorKind {
        match self.response_error() {
            Some(e) => ClusterErrorKind::of(e),
            None => match self {
                WireError::Io { .. }
                | WireError::Timeout { .. }
                | WireError::NoCoordinator { .. } => ClusterErrorKind::Retriable,
                _ => ClusterErrorKind::Fatal,
            },
        }
    }
}

impl ClusterConsumer for WireConsumer {
    fn subscribe(&mut self, subscription: Subscription) -> Result<()> {
        self.subscription = Some(subscription);
        self.stable = false;
        Ok(())
    }

    fn poll(&mut self, timeout: Duration, max_records: usize) -> Result<PollResult> {
        let mut result = PollResult::default();
        if let Some(e) = self.heartbeat.as_ref().and_then(Heartbeat::take_error) {
            if self.on_group_error(e, &mut result.events)? {
                return Ok(result);
            }
        }
        if !self.stable {
            if self.give_back(false, &mut result.events) {
                return Ok(result);
            }
            if let Some(at) = self.retry_at {
                let now = Instant::now();
                if now < at {
                    std::thread::sleep((at - now).min(timeout));
                    return Ok(result);
                }
                self.retry_at = None;
            }
            self.join(&mut result.events)?;
            return Ok(result);
        }
        if probing_rebalance_due(self.next_rebalance_ms, now_ms()) {
            // Kafka's follow-up (probing) rebalance: rejoin so the leader can move tasks to
            // the warm-up replicas that caught up.
            tracing::info!(group = %self.group.group(), member = %self.me.member_id, "probing rebalance due: rejoining");
            self.next_rebalance_ms = NO_REBALANCE;
            self.give_back(false, &mut result.events);
            return Ok(result);
        }
        result.records = self.fetch(timeout, max_records)?;
        Ok(result)
    }

    fn pause(&mut self, partitions: &[TopicPartition]) {
        // Not librdkafka's pause: a partition paused and then unassigned and assigned again
        // around a rebalance was seen to stay silent in librdkafka (records on the broker,
        // none delivered). Records of a paused partition are held here instead and handed
        // out when it is resumed; `MAX_HELD_RECORDS` bounds them.
        self.paused.extend(partitions.iter().cloned());
    }

    fn resume(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.paused.remove(tp);
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
        let list: Vec<(TopicPartition, i64, String)> = offsets
            .iter()
            .map(|(tp, (o, m))| (tp.clone(), *o, m.clone()))
            .collect();
        match self.group.commit(&self.me, &list) {
            Ok(()) => Ok(()),
            Err(e) => match e.response_error() {
                Some(
                    ResponseError::IllegalGeneration
                    | ResponseError::UnknownMemberId
                    | ResponseError::RebalanceInProgress
                    | ResponseError::FencedInstanceId,
                ) => {
                    tracing::warn!(group = %self.group.group(), member = %self.me.member_id, generation = self.me.generation, error = %e, "commit refused");
                    if matches!(e.response_error(), Some(ResponseError::UnknownMemberId)) {
                        self.me.member_id.clear();
                        self.me.generation = -1;
                    }
                    // The caller closes the tasks without committing: nothing to revoke.
                    let mut ignored = Vec::new();
                    self.assigned.clear();
                    self.give_back(true, &mut ignored);
                    Err(StreamsError::TaskMigrated(e.to_string()))
                }
                _ => Err(e.into_streams("committing offsets")),
            },
        }
    }

    /// Records of `tp` not yet handed to the runtime: the high watermark of the consumer's
    /// last fetch response minus the position (Kafka's `Consumer.currentLag`), plus the
    /// records held for a paused partition. It never asks the broker: a ListOffsets request
    /// would queue behind the consumer's long-polling fetch on the same connection and
    /// stall the stream thread for the fetch wait.
    ///
    /// The position is librdkafka's (`rd_kafka_position`) when it has one: it is past the
    /// transaction markers and the aborted records a `read_committed` consumer skips, which
    /// the offset after the last record handed out is not — with it, a partition whose
    /// last batch is a commit marker (every partition an exactly-once producer writes)
    /// would look one record behind for ever, and a task with another input partition
    /// would wait for a record that never comes.
    ///
    /// Under `read_committed` the Java consumer measures the lag to the last stable offset.
    /// librdkafka keeps the LSO of each fetch response (`rktp_ls_offset`) but its C API
    /// hands out only the high watermark (`rd_kafka_get_watermark_offsets`); the LSO is in
    /// the statistics JSON alone (`ls_offset`, every `statistics.interval.ms`: stale, and a
    /// JSON document of every partition per interval). So records of a transaction still
    /// open count as lag here: a task with an empty partition waits for them until the
    /// transaction ends — at the writer's next commit (`commit.interval.ms`, 100 ms under
    /// exactly-once), or for a crashed writer when the coordinator aborts it
    /// (`transaction.timeout.ms`) — instead of processing its other partitions at once.
    /// Order is kept; only latency is lost.
    fn fetched_lag(&self, tp: &TopicPartition) -> Option<i64> {
        let handed_out = *self.positions.get(tp)?;
        let end = super::native::cached_high_watermark(&self.consumer, tp)?;
        let consumed = super::native::consumed_position(&self.consumer, tp)
            .map_or(handed_out, |p| p.max(handed_out));
        let held = self
            .held
            .get(tp)
            .map_or(0, |h| i64::try_from(h.len()).unwrap_or(i64::MAX));
        Some((end - consumed).max(0).saturating_add(held))
    }

    /// Records held back for a paused partition come first; otherwise librdkafka's position
    /// (past transaction markers and aborted records), or the position after the last
    /// record returned if that is further.
    fn position(&self, tp: &TopicPartition) -> Option<i64> {
        if let Some(first) = self.held.get(tp).and_then(|h| h.first()) {
            return Some(first.offset);
        }
        let handed_out = *self.positions.get(tp)?;
        Some(
            super::native::consumed_position(&self.consumer, tp)
                .map_or(handed_out, |p| p.max(handed_out)),
        )
    }

    fn enforce_rebalance(&mut self) {
        // Due at once: the next poll of a stable member rejoins.
        self.next_rebalance_ms = 0;
    }

    fn reset_to_committed(&mut self) -> Result<()> {
        let sub = self.subscription()?.clone();
        let assigned = self.assigned.clone();
        self.assign(assigned, &sub)
    }

    fn group_metadata(&self) -> ConsumerGroupMetadata {
        ConsumerGroupMetadata {
            group_id: self.group.group().to_owned(),
            generation_id: self.me.generation,
            member_id: self.me.member_id.clone(),
            group_instance_id: self.me.instance_id.clone(),
        }
    }

    fn close(&mut self) -> Result<()> {
        let mut ignored = Vec::new();
        self.give_back(false, &mut ignored);
        if self.me.member_id.is_empty() {
            return Ok(());
        }
        if self.me.instance_id.is_some() {
            // A static member keeps its place for `session.timeout.ms` (KIP-345): a restart
            // within it takes its tasks back without a rebalance.
            return Ok(());
        }
        let result = self.group.leave(&self.me);
        self.me.member_id.clear();
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.response_error() == Some(ResponseError::UnknownMemberId) => Ok(()),
            Err(e) => Err(e.into_streams(format!("leaving group {}", self.group.group()))),
        }
    }
}

impl Drop for WireConsumer {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::debug!(error = %e, "closing the consumer");
        }
    }
}
