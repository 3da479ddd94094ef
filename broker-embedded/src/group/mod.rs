//! The broker's classic consumer-group coordinator (JoinGroup / SyncGroup / Heartbeat /
//! LeaveGroup), a component of the [`crate::Broker`] with a typed in-process API: member ids
//! (with the MEMBER_ID_REQUIRED round trip JoinGroup v4+ clients ask for), generations, the
//! protocol common to all members chosen by vote, the leader receiving every member's
//! metadata and distributing assignments through SyncGroup, rebalance and session timeouts,
//! the initial rebalance delay, and static membership (`group.instance.id`: a restarting
//! member with a known instance id gets its assignment back without a rebalance). The
//! coordinator never interprets assignments.
//!
//! Its timers run on the broker's own background thread (`broker-groups`, every 100 ms), so
//! in-process members (the streams runtime's embedded backend) and wire clients (through the
//! server's handlers, thin clients of this API) share one coordinator per broker.
//!
//! Group state lives in memory and is recorded in `__consumer_offsets` as Kafka's
//! `GroupMetadataKey` / `GroupMetadataValue` records (`group::record`) at every completed
//! rebalance, when a group becomes empty and when a static member is replaced; a broker
//! reloads them at start, so groups, generations, assignments and static members survive a
//! restart (members that do not come back expire after their session timeout). Committed
//! offsets are durable there too ([`crate::Broker::commit_group_offsets`] checks the member
//! and generation).

pub(crate) mod record;
mod state;
mod types;

pub use types::{
    CommitMember, GroupDescription, GroupError, GroupListing, GroupState, JoinGroupRequest,
    JoinGroupResponse, JoinedMember, MemberDescription, PendingJoin, PendingSync, SyncGroupRequest,
    SyncGroupResponse,
};

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tracing::{debug, info};

use crate::error::BrokerError;
use record::StoredGroup;
use state::{Group, JoinReply, Member, SyncReply};

/// Writes a group's metadata (or its tombstone) to `__consumer_offsets`.
pub(crate) type GroupStore =
    Box<dyn Fn(&str, Option<&StoredGroup>) -> Result<(), BrokerError> + Send + Sync>;

/// Kafka's `group.min.session.timeout.ms`.
pub const MIN_SESSION_TIMEOUT: Duration = Duration::from_millis(6_000);
/// Kafka's `group.max.session.timeout.ms`.
pub const MAX_SESSION_TIMEOUT: Duration = Duration::from_millis(1_800_000);

/// How long a member id handed out with MEMBER_ID_REQUIRED stays valid.
const PENDING_MEMBER_TTL: Duration = Duration::from_secs(300);

/// Which committed offsets OffsetDelete may delete in a group (Kafka's
/// `GroupCoordinator.handleDeleteOffsets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OffsetDeleteScope {
    /// No active members (or no group state at all): any committed offset may go.
    Inactive,
    /// An active consumer group: offsets of the topics its members subscribe to are kept
    /// (GROUP_SUBSCRIBED_TO_TOPIC), the others may go.
    Subscribed(BTreeSet<String>),
    /// An active group of another protocol type: nothing may go (NON_EMPTY_GROUP).
    NonConsumer,
}

/// The topics in a consumer-protocol subscription (`ConsumerProtocolSubscription`: a version,
/// then the topic names); `None` if the metadata cannot be decoded.
fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let mut buf = metadata;
    let version = i16::from_be_bytes([*buf.first()?, *buf.get(1)?]);
    buf = &buf[2..];
    // Later versions only append fields: decode what the newest known version has.
    let s = ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3)).ok()?;
    Some(s.topics.iter().map(|t| t.as_str().to_string()).collect())
}

/// All groups of a broker (one per [`crate::Broker`], reached through
/// [`crate::Broker::group_coordinator`]).
pub struct GroupCoordinator {
    groups: Mutex<HashMap<String, Group>>,
    initial_delay: Duration,
    store: std::sync::OnceLock<GroupStore>,
}

impl std::fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCoordinator")
            .field("initial_delay", &self.initial_delay)
            .finish_non_exhaustive()
    }
}

