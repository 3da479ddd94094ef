//! The pure per-partition replication state machine (Kafka's `Partition` leader/ISR logic
//! without I/O): follower fetch state, the high watermark candidate, ISR expansion and
//! shrinking with at most one AlterPartition in flight, and the epoch checks of fetches and
//! produces. Time is passed in (`now_ms`); the log's offsets are passed in.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;

/// A partition's assignment as the controller published it (Kafka's `PartitionRegistration`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRegistration {
    /// The leader's broker id, or -1 when the partition has no leader.
    pub leader: i32,
    /// Bumped on every leader change.
    pub leader_epoch: i32,
    /// Bumped on every change of the partition (leader or ISR).
    pub partition_epoch: i32,
    /// All assigned replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
}

/// What one follower of a leader partition has shown in its fetches (Kafka's `ReplicaState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerReplica {
    /// The follower's log end offset (its last fetch offset), -1 while unknown.
    pub log_end_offset: i64,
    /// The follower's log start offset, -1 while unknown.
    pub log_start_offset: i64,
    /// The largest time at which the follower had fetched up to the leader's log end offset.
    pub last_caught_up_ms: i64,
    /// When the leader received the follower's last fetch.
    pub last_fetch_ms: i64,
    /// The leader's log end offset when that last fetch was received.
    pub last_fetch_leader_log_end_offset: i64,
}

impl FollowerReplica {
    fn reset(now_ms: i64, leader_end_offset: i64, in_sync: bool) -> Self {
        let t = if in_sync { now_ms } else { 0 };
        FollowerReplica {
            log_end_offset: -1,
            log_start_offset: -1,
            last_caught_up_ms: t,
            last_fetch_ms: t,
            last_fetch_leader_log_end_offset: leader_end_offset,
        }
    }

    /// Kafka's `ReplicaState.isCaughtUp`: at the leader's end offset, or caught up within the
    /// last `max_lag_ms`.
    pub fn is_caught_up(&self, leader_end_offset: i64, now_ms: i64, max_lag_ms: i64) -> bool {
        leader_end_offset == self.log_end_offset
            || now_ms.saturating_sub(self.last_caught_up_ms) <= max_lag_ms
    }
}

/// The ISR as the leader sees it, with at most one change waiting for the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsrState {
    /// The ISR the controller committed.
    Committed {
        /// The committed ISR.
        isr: Vec<i32>,
    },
    /// An expansion sent to the controller and not yet answered.
    PendingExpand {
        /// The committed ISR.
        isr: Vec<i32>,
        /// The replica being added.
        adding: i32,
        /// The proposal's id.
        proposal: u64,
    },
    /// A shrink sent to the controller and not yet answered.
    PendingShrink {
        /// The committed ISR.
        isr: Vec<i32>,
        /// The replicas being removed.
        removing: Vec<i32>,
        /// The proposal's id.
        proposal: u64,
    },
}

impl IsrState {
    /// The committed ISR.
    pub fn isr(&self) -> &[i32] {
        match self {
            IsrState::Committed { isr }
            | IsrState::PendingExpand { isr, .. }
            | IsrState::PendingShrink { isr, .. } => isr,
        }
    }

    /// Kafka's "maximal ISR" (KIP-497): the committed ISR plus a replica being added. The high
    /// watermark and acks=all wait for all of it, which is safe whichever way the pending change
    /// goes.
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut isr = self.isr().to_vec();
        if let IsrState::PendingExpand { adding, .. } = self {
            if !isr.contains(adding) {
                isr.push(*adding);
            }
        }
        isr
    }

    /// Whether an ISR change is waiting for the controller.
    pub fn is_inflight(&self) -> bool {
        !matches!(self, IsrState::Committed { .. })
    }
}

/// An ISR change for the controller (the content of Kafka's AlterPartition request for one
/// partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    /// Identifies the proposal in [`PartitionState::complete_isr_change`].
    pub id: u64,
    /// The leader epoch the leader proposes in.
    pub leader_epoch: i32,
    /// The partition epoch the proposal is based on.
    pub partition_epoch: i32,
    /// The proposed ISR.
    pub new_isr: Vec<i32>,
}

