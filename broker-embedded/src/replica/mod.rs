//! Replication of partitions between brokers (Kafka's `ReplicaManager`, `Partition`,
//! `DelayedProduce` and `ReplicaFetcherThread`), independent of how the cluster's metadata is
//! kept: the cluster layer drives it with [`ReplicaManager::apply_partition_state`], carries
//! ISR changes to the controller through an [`AlterPartitionSink`], and gives the follower
//! fetchers their connections through a [`LeaderEndpointFactory`].
//!
//! - **Leader**: follower fetches ([`ReplicaManager::fetch_from_follower`]) record each
//!   follower's log end offset and caught-up time; the high watermark is the minimum log end
//!   offset over the (maximal) ISR; a follower joins the ISR when it reaches the high watermark
//!   and the start of the current leader epoch, and leaves it after
//!   `replica.lag.time.max.ms` without catching up. One ISR change is in flight at a time.
//! - **Produce with acks=all** ([`ReplicaManager::append_records`],
//!   [`ReplicaManager::wait_for_acks`]): refused with NOT_ENOUGH_REPLICAS when the ISR is below
//!   `min.insync.replicas`, completes when the high watermark passes the batch, with
//!   NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank below it meanwhile, with
//!   REQUEST_TIMED_OUT after the timeout, and with NOT_LEADER_OR_FOLLOWER when leadership is
//!   lost.
//! - **Follower**: one fetcher task per leader broker fetches all partitions followed from it,
//!   appends as follower, takes the high watermark from the response, truncates on a diverging
//!   epoch (KIP-320) or through OffsetForLeaderEpoch, and handles OFFSET_OUT_OF_RANGE.
//!
//! The log is reached through the [`ReplicaLog`] trait.

mod fetcher;
mod log;
mod partition_log;
mod state;
#[cfg(test)]
mod tests;

pub use fetcher::{BoxFuture, LeaderEndpoint, LeaderEndpointFactory};
pub use log::ReplicaLog;
pub use state::{
    AcksCheck, CommittedIsr, FollowerReplica, FollowerState, IsrChangeResult, IsrProposal,
    IsrState, LeaderState, PartitionRegistration, PartitionState, Role, Transition,
};

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::{AppendInfo, AppendOrigin, TopicPartition};
use fetcher::FetcherPool;

/// Where the leader sends ISR changes (the cluster layer sends Kafka's AlterPartition to the
/// controller and resolves the future with the committed ISR or the error code).
pub trait AlterPartitionSink: Send + Sync + 'static {
    /// Proposes `proposal` for `tp` (topic id `topic_id`) on behalf of this broker.
    fn alter_partition(
        &self,
        tp: TopicPartition,
        topic_id: Uuid,
        proposal: IsrProposal,
    ) -> BoxFuture<'static, IsrChangeResult>;
}

