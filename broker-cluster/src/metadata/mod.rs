//! The cluster metadata model: the records of the metadata log ([`MetadataRecord`]), the
//! image they build ([`MetadataImage`], also the Raft state machine's snapshot), and the active
//! controller's decisions ([`ControllerState`]).
//!
//! How the pieces fit (the quorum and node glue live elsewhere in this crate):
//!
//! 1. The active controller receives a Kafka request (BrokerRegistration, BrokerHeartbeat,
//!    AlterPartition, CreateTopics, ...) and calls the matching [`ControllerState`] method with
//!    the current time and, where a broker epoch or offset is derived from it, `next_offset`:
//!    the Raft log index the records will be written at. It gets the records to append and
//!    the response.
//! 2. It writes the records as one Raft entry (`Vec<MetadataRecord>`, applied atomically) and,
//!    once committed, applies them ([`ControllerState::apply_entry`]; every replica applies the
//!    same entry to its own [`MetadataImage`]) before deciding the next request: writes are
//!    serialized, so `next_offset` is exact.
//! 3. It calls [`ControllerState::tick`] periodically (fencing brokers whose session expired,
//!    unclean elections where allowed, preferred-leader rebalancing) and writes what it returns
//!    the same way.
//!
//! Brokers learn the image by pulling it, and read brokers, topics, partitions and configs
//! through the [`MetadataImage`] accessors.

pub mod config;
pub mod controller;
pub mod image;
pub mod partition_change;
pub mod placement;
pub mod records;

pub use config::{ControllerConfig, CONSUMER_OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
pub use controller::{
    describe_cluster, validate_topic_configs, BrokerHeartbeatState, ControllerState,
    PRODUCER_ID_BLOCK_SIZE, RESOURCE_TYPE_BROKER, RESOURCE_TYPE_TOPIC,
};
pub use image::{BrokerRegistration, MetadataImage, PartitionRegistration, TopicImage};
pub use partition_change::{build_partition_change, Election};
pub use placement::{place_replicas, PlacementError, UsableBroker};
pub use records::{BrokerEndpoint, ConfigResourceType, MetadataRecord, NO_LEADER};

#[cfg(test)]
mod proptests;
