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
//! Group state lives in memory; committed offsets are durable in `__consumer_offsets`
//! ([`crate::Broker::commit_group_offsets`] checks the member and generation). After a broker
//! restart groups re-form when their members rejoin.

mod state;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tracing::{debug, info};

use crate::error::BrokerError;
use state::{Group, JoinReply, Member, SyncReply};

/// Kafka's `group.min.session.timeout.ms`.
pub const MIN_SESSION_TIMEOUT: Duration = Duration::from_millis(6_000);
/// Kafka's `group.max.session.timeout.ms`.
pub const MAX_SESSION_TIMEOUT: Duration = Duration::from_millis(1_800_000);

/// How long a member id handed out with MEMBER_ID_REQUIRED stays valid.
const PENDING_MEMBER_TTL: Duration = Duration::from_secs(300);

/// Why the coordinator refused a request: each variant is the Kafka error a wire client
/// receives ([`GroupError::kafka_error`]).
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The group id is empty (INVALID_GROUP_ID).
    #[error("invalid (empty) group id")]
    InvalidGroupId,
    /// The session timeout is outside `group.min/max.session.timeout.ms`
    /// (INVALID_SESSION_TIMEOUT).
    #[error("session timeout {0:?} is outside the broker's allowed range")]
    InvalidSessionTimeout(Duration),
    /// No protocol type or protocols, a protocol type other than the group's, or no protocol
    /// in common with the members (INCONSISTENT_GROUP_PROTOCOL).
    #[error("the member's protocols are inconsistent with the group's")]
    InconsistentGroupProtocol,
    /// The joining member must rejoin with this member id (MEMBER_ID_REQUIRED, KIP-394).
    #[error("rejoin with the assigned member id {member_id}")]
    MemberIdRequired {
        /// The member id to rejoin with.
        member_id: String,
    },
    /// The member is not (or no longer) in the group (UNKNOWN_MEMBER_ID).
    #[error("unknown member id")]
    UnknownMemberId,
    /// The request carries a generation other than the group's (ILLEGAL_GENERATION).
    #[error("illegal generation {given} (the group is at generation {current})")]
    IllegalGeneration {
        /// The generation the member gave.
        given: i32,
        /// The group's generation.
        current: i32,
    },
    /// The group is rebalancing: the member must rejoin (REBALANCE_IN_PROGRESS).
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    /// Another member took over this static instance id (FENCED_INSTANCE_ID).
    #[error("the static instance id is now used by another member")]
    FencedInstanceId,
    /// The group still has members (NON_EMPTY_GROUP).
    #[error("the group still has members")]
    NonEmptyGroup,
    /// The coordinator went away before answering (COORDINATOR_NOT_AVAILABLE).
    #[error("the group coordinator is not available")]
    CoordinatorNotAvailable,
    /// Storing the group's offsets failed.
    #[error(transparent)]
    Storage(#[from] BrokerError),
}

impl GroupError {
    /// The Kafka error a client receives for this error.
    pub fn kafka_error(&self) -> ResponseError {
        match self {
            Self::InvalidGroupId => ResponseError::InvalidGroupId,
            Self::InvalidSessionTimeout(_) => ResponseError::InvalidSessionTimeout,
            Self::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
            Self::MemberIdRequired { .. } => ResponseError::MemberIdRequired,
            Self::UnknownMemberId => ResponseError::UnknownMemberId,
            Self::IllegalGeneration { .. } => ResponseError::IllegalGeneration,
            Self::RebalanceInProgress => ResponseError::RebalanceInProgress,
            Self::FencedInstanceId => ResponseError::FencedInstanceId,
            Self::NonEmptyGroup => ResponseError::NonEmptyGroup,
            Self::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
            Self::Storage(e) => e.kafka_error(),
        }
    }

    /// The Kafka error code of [`GroupError::kafka_error`].
    pub fn code(&self) -> i16 {
        self.kafka_error().code()
    }
}

/// Group states with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Waiting for the members to (re)join.
    PreparingRebalance,
    /// Members joined; waiting for the leader's assignments.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
}

