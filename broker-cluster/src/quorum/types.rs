//! The openraft type configuration of the controller quorum.

use std::io::Cursor;

use openraft::BasicNode;
use serde::{Deserialize, Serialize};

/// The payload of a normal Raft entry: the JSON form of a [`super::ReplicatedState::Command`].
///
/// The Raft types are not generic over the replicated state: the command travels as JSON and is
/// decoded by the state machine when it is applied.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CommandData(pub serde_json::Value);

openraft::declare_raft_types!(
    /// The Raft type configuration of the controller quorum.
    pub TypeConfig:
        D = CommandData,
        R = (),
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A Raft log id of this quorum.
pub(crate) type LogId = openraft::LogId<u64>;
/// A Raft vote of this quorum.
pub(crate) type Vote = openraft::Vote<u64>;
/// A Raft log entry of this quorum.
pub(crate) type Entry = openraft::Entry<TypeConfig>;
/// The openraft storage error of this quorum.
pub(crate) type StorageError = openraft::StorageError<u64>;
/// Snapshot metadata of this quorum.
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<u64, BasicNode>;
/// A stored membership of this quorum.
pub(crate) type StoredMembership = openraft::StoredMembership<u64, BasicNode>;
