//! The metadata image: the state built by applying the metadata log, the Raft state machine's
//! state and its snapshot format.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tracing::warn;
use uuid::Uuid;

use super::records::{BrokerEndpoint, ConfigResourceType, MetadataRecord, NO_LEADER};
use crate::error::Result;

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    /// The broker id.
    pub id: i32,
    /// The id of the registered run of the broker process.
    pub incarnation_id: Uuid,
    /// The broker epoch (the log index of the incarnation's first registration).
    pub epoch: i64,
    /// The log index of the latest `RegisterBroker` record for this broker: the broker may be
    /// unfenced once its metadata offset has reached it.
    pub registration_offset: u64,
    /// The endpoints, by listener name.
    pub listeners: Vec<BrokerEndpoint>,
    /// The rack, if any.
    pub rack: Option<String>,
    /// Whether the broker is fenced (may not lead nor be added to an ISR).
    pub fenced: bool,
    /// Whether the broker is in controlled shutdown.
    pub in_controlled_shutdown: bool,
}

impl BrokerRegistration {
    /// The endpoint for `listener_name`, if the broker has one.
    pub fn endpoint(&self, listener_name: &str) -> Option<&BrokerEndpoint> {
        self.listeners.iter().find(|e| e.name == listener_name)
    }

    /// Whether the broker may lead partitions and join ISRs: unfenced and not shutting down.
    pub fn is_active(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown
    }
}

/// The state of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRegistration {
    /// The replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
    /// The leader, or [`NO_LEADER`].
    pub leader: i32,
    /// The leader epoch: bumped at every leader change.
    pub leader_epoch: i32,
    /// The partition epoch: bumped at every change.
    pub partition_epoch: i32,
}

impl PartitionRegistration {
    /// The preferred leader (the first replica), if any.
    pub fn preferred_leader(&self) -> Option<i32> {
        self.replicas.first().copied()
    }

    /// Whether the partition has a leader.
    pub fn has_leader(&self) -> bool {
        self.leader != NO_LEADER
    }
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    /// The topic name.
    pub name: String,
    /// The topic id.
    pub id: Uuid,
    /// The partitions by index.
    pub partitions: BTreeMap<i32, PartitionRegistration>,
}

/// The cluster metadata built from the metadata log.
///
/// [`MetadataImage::apply_entry`] is deterministic and total: a record that does not fit the
/// image is logged and ignored, so every replica of the log builds the same image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    offset: u64,
    brokers: BTreeMap<i32, BrokerRegistration>,
    topics: BTreeMap<Uuid, TopicImage>,
    topic_ids: BTreeMap<String, Uuid>,
    configs: BTreeMap<ConfigResourceType, BTreeMap<String, BTreeMap<String, String>>>,
    next_producer_id: i64,
}

impl MetadataImage {
    /// An empty image (nothing applied, offset 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// The log index of the last applied entry (0 when nothing was applied).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Apply one Raft entry: its records in order, then the offset moves to `log_index`.
    /// An entry at or below the current offset (already applied) is ignored.
    pub fn apply_entry(&mut self, log_index: u64, records: &[MetadataRecord]) {
        if log_index <= self.offset && self.offset > 0 {
            warn!(
                log_index,
                offset = self.offset,
                "ignoring an already applied metadata entry"
            );
            return;
        }
        for record in records {
            self.apply_record(log_index, record);
        }
        self.offset = log_index;
    }

