//! The coordinator's public value types: requests, responses, errors, descriptions.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use super::state::{JoinReply, SyncReply};
use crate::error::BrokerError;

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
pub struct PendingJoin(pub(super) oneshot::Receiver<JoinReply>);

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
pub struct PendingSync(pub(super) oneshot::Receiver<SyncReply>);

impl Future for PendingSync {
    type Output = Result<SyncGroupResponse, GroupError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(GroupError::CoordinatorNotAvailable)))
    }
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