/// Settings of the replica manager (Kafka's broker configs of the same names).
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// This broker's `node.id`.
    pub node_id: i32,
    /// `replica.lag.time.max.ms` (30 000).
    pub replica_lag_time_max_ms: i64,
    /// `replica.fetch.wait.max.ms` (500).
    pub replica_fetch_wait_max_ms: i32,
    /// `replica.fetch.min.bytes` (1).
    pub replica_fetch_min_bytes: i32,
    /// `replica.fetch.max.bytes` per partition (1 MiB).
    pub replica_fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes` (10 MiB).
    pub replica_fetch_response_max_bytes: i32,
    /// `replica.fetch.backoff.ms` (1000).
    pub replica_fetch_backoff_ms: u64,
    /// Whether followers truncate from the Fetch response's diverging epoch (KIP-320, Fetch
    /// v12+, Kafka's default); when false they ask OffsetForLeaderEpoch first after every
    /// leader change.
    pub truncate_on_fetch: bool,
}

impl ReplicaConfig {
    /// Kafka's defaults for broker `node_id`.
    pub fn new(node_id: i32) -> Self {
        ReplicaConfig {
            node_id,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_min_bytes: 1,
            replica_fetch_max_bytes: 1 << 20,
            replica_fetch_response_max_bytes: 10 << 20,
            replica_fetch_backoff_ms: 1000,
            truncate_on_fetch: true,
        }
    }
}

/// A clock in milliseconds (wall clock by default; tests pass their own).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    })
}

/// One replicated partition on this broker.
pub(crate) struct Partition {
    pub(crate) tp: TopicPartition,
    pub(crate) topic_id: Uuid,
    pub(crate) log: Arc<dyn ReplicaLog>,
    pub(crate) state: Mutex<PartitionState>,
    /// Bumped on every change of role, ISR, high watermark or log end offset.
    changed: watch::Sender<u64>,
}

impl Partition {
    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// A follower's fetch of one partition from the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaFetch {
    /// The follower's broker id.
    pub replica_id: i32,
    /// The offset to read from (the follower's log end offset).
    pub fetch_offset: i64,
    /// The follower's log start offset.
    pub log_start_offset: i64,
    /// The epoch of the follower's last record (Fetch v12+), for divergence detection.
    pub last_fetched_epoch: Option<i32>,
    /// The leader epoch the follower believes current.
    pub current_leader_epoch: Option<i32>,
    /// Most bytes to return.
    pub max_bytes: usize,
}

/// The leader's answer to a [`ReplicaFetch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFetchResult {
    /// Kafka error code (0 = none).
    pub error_code: i16,
    /// Whole record batches from the fetch offset (empty on error or divergence).
    pub records: Bytes,
    /// The leader's high watermark before the read.
    pub high_watermark: i64,
    /// The leader's log start offset.
    pub log_start_offset: i64,
    /// The leader's log end offset before the read.
    pub log_end_offset: i64,
    /// `(epoch, end offset)` when the follower's log diverges (KIP-320).
    pub diverging_epoch: Option<(i32, i64)>,
}

impl ReplicaFetchResult {
    fn error(code: i16) -> Self {
        ReplicaFetchResult {
            error_code: code,
            records: Bytes::new(),
            high_watermark: -1,
            log_start_offset: -1,
            log_end_offset: -1,
            diverging_epoch: None,
        }
    }
}

/// Outcome of [`ReplicaManager::append_records`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceOutcome {
    /// Kafka error code (0 = success).
    pub error_code: i16,
    /// The append, when it happened.
    pub info: Option<AppendInfo>,
}

pub(crate) struct Inner {
    pub(crate) config: ReplicaConfig,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    sink: Option<Arc<dyn AlterPartitionSink>>,
    pub(crate) clock: Clock,
    /// Bumped on any partition change; replica fetches long-poll on it.
    any_change: watch::Sender<u64>,
    fetchers: FetcherPool,
    /// Brokers that may not join an ISR (see [`ReplicaManager::set_ineligible_replicas`]).
    ineligible: RwLock<BTreeSet<i32>>,
}

/// The replica manager of one broker (cheap to clone).
#[derive(Clone)]
pub struct ReplicaManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ReplicaManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaManager")
            .field("node_id", &self.inner.config.node_id)
            .finish_non_exhaustive()
    }
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

impl ReplicaManager {
    /// A replica manager for `config.node_id`, proposing ISR changes to `sink` (no ISR changes
    /// are proposed without one) and fetching as a follower through `endpoints`.
    pub fn new(
        config: ReplicaConfig,
        sink: Option<Arc<dyn AlterPartitionSink>>,
        endpoints: Arc<dyn LeaderEndpointFactory>,
    ) -> Self {
        Self::with_clock(config, sink, endpoints, system_clock())
    }

    /// As [`ReplicaManager::new`] with a given millisecond clock.
    pub fn with_clock(
        config: ReplicaConfig,
        sink: Option<Arc<dyn AlterPartitionSink>>,
        endpoints: Arc<dyn LeaderEndpointFactory>,
        clock: Clock,
    ) -> Self {
        let (any_change, _) = watch::channel(0);
        ReplicaManager {
            inner: Arc::new(Inner {
                config,
                partitions: RwLock::new(HashMap::new()),
                sink,
                clock,
                any_change,
                fetchers: FetcherPool::new(endpoints),
                ineligible: RwLock::new(BTreeSet::new()),
            }),
        }
    }