impl GroupState {
    /// Kafka's name of the state (as DescribeGroups and ListGroups report it).
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

/// A JoinGroup request.
#[derive(Debug, Clone)]
pub struct JoinGroupRequest {
    /// The group.
    pub group_id: String,
    /// The member id from an earlier join, or empty for a new member.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// The client id (reported by DescribeGroups).
    pub client_id: String,
    /// The client host (reported by DescribeGroups).
    pub client_host: String,
    /// The protocol type, e.g. `consumer`.
    pub protocol_type: String,
    /// The protocols the member supports, by preference: (name, metadata).
    pub protocols: Vec<(String, Bytes)>,
    /// The member is removed when it sends nothing for this long.
    pub session_timeout: Duration,
    /// How long a rebalance waits for this member to rejoin.
    pub rebalance_timeout: Duration,
    /// A new member (empty member id, no instance id) gets MEMBER_ID_REQUIRED with its id
    /// and must join again with it (JoinGroup v4+ over the wire).
    pub require_known_member_id: bool,
}

impl JoinGroupRequest {
    /// A new member's request for `group_id` with one protocol, Kafka's consumer defaults
    /// for the timeouts (45 s session, 5 min rebalance) and no MEMBER_ID_REQUIRED round trip.
    pub fn new(
        group_id: impl Into<String>,
        protocol_type: impl Into<String>,
        protocol: impl Into<String>,
        metadata: Bytes,
    ) -> Self {
        Self {
            group_id: group_id.into(),
            member_id: String::new(),
            group_instance_id: None,
            client_id: String::new(),
            client_host: String::new(),
            protocol_type: protocol_type.into(),
            protocols: vec![(protocol.into(), metadata)],
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            require_known_member_id: false,
        }
    }
}

/// A member of the new generation as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// The member's metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// A successful JoinGroup.
#[derive(Debug, Clone, Default)]
pub struct JoinGroupResponse {
    /// The new generation.
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// Every member with its metadata — for the leader only (empty for the others).
    pub members: Vec<JoinedMember>,
}

impl JoinGroupResponse {
    /// Whether this member is the leader (and must compute the assignments).
    pub fn is_leader(&self) -> bool {
        self.leader == self.member_id
    }
}

/// A SyncGroup request.
#[derive(Debug, Clone, Default)]
pub struct SyncGroupRequest {
    /// The group.
    pub group_id: String,
    /// The generation from JoinGroup.
    pub generation_id: i32,
    /// The member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// The leader's assignments (member id, bytes); empty for the other members.
    pub assignments: Vec<(String, Bytes)>,
}

/// A successful SyncGroup.
#[derive(Debug, Clone, Default)]
pub struct SyncGroupResponse {
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen protocol.
    pub protocol_name: Option<String>,
    /// This member's assignment, as the leader encoded it.
    pub assignment: Bytes,
}

/// Who commits offsets for a group: a member of a generation, or nobody (a "simple" commit
/// by a consumer with manual assignment, to a group without active members).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitMember {
    /// The member's generation (-1 for a simple commit).
    pub generation_id: i32,
    /// The member id (empty for a simple commit).
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
}

impl CommitMember {
    /// A commit without group membership (generation -1, no member id).
    pub fn simple() -> Self {
        Self {
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}

/// Resolves when a JoinGroup completes (the rebalance completed, or the member was refused).
#[derive(Debug)]
#[must_use = "the join is answered through this future"]
pub struct PendingJoin(oneshot::Receiver<JoinReply>);

impl Future for PendingJoin {
    type Output = Result<JoinGroupResponse, GroupError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(GroupError::CoordinatorNotAvailable)))
    }
}

/// Resolves when a SyncGroup completes (the leader's assignments arrived, or the member was
/// refused).
#[derive(Debug)]
#[must_use = "the sync is answered through this future"]
pub struct PendingSync(oneshot::Receiver<SyncReply>);

impl Future for PendingSync {
    type Output = Result<SyncGroupResponse, GroupError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(GroupError::CoordinatorNotAvailable)))
    }
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
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Metadata for the group's protocol.
    pub metadata: Bytes,
    /// The member's current assignment.
    pub assignment: Bytes,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    /// State.
    pub state: GroupState,
    /// Generation.
    pub generation_id: i32,
    /// Protocol type (empty if none yet).
    pub protocol_type: String,
    /// The chosen protocol (empty unless stable).
    pub protocol: String,
    /// The leader's member id, if any.
    pub leader: Option<String>,
    /// Members.
    pub members: Vec<MemberDescription>,
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// State.
    pub state: GroupState,
    /// Protocol type (empty if none yet).
    pub protocol_type: String,
}

/// All groups of a broker (one per [`crate::Broker`], reached through
/// [`crate::Broker::group_coordinator`]).
pub struct GroupCoordinator {
    groups: Mutex<HashMap<String, Group>>,
    initial_delay: Duration,
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
        }
    }

    /// JoinGroup: registers the member at once (so members joining one after the other land
    /// in the same rebalance); the returned future resolves when the rebalance completes.
    pub fn join(&self, r: JoinGroupRequest) -> PendingJoin {
        PendingJoin(self.join_inner(r))
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
                        let same_protocols = m.protocols == r.protocols;
                        m.protocols = r.protocols.clone();
                        g.members.insert(new_id.clone(), m);
                        let leader_before = g.leader.clone().unwrap_or_default();
                        if g.leader.as_deref() == Some(old_id.as_str()) {
                            g.leader = Some(new_id.clone());
                        }
                        if g.state == GroupState::Stable && same_protocols {
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
        PendingSync(self.sync_inner(r))
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
        groups.remove(group);
        Ok(())
    }
}
