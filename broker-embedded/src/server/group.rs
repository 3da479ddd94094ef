//! The classic consumer-group coordinator (JoinGroup / SyncGroup / Heartbeat / LeaveGroup):
//! member ids (with the MEMBER_ID_REQUIRED round trip of JoinGroup v4+), generations, the
//! protocol common to all members chosen by vote, the leader receiving every member's
//! metadata and distributing assignments through SyncGroup, rebalance and session timeouts,
//! and static membership (`group.instance.id`: a restarting member with a known instance id
//! gets its assignment back without a rebalance). The broker never interprets assignments.
//!
//! Group state lives in memory; committed offsets are durable in `__consumer_offsets`. After a
//! broker restart groups re-form when their members rejoin.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tracing::{debug, info};

/// Kafka's `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
const MIN_SESSION_TIMEOUT: Duration = Duration::from_millis(6_000);
const MAX_SESSION_TIMEOUT: Duration = Duration::from_millis(1_800_000);

/// Group states with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

/// What a JoinGroup caller gets back.
#[derive(Debug, Clone, Default)]
pub(crate) struct JoinResult {
    pub(crate) error: i16,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: String,
    pub(crate) member_id: String,
    /// (member id, instance id, metadata) — only for the leader.
    pub(crate) members: Vec<(String, Option<String>, Bytes)>,
}

/// What a SyncGroup caller gets back.
#[derive(Debug, Clone, Default)]
pub(crate) struct SyncResult {
    pub(crate) error: i16,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) assignment: Bytes,
}

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

/// A member as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub(crate) struct MemberDescription {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) metadata: Bytes,
    pub(crate) assignment: Bytes,
}

/// A group as DescribeGroups / ListGroups report it.
#[derive(Debug, Clone)]
pub(crate) struct GroupDescription {
    pub(crate) state: GroupState,
    pub(crate) protocol_type: String,
    pub(crate) protocol: String,
    pub(crate) members: Vec<MemberDescription>,
}

struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    joined: bool,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED and not used yet.
    pending: HashMap<String, Instant>,
    /// When the current rebalance completes even if not every member rejoined.
    deadline: Option<Instant>,
}

impl Group {
    fn new() -> Self {
        Self {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            deadline: None,
        }
    }

    fn start_rebalance(&mut self, initial_delay: Duration) {
        if self.state == GroupState::CompletingRebalance {
            // Members waiting for SyncGroup must rejoin.
            for m in self.members.values_mut() {
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncResult {
                        error: ResponseError::RebalanceInProgress.code(),
                        ..SyncResult::default()
                    });
                }
            }
        }
        if self.state != GroupState::PreparingRebalance {
            let timeout = self
                .members
                .values()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or(Duration::from_secs(60));
            let delay = if self.state == GroupState::Empty {
                initial_delay.min(timeout)
            } else {
                timeout
            };
            self.deadline = Some(Instant::now() + delay);
            self.state = GroupState::PreparingRebalance;
            for m in self.members.values_mut() {
                m.joined = false;
            }
        }
    }

    /// Completes the rebalance if every member has rejoined, or if `force` (deadline).
    fn maybe_complete(&mut self, force: bool, initial_delay_over: bool) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.joined);
        if !(force || (all_joined && initial_delay_over)) {
            return;
        }
        self.members.retain(|_, m| m.joined);
        self.deadline = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        // The protocol every member supports, chosen by each member's first preference.
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        let candidates: Vec<&str> = self
            .members
            .values()
            .next()
            .map(|m| m.protocols.iter().map(|(n, _)| n.as_str()).collect())
            .unwrap_or_default();
        let common: Vec<&str> = candidates
            .into_iter()
            .filter(|c| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == c))
            })
            .collect();
        for m in self.members.values() {
            if let Some((n, _)) = m
                .protocols
                .iter()
                .find(|(n, _)| common.contains(&n.as_str()))
            {
                *votes.entry(n.as_str()).or_default() += 1;
            }
        }
        let chosen = votes
            .iter()
            .max_by_key(|(_, v)| **v)
            .map(|(n, _)| (*n).to_string());
        self.protocol = chosen;
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone().unwrap_or_default();
        let all: Vec<(String, Option<String>, Bytes)> = self
            .members
            .iter()
            .map(|(id, m)| {
                let meta = m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol)
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default();
                (id.clone(), m.instance_id.clone(), meta)
            })
            .collect();
        for (id, m) in self.members.iter_mut() {
            m.last_seen = Instant::now();
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult {
                    error: 0,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol: self.protocol.clone(),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    members: if *id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }

    /// KIP-345: a request from `member_id` naming a static instance that now belongs to
    /// another member id comes from a fenced (replaced) instance: FENCED_INSTANCE_ID.
    fn fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        instance_id.is_some_and(|inst| {
            self.members
                .iter()
                .any(|(id, m)| m.instance_id.as_deref() == Some(inst) && id != member_id)
        })
    }

    fn remove_member(&mut self, id: &str, initial_delay: Duration) {
        if let Some(mut m) = self.members.remove(id) {
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult {
                    error: ResponseError::UnknownMemberId.code(),
                    ..JoinResult::default()
                });
            }
            if self.members.is_empty() && self.state != GroupState::PreparingRebalance {
                self.state = GroupState::Empty;
                self.generation += 1;
                self.protocol = None;
                self.leader = None;
            } else {
                self.start_rebalance(initial_delay);
                self.maybe_complete(false, true);
            }
        }
    }
}