    /// This broker's id.
    pub fn node_id(&self) -> i32 {
        self.inner.config.node_id
    }

    fn now(&self) -> i64 {
        (self.inner.clock)()
    }

    pub(crate) fn partition(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.inner.partitions.read().get(tp).cloned()
    }

    pub(crate) fn partition_by_id(&self, topic_id: Uuid, partition: i32) -> Option<Arc<Partition>> {
        self.inner
            .partitions
            .read()
            .values()
            .find(|p| p.topic_id == topic_id && p.tp.partition == partition)
            .cloned()
    }

    /// The partitions this broker replicates.
    pub fn partitions(&self) -> Vec<TopicPartition> {
        self.inner.partitions.read().keys().cloned().collect()
    }

    /// A copy of a partition's replication state.
    pub fn partition_state(&self, tp: &TopicPartition) -> Option<PartitionState> {
        self.partition(tp).map(|p| p.state.lock().clone())
    }

    /// `(leader id, leader epoch)` as known here, for the `current_leader` fields of Fetch and
    /// Produce responses; `None` when this broker does not replicate `tp`.
    pub fn current_leader(&self, tp: &TopicPartition) -> Option<(i32, i32)> {
        self.partition(tp).map(|p| {
            let s = p.state.lock();
            (s.leader_id(), s.leader_epoch())
        })
    }