/// The controller's answer to an [`IsrProposal`].
pub type IsrChangeResult = Result<CommittedIsr, i16>;

/// An ISR the controller committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedIsr {
    /// The leader epoch of the change.
    pub leader_epoch: i32,
    /// The ISR now in effect.
    pub isr: Vec<i32>,
    /// The partition epoch after the change.
    pub partition_epoch: i32,
}

/// State of a partition this broker leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderState {
    /// The current leader epoch.
    pub leader_epoch: i32,
    /// The partition epoch of the committed state.
    pub partition_epoch: i32,
    /// All assigned replicas.
    pub replicas: Vec<i32>,
    /// The ISR and any pending change.
    pub isr: IsrState,
    /// The log end offset when this leader epoch began (Kafka's `leaderEpochStartOffsetOpt`).
    pub epoch_start_offset: i64,
    /// Fetch state of each follower (every replica but this one).
    pub followers: BTreeMap<i32, FollowerReplica>,
}

/// State of a partition this broker follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerState {
    /// The leader (-1: none).
    pub leader_id: i32,
    /// The current leader epoch.
    pub leader_epoch: i32,
    /// The partition epoch.
    pub partition_epoch: i32,
    /// All assigned replicas.
    pub replicas: Vec<i32>,
    /// The ISR as last published.
    pub isr: Vec<i32>,
}

/// This broker's role for a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not a replica (stopped, or never assigned).
    None,
    /// The leader.
    Leader(LeaderState),
    /// A follower.
    Follower(FollowerState),
}

/// What [`PartitionState::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The registration was older than the state (ignored).
    Stale,
    /// This broker leads; `new_epoch` when the leader epoch changed.
    Leader {
        /// The leader epoch changed (followers' fetch state was reset).
        new_epoch: bool,
    },
    /// This broker follows; `changed` when the leader or its epoch changed.
    Follower {
        /// The leader or the leader epoch changed (the fetcher must restart the partition).
        changed: bool,
    },
    /// This broker is no longer a replica.
    Stopped,
    /// The registration is the one already applied (same leader, leader epoch and partition
    /// epoch): nothing changed; `leader` when this broker leads.
    Unchanged {
        /// This broker leads the partition.
        leader: bool,
    },
}

/// What a produce waiting for acks=all should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcksCheck {
    /// Keep waiting.
    Wait,
    /// Done with this error code (0 = success).
    Done(i16),
}

/// The replication state of one partition on this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    local_id: i32,
    role: Role,
    next_proposal: u64,
    /// Brokers that may not join an ISR now (fenced or in controlled shutdown, as the last
    /// metadata says: Kafka's `isReplicaIsrEligible`).
    ineligible: BTreeSet<i32>,
    /// No ISR change is proposed before this time after the controller refused one (Kafka
    /// retries on the next follower fetch; a fetch loop on an idle partition would turn that
    /// into a storm of requests).
    no_proposal_before_ms: i64,
}

/// How long the leader waits before proposing an ISR change again after a refusal.
pub(crate) const ISR_PROPOSAL_BACKOFF_MS: i64 = 500;

fn code(e: ResponseError) -> i16 {
    e.code()
}

impl PartitionState {
    /// A partition this broker (`local_id`) does not replicate yet.
    pub fn new(local_id: i32) -> Self {
        PartitionState {
            local_id,
            role: Role::None,
            next_proposal: 1,
            ineligible: BTreeSet::new(),
            no_proposal_before_ms: i64::MIN,
        }
    }

    /// Sets the brokers that may not join the ISR (fenced or in controlled shutdown).
    pub fn set_ineligible_replicas(&mut self, ineligible: &BTreeSet<i32>) {
        if &self.ineligible != ineligible {
            self.ineligible.clone_from(ineligible);
        }
    }

    /// The current role.
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// The leader epoch known for the partition (-1 when not a replica).
    pub fn leader_epoch(&self) -> i32 {
        match &self.role {
            Role::None => -1,
            Role::Leader(l) => l.leader_epoch,
            Role::Follower(f) => f.leader_epoch,
        }
    }