    /// Apply one record that belongs to the entry at `log_index`, without moving the offset.
    pub fn apply_record(&mut self, log_index: u64, record: &MetadataRecord) {
        match record {
            MetadataRecord::RegisterBroker {
                broker_id,
                incarnation_id,
                broker_epoch,
                listeners,
                rack,
                fenced,
                in_controlled_shutdown,
            } => {
                self.brokers.insert(
                    *broker_id,
                    BrokerRegistration {
                        id: *broker_id,
                        incarnation_id: *incarnation_id,
                        epoch: *broker_epoch,
                        registration_offset: log_index,
                        listeners: listeners.clone(),
                        rack: rack.clone(),
                        fenced: *fenced,
                        in_controlled_shutdown: *in_controlled_shutdown,
                    },
                );
            }
            MetadataRecord::UnregisterBroker {
                broker_id,
                broker_epoch,
            } => {
                if self.broker_with_epoch(*broker_id, *broker_epoch, "UnregisterBroker") {
                    self.brokers.remove(broker_id);
                }
            }
            MetadataRecord::FenceBroker { id, epoch } => {
                if self.broker_with_epoch(*id, *epoch, "FenceBroker") {
                    if let Some(b) = self.brokers.get_mut(id) {
                        b.fenced = true;
                        b.in_controlled_shutdown = false;
                    }
                }
            }
            MetadataRecord::UnfenceBroker { id, epoch } => {
                if self.broker_with_epoch(*id, *epoch, "UnfenceBroker") {
                    if let Some(b) = self.brokers.get_mut(id) {
                        b.fenced = false;
                    }
                }
            }
            MetadataRecord::BeginControlledShutdown {
                broker_id,
                broker_epoch,
            } => {
                if self.broker_with_epoch(*broker_id, *broker_epoch, "BeginControlledShutdown") {
                    if let Some(b) = self.brokers.get_mut(broker_id) {
                        b.in_controlled_shutdown = true;
                    }
                }
            }
            MetadataRecord::Topic { name, topic_id } => {
                if self.topic_ids.contains_key(name) || self.topics.contains_key(topic_id) {
                    warn!(%name, %topic_id, "ignoring a Topic record for an existing topic name or id");
                    return;
                }
                self.topic_ids.insert(name.clone(), *topic_id);
                self.topics.insert(
                    *topic_id,
                    TopicImage {
                        name: name.clone(),
                        id: *topic_id,
                        partitions: BTreeMap::new(),
                    },
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
            } => match self.topics.get_mut(topic_id) {
                Some(topic) if *partition >= 0 => {
                    topic.partitions.insert(
                        *partition,
                        PartitionRegistration {
                            replicas: replicas.clone(),
                            isr: isr.clone(),
                            leader: *leader,
                            leader_epoch: *leader_epoch,
                            partition_epoch: *partition_epoch,
                        },
                    );
                }
                _ => {
                    warn!(%topic_id, partition, "ignoring a Partition record for an unknown topic id")
                }
            },
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                isr,
                leader,
            } => {
                let Some(p) = self
                    .topics
                    .get_mut(topic_id)
                    .and_then(|t| t.partitions.get_mut(partition))
                else {
                    warn!(%topic_id, partition, "ignoring a PartitionChange record for an unknown partition");
                    return;
                };
                if let Some(isr) = isr {
                    p.isr = isr.clone();
                }
                if let Some(leader) = leader {
                    p.leader = *leader;
                    p.leader_epoch = p.leader_epoch.saturating_add(1);
                }
                p.partition_epoch = p.partition_epoch.saturating_add(1);
            }
            MetadataRecord::RemoveTopic { topic_id } => match self.topics.remove(topic_id) {
                Some(topic) => {
                    self.topic_ids.remove(&topic.name);
                    if let Some(topic_configs) = self.configs.get_mut(&ConfigResourceType::Topic) {
                        topic_configs.remove(&topic.name);
                    }
                }
                None => warn!(%topic_id, "ignoring a RemoveTopic record for an unknown topic id"),
            },
            MetadataRecord::Config {
                resource_type,
                resource_name,
                name,
                value,
            } => {
                let by_resource = self.configs.entry(*resource_type).or_default();
                match value {
                    Some(v) => {
                        by_resource
                            .entry(resource_name.clone())
                            .or_default()
                            .insert(name.clone(), v.clone());
                    }
                    None => {
                        if let Some(m) = by_resource.get_mut(resource_name) {
                            m.remove(name);
                            if m.is_empty() {
                                by_resource.remove(resource_name);
                            }
                        }
                    }
                }
                if by_resource.is_empty() {
                    self.configs.remove(resource_type);
                }
            }
            MetadataRecord::ProducerIds {
                broker_id,
                next_producer_id,
                ..
            } => {
                if *next_producer_id <= self.next_producer_id {
                    warn!(
                        broker_id,
                        next_producer_id,
                        current = self.next_producer_id,
                        "ignoring a ProducerIds record that does not move the next producer id forward"
                    );
                } else {
                    self.next_producer_id = *next_producer_id;
                }
            }
        }
    }