fn immediate<T>(value: T) -> oneshot::Receiver<T> {
    let (tx, rx) = oneshot::channel();
    let _ = tx.send(value);
    rx
}

impl GroupCoordinator {
    /// A coordinator without groups; `initial_delay` is Kafka's
    /// `group.initial.rebalance.delay.ms`.
    pub(crate) fn new(initial_delay: Duration) -> Self {
        Self {
            groups: Mutex::new(HashMap::new()),
            initial_delay,
            store: std::sync::OnceLock::new(),
        }
    }

    /// Sets where group metadata is written (the broker's `__consumer_offsets`); once.
    pub(crate) fn set_store(&self, store: GroupStore) {
        let _ = self.store.set(store);
    }

    /// Installs the groups loaded from `__consumer_offsets` (before any member arrives).
    pub(crate) fn restore(&self, stored: impl IntoIterator<Item = (String, StoredGroup)>) {
        let mut groups = self.groups.lock();
        for (name, g) in stored {
            let g = Group::restore(g);
            info!(
                group = name,
                generation = g.generation,
                members = g.members.len(),
                state = g.state.name(),
                "group loaded"
            );
            groups.insert(name, g);
        }
    }

    /// Forgets every group whose id matches `unloaded` (its `__consumer_offsets` partition is
    /// now led by another broker): members waiting in JoinGroup or SyncGroup are answered
    /// COORDINATOR_NOT_AVAILABLE, so that they look the coordinator up again.
    pub(crate) fn unload(&self, unloaded: impl Fn(&str) -> bool) {
        let mut groups = self.groups.lock();
        let before = groups.len();
        groups.retain(|name, _| !unloaded(name));
        let removed = before - groups.len();
        if removed > 0 {
            info!(groups = removed, "groups unloaded (coordinator moved)");
        }
    }

    /// Writes `g`'s metadata if it changed (called with the groups locked, so writes of one
    /// group land in the order of its changes). A failed write is logged: the group goes on
    /// in memory and the next change writes it again.
    fn persist(&self, name: &str, g: &mut Group) {
        if !g.dirty {
            return;
        }
        g.dirty = false;
        let Some(store) = self.store.get() else {
            return;
        };
        match store(name, Some(&g.snapshot())) {
            Ok(()) => {}
            // Shutting down: the last state written stands.
            Err(BrokerError::Closed) => {}
            Err(e) => {
                g.dirty = true;
                tracing::error!(group = name, error = %e, "writing group metadata failed");
            }
        }
    }

    /// Persists `group` if one of its changes is not written yet.
    fn persist_group(&self, group: &str) {
        let mut groups = self.groups.lock();
        if let Some(g) = groups.get_mut(group) {
            self.persist(group, g);
        }
    }

    /// JoinGroup: registers the member at once (so members joining one after the other land
    /// in the same rebalance); the returned future resolves when the rebalance completes.
    pub fn join(&self, r: JoinGroupRequest) -> PendingJoin {
        let group = r.group_id.clone();
        let rx = self.join_inner(r);
        self.persist_group(&group);
        PendingJoin(rx)
    }