    /// The partition epoch known for the partition (-1 when not a replica).
    pub fn partition_epoch(&self) -> i32 {
        match &self.role {
            Role::None => -1,
            Role::Leader(l) => l.partition_epoch,
            Role::Follower(f) => f.partition_epoch,
        }
    }

    /// The leader as known here (-1 when unknown).
    pub fn leader_id(&self) -> i32 {
        match &self.role {
            Role::None => -1,
            Role::Leader(_) => self.local_id,
            Role::Follower(f) => f.leader_id,
        }
    }

    /// Whether this broker leads the partition.
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// The leader state, when leading.
    pub fn leader(&self) -> Option<&LeaderState> {
        match &self.role {
            Role::Leader(l) => Some(l),
            _ => None,
        }
    }

    /// Applies a published registration (Kafka's `makeLeader` / `makeFollower` / stop).
    /// `log_end_offset` is the local log's end offset, which starts a new leader epoch.
    /// Registrations older than the state (leader epoch or partition epoch lower) are ignored.
    pub fn apply(
        &mut self,
        reg: &PartitionRegistration,
        log_end_offset: i64,
        now_ms: i64,
    ) -> Transition {
        if !matches!(self.role, Role::None)
            && (reg.leader_epoch < self.leader_epoch()
                || reg.partition_epoch < self.partition_epoch())
        {
            return Transition::Stale;
        }
        if !reg.replicas.contains(&self.local_id) {
            self.role = Role::None;
            return Transition::Stopped;
        }
        // The same registration again (metadata images are published whole): nothing
        // changed, and an ISR change in flight stays in flight (Kafka applies only the
        // partitions of a metadata delta).
        if reg.leader_epoch == self.leader_epoch()
            && reg.partition_epoch == self.partition_epoch()
            && reg.leader == self.leader_id()
        {
            match &self.role {
                Role::Leader(_) => return Transition::Unchanged { leader: true },
                Role::Follower(_) => return Transition::Unchanged { leader: false },
                Role::None => {}
            }
        }
        if reg.leader == self.local_id {
            let previous = std::mem::replace(&mut self.role, Role::None);
            let (new_epoch, followers, epoch_start_offset) = match previous {
                Role::Leader(l) if l.leader_epoch == reg.leader_epoch => {
                    (false, l.followers, l.epoch_start_offset)
                }
                _ => (true, BTreeMap::new(), log_end_offset),
            };
            let mut next = BTreeMap::new();
            for &id in reg.replicas.iter().filter(|&&id| id != self.local_id) {
                let f = match followers.get(&id) {
                    Some(f) if !new_epoch => *f,
                    _ => FollowerReplica::reset(now_ms, log_end_offset, reg.isr.contains(&id)),
                };
                next.insert(id, f);
            }
            self.role = Role::Leader(LeaderState {
                leader_epoch: reg.leader_epoch,
                partition_epoch: reg.partition_epoch,
                replicas: reg.replicas.clone(),
                isr: IsrState::Committed {
                    isr: reg.isr.clone(),
                },
                epoch_start_offset,
                followers: next,
            });
            Transition::Leader { new_epoch }
        } else {
            let changed = match &self.role {
                Role::Follower(f) => {
                    f.leader_id != reg.leader || f.leader_epoch != reg.leader_epoch
                }
                _ => true,
            };
            self.role = Role::Follower(FollowerState {
                leader_id: reg.leader,
                leader_epoch: reg.leader_epoch,
                partition_epoch: reg.partition_epoch,
                replicas: reg.replicas.clone(),
                isr: reg.isr.clone(),
            });
            Transition::Follower { changed }
        }
    }

    /// Stops replicating (the partition was deleted or reassigned away).
    pub fn stop(&mut self) {
        self.role = Role::None;
    }

