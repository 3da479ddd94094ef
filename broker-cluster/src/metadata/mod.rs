//! The cluster metadata model: the records of the metadata log ([`MetadataRecord`]), the
//! image they build ([`MetadataImage`], also the Raft state machine's snapshot), and the active
//! controller's decisions ([`ControllerState`]).

pub mod config;
pub mod controller;
pub mod image;
pub mod partition_change;
pub mod placement;
pub mod records;

pub use config::ControllerConfig;
pub use controller::{
    describe_cluster, BrokerHeartbeatState, ControllerState, PRODUCER_ID_BLOCK_SIZE,
};
pub use image::{BrokerRegistration, MetadataImage, PartitionRegistration, TopicImage};
pub use partition_change::{build_partition_change, Election};
pub use placement::{place_replicas, PlacementError, UsableBroker};
pub use records::{BrokerEndpoint, ConfigResourceType, MetadataRecord, NO_LEADER};

#[cfg(test)]
mod proptests;