/// Parameters of a JoinGroup request.
pub(crate) struct JoinRequest {
    pub(crate) group: String,
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) protocol_type: String,
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) session_timeout: Duration,
    pub(crate) rebalance_timeout: Duration,
    pub(crate) require_known_member_id: bool,
}

/// All groups of this broker.
pub(crate) struct GroupCoordinator {
    groups: Mutex<HashMap<String, Group>>,
    initial_delay: Duration,
}

fn immediate<T>(value: T) -> oneshot::Receiver<T> {
    let (tx, rx) = oneshot::channel();
    let _ = tx.send(value);
    rx
}

fn join_error(code: ResponseError, member_id: &str) -> oneshot::Receiver<JoinResult> {
    immediate(JoinResult {
        error: code.code(),
        generation: -1,
        member_id: member_id.to_string(),
        ..JoinResult::default()
    })
}

impl GroupCoordinator {
    /// `initial_delay` is Kafka's `group.initial.rebalance.delay.ms`.
    pub(crate) fn new(initial_delay: Duration) -> Self {
        Self {
            groups: Mutex::new(HashMap::new()),
            initial_delay,
        }
    }

    /// Handles JoinGroup; the receiver resolves when the rebalance completes.
    pub(crate) fn join(&self, r: JoinRequest) -> oneshot::Receiver<JoinResult> {
        if r.group.is_empty() {
            return join_error(ResponseError::InvalidGroupId, &r.member_id);
        }
        if r.session_timeout < MIN_SESSION_TIMEOUT || r.session_timeout > MAX_SESSION_TIMEOUT {
            return join_error(ResponseError::InvalidSessionTimeout, &r.member_id);
        }
        if r.protocol_type.is_empty() || r.protocols.is_empty() {
            return join_error(ResponseError::InconsistentGroupProtocol, &r.member_id);
        }
        let mut groups = self.groups.lock();
        let g = groups.entry(r.group.clone()).or_insert_with(Group::new);
        if g.state != GroupState::Empty
            && g.protocol_type
                .as_deref()
                .is_some_and(|t| t != r.protocol_type)
        {
            return join_error(ResponseError::InconsistentGroupProtocol, &r.member_id);
        }
        if !g.members.is_empty() {
            let shares = g.members.values().all(|m| {
                m.protocols
                    .iter()
                    .any(|(n, _)| r.protocols.iter().any(|(rn, _)| rn == n))
            });
            if !shares {
                return join_error(ResponseError::InconsistentGroupProtocol, &r.member_id);
            }
        }
        let mut member_id = r.member_id.clone();
        if member_id.is_empty() {
            // Static member coming back: takes over its old member id's place.
            if let Some(instance) = &r.instance_id {
                let old = g
                    .members
                    .iter()
                    .find(|(_, m)| m.instance_id.as_deref() == Some(instance.as_str()))
                    .map(|(id, _)| id.clone());
                if let Some(old_id) = old {
                    let new_id = format!("{}-{}", instance, uuid::Uuid::new_v4());
                    if let Some(mut m) = g.members.remove(&old_id) {
                        if let Some(w) = m.join_waiter.take() {
                            let _ = w.send(JoinResult {
                                error: ResponseError::FencedInstanceId.code(),
                                ..JoinResult::default()
                            });
                        }
                        m.last_seen = Instant::now();
                        m.session_timeout = r.session_timeout;
                        m.rebalance_timeout = r.rebalance_timeout;
                        let same_protocols = m.protocols == r.protocols;
                        m.protocols = r.protocols.clone();
                        g.members.insert(new_id.clone(), m);
                        let leader_before = g.leader.clone().unwrap_or_default();
                        if g.leader.as_deref() == Some(old_id.as_str()) {
                            g.leader = Some(new_id.clone());
                        }
                        if g.state == GroupState::Stable && same_protocols {
                            info!(
                                group = r.group,
                                instance, "static member rejoined without a rebalance"
                            );
                            return immediate(JoinResult {
                                error: 0,
                                generation: g.generation,
                                protocol_type: g.protocol_type.clone(),
                                protocol: g.protocol.clone(),
                                // As Kafka does: the leader id from before the
                                // replacement, so a returning static leader does not see its
                                // new member id as the leader and does not reassign (KIP-345);
                                // it gets no member list and keeps the stored assignment.
                                leader: leader_before,
                                member_id: new_id,
                                members: Vec::new(),
                            });
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
                if r.require_known_member_id && r.instance_id.is_none() {
                    g.pending.insert(member_id.clone(), Instant::now());
                    return join_error(ResponseError::MemberIdRequired, &member_id);
                }
            }
        } else if !g.members.contains_key(&member_id) && g.pending.remove(&member_id).is_none() {
            return join_error(ResponseError::UnknownMemberId, &member_id);
        }
        let (tx, rx) = oneshot::channel();
        let entry = g
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                instance_id: r.instance_id.clone(),
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
        if let Some(old) = entry.join_waiter.replace(tx) {
            let _ = old.send(JoinResult {
                error: ResponseError::UnknownMemberId.code(),
                ..JoinResult::default()
            });
        }
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
            group = r.group,
            member = member_id,
            state = g.state.name(),
            "join"
        );
        rx
    }

    /// Handles SyncGroup; the receiver resolves when the leader's assignment arrives.
    pub(crate) fn sync(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> oneshot::Receiver<SyncResult> {
        let err = |e: ResponseError| {
            immediate(SyncResult {
                error: e.code(),
                ..SyncResult::default()
            })
        };
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group) else {
            return err(ResponseError::UnknownMemberId);
        };
        if g.fenced(member_id, instance_id) {
            return err(ResponseError::FencedInstanceId);
        }
        if !g.members.contains_key(member_id) {
            return err(ResponseError::UnknownMemberId);
        }
        if generation != g.generation {
            return err(ResponseError::IllegalGeneration);
        }
        match g.state {
            GroupState::Empty => err(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => err(ResponseError::RebalanceInProgress),
            GroupState::Stable => {
                let m = &g.members[member_id];
                immediate(SyncResult {
                    error: 0,
                    protocol_type: g.protocol_type.clone(),
                    protocol: g.protocol.clone(),
                    assignment: m.assignment.clone(),
                })
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = g.members.get_mut(member_id) {
                    m.sync_waiter = Some(tx);
                    m.last_seen = Instant::now();
                }
                if g.leader.as_deref() == Some(member_id) {
                    let given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    g.state = GroupState::Stable;
                    let (pt, p) = (g.protocol_type.clone(), g.protocol.clone());
                    for (id, m) in g.members.iter_mut() {
                        m.assignment = given.get(id).cloned().unwrap_or_default();
                        if let Some(w) = m.sync_waiter.take() {
                            let _ = w.send(SyncResult {
                                error: 0,
                                protocol_type: pt.clone(),
                                protocol: p.clone(),
                                assignment: m.assignment.clone(),
                            });
                        }
                    }
                    info!(group, generation, members = g.members.len(), "group stable");
                }
                rx
            }
        }
    }

    /// Handles Heartbeat.
    pub(crate) fn heartbeat(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group) else {
            return ResponseError::UnknownMemberId.code();
        };
        if g.fenced(member_id, instance_id) {
            return ResponseError::FencedInstanceId.code();
        }
        let Some(m) = g.members.get_mut(member_id) else {
            return ResponseError::UnknownMemberId.code();
        };
        m.last_seen = Instant::now();
        if generation != g.generation {
            return ResponseError::IllegalGeneration.code();
        }
        match g.state {
            GroupState::PreparingRebalance => ResponseError::RebalanceInProgress.code(),
            _ => 0,
        }
    }

    /// Handles LeaveGroup for one member (by member id, or by instance id when the member id
    /// is empty). Returns the error code for that member.
    pub(crate) fn leave(&self, group: &str, member_id: &str, instance_id: Option<&str>) -> i16 {
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group) else {
            return ResponseError::UnknownMemberId.code();
        };
        if !member_id.is_empty() && g.fenced(member_id, instance_id) {
            return ResponseError::FencedInstanceId.code();
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
                info!(group, member = id, "member left");
                0
            }
            _ => ResponseError::UnknownMemberId.code(),
        }
    }