    /// Kafka's `checkCurrentLeaderEpoch` then the leader check (`getLocalLog`): the error code
    /// for a request carrying `current_leader_epoch`, or `Ok`.
    pub fn check_epoch(
        &self,
        current_leader_epoch: Option<i32>,
        require_leader: bool,
    ) -> Result<(), i16> {
        if matches!(self.role, Role::None) {
            return Err(code(ResponseError::NotLeaderOrFollower));
        }
        if let Some(e) = current_leader_epoch.filter(|&e| e >= 0) {
            let local = self.leader_epoch();
            if e < local {
                return Err(code(ResponseError::FencedLeaderEpoch));
            }
            if e > local {
                return Err(code(ResponseError::UnknownLeaderEpoch));
            }
        }
        if require_leader && !self.is_leader() {
            return Err(code(ResponseError::NotLeaderOrFollower));
        }
        Ok(())
    }

    /// Checks a fetch from follower `replica_id` (Kafka's `fetchRecords` for a follower:
    /// epoch checks, then the replica must be assigned: UNKNOWN_LEADER_EPOCH when the request
    /// has an epoch, else NOT_LEADER_OR_FOLLOWER).
    pub fn check_follower_fetch(
        &self,
        replica_id: i32,
        current_leader_epoch: Option<i32>,
    ) -> Result<(), i16> {
        self.check_epoch(current_leader_epoch, true)?;
        match &self.role {
            Role::Leader(l) if l.followers.contains_key(&replica_id) => Ok(()),
            _ if current_leader_epoch.is_some_and(|e| e >= 0) => {
                Err(code(ResponseError::UnknownLeaderEpoch))
            }
            _ => Err(code(ResponseError::NotLeaderOrFollower)),
        }
    }

    /// Records a follower's fetch at `fetch_offset` (Kafka's `updateFollowerFetchState` and
    /// `Replica.updateFetchStateOrThrow`): the follower's log end offset and caught-up time,
    /// then maybe an ISR expansion to send to the controller. `leader_end_offset` is the
    /// leader's log end offset before the read, `high_watermark` the leader's current one.
    pub fn update_follower_fetch(
        &mut self,
        replica_id: i32,
        fetch_offset: i64,
        follower_log_start_offset: i64,
        leader_end_offset: i64,
        high_watermark: i64,
        now_ms: i64,
    ) -> Option<IsrProposal> {
        let Role::Leader(l) = &mut self.role else {
            return None;
        };
        let f = l.followers.get_mut(&replica_id)?;
        let last_caught_up_ms = if fetch_offset >= leader_end_offset {
            f.last_caught_up_ms.max(now_ms)
        } else if fetch_offset >= f.last_fetch_leader_log_end_offset {
            f.last_caught_up_ms.max(f.last_fetch_ms)
        } else {
            f.last_caught_up_ms
        };
        *f = FollowerReplica {
            log_end_offset: fetch_offset,
            log_start_offset: follower_log_start_offset,
            last_caught_up_ms,
            last_fetch_ms: now_ms,
            last_fetch_leader_log_end_offset: leader_end_offset
                .max(f.last_fetch_leader_log_end_offset),
        };
        self.maybe_expand_isr(replica_id, high_watermark, now_ms)
    }

    /// Kafka's `maybeExpandIsr`: a follower not in the ISR joins it (a proposal) when no change
    /// is in flight, the follower is eligible (not fenced, not shutting down), no refusal is
    /// younger than [`ISR_PROPOSAL_BACKOFF_MS`], and its log end offset is at least the high
    /// watermark and the start offset of the current leader epoch.
    pub fn maybe_expand_isr(
        &mut self,
        replica_id: i32,
        high_watermark: i64,
        now_ms: i64,
    ) -> Option<IsrProposal> {
        let id = self.next_proposal;
        if now_ms < self.no_proposal_before_ms || self.ineligible.contains(&replica_id) {
            return None;
        }
        let Role::Leader(l) = &mut self.role else {
            return None;
        };
        let IsrState::Committed { isr } = &l.isr else {
            return None;
        };
        if isr.contains(&replica_id) {
            return None;
        }
        let f = l.followers.get(&replica_id)?;
        if f.log_end_offset < high_watermark || f.log_end_offset < l.epoch_start_offset {
            return None;
        }
        let isr = isr.clone();
        let mut new_isr = isr.clone();
        new_isr.push(replica_id);
        l.isr = IsrState::PendingExpand {
            isr,
            adding: replica_id,
            proposal: id,
        };
        self.next_proposal += 1;
        Some(IsrProposal {
            id,
            leader_epoch: l.leader_epoch,
            partition_epoch: l.partition_epoch,
            new_isr,
        })
    }

