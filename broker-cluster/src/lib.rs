//! KRaft-style clustering for the broker.
//!
//! This crate owns everything that makes several broker processes one cluster:
//!
//! - the **controller quorum**: a Raft group of controllers that replicates the cluster
//!   metadata log (`__cluster_metadata-0`) ([`quorum`]);
//! - the **cluster metadata** ([`metadata`]): the [`metadata::MetadataRecord`]s written to that
//!   log, the `MetadataImage` they build (the Raft state machine and its snapshot
//!   format), and the active controller's decisions (`ControllerState`) that turn
//!   Kafka controller requests (BrokerRegistration, BrokerHeartbeat, AlterPartition,
//!   CreateTopics, …) into records and responses;
//! - the **node glue**: wiring a broker-embedded server to the quorum (pulling metadata,
//!   driving the replica manager, forwarding admin requests to the controller).
//!
//! Layering: this crate depends on `broker-embedded`; `broker-embedded` must never depend on
//! this crate (it exposes traits that this crate implements), and neither must the streams
//! crates. Nothing here is needed for single-node mode.

pub mod error;
pub mod metadata;
pub mod node;
pub mod quorum;

pub use error::ClusterError;