    /// Checks a commit's generation and member: `None` if allowed.
    pub(crate) fn check_commit(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Option<i16> {
        let groups = self.groups.lock();
        let active = groups.get(group).filter(|g| !g.members.is_empty());
        match active {
            None if generation < 0 && member_id.is_empty() => None,
            None => Some(ResponseError::UnknownMemberId.code()),
            Some(g) => {
                if g.fenced(member_id, instance_id) {
                    Some(ResponseError::FencedInstanceId.code())
                } else if !g.members.contains_key(member_id) {
                    Some(ResponseError::UnknownMemberId.code())
                } else if generation != g.generation {
                    Some(ResponseError::IllegalGeneration.code())
                } else if g.state == GroupState::CompletingRebalance {
                    // As Kafka: a member of the current generation may commit while the group
                    // prepares a rebalance (KIP-429: cooperative members keep consuming and
                    // committing their partitions), but not between JoinGroup and SyncGroup.
                    Some(ResponseError::RebalanceInProgress.code())
                } else {
                    None
                }
            }
        }
    }

    /// Expires silent members and completes rebalances past their deadline.
    pub(crate) fn tick(&self) {
        let now = Instant::now();
        let mut groups = self.groups.lock();
        for (name, g) in groups.iter_mut() {
            g.pending
                .retain(|_, t| now.duration_since(*t) < Duration::from_secs(300));
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
    pub(crate) fn describe(&self, group: &str) -> Option<GroupDescription> {
        let groups = self.groups.lock();
        let g = groups.get(group)?;
        let protocol = g.protocol.clone().unwrap_or_default();
        Some(GroupDescription {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if g.state == GroupState::Stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberDescription {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// Every group known to the coordinator, with its state and protocol type.
    pub(crate) fn list(&self) -> Vec<(String, GroupState, String)> {
        let groups = self.groups.lock();
        let mut out: Vec<_> = groups
            .iter()
            .map(|(n, g)| {
                (
                    n.clone(),
                    g.state,
                    g.protocol_type.clone().unwrap_or_default(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Forgets a group that has no active members (DeleteGroups); its committed offsets are
    /// deleted by the caller. Returns NON_EMPTY_GROUP's code if members remain.
    pub(crate) fn forget(&self, group: &str) -> Result<(), i16> {
        let mut groups = self.groups.lock();
        if groups.get(group).is_some_and(|g| !g.members.is_empty()) {
            return Err(ResponseError::NonEmptyGroup.code());
        }
        groups.remove(group);
        Ok(())
    }
}