    fn broker_with_epoch(&self, id: i32, epoch: i64, what: &str) -> bool {
        match self.brokers.get(&id) {
            Some(b) if b.epoch == epoch => true,
            Some(b) => {
                warn!(
                    id,
                    epoch,
                    current = b.epoch,
                    what,
                    "ignoring a broker record with a stale epoch"
                );
                false
            }
            None => {
                warn!(
                    id,
                    epoch, what, "ignoring a broker record for an unregistered broker"
                );
                false
            }
        }
    }

    /// Encode the image as a snapshot (serde_json).
    pub fn to_snapshot(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Decode an image from a snapshot written by [`MetadataImage::to_snapshot`].
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// All registered brokers, by id.
    pub fn brokers(&self) -> &BTreeMap<i32, BrokerRegistration> {
        &self.brokers
    }

    /// One broker's registration.
    pub fn broker(&self, id: i32) -> Option<&BrokerRegistration> {
        self.brokers.get(&id)
    }

    /// Whether broker `id` is registered, unfenced and not in controlled shutdown.
    pub fn is_active(&self, id: i32) -> bool {
        self.brokers
            .get(&id)
            .is_some_and(BrokerRegistration::is_active)
    }

    /// All topics, by id.
    pub fn topics(&self) -> &BTreeMap<Uuid, TopicImage> {
        &self.topics
    }

    /// A topic by id.
    pub fn topic(&self, id: &Uuid) -> Option<&TopicImage> {
        self.topics.get(id)
    }

    /// A topic by name.
    pub fn topic_by_name(&self, name: &str) -> Option<&TopicImage> {
        self.topic_ids.get(name).and_then(|id| self.topics.get(id))
    }

    /// The id of the topic called `name`.
    pub fn topic_id(&self, name: &str) -> Option<Uuid> {
        self.topic_ids.get(name).copied()
    }

    /// The name of topic `id`.
    pub fn topic_name(&self, id: &Uuid) -> Option<&str> {
        self.topics.get(id).map(|t| t.name.as_str())
    }

    /// One partition's state.
    pub fn partition(&self, topic_id: &Uuid, partition: i32) -> Option<&PartitionRegistration> {
        self.topics
            .get(topic_id)
            .and_then(|t| t.partitions.get(&partition))
    }

    /// Every partition, as `(topic id, partition index, state)`, in id order.
    pub fn partitions(&self) -> impl Iterator<Item = (Uuid, i32, &PartitionRegistration)> + '_ {
        self.topics
            .values()
            .flat_map(|t| t.partitions.iter().map(move |(i, p)| (t.id, *i, p)))
    }

    /// The dynamic configs of one resource (empty when none are set).
    pub fn configs(
        &self,
        resource_type: ConfigResourceType,
        resource_name: &str,
    ) -> BTreeMap<String, String> {
        self.configs
            .get(&resource_type)
            .and_then(|m| m.get(resource_name))
            .cloned()
            .unwrap_or_default()
    }

    /// One dynamic config value of one resource.
    pub fn config(
        &self,
        resource_type: ConfigResourceType,
        resource_name: &str,
        name: &str,
    ) -> Option<&str> {
        self.configs
            .get(&resource_type)
            .and_then(|m| m.get(resource_name))
            .and_then(|m| m.get(name))
            .map(String::as_str)
    }

    /// The dynamic config value of topic `topic` for `name`.
    pub fn topic_config(&self, topic: &str, name: &str) -> Option<&str> {
        self.config(ConfigResourceType::Topic, topic, name)
    }

    /// The first producer id of the next block to hand out.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    /// Whether broker `id` leads at least one partition.
    pub fn has_leaderships(&self, id: i32) -> bool {
        self.partitions().any(|(_, _, p)| p.leader == id)
    }
}