    fn notify(&self, p: &Partition) {
        p.bump();
        self.inner
            .any_change
            .send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Applies the controller's registration of `tp` with its local `log` (Kafka's become
    /// leader / become follower / stop replica): stale registrations (older leader or partition
    /// epoch) are ignored; a registration without this broker stops the replica. Followers are
    /// (re)added to the fetcher of their leader. The `log` of the first registration is kept
    /// until the replica stops ([`ReplicaManager::stop_replica`] or a registration without
    /// this broker).
    pub fn apply_partition_state(
        &self,
        tp: &TopicPartition,
        topic_id: Uuid,
        log: Arc<dyn ReplicaLog>,
        reg: &PartitionRegistration,
    ) -> Transition {
        let p = {
            let mut parts = self.inner.partitions.write();
            parts
                .entry(tp.clone())
                .or_insert_with(|| {
                    let (changed, _) = watch::channel(0);
                    Arc::new(Partition {
                        tp: tp.clone(),
                        topic_id,
                        log,
                        state: Mutex::new(PartitionState::new(self.inner.config.node_id)),
                        changed,
                    })
                })
                .clone()
        };
        let now = self.now();
        let transition = {
            let mut s = p.state.lock();
            s.set_ineligible_replicas(&self.inner.ineligible.read());
            let t = s.apply(reg, p.log.log_end_offset(), now);
            if let Transition::Leader { .. } = t {
                self.maybe_increment_hw(&p, &s, now);
            }
            t
        };
        if let Transition::Unchanged { .. } = transition {
            debug!(topic = %tp.topic, partition = tp.partition, "partition state unchanged");
            return transition;
        }
        info!(topic = %tp.topic, partition = tp.partition, leader = reg.leader, leader_epoch = reg.leader_epoch, ?transition, "partition state applied");
        match transition {
            Transition::Stale | Transition::Unchanged { .. } => {}
            Transition::Leader { .. } => self.inner.fetchers.remove_partition(tp),
            Transition::Follower { changed } => {
                if reg.leader < 0 {
                    self.inner.fetchers.remove_partition(tp);
                } else if changed {
                    self.inner.fetchers.add_partition(
                        self,
                        reg.leader,
                        p.clone(),
                        reg.leader_epoch,
                    );
                }
            }
            Transition::Stopped => {
                self.inner.fetchers.remove_partition(tp);
                self.inner.partitions.write().remove(tp);
            }
        }
        self.notify(&p);
        transition
    }

    /// Sets the brokers that may not join any ISR now: fenced or in controlled shutdown in the
    /// last metadata (Kafka's `isReplicaIsrEligible`). The leader does not propose them, so the
    /// controller is not asked for changes it must refuse with INELIGIBLE_REPLICA, and a
    /// caught-up follower outside the ISR no longer holds the high watermark once ineligible:
    /// the high watermarks are recomputed and waiting produces woken.
    pub fn set_ineligible_replicas(&self, ineligible: BTreeSet<i32>) {
        if *self.inner.ineligible.read() == ineligible {
            return;
        }
        debug!(?ineligible, "brokers ineligible for an ISR");
        *self.inner.ineligible.write() = ineligible.clone();
        let parts: Vec<_> = self.inner.partitions.read().values().cloned().collect();
        let now = self.now();
        for p in &parts {
            let moved = {
                let mut s = p.state.lock();
                s.set_ineligible_replicas(&ineligible);
                self.maybe_increment_hw(p, &s, now)
            };
            if moved {
                self.notify(p);
            }
        }
    }

    /// Stops replicating `tp` (Kafka's StopReplica): removed from its fetcher and forgotten;
    /// produces waiting on it fail with NOT_LEADER_OR_FOLLOWER.
    pub fn stop_replica(&self, tp: &TopicPartition) {
        self.inner.fetchers.remove_partition(tp);
        if let Some(p) = self.inner.partitions.write().remove(tp) {
            p.state.lock().stop();
            self.notify(&p);
        }
    }

    /// Moves the log's high watermark to the leader candidate when that is higher. Called with
    /// the state locked.
    fn maybe_increment_hw(&self, p: &Partition, s: &PartitionState, now: i64) -> bool {
        let leo = p.log.log_end_offset();
        let Some(candidate) =
            s.high_watermark_candidate(leo, now, self.inner.config.replica_lag_time_max_ms)
        else {
            return false;
        };
        let old = p.log.high_watermark();
        if candidate <= old {
            return false;
        }
        if let Err(e) = p.log.set_high_watermark(candidate) {
            warn!(topic = %p.tp.topic, partition = p.tp.partition, error = %e, "cannot move the high watermark");
            return false;
        }
        debug!(topic = %p.tp.topic, partition = p.tp.partition, old, new = candidate, "high watermark moved");
        true
    }

    fn submit(&self, p: &Arc<Partition>, proposal: IsrProposal) {
        let Some(sink) = self.inner.sink.clone() else {
            debug!(topic = %p.tp.topic, partition = p.tp.partition, ?proposal, "no AlterPartition sink: ISR change not proposed");
            return;
        };
        info!(topic = %p.tp.topic, partition = p.tp.partition, new_isr = ?proposal.new_isr, "proposing ISR change");
        let fut = sink.alter_partition(p.tp.clone(), p.topic_id, proposal.clone());
        let this = self.clone();
        let p = p.clone();
        let run = async move {
            let result = fut.await;
            let now = this.now();
            let changed = {
                let mut s = p.state.lock();
                let changed = s.complete_isr_change(proposal.id, &result, now);
                if changed {
                    this.maybe_increment_hw(&p, &s, now);
                }
                changed
            };
            match &result {
                Ok(c) => {
                    info!(topic = %p.tp.topic, partition = p.tp.partition, isr = ?c.isr, applied = changed, "ISR change committed")
                }
                Err(e) => {
                    warn!(topic = %p.tp.topic, partition = p.tp.partition, error_code = e, "ISR change refused")
                }
            }
            this.notify(&p);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(run);
            }
            Err(_) => warn!("no tokio runtime: ISR change not proposed"),
        }
    }

    /// Shrinks the ISR of every led partition whose followers lagged for
    /// `replica.lag.time.max.ms` (Kafka's `isr-expiration` task; [`ReplicaManager::start`] runs
    /// it every half lag time).
    pub fn maybe_shrink_isrs(&self) {
        let now = self.now();
        let parts: Vec<_> = self.inner.partitions.read().values().cloned().collect();
        for p in parts {
            let proposal = {
                let mut s = p.state.lock();
                s.maybe_shrink_isr(
                    p.log.log_end_offset(),
                    now,
                    self.inner.config.replica_lag_time_max_ms,
                )
            };
            if let Some(proposal) = proposal {
                self.submit(&p, proposal);
                self.notify(&p);
            }
        }
    }

