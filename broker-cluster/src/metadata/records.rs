//! The records of the cluster metadata log (Kafka's KRaft metadata records, Rust-cased).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// "No leader": the value of a partition's leader when no replica may lead it.
pub const NO_LEADER: i32 = -1;

/// One endpoint a broker listens on, by listener name (Kafka's `BrokerEndpoint`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    /// The listener name, e.g. `PLAINTEXT` or `INTERNAL`.
    pub name: String,
    /// The advertised host.
    pub host: String,
    /// The advertised port.
    pub port: u16,
    /// Kafka's security protocol id (0 = PLAINTEXT).
    #[serde(default)]
    pub security_protocol: i16,
}

/// The kind of resource a [`MetadataRecord::Config`] applies to (Kafka's `ConfigResource.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ConfigResourceType {
    /// A topic (`resource_name` is the topic name).
    Topic,
    /// A broker (`resource_name` is the broker id, or empty for the cluster-wide default).
    Broker,
}

/// A record of the cluster metadata log. A Raft entry carries a `Vec<MetadataRecord>` that is
/// applied atomically, in order, by [`crate::metadata::MetadataImage::apply_entry`].
///
/// A record that does not fit the image it is applied to (an unknown broker, topic id or
/// partition, a stale broker epoch) is logged and ignored: applying is total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// A broker (re-)registered (Kafka's `RegisterBrokerRecord`). Replaces any previous
    /// registration of `broker_id`; the entry's log index becomes the broker's registration
    /// offset.
    RegisterBroker {
        /// The broker id (`node.id`).
        broker_id: i32,
        /// The id of this run of the broker process.
        incarnation_id: Uuid,
        /// The broker epoch: the log index of the entry that first registered this incarnation.
        broker_epoch: i64,
        /// The broker's endpoints, by listener name.
        listeners: Vec<BrokerEndpoint>,
        /// The broker's rack (`broker.rack`).
        rack: Option<String>,
        /// Whether the broker starts fenced (a new incarnation always does).
        fenced: bool,
        /// Whether the broker is in controlled shutdown (kept by an amended registration).
        #[serde(default)]
        in_controlled_shutdown: bool,
    },
    /// A broker was unregistered (Kafka's `UnregisterBrokerRecord`).
    UnregisterBroker {
        /// The broker id.
        broker_id: i32,
        /// The epoch of the registration being removed.
        broker_epoch: i64,
    },
    /// A broker was fenced (Kafka's `FenceBrokerRecord`); also ends a controlled shutdown.
    FenceBroker {
        /// The broker id.
        id: i32,
        /// The broker's epoch.
        epoch: i64,
    },
    /// A broker was unfenced (Kafka's `UnfenceBrokerRecord`).
    UnfenceBroker {
        /// The broker id.
        id: i32,
        /// The broker's epoch.
        epoch: i64,
    },
    /// A broker entered controlled shutdown (Kafka's `BrokerRegistrationChangeRecord` with
    /// `InControlledShutdown = 1`).
    BeginControlledShutdown {
        /// The broker id.
        broker_id: i32,
        /// The broker's epoch.
        broker_epoch: i64,
    },
    /// A topic was created (Kafka's `TopicRecord`).
    Topic {
        /// The topic name.
        name: String,
        /// The topic id.
        topic_id: Uuid,
    },
    /// A partition was created, or its whole state replaced (Kafka's `PartitionRecord`).
    Partition {
        /// The topic id.
        topic_id: Uuid,
        /// The partition index.
        partition: i32,
        /// The replicas, preferred leader first.
        replicas: Vec<i32>,
        /// The in-sync replicas.
        isr: Vec<i32>,
        /// The leader, or [`NO_LEADER`].
        leader: i32,
        /// The leader epoch.
        leader_epoch: i32,
        /// The partition epoch.
        partition_epoch: i32,
    },
    /// A partition's ISR and/or leader changed (Kafka's `PartitionChangeRecord`). A leader
    /// (`Some`) bumps the leader epoch; every change bumps the partition epoch.
    PartitionChange {
        /// The topic id.
        topic_id: Uuid,
        /// The partition index.
        partition: i32,
        /// The new ISR, if it changed.
        isr: Option<Vec<i32>>,
        /// The new leader (or [`NO_LEADER`]), if it changed.
        leader: Option<i32>,
    },
    /// A topic was deleted, with its partitions and configs (Kafka's `RemoveTopicRecord`).
    RemoveTopic {
        /// The topic id.
        topic_id: Uuid,
    },
    /// A dynamic configuration was set (`Some`) or removed (`None`) (Kafka's `ConfigRecord`).
    Config {
        /// The kind of resource.
        resource_type: ConfigResourceType,
        /// The resource name (topic name, broker id).
        resource_name: String,
        /// The configuration key.
        name: String,
        /// The value, or `None` to remove the key.
        value: Option<String>,
    },
    /// A block of producer ids was handed out (Kafka's `ProducerIdsRecord`).
    ProducerIds {
        /// The broker that got the block.
        broker_id: i32,
        /// That broker's epoch.
        broker_epoch: i64,
        /// The first producer id of the next block.
        next_producer_id: i64,
    },
}
