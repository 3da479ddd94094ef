//! The state of one classic group: its members, generation, chosen protocol and leader, and
//! the transitions of Kafka's group state machine (Empty → PreparingRebalance →
//! CompletingRebalance → Stable, back to PreparingRebalance on any membership change).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::record::{StoredGroup, StoredMember};
use super::{GroupError, GroupState, JoinGroupResponse, JoinedMember, SyncGroupResponse};

/// What a member waiting in JoinGroup receives.
pub(super) type JoinReply = Result<JoinGroupResponse, GroupError>;
/// What a member waiting in SyncGroup receives.
pub(super) type SyncReply = Result<SyncGroupResponse, GroupError>;

/// Kafka's default rebalance timeout when a group has no member to take it from.
const DEFAULT_REBALANCE_TIMEOUT: Duration = Duration::from_secs(60);

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

fn duration(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(super) struct Member {
    pub(super) instance_id: Option<String>,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) session_timeout: Duration,
    pub(super) rebalance_timeout: Duration,
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) assignment: Bytes,
    pub(super) last_seen: Instant,
    /// Rejoined in the current rebalance.
    pub(super) joined: bool,
    pub(super) join_waiter: Option<oneshot::Sender<JoinReply>>,
    pub(super) sync_waiter: Option<oneshot::Sender<SyncReply>>,
}

impl Member {
    /// The member's metadata for `protocol` (empty if it does not support it).
    pub(super) fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, b)| b.clone())
            .unwrap_or_default()
    }

    /// Answers a pending JoinGroup with an error (the member was removed or replaced).
    pub(super) fn fail_join(&mut self, error: GroupError) {
        if let Some(w) = self.join_waiter.take() {
            let _ = w.send(Err(error));
        }
    }
}

pub(super) struct Group {
    pub(super) state: GroupState,
    pub(super) generation: i32,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) leader: Option<String>,
    pub(super) members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED and not used yet.
    pub(super) pending: HashMap<String, Instant>,
    /// When the current rebalance completes even if not every member rejoined.
    pub(super) deadline: Option<Instant>,
    /// Changed in a way `__consumer_offsets` must record (a completed rebalance, the group
    /// becoming empty, a static member replaced).
    pub(super) dirty: bool,
}

impl Group {
    pub(super) fn new() -> Self {
        Self {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            deadline: None,
            dirty: false,
        }
    }

    /// The group as `__consumer_offsets` stores it.
    pub(super) fn snapshot(&self) -> StoredGroup {
        let protocol = self.protocol.clone().unwrap_or_default();
        StoredGroup {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: crate::broker::now_ms(),
            members: self
                .members
                .iter()
                .map(|(id, m)| StoredMember {
                    member_id: id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: millis(m.rebalance_timeout),
                    session_timeout_ms: millis(m.session_timeout),
                    subscription: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// A group loaded from `__consumer_offsets`: Stable with its members (their sessions
    /// start now; members that do not come back expire), or Empty.
    pub(super) fn restore(stored: StoredGroup) -> Self {
        let now = Instant::now();
        let mut g = Group::new();
        g.generation = stored.generation;
        g.protocol_type = (!stored.protocol_type.is_empty()).then_some(stored.protocol_type);
        g.protocol = stored.protocol.clone();
        g.leader = stored.leader;
        let protocol = stored.protocol.unwrap_or_default();
        for m in stored.members {
            g.members.insert(
                m.member_id,
                Member {
                    instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout: duration(m.session_timeout_ms),
                    rebalance_timeout: duration(m.rebalance_timeout_ms),
                    protocols: vec![(protocol.clone(), m.subscription)],
                    assignment: m.assignment,
                    last_seen: now,
                    joined: false,
                    join_waiter: None,
                    sync_waiter: None,
                },
            );
        }
        if g.members.is_empty() {
            g.protocol = None;
            g.leader = None;
        } else {
            g.state = GroupState::Stable;
        }
        g
    }

    pub(super) fn start_rebalance(&mut self, initial_delay: Duration) {
        if self.state == GroupState::CompletingRebalance {
            // Members waiting for SyncGroup must rejoin.
            for m in self.members.values_mut() {
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(Err(GroupError::RebalanceInProgress));
                }
            }
        }
        if self.state != GroupState::PreparingRebalance {
            let timeout = self
                .members
                .values()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or(DEFAULT_REBALANCE_TIMEOUT);
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

    /// The protocol every member supports, chosen by each member's first preference.
    pub(super) fn vote(&self) -> Option<String> {
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
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m
                .protocols
                .iter()
                .find(|(n, _)| common.contains(&n.as_str()))
            {
                *votes.entry(n.as_str()).or_default() += 1;
            }
        }
        votes
            .iter()
            .max_by_key(|(_, v)| **v)
            .map(|(n, _)| (*n).to_string())
    }

    /// Completes the rebalance if every member has rejoined, or if `force` (deadline).
    pub(super) fn maybe_complete(&mut self, force: bool, initial_delay_over: bool) {
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
            self.dirty = true;
            return;
        }
        self.protocol = self.vote();
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
        let all: Vec<JoinedMember> = self
            .members
            .iter()
            .map(|(id, m)| JoinedMember {
                member_id: id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata(&protocol),
            })
            .collect();
        for (id, m) in self.members.iter_mut() {
            m.last_seen = Instant::now();
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(Ok(JoinGroupResponse {
                    generation_id: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol.clone(),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    members: if *id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                }));
            }
        }
    }

    /// KIP-345: a request from `member_id` naming a static instance that now belongs to
    /// another member id comes from a fenced (replaced) instance: FENCED_INSTANCE_ID.
    pub(super) fn fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        instance_id.is_some_and(|inst| {
            self.members
                .iter()
                .any(|(id, m)| m.instance_id.as_deref() == Some(inst) && id != member_id)
        })
    }

    pub(super) fn remove_member(&mut self, id: &str, initial_delay: Duration) {
        if let Some(mut m) = self.members.remove(id) {
            m.fail_join(GroupError::UnknownMemberId);
            if self.members.is_empty() && self.state != GroupState::PreparingRebalance {
                self.state = GroupState::Empty;
                self.generation += 1;
                self.protocol = None;
                self.leader = None;
                self.dirty = true;
            } else {
                self.start_rebalance(initial_delay);
                self.maybe_complete(false, true);
            }
        }
    }

    /// The leader's assignments arrived: the group is stable and every waiting member gets
    /// its assignment.
    pub(super) fn complete_sync(&mut self, assignments: Vec<(String, Bytes)>) {
        let given: HashMap<String, Bytes> = assignments.into_iter().collect();
        self.state = GroupState::Stable;
        self.dirty = true;
        let (pt, p) = (self.protocol_type.clone(), self.protocol.clone());
        for (id, m) in self.members.iter_mut() {
            m.assignment = given.get(id).cloned().unwrap_or_default();
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(Ok(SyncGroupResponse {
                    protocol_type: pt.clone(),
                    protocol_name: p.clone(),
                    assignment: m.assignment.clone(),
                }));
            }
        }
    }
}