    /// Kafka's `getOutOfSyncReplicas`: ISR followers not caught up within `max_lag_ms` (none
    /// while a change is in flight).
    pub fn out_of_sync_replicas(
        &self,
        leader_end_offset: i64,
        now_ms: i64,
        max_lag_ms: i64,
    ) -> Vec<i32> {
        let Role::Leader(l) = &self.role else {
            return Vec::new();
        };
        if l.isr.is_inflight() {
            return Vec::new();
        }
        l.isr
            .isr()
            .iter()
            .copied()
            .filter(|&id| id != self.local_id)
            .filter(|id| {
                l.followers
                    .get(id)
                    .is_none_or(|f| !f.is_caught_up(leader_end_offset, now_ms, max_lag_ms))
            })
            .collect()
    }

    /// Kafka's `maybeShrinkIsr`: proposes the ISR without the out-of-sync followers.
    pub fn maybe_shrink_isr(
        &mut self,
        leader_end_offset: i64,
        now_ms: i64,
        max_lag_ms: i64,
    ) -> Option<IsrProposal> {
        if now_ms < self.no_proposal_before_ms {
            return None;
        }
        let removing = self.out_of_sync_replicas(leader_end_offset, now_ms, max_lag_ms);
        if removing.is_empty() {
            return None;
        }
        let id = self.next_proposal;
        let Role::Leader(l) = &mut self.role else {
            return None;
        };
        let isr = l.isr.isr().to_vec();
        let new_isr: Vec<i32> = isr
            .iter()
            .copied()
            .filter(|r| !removing.contains(r))
            .collect();
        l.isr = IsrState::PendingShrink {
            isr,
            removing,
            proposal: id,
        };
        self.next_proposal += 1;
        Some(IsrProposal {
            id,
            leader_epoch: l.leader_epoch,
            partition_epoch: l.partition_epoch,
            new_isr,
        })
    }

    /// Applies the controller's answer to proposal `proposal` (ignored unless that proposal is
    /// still the pending one), received at `now_ms`. Kafka's error handling:
    /// OPERATION_NOT_ATTEMPTED and INELIGIBLE_REPLICA return to the committed ISR;
    /// UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TOPIC_ID, FENCED_LEADER_EPOCH,
    /// INVALID_UPDATE_VERSION, INVALID_REQUEST and NEW_LEADER_ELECTED keep the change pending
    /// until newer metadata arrives; other errors (the controller unreachable or moving, a
    /// stale broker epoch) return to the committed ISR. After any refusal no change is
    /// proposed for [`ISR_PROPOSAL_BACKOFF_MS`]. Returns whether the ISR changed.
    pub fn complete_isr_change(
        &mut self,
        proposal: u64,
        result: &IsrChangeResult,
        now_ms: i64,
    ) -> bool {
        let Role::Leader(l) = &mut self.role else {
            return false;
        };
        let pending = match &l.isr {
            IsrState::PendingExpand { proposal: p, .. }
            | IsrState::PendingShrink { proposal: p, .. } => *p,
            IsrState::Committed { .. } => return false,
        };
        if pending != proposal {
            return false;
        }
        match result {
            Ok(c) => {
                if c.leader_epoch != l.leader_epoch || c.partition_epoch < l.partition_epoch {
                    return false;
                }
                l.isr = IsrState::Committed { isr: c.isr.clone() };
                l.partition_epoch = c.partition_epoch;
                true
            }
            Err(e) => {
                self.no_proposal_before_ms = now_ms.saturating_add(ISR_PROPOSAL_BACKOFF_MS);
                let keep = [
                    ResponseError::UnknownTopicOrPartition,
                    ResponseError::UnknownTopicId,
                    ResponseError::FencedLeaderEpoch,
                    ResponseError::InvalidUpdateVersion,
                    ResponseError::InvalidRequest,
                    ResponseError::NewLeaderElected,
                ]
                .iter()
                .any(|k| k.code() == *e);
                if !keep {
                    l.isr = IsrState::Committed {
                        isr: l.isr.isr().to_vec(),
                    };
                }
                false
            }
        }
    }