    fn join_inner(&self, r: JoinGroupRequest) -> oneshot::Receiver<JoinReply> {
        let fail = |e: GroupError| immediate(Err(e));
        if r.group_id.is_empty() {
            return fail(GroupError::InvalidGroupId);
        }
        if r.session_timeout < MIN_SESSION_TIMEOUT || r.session_timeout > MAX_SESSION_TIMEOUT {
            return fail(GroupError::InvalidSessionTimeout(r.session_timeout));
        }
        if r.protocol_type.is_empty() || r.protocols.is_empty() {
            return fail(GroupError::InconsistentGroupProtocol);
        }
        let mut groups = self.groups.lock();
        let g = groups.entry(r.group_id.clone()).or_insert_with(Group::new);
        if g.state != GroupState::Empty
            && g.protocol_type
                .as_deref()
                .is_some_and(|t| t != r.protocol_type)
        {
            return fail(GroupError::InconsistentGroupProtocol);
        }
        if !g.members.is_empty() {
            let shares = g.members.values().all(|m| {
                m.protocols
                    .iter()
                    .any(|(n, _)| r.protocols.iter().any(|(rn, _)| rn == n))
            });
            if !shares {
                return fail(GroupError::InconsistentGroupProtocol);
            }
        }
        let mut member_id = r.member_id.clone();
        if member_id.is_empty() {
            // Static member coming back: takes over its old member id's place.
            if let Some(instance) = &r.group_instance_id {
                let old = g
                    .members
                    .iter()
                    .find(|(_, m)| m.instance_id.as_deref() == Some(instance.as_str()))
                    .map(|(id, _)| id.clone());
                if let Some(old_id) = old {
                    let new_id = format!("{}-{}", instance, uuid::Uuid::new_v4());
                    if let Some(mut m) = g.members.remove(&old_id) {
                        m.fail_join(GroupError::FencedInstanceId);
                        m.last_seen = Instant::now();
                        m.session_timeout = r.session_timeout;
                        m.rebalance_timeout = r.rebalance_timeout;
                        m.protocols = r.protocols.clone();
                        g.members.insert(new_id.clone(), m);
                        // As Kafka: the rejoin causes no rebalance unless it changes the
                        // protocol the group would select for its next generation (the
                        // member's subscription metadata may differ: a streams member's
                        // carries its task lags, which change with every start).
                        let same_protocol = g.vote() == g.protocol;
                        let leader_before = g.leader.clone().unwrap_or_default();
                        if g.leader.as_deref() == Some(old_id.as_str()) {
                            g.leader = Some(new_id.clone());
                        }
                        // Kafka records the replacement (KIP-345), so the old member id
                        // stays fenced after a restart.
                        g.dirty = true;
                        if g.state == GroupState::Stable && same_protocol {
                            info!(
                                group = r.group_id,
                                instance, "static member rejoined without a rebalance"
                            );
                            return immediate(Ok(JoinGroupResponse {
                                generation_id: g.generation,
                                protocol_type: g.protocol_type.clone(),
                                protocol_name: g.protocol.clone(),
                                // As Kafka does: the leader id from before the
                                // replacement, so a returning static leader does not see its
                                // new member id as the leader and does not reassign (KIP-345);
                                // it gets no member list and keeps the stored assignment.
                                leader: leader_before,
                                member_id: new_id,
                                members: Vec::new(),
                            }));
                        }
                        member_id = new_id;
                    }
                }
            }
            if member_id.is_empty() {
                let prefix = if r.client_id.is_empty() {
                    "member"
                } else {
                    r.client_id.as_str()
                };
                member_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
                if r.require_known_member_id && r.group_instance_id.is_none() {
                    g.pending.insert(member_id.clone(), Instant::now());
                    return fail(GroupError::MemberIdRequired { member_id });
                }
            }
        } else if !g.members.contains_key(&member_id) && g.pending.remove(&member_id).is_none() {
            return fail(GroupError::UnknownMemberId);
        }
        let (tx, rx) = oneshot::channel();
        let entry = g
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                instance_id: r.group_instance_id.clone(),
                client_id: r.client_id.clone(),
                client_host: r.client_host.clone(),
                session_timeout: r.session_timeout,
                rebalance_timeout: r.rebalance_timeout,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                last_seen: Instant::now(),
                joined: false,
                join_waiter: None,
                sync_waiter: None,
            });
        entry.protocols = r.protocols;
        entry.session_timeout = r.session_timeout;
        entry.rebalance_timeout = r.rebalance_timeout;
        entry.last_seen = Instant::now();
        entry.fail_join(GroupError::UnknownMemberId);
        entry.join_waiter = Some(tx);
        g.protocol_type = Some(r.protocol_type);
        g.start_rebalance(self.initial_delay);
        if let Some(m) = g.members.get_mut(&member_id) {
            m.joined = true;
        }
        let delay_over = g.deadline.is_none_or(|d| {
            // The initial delay only holds back the first rebalance of an empty group.
            g.generation > 0 || Instant::now() >= d
        });
        g.maybe_complete(false, delay_over);
        debug!(
            group = r.group_id,
            member = member_id,
            state = g.state.name(),
            "join"
        );
        rx
    }

    /// SyncGroup: the leader's call carries every member's assignment; the returned future
    /// resolves with this member's assignment once the leader's have arrived.
    pub fn sync(&self, r: SyncGroupRequest) -> PendingSync {
        let group = r.group_id.clone();
        let rx = self.sync_inner(r);
        self.persist_group(&group);
        PendingSync(rx)
    }

    fn sync_inner(&self, r: SyncGroupRequest) -> oneshot::Receiver<SyncReply> {
        let fail = |e: GroupError| immediate(Err(e));
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(&r.group_id) else {
            return fail(GroupError::UnknownMemberId);
        };
        if g.fenced(&r.member_id, r.group_instance_id.as_deref()) {
            return fail(GroupError::FencedInstanceId);
        }
        if !g.members.contains_key(&r.member_id) {
            return fail(GroupError::UnknownMemberId);
        }
        if r.generation_id != g.generation {
            return fail(GroupError::IllegalGeneration {
                given: r.generation_id,
                current: g.generation,
            });
        }
        match g.state {
            GroupState::Empty => fail(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => fail(GroupError::RebalanceInProgress),
            GroupState::Stable => {
                let assignment = g
                    .members
                    .get(&r.member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                immediate(Ok(SyncGroupResponse {
                    protocol_type: g.protocol_type.clone(),
                    protocol_name: g.protocol.clone(),
                    assignment,
                }))
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = g.members.get_mut(&r.member_id) {
                    m.sync_waiter = Some(tx);
                    m.last_seen = Instant::now();
                }
                if g.leader.as_deref() == Some(r.member_id.as_str()) {
                    g.complete_sync(r.assignments);
                    info!(
                        group = r.group_id,
                        generation = r.generation_id,
                        members = g.members.len(),
                        "group stable"
                    );
                }
                rx
            }
        }
    }

    /// Heartbeat: keeps the member's session alive; REBALANCE_IN_PROGRESS tells it to rejoin.
    pub fn heartbeat(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group) else {
            return Err(GroupError::UnknownMemberId);
        };
        if g.fenced(member_id, instance_id) {
            return Err(GroupError::FencedInstanceId);
        }
        let current = g.generation;
        let state = g.state;
        let Some(m) = g.members.get_mut(member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        m.last_seen = Instant::now();
        if generation != current {
            return Err(GroupError::IllegalGeneration {
                given: generation,
                current,
            });
        }
        match state {
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// LeaveGroup for one member (by member id, or by instance id when the member id is
    /// empty): the group rebalances without it.
    pub fn leave(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group) else {
            return Err(GroupError::UnknownMemberId);
        };
        if !member_id.is_empty() && g.fenced(member_id, instance_id) {
            return Err(GroupError::FencedInstanceId);
        }
        let id = if member_id.is_empty() {
            instance_id.and_then(|inst| {
                g.members
                    .iter()
                    .find(|(_, m)| m.instance_id.as_deref() == Some(inst))
                    .map(|(id, _)| id.clone())
            })
        } else {
            Some(member_id.to_string())
        };
        match id {
            Some(id) if g.members.contains_key(&id) => {
                g.remove_member(&id, self.initial_delay);
                self.persist(group, g);
                info!(group, member = id, "member left");
                Ok(())
            }
            _ => Err(GroupError::UnknownMemberId),
        }
    }

    /// Runs `commit` if `member` may commit offsets for `group` now (Kafka's checks of
    /// OffsetCommit), holding the group state so no rebalance completes in between.
    pub(crate) fn commit_checked<R>(
        &self,
        group: &str,
        member: &CommitMember,
        commit: impl FnOnce() -> R,
    ) -> Result<R, GroupError> {
        if group.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let groups = self.groups.lock();
        let active = groups.get(group).filter(|g| !g.members.is_empty());
        let (generation, member_id) = (member.generation_id, member.member_id.as_str());
        match active {
            None if generation < 0 && member_id.is_empty() => {}
            None => return Err(GroupError::UnknownMemberId),
            Some(g) => {
                if g.fenced(member_id, member.group_instance_id.as_deref()) {
                    return Err(GroupError::FencedInstanceId);
                } else if !g.members.contains_key(member_id) {
                    return Err(GroupError::UnknownMemberId);
                } else if generation != g.generation {
                    return Err(GroupError::IllegalGeneration {
                        given: generation,
                        current: g.generation,
                    });
                } else if g.state == GroupState::CompletingRebalance {
                    // As Kafka: a member of the current generation may commit while the group
                    // prepares a rebalance (KIP-429: cooperative members keep consuming and
                    // committing their partitions; eager members commit before rejoining),
                    // but not between JoinGroup and SyncGroup.
                    return Err(GroupError::RebalanceInProgress);
                }
            }
        }
        Ok(commit())
    }

    /// Expires silent members and completes rebalances past their deadline (run every
    /// 100 ms by the broker's `broker-groups` thread).
    pub(crate) fn tick(&self) {
        let now = Instant::now();
        let mut groups = self.groups.lock();
        for (name, g) in groups.iter_mut() {
            g.pending
                .retain(|_, t| now.duration_since(*t) < PENDING_MEMBER_TTL);
            let expired: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| {
                    // A member waiting in JoinGroup is kept until the rebalance deadline.
                    m.join_waiter.is_none() && now.duration_since(m.last_seen) > m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                info!(
                    group = name,
                    member = id,
                    "session timeout: removing member"
                );
                g.remove_member(&id, self.initial_delay);
            }
            if g.state == GroupState::PreparingRebalance {
                let due = g.deadline.is_some_and(|d| now >= d);
                let all_joined = g.members.values().all(|m| m.joined);
                if due || all_joined {
                    g.maybe_complete(due, due || g.generation > 0);
                }
            }
            self.persist(name, g);
        }
    }

    /// What OffsetDelete may delete in `group` (see [`OffsetDeleteScope`]).
    pub(crate) fn offset_delete_scope(&self, group: &str) -> OffsetDeleteScope {
        let groups = self.groups.lock();
        let Some(g) = groups.get(group).filter(|g| !g.members.is_empty()) else {
            return OffsetDeleteScope::Inactive;
        };
        if g.protocol_type.as_deref() != Some("consumer") {
            return OffsetDeleteScope::NonConsumer;
        }
        // Every protocol's subscription of every member: during a rebalance the protocol of
        // the next generation is not chosen yet, and an undecodable one protects nothing.
        let topics = g
            .members
            .values()
            .flat_map(|m| m.protocols.iter())
            .filter_map(|(_, metadata)| subscribed_topics(metadata))
            .flatten()
            .collect();
        OffsetDeleteScope::Subscribed(topics)
    }

    /// Describes a group (`None` if unknown).
    pub fn describe(&self, group: &str) -> Option<GroupDescription> {
        let groups = self.groups.lock();
        let g = groups.get(group)?;
        let protocol = g.protocol.clone().unwrap_or_default();
        Some(GroupDescription {
            state: g.state,
            generation_id: g.generation,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if g.state == GroupState::Stable {
                protocol.clone()
            } else {
                String::new()
            },
            leader: g.leader.clone(),
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberDescription {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// Every group known to the coordinator, by group id.
    pub fn list(&self) -> Vec<GroupListing> {
        let groups = self.groups.lock();
        let mut out: Vec<_> = groups
            .iter()
            .map(|(n, g)| GroupListing {
                group_id: n.clone(),
                state: g.state,
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// Forgets a group that has no active members (DeleteGroups); its committed offsets are
    /// deleted by the caller.
    pub(crate) fn forget(&self, group: &str) -> Result<(), GroupError> {
        let mut groups = self.groups.lock();
        if groups.get(group).is_some_and(|g| !g.members.is_empty()) {
            return Err(GroupError::NonEmptyGroup);
        }
        if groups.remove(group).is_some() {
            if let Some(store) = self.store.get() {
                store(group, None)?;
            }
        }
        Ok(())
    }
}