    /// Starts the periodic ISR shrink check; it ends when the manager's last clone is dropped.
    pub fn start(&self) {
        let weak = Arc::downgrade(&self.inner);
        let period = Duration::from_millis(
            u64::try_from(self.inner.config.replica_lag_time_max_ms / 2)
                .unwrap_or(1)
                .max(1),
        );
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(inner) = weak.upgrade() else { break };
                    ReplicaManager { inner }.maybe_shrink_isrs();
                }
            });
        }
    }

    /// Checks a produce before the leader appends it: the leader epoch to stamp on the
    /// batches, or NOT_LEADER_OR_FOLLOWER / NOT_ENOUGH_REPLICAS (acks=all with the ISR below
    /// `min_insync_replicas`); UNKNOWN_TOPIC_OR_PARTITION when `tp` is not replicated here.
    pub fn prepare_append(
        &self,
        tp: &TopicPartition,
        required_acks: i16,
        min_insync_replicas: i32,
    ) -> Result<i32, i16> {
        let p = self
            .partition(tp)
            .ok_or(code(ResponseError::UnknownTopicOrPartition))?;
        let s = p.state.lock();
        s.check_append(required_acks, min_insync_replicas)
    }

    /// Tells the manager the leader's log grew (an append made outside
    /// [`ReplicaManager::append_records`]): the high watermark may move (a sole ISR member) and
    /// waiting follower fetches wake.
    pub fn notify_appended(&self, tp: &TopicPartition) {
        if let Some(p) = self.partition(tp) {
            let now = self.now();
            {
                let s = p.state.lock();
                self.maybe_increment_hw(&p, &s, now);
            }
            self.notify(&p);
        }
    }

    /// Waits until the high watermark reaches `required_offset` (last appended offset + 1) for
    /// a produce appended in `leader_epoch` (Kafka's DelayedProduce): 0 on success,
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR is below `min_insync_replicas` by then,
    /// NOT_LEADER_OR_FOLLOWER when leadership (or the leader epoch) changed, REQUEST_TIMED_OUT
    /// after `timeout`.
    pub async fn wait_for_acks(
        &self,
        tp: &TopicPartition,
        leader_epoch: i32,
        required_offset: i64,
        min_insync_replicas: i32,
        timeout: Duration,
    ) -> i16 {
        let Some(p) = self.partition(tp) else {
            return code(ResponseError::NotLeaderOrFollower);
        };
        self.notify_appended(tp);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = p.changed.subscribe();
        loop {
            let check = {
                let s = p.state.lock();
                s.check_acks(
                    leader_epoch,
                    required_offset,
                    p.log.high_watermark(),
                    min_insync_replicas,
                )
            };
            if let AcksCheck::Done(c) = check {
                return c;
            }
            if !self
                .inner
                .partitions
                .read()
                .get(tp)
                .is_some_and(|q| Arc::ptr_eq(q, &p))
            {
                return code(ResponseError::NotLeaderOrFollower);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Err(_) => return code(ResponseError::RequestTimedOut),
                Ok(Err(_)) => return code(ResponseError::NotLeaderOrFollower),
                Ok(Ok(())) => {}
            }
        }
    }

    /// Appends `batches` to `tp` as its leader without waiting for the ISR: the leader epoch
    /// the batches were stamped with and the append, or an error code (see
    /// [`ReplicaManager::prepare_append`]; log errors map to their Kafka codes).
    pub fn append_as_leader(
        &self,
        tp: &TopicPartition,
        batches: &mut [u8],
        origin: AppendOrigin,
        required_acks: i16,
        min_insync_replicas: i32,
    ) -> Result<(i32, AppendInfo), i16> {
        self.append_as_leader_with_cause(tp, batches, origin, required_acks, min_insync_replicas)
            .map_err(|(code, _)| code)
    }

    /// As [`ReplicaManager::append_as_leader`], keeping the log's error when the log refused
    /// the batches (the produce handler names the refused records from it, KIP-467).
    pub fn append_as_leader_with_cause(
        &self,
        tp: &TopicPartition,
        batches: &mut [u8],
        origin: AppendOrigin,
        required_acks: i16,
        min_insync_replicas: i32,
    ) -> Result<(i32, AppendInfo), (i16, Option<crate::BrokerError>)> {
        let p = self
            .partition(tp)
            .ok_or((code(ResponseError::UnknownTopicOrPartition), None))?;
        let now = self.now();
        let mut cause = None;
        self.append_with(tp, required_acks, min_insync_replicas, |epoch| {
            p.log
                .append_with_epoch(batches, origin, now, epoch)
                .map_err(|e| {
                    let c = e.kafka_error().code();
                    cause = Some(e);
                    c
                })
        })
        .map_err(|c| (c, cause.take()))
    }

    /// Runs `append` (given the leader epoch to stamp) as the leader of `tp`, under the
    /// partition's state lock so that no change of leadership interleaves, after the checks of
    /// [`ReplicaManager::prepare_append`]; then moves the high watermark and wakes follower
    /// fetches. For appends the log makes itself, such as transaction markers.
    pub fn append_with(
        &self,
        tp: &TopicPartition,
        required_acks: i16,
        min_insync_replicas: i32,
        append: impl FnOnce(i32) -> Result<AppendInfo, i16>,
    ) -> Result<(i32, AppendInfo), i16> {
        let p = self
            .partition(tp)
            .ok_or(code(ResponseError::UnknownTopicOrPartition))?;
        let now = self.now();
        let result = {
            let s = p.state.lock();
            let epoch = s.check_append(required_acks, min_insync_replicas)?;
            let info = append(epoch)?;
            self.maybe_increment_hw(&p, &s, now);
            (epoch, info)
        };
        self.notify(&p);
        Ok(result)
    }

    /// Appends `batches` to `tp` as its leader and, for `required_acks == -1`, waits for the
    /// ISR (see [`ReplicaManager::append_as_leader`] and [`ReplicaManager::wait_for_acks`]).
    pub async fn append_records(
        &self,
        tp: &TopicPartition,
        batches: &mut [u8],
        origin: AppendOrigin,
        required_acks: i16,
        min_insync_replicas: i32,
        timeout: Duration,
    ) -> ProduceOutcome {
        let (epoch, info) =
            match self.append_as_leader(tp, batches, origin, required_acks, min_insync_replicas) {
                Ok(x) => x,
                Err(c) => {
                    return ProduceOutcome {
                        error_code: c,
                        info: None,
                    }
                }
            };
        if required_acks != -1 {
            return ProduceOutcome {
                error_code: 0,
                info: Some(info),
            };
        }
        let c = self
            .wait_for_acks(
                tp,
                epoch,
                info.last_offset + 1,
                min_insync_replicas,
                timeout,
            )
            .await;
        ProduceOutcome {
            error_code: c,
            info: Some(info),
        }
    }

    /// The local log of `tp`, when replicated here.
    pub fn replica_log(&self, tp: &TopicPartition) -> Option<Arc<dyn ReplicaLog>> {
        self.partition(tp).map(|p| p.log.clone())
    }

    /// Kafka's `Partition.lastOffsetForLeaderEpoch` (OffsetForLeaderEpoch, API 23): after the
    /// epoch checks, `(epoch, end offset)` of the largest epoch ≤ `leader_epoch` in the local
    /// epoch cache, `(-1, -1)` when undefined. Followers' requests (`require_leader` false)
    /// may be answered by any replica.
    pub fn last_offset_for_leader_epoch(
        &self,
        tp: &TopicPartition,
        current_leader_epoch: Option<i32>,
        leader_epoch: i32,
        require_leader: bool,
    ) -> Result<(i32, i64), i16> {
        let p = self
            .partition(tp)
            .ok_or(code(ResponseError::UnknownTopicOrPartition))?;
        let s = p.state.lock();
        s.check_epoch(current_leader_epoch, require_leader)?;
        Ok(p.log.end_offset_for_epoch(leader_epoch).unwrap_or((-1, -1)))
    }

    /// Checks a consumer's (or admin's) request against the partition's leadership:
    /// UNKNOWN_TOPIC_OR_PARTITION when not replicated here, FENCED_LEADER_EPOCH /
    /// UNKNOWN_LEADER_EPOCH when `current_leader_epoch` is older / newer than the local one,
    /// NOT_LEADER_OR_FOLLOWER when `require_leader` and this broker is not the leader.
    pub fn check_leader(
        &self,
        tp: &TopicPartition,
        current_leader_epoch: Option<i32>,
        require_leader: bool,
    ) -> Result<(), i16> {
        let p = self
            .partition(tp)
            .ok_or(code(ResponseError::UnknownTopicOrPartition))?;
        let s = p.state.lock();
        s.check_epoch(current_leader_epoch, require_leader)
    }

    /// Serves one partition of a follower's fetch (Kafka's `Partition.fetchRecords` for a
    /// follower): epoch and replica checks, KIP-320 divergence detection against the leader's
    /// epoch cache, OFFSET_OUT_OF_RANGE outside `[log start, log end]`, then the read and the
    /// follower's fetch state update (ISR expansion, high watermark).
    pub fn fetch_from_follower(
        &self,
        tp: &TopicPartition,
        req: &ReplicaFetch,
    ) -> ReplicaFetchResult {
        match self.partition(tp) {
            Some(p) => self.fetch_partition_for_follower(&p, req),
            None => ReplicaFetchResult::error(code(ResponseError::UnknownTopicOrPartition)),
        }
    }

    pub(crate) fn fetch_partition_for_follower(
        &self,
        p: &Arc<Partition>,
        req: &ReplicaFetch,
    ) -> ReplicaFetchResult {
        let now = self.now();
        let log = &p.log;
        let (result, proposal, moved) = {
            let mut s = p.state.lock();
            if let Err(c) = s.check_follower_fetch(req.replica_id, req.current_leader_epoch) {
                return ReplicaFetchResult::error(c);
            }
            let hw = log.high_watermark();
            let log_start = log.log_start_offset();
            let leo = log.log_end_offset();
            let mut result = ReplicaFetchResult {
                error_code: 0,
                records: Bytes::new(),
                high_watermark: hw,
                log_start_offset: log_start,
                log_end_offset: leo,
                diverging_epoch: None,
            };
            if let Some(last_epoch) = req.last_fetched_epoch.filter(|&e| e >= 0) {
                let Some((epoch, end)) = log.end_offset_for_epoch(last_epoch) else {
                    result.error_code = code(ResponseError::OffsetOutOfRange);
                    return result;
                };
                if req.fetch_offset < log_start {
                    result.error_code = code(ResponseError::OffsetOutOfRange);
                    return result;
                }
                if epoch < last_epoch || end < req.fetch_offset {
                    result.diverging_epoch = Some((epoch, end));
                    return result;
                }
            }
            if req.fetch_offset < log_start || req.fetch_offset > leo {
                result.error_code = code(ResponseError::OffsetOutOfRange);
                return result;
            }
            match log.read_for_replica(req.fetch_offset, req.max_bytes) {
                Ok(records) => result.records = records,
                Err(e) => {
                    result.error_code = e.kafka_error().code();
                    return result;
                }
            }
            let proposal = s.update_follower_fetch(
                req.replica_id,
                req.fetch_offset,
                req.log_start_offset,
                leo,
                hw,
                now,
            );
            let moved = self.maybe_increment_hw(p, &s, now);
            (result, proposal, moved)
        };
        let changed = moved || proposal.is_some();
        if let Some(proposal) = proposal {
            self.submit(p, proposal);
        }
        if changed {
            self.notify(p);
        }
        result
    }

    /// A receiver bumped on any partition change (follower-fetch long polls wait on it).
    pub(crate) fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.inner.any_change.subscribe()
    }

    /// Stops every follower fetcher (the broker shuts down).
    pub fn shutdown(&self) {
        self.inner.fetchers.shutdown();
    }
}