    /// Kafka's `maybeIncrementLeaderHW` candidate: the smallest log end offset among the leader
    /// and the followers in the maximal ISR or caught up and eligible for it (and so about to
    /// join it); `None` when not leading. The caller moves the high watermark only forwards.
    ///
    /// Like Kafka 3.x, the high watermark advances even when the ISR is below
    /// `min.insync.replicas` (acks=all produces then fail with
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND rather than time out).
    pub fn high_watermark_candidate(
        &self,
        leader_end_offset: i64,
        now_ms: i64,
        max_lag_ms: i64,
    ) -> Option<i64> {
        let Role::Leader(l) = &self.role else {
            return None;
        };
        let maximal = l.isr.maximal_isr();
        let mut hw = leader_end_offset;
        for (id, f) in &l.followers {
            // Kafka's `shouldWaitForReplicaToJoinIsr`: a caught-up follower outside the ISR is
            // waited for only while it may join it; a fenced or shutting-down broker (removed
            // from the ISR by the controller) must not hold acks=all produces until its
            // caught-up time runs out.
            let joining = f.is_caught_up(leader_end_offset, now_ms, max_lag_ms)
                && !self.ineligible.contains(id);
            if f.log_end_offset < hw && (maximal.contains(id) || joining) {
                hw = f.log_end_offset;
            }
        }
        Some(hw)
    }

    /// `min(min.insync.replicas, replication factor)` (Kafka's `effectiveMinIsr`).
    pub fn effective_min_isr(&self, min_insync_replicas: i32) -> usize {
        let rf = match &self.role {
            Role::Leader(l) => l.replicas.len(),
            Role::Follower(f) => f.replicas.len(),
            Role::None => 0,
        };
        usize::try_from(min_insync_replicas.max(1))
            .unwrap_or(1)
            .min(rf.max(1))
    }

    /// Checks a produce before the append (Kafka's `appendRecordsToLeader`): the leader epoch
    /// to stamp, or NOT_LEADER_OR_FOLLOWER, or NOT_ENOUGH_REPLICAS for acks=all with the ISR
    /// below `min.insync.replicas`.
    pub fn check_append(&self, required_acks: i16, min_insync_replicas: i32) -> Result<i32, i16> {
        let Role::Leader(l) = &self.role else {
            return Err(code(ResponseError::NotLeaderOrFollower));
        };
        if required_acks == -1 && l.isr.isr().len() < self.effective_min_isr(min_insync_replicas) {
            return Err(code(ResponseError::NotEnoughReplicas));
        }
        Ok(l.leader_epoch)
    }

    /// Kafka's `checkEnoughReplicasReachOffset` for a produce appended in `leader_epoch` up to
    /// `required_offset` (last offset + 1), given the log's high watermark. A leader epoch
    /// change fails the produce with NOT_LEADER_OR_FOLLOWER.
    pub fn check_acks(
        &self,
        leader_epoch: i32,
        required_offset: i64,
        high_watermark: i64,
        min_insync_replicas: i32,
    ) -> AcksCheck {
        let Role::Leader(l) = &self.role else {
            return AcksCheck::Done(code(ResponseError::NotLeaderOrFollower));
        };
        if l.leader_epoch != leader_epoch {
            return AcksCheck::Done(code(ResponseError::NotLeaderOrFollower));
        }
        if high_watermark < required_offset {
            return AcksCheck::Wait;
        }
        if l.isr.maximal_isr().len() >= self.effective_min_isr(min_insync_replicas) {
            AcksCheck::Done(0)
        } else {
            AcksCheck::Done(code(ResponseError::NotEnoughReplicasAfterAppend))
        }
    }
}
