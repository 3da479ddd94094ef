//! The active controller's decisions: pure functions from Kafka controller requests (and the
//! current time) to the metadata records to append and the response to send.
//!
//! Semantics follow Kafka's `QuorumController`, `ClusterControlManager`,
//! `BrokerHeartbeatManager`, `ReplicationControlManager`, `ProducerIdControlManager` and
//! `ConfigurationControlManager` (topic configs, in `configs`).
//!
//! The decisions read the image but never change it: the caller appends the returned records
//! to the metadata log and, once they are committed, applies them with
//! [`ControllerState::apply_entry`] before taking the next decision (writes are serialized).
//! Only the heartbeat bookkeeping (last contact, metadata offsets), which Kafka does not
//! replicate either, is updated by the decisions themselves.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::messages::{
    alter_partition_response, create_partitions_response, create_topics_response,
    delete_topics_response, describe_cluster_response, elect_leaders_response,
    AllocateProducerIdsRequest, AllocateProducerIdsResponse, AlterPartitionRequest,
    AlterPartitionResponse, BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerId,
    BrokerRegistrationRequest, BrokerRegistrationResponse, CreatePartitionsRequest,
    CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeClusterRequest, DescribeClusterResponse, ElectLeadersRequest,
    ElectLeadersResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::config::ControllerConfig;
use super::image::{MetadataImage, PartitionRegistration};
use super::partition_change::{build_partition_change, Election};
use super::placement::{place_replicas, UsableBroker};
use super::records::{BrokerEndpoint, ConfigResourceType, MetadataRecord, NO_LEADER};

/// Kafka's producer id block size (`ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
pub const PRODUCER_ID_BLOCK_SIZE: i32 = 1000;

/// `min.insync.replicas`.
pub const MIN_INSYNC_REPLICAS_CONFIG: &str = "min.insync.replicas";
/// `unclean.leader.election.enable`.
pub const UNCLEAN_LEADER_ELECTION_ENABLE_CONFIG: &str = "unclean.leader.election.enable";

/// Kafka's `ConfigSource` ids used in CreateTopics responses.
const CONFIG_SOURCE_DYNAMIC_TOPIC: i8 = 1;
const CONFIG_SOURCE_DEFAULT: i8 = 5;
/// DescribeCluster `EndpointType` of brokers.
const ENDPOINT_TYPE_BROKERS: i8 = 1;

/// What the active controller remembers about a broker's heartbeats (not replicated: a new
/// active controller starts every registered broker with a fresh session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerHeartbeatState {
    /// When the last heartbeat (or registration) arrived.
    pub last_contact_ms: u64,
    /// The metadata offset the broker reported last (-1 before its first heartbeat).
    pub metadata_offset: i64,
    /// The log index of the records that started its controlled shutdown, if it is in one.
    pub controlled_shutdown_offset: Option<u64>,
}

/// A broker's state as the heartbeat logic sees it (Kafka's `BrokerControlState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ControlState {
    Fenced,
    Unfenced,
    ControlledShutdown,
    ShutdownNow,
}

impl ControlState {
    fn fenced(self) -> bool {
        matches!(self, ControlState::Fenced | ControlState::ShutdownNow)
    }
}

/// The active controller's state: the metadata image plus heartbeat bookkeeping, and the
/// decision functions.
#[derive(Debug, Clone)]
pub struct ControllerState {
    image: MetadataImage,
    config: ControllerConfig,
    heartbeats: BTreeMap<i32, BrokerHeartbeatState>,
    rng: StdRng,
    last_rebalance_ms: Option<u64>,
    last_unclean_check_ms: Option<u64>,
}

fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Kafka's `Topic.validate`: the error message for an illegal topic name.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Topic name is illegal, it can't be empty".to_string());
    }
    if name == "." || name == ".." {
        return Err("Topic name cannot be \".\" or \"..\"".to_string());
    }
    if name.len() > 249 {
        return Err(format!(
            "Topic name is illegal, it can't be longer than 249 characters, topic name: {name}"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return Err(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Validate the topic configs the controller itself depends on (Kafka's `ConfigDef` checks).
fn validate_topic_config(name: &str, value: &str) -> Result<(), String> {
    match name {
        MIN_INSYNC_REPLICAS_CONFIG => match value.trim().parse::<i32>() {
            Ok(v) if v >= 1 => Ok(()),
            Ok(_) => Err(format!(
                "Invalid value {value} for configuration {name}: Value must be at least 1"
            )),
            Err(_) => Err(format!(
                "Invalid value {value} for configuration {name}: Not a number of type INT"
            )),
        },
        UNCLEAN_LEADER_ELECTION_ENABLE_CONFIG => {
            if value.trim().eq_ignore_ascii_case("true")
                || value.trim().eq_ignore_ascii_case("false")
            {
                Ok(())
            } else {
                Err(format!(
                    "Invalid value {value} for configuration {name}: Expected value to be either true or false"
                ))
            }
        }
        _ => Ok(()),
    }
}

/// A per-request error with Kafka's code and an optional message.
#[derive(Debug, Clone)]
struct ApiError {
    error: ResponseError,
    message: Option<String>,
}

impl ApiError {
    fn new(error: ResponseError, message: impl Into<String>) -> Self {
        Self {
            error,
            message: Some(message.into()),
        }
    }
    fn bare(error: ResponseError) -> Self {
        Self {
            error,
            message: None,
        }
    }
}

impl ControllerState {
    /// A controller state over `image`. Every registered broker gets a fresh session starting
    /// at `now_ms` (as Kafka's controller does when it becomes active).
    pub fn new(config: ControllerConfig, image: MetadataImage, now_ms: u64) -> Self {
        Self::with_rng(config, image, now_ms, StdRng::from_os_rng())
    }

    /// Like [`ControllerState::new`] with a seeded random generator (placement, topic ids), for
    /// reproducible tests.
    pub fn with_seed(
        config: ControllerConfig,
        image: MetadataImage,
        now_ms: u64,
        seed: u64,
    ) -> Self {
        Self::with_rng(config, image, now_ms, StdRng::seed_from_u64(seed))
    }

    fn with_rng(config: ControllerConfig, image: MetadataImage, now_ms: u64, rng: StdRng) -> Self {
        let heartbeats = image
            .brokers()
            .keys()
            .map(|id| {
                (
                    *id,
                    BrokerHeartbeatState {
                        last_contact_ms: now_ms,
                        metadata_offset: -1,
                        controlled_shutdown_offset: None,
                    },
                )
            })
            .collect();
        Self {
            image,
            config,
            heartbeats,
            rng,
            last_rebalance_ms: None,
            last_unclean_check_ms: None,
        }
    }

    /// The current image.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// The configuration.
    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// The heartbeat bookkeeping of broker `id`.
    pub fn heartbeat_state(&self, id: i32) -> Option<&BrokerHeartbeatState> {
        self.heartbeats.get(&id)
    }

    /// Apply a committed entry to the image (see [`MetadataImage::apply_entry`]).
    pub fn apply_entry(&mut self, log_index: u64, records: &[MetadataRecord]) {
        self.image.apply_entry(log_index, records);
        self.heartbeats
            .retain(|id, _| self.image.broker(*id).is_some());
    }

    /// Replace the image (e.g. by the quorum's applied state). Brokers new to the controller
    /// get a session starting at `now_ms`.
    pub fn set_image(&mut self, image: MetadataImage, now_ms: u64) {
        self.image = image;
        self.heartbeats
            .retain(|id, _| self.image.broker(*id).is_some());
        for id in self.image.brokers().keys() {
            self.heartbeats.entry(*id).or_insert(BrokerHeartbeatState {
                last_contact_ms: now_ms,
                metadata_offset: -1,
                controlled_shutdown_offset: None,
            });
        }
    }

    fn has_valid_session(&self, id: i32, now_ms: u64) -> bool {
        let Some(reg) = self.image.broker(id) else {
            return false;
        };
        if reg.fenced {
            return false;
        }
        self.heartbeats.get(&id).is_some_and(|hb| {
            hb.last_contact_ms
                .saturating_add(self.config.broker_session_timeout_ms)
                >= now_ms
        })
    }

    fn check_broker_epoch(&self, id: i32, epoch: i64) -> Result<(), String> {
        match self.image.broker(id) {
            None => Err(format!("No broker registration found for broker id {id}")),
            Some(reg) if reg.epoch != epoch => Err(format!(
                "Expected broker epoch {}, but got broker epoch {epoch}",
                reg.epoch
            )),
            Some(_) => Ok(()),
        }
    }

    /// Whether unclean leader election is enabled for `topic` (its config, else the default).
    pub fn unclean_enabled(&self, topic: &str) -> bool {
        match self
            .image
            .topic_config(topic, UNCLEAN_LEADER_ELECTION_ENABLE_CONFIG)
        {
            Some(v) => v.trim().eq_ignore_ascii_case("true"),
            None => self.config.unclean_leader_election_enable,
        }
    }

    /// The effective `min.insync.replicas` of `topic`.
    pub fn effective_min_isr(&self, topic: &str) -> i32 {
        self.image
            .topic_config(topic, MIN_INSYNC_REPLICAS_CONFIG)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(self.config.min_insync_replicas)
    }

    fn election_for(&self, topic_id: &Uuid) -> Election {
        match self.image.topic_name(topic_id) {
            Some(name) if self.unclean_enabled(name) => Election::Unclean,
            _ => Election::Online,
        }
    }

    /// Kafka's `generateLeaderAndIsrUpdates`: for every partition in `partitions`, remove
    /// `broker_to_remove` from the ISR and from leadership, and consider `broker_to_add` an
    /// acceptable leader even though the image still shows it fenced.
    fn leader_and_isr_updates(
        &self,
        broker_to_remove: i32,
        broker_to_add: i32,
        partitions: &[(Uuid, i32)],
        records: &mut Vec<MetadataRecord>,
    ) {
        for (topic_id, index) in partitions {
            let Some(p) = self.image.partition(topic_id, *index) else {
                continue;
            };
            let target: Vec<i32> = p
                .isr
                .iter()
                .copied()
                .filter(|r| *r != broker_to_remove)
                .collect();
            let acceptable =
                |r: i32| r != broker_to_remove && (r == broker_to_add || self.image.is_active(r));
            if let Some(rec) = build_partition_change(
                *topic_id,
                *index,
                p,
                &target,
                self.election_for(topic_id),
                acceptable,
            ) {
                records.push(rec);
            }
        }
    }

    fn partitions_with_broker(&self, id: i32) -> Vec<(Uuid, i32)> {
        self.image
            .partitions()
            .filter(|(_, _, p)| p.isr.contains(&id) || p.leader == id)
            .map(|(t, i, _)| (t, i))
            .collect()
    }

    fn leaderless_partitions(&self) -> Vec<(Uuid, i32)> {
        self.image
            .partitions()
            .filter(|(_, _, p)| p.leader == NO_LEADER)
            .map(|(t, i, _)| (t, i))
            .collect()
    }

    /// The records that fence broker `id`: it leaves every ISR (unless it is the last member)
    /// and every leadership, then a `FenceBroker` record (Kafka's `handleBrokerFenced`). Empty
    /// when the broker is unknown.
    pub fn fence_broker(&self, id: i32) -> Vec<MetadataRecord> {
        let Some(reg) = self.image.broker(id) else {
            return Vec::new();
        };
        let mut records = Vec::new();
        self.leader_and_isr_updates(
            id,
            NO_LEADER,
            &self.partitions_with_broker(id),
            &mut records,
        );
        if !reg.fenced {
            records.push(MetadataRecord::FenceBroker {
                id,
                epoch: reg.epoch,
            });
        }
        records
    }

    /// The records that unregister broker `id` (Kafka's UnregisterBroker): it leaves every ISR
    /// and leadership, then an `UnregisterBroker` record. `BROKER_ID_NOT_REGISTERED` when it
    /// is not registered.
    pub fn unregister_broker(&self, id: i32) -> Result<Vec<MetadataRecord>, ResponseError> {
        let Some(reg) = self.image.broker(id) else {
            return Err(ResponseError::BrokerIdNotRegistered);
        };
        let mut records = Vec::new();
        self.leader_and_isr_updates(
            id,
            NO_LEADER,
            &self.partitions_with_broker(id),
            &mut records,
        );
        records.push(MetadataRecord::UnregisterBroker {
            broker_id: id,
            broker_epoch: reg.epoch,
        });
        Ok(records)
    }

    /// BrokerRegistration. `next_offset` is the log index the returned records will be written
    /// at: a new incarnation's broker epoch.
    pub fn register_broker(
        &mut self,
        request: &BrokerRegistrationRequest,
        next_offset: u64,
        now_ms: u64,
    ) -> (Vec<MetadataRecord>, BrokerRegistrationResponse) {
        let error = |e: ResponseError| {
            (
                Vec::new(),
                BrokerRegistrationResponse::default()
                    .with_error_code(e.code())
                    .with_broker_epoch(-1),
            )
        };
        let broker_id = request.broker_id.0;
        if request.cluster_id.as_str() != self.config.cluster_id {
            warn!(
                broker_id,
                expected = %self.config.cluster_id,
                got = %request.cluster_id.as_str(),
                "rejecting a broker registration with another cluster id"
            );
            return error(ResponseError::InconsistentClusterId);
        }
        if broker_id < 0 {
            return error(ResponseError::InvalidRequest);
        }
        let existing = self.image.broker(broker_id).cloned();
        if let Some(existing) = &existing {
            if self.has_valid_session(broker_id, now_ms)
                && existing.incarnation_id != request.incarnation_id
            {
                info!(
                    broker_id,
                    "rejecting a registration: another broker is registered with that broker id"
                );
                return error(ResponseError::DuplicateBrokerRegistration);
            }
        }
        if request.is_migrating_zk_broker {
            return error(ResponseError::BrokerIdNotRegistered);
        }
        let listeners = request
            .listeners
            .iter()
            .map(|l| BrokerEndpoint {
                name: l.name.as_str().to_string(),
                host: l.host.as_str().to_string(),
                port: l.port,
                security_protocol: l.security_protocol,
            })
            .collect();
        let rack = request.rack.as_ref().map(|r| r.as_str().to_string());
        let mut records = Vec::new();
        let same_incarnation = existing
            .as_ref()
            .is_some_and(|e| e.incarnation_id == request.incarnation_id);
        let (epoch, fenced, in_controlled_shutdown) = match &existing {
            Some(e) if same_incarnation => {
                info!(
                    broker_id,
                    epoch = e.epoch,
                    "amending the registration of a broker"
                );
                (e.epoch, e.fenced, e.in_controlled_shutdown)
            }
            Some(e) => {
                // A new incarnation replaces a registration whose session is over: the old one
                // leaves every ISR and leadership (it starts fenced).
                if e.is_active() || e.in_controlled_shutdown {
                    self.leader_and_isr_updates(
                        broker_id,
                        NO_LEADER,
                        &self.partitions_with_broker(broker_id),
                        &mut records,
                    );
                }
                info!(
                    broker_id,
                    new_epoch = next_offset,
                    "registering a new incarnation of a broker"
                );
                (i64::try_from(next_offset).unwrap_or(i64::MAX), true, false)
            }
            None => {
                info!(broker_id, epoch = next_offset, "registering a new broker");
                (i64::try_from(next_offset).unwrap_or(i64::MAX), true, false)
            }
        };
        records.push(MetadataRecord::RegisterBroker {
            broker_id,
            incarnation_id: request.incarnation_id,
            broker_epoch: epoch,
            listeners,
            rack,
            fenced,
            in_controlled_shutdown,
        });
        let hb = self
            .heartbeats
            .entry(broker_id)
            .or_insert(BrokerHeartbeatState {
                last_contact_ms: now_ms,
                metadata_offset: -1,
                controlled_shutdown_offset: None,
            });
        if !same_incarnation {
            *hb = BrokerHeartbeatState {
                last_contact_ms: now_ms,
                metadata_offset: -1,
                controlled_shutdown_offset: None,
            };
        } else {
            hb.last_contact_ms = now_ms;
        }
        (
            records,
            BrokerRegistrationResponse::default().with_broker_epoch(epoch),
        )
    }

    fn lowest_active_offset(&self) -> i64 {
        self.heartbeats
            .iter()
            .filter(|(id, _)| self.image.is_active(**id))
            .map(|(_, hb)| hb.metadata_offset)
            .min()
            .unwrap_or(i64::MAX)
    }

    /// BrokerHeartbeat (Kafka's `BrokerHeartbeatManager.calculateNextBrokerState`):
    /// fenced → unfenced once the broker asks (`want_fence = false`) and its metadata offset
    /// has reached its registration record; `want_shut_down` → controlled shutdown while it
    /// leads partitions (leadership moves away), then `should_shut_down` once every active
    /// broker has seen that. `next_offset` is the log index the returned records will get.
    pub fn broker_heartbeat(
        &mut self,
        request: &BrokerHeartbeatRequest,
        next_offset: u64,
        now_ms: u64,
    ) -> (Vec<MetadataRecord>, BrokerHeartbeatResponse) {
        let broker_id = request.broker_id.0;
        if let Err(msg) = self.check_broker_epoch(broker_id, request.broker_epoch) {
            debug!(broker_id, %msg, "rejecting a heartbeat");
            return (
                Vec::new(),
                BrokerHeartbeatResponse::default()
                    .with_error_code(ResponseError::StaleBrokerEpoch.code())
                    .with_is_fenced(true),
            );
        }
        let Some(reg) = self.image.broker(broker_id).cloned() else {
            return (
                Vec::new(),
                BrokerHeartbeatResponse::default()
                    .with_error_code(ResponseError::StaleBrokerEpoch.code())
                    .with_is_fenced(true),
            );
        };
        let registration_offset = i64::try_from(reg.registration_offset).unwrap_or(i64::MAX);
        let current = if reg.fenced {
            ControlState::Fenced
        } else if reg.in_controlled_shutdown {
            ControlState::ControlledShutdown
        } else {
            ControlState::Unfenced
        };
        let next = match current {
            ControlState::Fenced => {
                if request.want_shut_down {
                    info!(broker_id, "fenced broker granted an immediate shutdown");
                    ControlState::ShutdownNow
                } else if !request.want_fence
                    && request.current_metadata_offset >= registration_offset
                {
                    info!(
                        broker_id,
                        registration_offset,
                        "unfencing a broker that caught up with its registration"
                    );
                    ControlState::Unfenced
                } else {
                    ControlState::Fenced
                }
            }
            ControlState::Unfenced => {
                if request.want_fence {
                    if request.want_shut_down {
                        ControlState::ShutdownNow
                    } else {
                        info!(broker_id, "fencing a broker at its request");
                        ControlState::Fenced
                    }
                } else if request.want_shut_down {
                    if self.image.has_leaderships(broker_id) {
                        info!(broker_id, "broker granted a controlled shutdown");
                        ControlState::ControlledShutdown
                    } else {
                        info!(
                            broker_id,
                            "broker without leaderships granted an immediate shutdown"
                        );
                        ControlState::ShutdownNow
                    }
                } else {
                    ControlState::Unfenced
                }
            }
            ControlState::ControlledShutdown | ControlState::ShutdownNow => {
                if self.image.has_leaderships(broker_id) {
                    ControlState::ControlledShutdown
                } else {
                    let shutdown_offset = self
                        .heartbeats
                        .get(&broker_id)
                        .and_then(|hb| hb.controlled_shutdown_offset)
                        .unwrap_or(self.image.offset());
                    let shutdown_offset = i64::try_from(shutdown_offset).unwrap_or(i64::MAX);
                    if shutdown_offset <= self.lowest_active_offset() {
                        info!(
                            broker_id,
                            "controlled shutdown complete: broker may shut down"
                        );
                        ControlState::ShutdownNow
                    } else {
                        ControlState::ControlledShutdown
                    }
                }
            }
        };
        let mut records = Vec::new();
        if current != next {
            match next {
                ControlState::Fenced | ControlState::ShutdownNow => {
                    records = self.fence_broker(broker_id);
                }
                ControlState::Unfenced => {
                    records.push(MetadataRecord::UnfenceBroker {
                        id: broker_id,
                        epoch: reg.epoch,
                    });
                    self.leader_and_isr_updates(
                        NO_LEADER,
                        broker_id,
                        &self.leaderless_partitions(),
                        &mut records,
                    );
                }
                ControlState::ControlledShutdown => {
                    records.push(MetadataRecord::BeginControlledShutdown {
                        broker_id,
                        broker_epoch: reg.epoch,
                    });
                    self.leader_and_isr_updates(
                        broker_id,
                        NO_LEADER,
                        &self.partitions_with_broker(broker_id),
                        &mut records,
                    );
                }
            }
        }
        let hb = self
            .heartbeats
            .entry(broker_id)
            .or_insert(BrokerHeartbeatState {
                last_contact_ms: now_ms,
                metadata_offset: -1,
                controlled_shutdown_offset: None,
            });
        hb.last_contact_ms = now_ms;
        hb.metadata_offset = request.current_metadata_offset;
        if next == ControlState::ControlledShutdown && current != ControlState::ControlledShutdown {
            hb.controlled_shutdown_offset = Some(next_offset);
        }
        let response = BrokerHeartbeatResponse::default()
            .with_is_caught_up(request.current_metadata_offset >= registration_offset)
            .with_is_fenced(next.fenced())
            .with_should_shut_down(next == ControlState::ShutdownNow);
        (records, response)
    }

    /// Periodic work at `now_ms`: fence one broker whose session expired (with its ISR and
    /// leadership changes); otherwise, (every `unclean_leader_election_check_interval_ms`)
    /// elect leaders for leaderless partitions of topics with unclean election enabled, and (when `auto.leader.rebalance.enable`, every
    /// `leader.imbalance.check.interval`) move leadership back to preferred replicas that are
    /// in the ISR and active. Call it again after applying what it returned.
    pub fn tick(&mut self, now_ms: u64) -> Vec<MetadataRecord> {
        let timeout = self.config.broker_session_timeout_ms;
        // Brokers this controller has not heard of yet (registered through entries it only
        // applied, e.g. before it became active) get a fresh session now.
        for id in self.image.brokers().keys() {
            self.heartbeats.entry(*id).or_insert(BrokerHeartbeatState {
                last_contact_ms: now_ms,
                metadata_offset: -1,
                controlled_shutdown_offset: None,
            });
        }
        let expired = self.image.brokers().values().find(|b| {
            !b.fenced
                && self
                    .heartbeats
                    .get(&b.id)
                    .is_some_and(|hb| hb.last_contact_ms.saturating_add(timeout) < now_ms)
        });
        if let Some(b) = expired {
            info!(broker_id = b.id, "fencing a broker whose session expired");
            return self.fence_broker(b.id);
        }
        let mut records = Vec::new();
        // Unclean elections for leaderless partitions whose topic allows them (fencing already
        // elects uncleanly when allowed; this catches partitions that became eligible later,
        // e.g. after the topic config changed).
        let unclean_due = self.last_unclean_check_ms.is_none_or(|last| {
            now_ms >= last.saturating_add(self.config.unclean_leader_election_check_interval_ms)
        });
        let leaderless = if unclean_due {
            self.last_unclean_check_ms = Some(now_ms);
            self.leaderless_partitions()
        } else {
            Vec::new()
        };
        for (topic_id, index) in leaderless {
            if self.election_for(&topic_id) != Election::Unclean {
                continue;
            }
            if let Some(p) = self.image.partition(&topic_id, index) {
                if let Some(rec) =
                    build_partition_change(topic_id, index, p, &p.isr, Election::Unclean, |r| {
                        self.image.is_active(r)
                    })
                {
                    warn!(%topic_id, partition = index, "unclean leader election");
                    records.push(rec);
                }
            }
        }
        if !records.is_empty() {
            return records;
        }
        if self.config.auto_leader_rebalance_enable {
            let due = match self.last_rebalance_ms {
                None => true,
                Some(last) => {
                    now_ms >= last.saturating_add(self.config.leader_imbalance_check_interval_ms)
                }
            };
            if due {
                self.last_rebalance_ms = Some(now_ms);
                records = self.preferred_leader_changes();
            }
        }
        records
    }

    /// Preferred-leader changes for every partition whose preferred replica is in the ISR and
    /// active but does not lead.
    fn preferred_leader_changes(&self) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        for (topic_id, index, p) in self.image.partitions() {
            let Some(preferred) = p.preferred_leader() else {
                continue;
            };
            if p.leader == preferred
                || !p.isr.contains(&preferred)
                || !self.image.is_active(preferred)
            {
                continue;
            }
            if let Some(rec) =
                build_partition_change(topic_id, index, p, &p.isr, Election::Preferred, |r| {
                    self.image.is_active(r)
                })
            {
                records.push(rec);
            }
        }
        records
    }

    /// AlterPartition from a partition leader (Kafka's `ReplicationControlManager.alterPartition`).
    pub fn alter_partition(
        &mut self,
        request: &AlterPartitionRequest,
    ) -> (Vec<MetadataRecord>, AlterPartitionResponse) {
        let broker_id = request.broker_id.0;
        if let Err(msg) = self.check_broker_epoch(broker_id, request.broker_epoch) {
            info!(broker_id, %msg, "rejecting AlterPartition");
            return (
                Vec::new(),
                AlterPartitionResponse::default()
                    .with_error_code(ResponseError::StaleBrokerEpoch.code()),
            );
        }
        let mut records = Vec::new();
        // Partition states as changed by earlier entries of this request.
        let mut pending: HashMap<(Uuid, i32), PartitionRegistration> = HashMap::new();
        let mut topics = Vec::new();
        for topic in &request.topics {
            let mut results = Vec::new();
            let known = !topic.topic_id.is_nil() && self.image.topic(&topic.topic_id).is_some();
            for pd in &topic.partitions {
                let error = |e: ResponseError| {
                    alter_partition_response::PartitionData::default()
                        .with_partition_index(pd.partition_index)
                        .with_error_code(e.code())
                };
                if !known {
                    results.push(error(ResponseError::UnknownTopicId));
                    continue;
                }
                let key = (topic.topic_id, pd.partition_index);
                let Some(partition) = pending.get(&key).cloned().or_else(|| {
                    self.image
                        .partition(&topic.topic_id, pd.partition_index)
                        .cloned()
                }) else {
                    results.push(error(ResponseError::UnknownTopicOrPartition));
                    continue;
                };
                let new_isr: Vec<(i32, i64)> = if pd.new_isr_with_epochs.is_empty() {
                    pd.new_isr.iter().map(|b| (b.0, -1)).collect()
                } else {
                    pd.new_isr_with_epochs
                        .iter()
                        .map(|b| (b.broker_id.0, b.broker_epoch))
                        .collect()
                };
                if let Err(e) = self.validate_alter_partition(broker_id, &partition, pd, &new_isr) {
                    results.push(error(e));
                    continue;
                }
                let target: Vec<i32> = new_isr.iter().map(|(b, _)| *b).collect();
                let change = build_partition_change(
                    topic.topic_id,
                    pd.partition_index,
                    &partition,
                    &target,
                    self.election_for(&topic.topic_id),
                    |r| self.image.is_active(r),
                );
                let mut merged = partition.clone();
                if let Some(rec) = change {
                    if let MetadataRecord::PartitionChange { isr, leader, .. } = &rec {
                        if let Some(isr) = isr {
                            merged.isr = isr.clone();
                        }
                        if let Some(l) = leader {
                            merged.leader = *l;
                            merged.leader_epoch = merged.leader_epoch.saturating_add(1);
                        }
                        merged.partition_epoch = merged.partition_epoch.saturating_add(1);
                    }
                    records.push(rec);
                    pending.insert(key, merged.clone());
                    if merged.leader != broker_id {
                        results.push(error(ResponseError::NewLeaderElected));
                        continue;
                    }
                }
                results.push(
                    alter_partition_response::PartitionData::default()
                        .with_partition_index(pd.partition_index)
                        .with_leader_id(BrokerId(merged.leader))
                        .with_leader_epoch(merged.leader_epoch)
                        .with_isr(merged.isr.iter().map(|b| BrokerId(*b)).collect())
                        .with_partition_epoch(merged.partition_epoch),
                );
            }
            topics.push(
                alter_partition_response::TopicData::default()
                    .with_topic_id(topic.topic_id)
                    .with_partitions(results),
            );
        }
        (
            records,
            AlterPartitionResponse::default().with_topics(topics),
        )
    }

    fn validate_alter_partition(
        &self,
        broker_id: i32,
        partition: &PartitionRegistration,
        pd: &kafka_protocol::messages::alter_partition_request::PartitionData,
        new_isr: &[(i32, i64)],
    ) -> Result<(), ResponseError> {
        // Epochs newer than ours: this controller is probably no longer the active one.
        if pd.leader_epoch > partition.leader_epoch
            || pd.partition_epoch > partition.partition_epoch
        {
            return Err(ResponseError::NotController);
        }
        if pd.leader_epoch < partition.leader_epoch {
            return Err(ResponseError::FencedLeaderEpoch);
        }
        if broker_id != partition.leader {
            return Err(ResponseError::InvalidRequest);
        }
        if pd.partition_epoch < partition.partition_epoch {
            return Err(ResponseError::InvalidUpdateVersion);
        }
        let ids: Vec<i32> = new_isr.iter().map(|(b, _)| *b).collect();
        let distinct: BTreeSet<i32> = ids.iter().copied().collect();
        if distinct.len() != ids.len() || !ids.iter().all(|b| partition.replicas.contains(b)) {
            return Err(ResponseError::InvalidRequest);
        }
        if !ids.contains(&partition.leader) {
            return Err(ResponseError::InvalidRequest);
        }
        // We never record a RECOVERING partition, so RECOVERED → RECOVERING is refused.
        if pd.leader_recovery_state == 1 {
            return Err(ResponseError::InvalidRequest);
        }
        for (b, epoch) in new_isr {
            let eligible = match self.image.broker(*b) {
                None => false,
                Some(reg) => {
                    !reg.in_controlled_shutdown
                        && !reg.fenced
                        && (*epoch == -1 || *epoch == reg.epoch)
                }
            };
            if !eligible {
                info!(
                    broker_id,
                    replica = b,
                    "AlterPartition names an ineligible replica"
                );
                return Err(ResponseError::IneligibleReplica);
            }
        }
        Ok(())
    }

    fn usable_brokers(&self) -> Vec<UsableBroker> {
        self.image
            .brokers()
            .values()
            .filter(|b| b.is_active())
            .map(|b| UsableBroker {
                id: b.id,
                rack: b.rack.clone(),
            })
            .collect()
    }

    fn new_topic_id(&mut self) -> Uuid {
        // Kafka's `Uuid.randomUuid` also never returns an id whose base64 form starts with
        // '-' (first 6 bits = 62), so that ids are not mistaken for command-line options.
        loop {
            let bytes: [u8; 16] = self.rng.random();
            let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
            if id.as_bytes()[0] >> 2 != 62 && self.image.topic(&id).is_none() {
                return id;
            }
        }
    }

    /// Validate a manual replica assignment (Kafka's `validateManualPartitionAssignment`).
    fn validate_manual_assignment(
        &self,
        replicas: &[i32],
        replication_factor: Option<usize>,
    ) -> Result<(), ApiError> {
        if replicas.is_empty() {
            return Err(ApiError::new(
                ResponseError::InvalidReplicaAssignment,
                "The manual partition assignment includes an empty replica list.",
            ));
        }
        let mut sorted = replicas.to_vec();
        sorted.sort_unstable();
        let mut prev = None;
        for b in &sorted {
            if self.image.broker(*b).is_none() {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!("The manual partition assignment includes broker {b}, but no such broker is registered."),
                ));
            }
            if prev == Some(*b) {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "The manual partition assignment includes the broker {b} more than once."
                    ),
                ));
            }
            prev = Some(*b);
        }
        if let Some(rf) = replication_factor {
            if sorted.len() != rf {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {rf} replica(s).",
                        sorted.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Partition records for new partitions `start..` with the given replica lists; the ISR is
    /// the active replicas, the leader the first of them.
    fn new_partition_records(
        &self,
        topic_id: Uuid,
        start: i32,
        assignments: &[Vec<i32>],
        rf_for_message: i32,
        manual: bool,
    ) -> Result<Vec<MetadataRecord>, ApiError> {
        let mut out = Vec::with_capacity(assignments.len());
        for (i, replicas) in assignments.iter().enumerate() {
            let index = start.saturating_add(i32::try_from(i).unwrap_or(i32::MAX));
            let isr: Vec<i32> = replicas
                .iter()
                .copied()
                .filter(|b| self.image.is_active(*b))
                .collect();
            let Some(leader) = isr.first().copied() else {
                return Err(if manual {
                    ApiError::new(
                        ResponseError::InvalidReplicaAssignment,
                        format!("All brokers specified in the manual partition assignment for partition {index} are fenced or in controlled shutdown."),
                    )
                } else {
                    ApiError::new(
                        ResponseError::InvalidReplicationFactor,
                        format!("Unable to replicate the partition {rf_for_message} time(s): All brokers are currently fenced or in controlled shutdown."),
                    )
                });
            };
            out.push(MetadataRecord::Partition {
                topic_id,
                partition: index,
                replicas: replicas.clone(),
                isr,
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
            });
        }
        Ok(out)
    }

    /// CreateTopics (Kafka's `ReplicationControlManager.createTopics`): replication factor and
    /// partition count -1 take the controller defaults, replicas are placed like Kafka's
    /// `StripedReplicaPlacer` on active brokers (or taken from manual assignments), configs are
    /// validated, `validate_only` returns the results without records.
    pub fn create_topics(
        &mut self,
        request: &CreateTopicsRequest,
    ) -> (Vec<MetadataRecord>, CreateTopicsResponse) {
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(request.topics.len());
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for t in &request.topics {
            *seen.entry(t.name.0.as_str()).or_default() += 1;
        }
        // Names created earlier in this request (the image does not show them yet).
        let mut created_here: BTreeSet<String> = BTreeSet::new();
        for t in &request.topics {
            let name = t.name.0.as_str().to_string();
            let outcome = if seen.get(name.as_str()).copied().unwrap_or(0) > 1 {
                Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    "Duplicate topic name.",
                ))
            } else {
                self.create_topic(t, &created_here)
            };
            match outcome {
                Ok((topic_records, result)) => {
                    created_here.insert(name.clone());
                    records.extend(topic_records);
                    info!(topic = %name, "creating topic");
                    results.push(result);
                }
                Err(e) => {
                    info!(topic = %name, error = ?e.error, message = ?e.message, "CreateTopics refused");
                    results.push(
                        create_topics_response::CreatableTopicResult::default()
                            .with_name(t.name.clone())
                            .with_error_code(e.error.code())
                            .with_error_message(e.message.map(str_bytes))
                            .with_num_partitions(-1)
                            .with_replication_factor(-1),
                    );
                }
            }
        }
        if request.validate_only {
            records.clear();
        }
        (
            records,
            CreateTopicsResponse::default().with_topics(results),
        )
    }

    fn create_topic(
        &mut self,
        t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
        created_here: &BTreeSet<String>,
    ) -> Result<
        (
            Vec<MetadataRecord>,
            create_topics_response::CreatableTopicResult,
        ),
        ApiError,
    > {
        let name = t.name.0.as_str();
        validate_topic_name(name)
            .map_err(|m| ApiError::new(ResponseError::InvalidTopicException, m))?;
        if self.image.topic_id(name).is_some() || created_here.contains(name) {
            return Err(ApiError::new(
                ResponseError::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        // Kafka's collision check: '.' and '_' are the same in metric names.
        if name.contains('.') || name.contains('_') {
            let unified = name.replace('.', "_");
            let colliding = self
                .image
                .topics()
                .values()
                .map(|t| t.name.as_str())
                .chain(created_here.iter().map(String::as_str))
                .find(|other| *other != name && other.replace('.', "_") == unified);
            if let Some(other) = colliding {
                return Err(ApiError::new(
                    ResponseError::InvalidTopicException,
                    format!("Topic '{name}' collides with existing topic: {other}"),
                ));
            }
        }
        let mut configs: BTreeMap<String, String> = BTreeMap::new();
        let null_configs: Vec<&str> = t
            .configs
            .iter()
            .filter(|c| c.value.is_none())
            .map(|c| c.name.as_str())
            .collect();
        if !null_configs.is_empty() {
            return Err(ApiError::new(
                ResponseError::InvalidConfig,
                format!(
                    "Null value not supported for topic configs: {}",
                    null_configs.join(",")
                ),
            ));
        }
        for c in &t.configs {
            let value = c.value.as_ref().map(|v| v.as_str()).unwrap_or_default();
            configs.insert(c.name.as_str().to_string(), value.to_string());
        }
        // Kafka's `ControllerConfigurationValidator`: every name a topic config, every value
        // of its type and in range (unknown names are refused, not dropped by the brokers).
        configs::validate_topic_configs(&configs)
            .map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
        let assignments: Vec<Vec<i32>>;
        let manual = !t.assignments.is_empty();
        if manual {
            if t.replication_factor != -1 {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    "A manual partition assignment was specified, but replication factor was not set to -1.",
                ));
            }
            if t.num_partitions != -1 {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    "A manual partition assignment was specified, but numPartitions was not set to -1.",
                ));
            }
            let mut by_index: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
            let mut rf = None;
            for a in &t.assignments {
                if by_index.contains_key(&a.partition_index) {
                    return Err(ApiError::new(
                        ResponseError::InvalidReplicaAssignment,
                        format!(
                            "Found multiple manual partition assignments for partition {}",
                            a.partition_index
                        ),
                    ));
                }
                let replicas: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
                self.validate_manual_assignment(&replicas, rf)?;
                rf = Some(replicas.len());
                by_index.insert(a.partition_index, replicas);
            }
            let consecutive = by_index
                .keys()
                .enumerate()
                .all(|(i, k)| i64::try_from(i).ok() == Some(i64::from(*k)));
            if !consecutive {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    "partitions should be a consecutive 0-based integer sequence",
                ));
            }
            assignments = by_index.into_values().collect();
        } else if t.replication_factor < -1 || t.replication_factor == 0 {
            return Err(ApiError::new(
                ResponseError::InvalidReplicationFactor,
                "Replication factor must be larger than 0, or -1 to use the default value.",
            ));
        } else if t.num_partitions < -1 || t.num_partitions == 0 {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                "Number of partitions was set to an invalid non-positive value.",
            ));
        } else {
            let num_partitions = if t.num_partitions == -1 {
                self.config.num_partitions
            } else {
                t.num_partitions
            };
            let rf = if t.replication_factor == -1 {
                self.config.default_replication_factor
            } else {
                t.replication_factor
            };
            let usable = self.usable_brokers();
            assignments = place_replicas(
                &usable,
                usize::try_from(num_partitions).unwrap_or(0),
                i32::from(rf),
                &mut self.rng,
            )
            .map_err(|e| {
                ApiError::new(
                    ResponseError::InvalidReplicationFactor,
                    format!("Unable to replicate the partition {rf} time(s): {e}"),
                )
            })?;
        }
        let rf = assignments.first().map(Vec::len).unwrap_or(0);
        let rf_i32 = i32::try_from(rf).unwrap_or(i32::MAX);
        let topic_id = self.new_topic_id();
        let partition_records =
            self.new_partition_records(topic_id, 0, &assignments, rf_i32, manual)?;
        let mut records = Vec::with_capacity(partition_records.len() + configs.len() + 1);
        records.push(MetadataRecord::Topic {
            name: name.to_string(),
            topic_id,
        });
        for (k, v) in &configs {
            records.push(MetadataRecord::Config {
                resource_type: ConfigResourceType::Topic,
                resource_name: name.to_string(),
                name: k.clone(),
                value: Some(v.clone()),
            });
        }
        records.extend(partition_records);
        let mut result_configs: Vec<create_topics_response::CreatableTopicConfigs> = configs
            .iter()
            .map(|(k, v)| {
                create_topics_response::CreatableTopicConfigs::default()
                    .with_name(str_bytes(k.clone()))
                    .with_value(Some(str_bytes(v.clone())))
                    .with_config_source(CONFIG_SOURCE_DYNAMIC_TOPIC)
            })
            .collect();
        for (k, v) in [
            (
                MIN_INSYNC_REPLICAS_CONFIG,
                self.config.min_insync_replicas.to_string(),
            ),
            (
                UNCLEAN_LEADER_ELECTION_ENABLE_CONFIG,
                self.config.unclean_leader_election_enable.to_string(),
            ),
        ] {
            if !configs.contains_key(k) {
                result_configs.push(
                    create_topics_response::CreatableTopicConfigs::default()
                        .with_name(StrBytes::from_static_str(k))
                        .with_value(Some(str_bytes(v)))
                        .with_config_source(CONFIG_SOURCE_DEFAULT),
                );
            }
        }
        result_configs.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        let result = create_topics_response::CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_topic_id(topic_id)
            .with_num_partitions(i32::try_from(assignments.len()).unwrap_or(i32::MAX))
            .with_replication_factor(i16::try_from(rf).unwrap_or(i16::MAX))
            .with_configs(Some(result_configs));
        Ok((records, result))
    }

    /// DeleteTopics by name (`topic_names`, or `topics` entries without an id) or by id.
    pub fn delete_topics(
        &mut self,
        request: &DeleteTopicsRequest,
    ) -> (Vec<MetadataRecord>, DeleteTopicsResponse) {
        // (name as given, id as given, resolved)
        let mut wanted: Vec<(Option<String>, Uuid)> = request
            .topic_names
            .iter()
            .map(|n| (Some(n.0.as_str().to_string()), Uuid::nil()))
            .collect();
        for t in &request.topics {
            if t.topic_id.is_nil() {
                wanted.push((
                    t.name.as_ref().map(|n| n.0.as_str().to_string()),
                    Uuid::nil(),
                ));
            } else {
                wanted.push((None, t.topic_id));
            }
        }
        let mut name_count: HashMap<String, usize> = HashMap::new();
        let mut id_count: HashMap<Uuid, usize> = HashMap::new();
        for (n, id) in &wanted {
            match n {
                Some(n) if id.is_nil() => *name_count.entry(n.clone()).or_default() += 1,
                _ => *id_count.entry(*id).or_default() += 1,
            }
        }
        let mut records = Vec::new();
        let mut removed: BTreeSet<Uuid> = BTreeSet::new();
        let mut responses = Vec::with_capacity(wanted.len());
        for (name, id) in wanted {
            let mut result = delete_topics_response::DeletableTopicResult::default()
                .with_name(name.clone().map(|n| TopicName(str_bytes(n))))
                .with_topic_id(id);
            let resolved: Result<Uuid, ApiError> = if id.is_nil() {
                match &name {
                    None => Err(ApiError::new(
                        ResponseError::InvalidRequest,
                        "Invalid null topic name.",
                    )),
                    Some(n) if name_count.get(n).copied().unwrap_or(0) > 1 => Err(ApiError::new(
                        ResponseError::InvalidRequest,
                        "Duplicate topic name.",
                    )),
                    Some(n) => self
                        .image
                        .topic_id(n)
                        .ok_or_else(|| ApiError::bare(ResponseError::UnknownTopicOrPartition)),
                }
            } else if id_count.get(&id).copied().unwrap_or(0) > 1 {
                Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    "Duplicate topic id.",
                ))
            } else if self.image.topic(&id).is_some() {
                Ok(id)
            } else {
                Err(ApiError::bare(ResponseError::UnknownTopicId))
            };
            match resolved {
                Ok(topic_id) if removed.contains(&topic_id) => {
                    result = result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(str_bytes("Duplicate topic.")));
                }
                Ok(topic_id) => {
                    let topic_name = self.image.topic_name(&topic_id).map(str::to_string);
                    info!(%topic_id, topic = ?topic_name, "deleting topic");
                    removed.insert(topic_id);
                    records.push(MetadataRecord::RemoveTopic { topic_id });
                    result = result
                        .with_topic_id(topic_id)
                        .with_name(topic_name.map(|n| TopicName(str_bytes(n))));
                }
                Err(e) => {
                    result = result
                        .with_error_code(e.error.code())
                        .with_error_message(e.message.map(str_bytes));
                }
            }
            responses.push(result);
        }
        (
            records,
            DeleteTopicsResponse::default().with_responses(responses),
        )
    }

    /// CreatePartitions (Kafka's `ReplicationControlManager.createPartitions`). As in Kafka,
    /// `assignments: Some(vec![])` (kafka-protocol's default) means "no assignment given for
    /// the new partitions" and is refused unless no partition is added: send `None` to let the
    /// controller place them.
    pub fn create_partitions(
        &mut self,
        request: &CreatePartitionsRequest,
    ) -> (Vec<MetadataRecord>, CreatePartitionsResponse) {
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(request.topics.len());
        for t in &request.topics {
            let outcome = self.create_partitions_for(t);
            let mut result = create_partitions_response::CreatePartitionsTopicResult::default()
                .with_name(t.name.clone());
            match outcome {
                Ok(rs) => records.extend(rs),
                Err(e) => {
                    result = result
                        .with_error_code(e.error.code())
                        .with_error_message(e.message.map(str_bytes));
                }
            }
            results.push(result);
        }
        if request.validate_only {
            records.clear();
        }
        (
            records,
            CreatePartitionsResponse::default().with_results(results),
        )
    }

    fn create_partitions_for(
        &mut self,
        t: &kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic,
    ) -> Result<Vec<MetadataRecord>, ApiError> {
        let name = t.name.0.as_str();
        let Some(topic) = self.image.topic_by_name(name) else {
            return Err(ApiError::bare(ResponseError::UnknownTopicOrPartition));
        };
        let topic_id = topic.id;
        let current = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        if t.count == current {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!("Topic already has {current} partition(s)."),
            ));
        }
        if t.count < current {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!(
                    "The topic {name} currently has {current} partition(s); {} would not be an increase.",
                    t.count
                ),
            ));
        }
        let additional = t.count - current;
        let Some(first) = topic.partitions.values().next() else {
            return Err(ApiError::new(
                ResponseError::UnknownServerError,
                format!("Invalid state: topic {name} appears to have no partitions."),
            ));
        };
        let rf = first.replicas.len();
        let rf_i32 = i32::try_from(rf).unwrap_or(i32::MAX);
        let assignments: Vec<Vec<i32>> = match &t.assignments {
            Some(given) => {
                if i32::try_from(given.len()).ok() != Some(additional) {
                    return Err(ApiError::new(
                        ResponseError::InvalidReplicaAssignment,
                        format!(
                            "Attempted to add {additional} additional partition(s), but only {} assignment(s) were specified.",
                            given.len()
                        ),
                    ));
                }
                let mut out = Vec::with_capacity(given.len());
                for a in given {
                    let replicas: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
                    self.validate_manual_assignment(&replicas, Some(rf))?;
                    out.push(replicas);
                }
                out
            }
            None => {
                let usable = self.usable_brokers();
                place_replicas(
                    &usable,
                    usize::try_from(additional).unwrap_or(0),
                    rf_i32,
                    &mut self.rng,
                )
                .map_err(|e| {
                    ApiError::new(
                        ResponseError::InvalidReplicationFactor,
                        format!("Unable to replicate the partition {rf} time(s): {e}"),
                    )
                })?
            }
        };
        self.new_partition_records(
            topic_id,
            current,
            &assignments,
            rf_i32,
            t.assignments.is_some(),
        )
    }

    /// ElectLeaders: preferred (`election_type` 0) or unclean (1) elections for the given
    /// partitions, or for every partition when `topic_partitions` is `None` (then partitions
    /// that need no election are left out of the response). Note that kafka-protocol's default
    /// is `Some(vec![])`: no partitions.
    pub fn elect_leaders(
        &mut self,
        request: &ElectLeadersRequest,
    ) -> (Vec<MetadataRecord>, ElectLeadersResponse) {
        let election = match request.election_type {
            0 => Election::Preferred,
            1 => Election::Unclean,
            other => {
                warn!(
                    election_type = other,
                    "ElectLeaders with an unknown election type"
                );
                return (
                    Vec::new(),
                    ElectLeadersResponse::default()
                        .with_error_code(ResponseError::InvalidRequest.code()),
                );
            }
        };
        let all = request.topic_partitions.is_none();
        let wanted: Vec<(String, Vec<i32>)> = match &request.topic_partitions {
            Some(tps) => tps
                .iter()
                .map(|tp| (tp.topic.0.as_str().to_string(), tp.partitions.clone()))
                .collect(),
            None => self
                .image
                .topics()
                .values()
                .map(|t| (t.name.clone(), t.partitions.keys().copied().collect()))
                .collect(),
        };
        let mut records = Vec::new();
        let mut done: BTreeSet<(Uuid, i32)> = BTreeSet::new();
        let mut results = Vec::new();
        for (topic, partitions) in wanted {
            let topic_id = self.image.topic_id(&topic);
            let mut partition_results = Vec::new();
            for index in partitions {
                let outcome = match topic_id {
                    None => Err(ApiError::bare(ResponseError::UnknownTopicOrPartition)),
                    Some(id) if done.contains(&(id, index)) => Ok(()),
                    Some(id) => self.elect_leader(id, index, election).map(|rec| {
                        done.insert((id, index));
                        records.push(rec);
                    }),
                };
                let pr =
                    elect_leaders_response::PartitionResult::default().with_partition_id(index);
                match outcome {
                    Ok(()) => partition_results.push(pr),
                    Err(e) if all && e.error == ResponseError::ElectionNotNeeded => {}
                    Err(e) => partition_results.push(
                        pr.with_error_code(e.error.code())
                            .with_error_message(e.message.map(str_bytes)),
                    ),
                }
            }
            if !(all && partition_results.is_empty()) {
                results.push(
                    elect_leaders_response::ReplicaElectionResult::default()
                        .with_topic(TopicName(str_bytes(topic)))
                        .with_partition_result(partition_results),
                );
            }
        }
        (
            records,
            ElectLeadersResponse::default().with_replica_election_results(results),
        )
    }

    fn elect_leader(
        &self,
        topic_id: Uuid,
        index: i32,
        election: Election,
    ) -> Result<MetadataRecord, ApiError> {
        let Some(p) = self.image.partition(&topic_id, index) else {
            return Err(ApiError::bare(ResponseError::UnknownTopicOrPartition));
        };
        let not_needed = match election {
            Election::Preferred => p.preferred_leader() == Some(p.leader),
            _ => p.has_leader(),
        };
        if not_needed {
            return Err(ApiError::bare(ResponseError::ElectionNotNeeded));
        }
        build_partition_change(topic_id, index, p, &p.isr, election, |r| {
            self.image.is_active(r)
        })
        .ok_or_else(|| {
            ApiError::bare(if election == Election::Preferred {
                ResponseError::PreferredLeaderNotAvailable
            } else {
                ResponseError::EligibleLeadersNotAvailable
            })
        })
    }

    /// AllocateProducerIds: the next block of [`PRODUCER_ID_BLOCK_SIZE`] producer ids.
    pub fn allocate_producer_ids(
        &mut self,
        request: &AllocateProducerIdsRequest,
    ) -> (Vec<MetadataRecord>, AllocateProducerIdsResponse) {
        let broker_id = request.broker_id.0;
        if let Err(msg) = self.check_broker_epoch(broker_id, request.broker_epoch) {
            info!(broker_id, %msg, "rejecting AllocateProducerIds");
            return (
                Vec::new(),
                AllocateProducerIdsResponse::default()
                    .with_error_code(ResponseError::StaleBrokerEpoch.code()),
            );
        }
        let start = self.image.next_producer_id();
        let Some(next) = start.checked_add(i64::from(PRODUCER_ID_BLOCK_SIZE)) else {
            warn!("exhausted all producer ids");
            return (
                Vec::new(),
                AllocateProducerIdsResponse::default()
                    .with_error_code(ResponseError::UnknownServerError.code()),
            );
        };
        (
            vec![MetadataRecord::ProducerIds {
                broker_id,
                broker_epoch: request.broker_epoch,
                next_producer_id: next,
            }],
            AllocateProducerIdsResponse::default()
                .with_producer_id_start(ProducerId(start))
                .with_producer_id_len(PRODUCER_ID_BLOCK_SIZE),
        )
    }

    /// DescribeCluster, answered from the image: see [`describe_cluster`].
    pub fn describe_cluster(
        &self,
        request: &DescribeClusterRequest,
        listener_name: &str,
        controller_id: i32,
    ) -> DescribeClusterResponse {
        describe_cluster(
            &self.image,
            request,
            listener_name,
            &self.config.cluster_id,
            controller_id,
        )
    }
}

/// DescribeCluster from an image: the brokers with an endpoint on `listener_name` (fenced ones
/// only when `include_fenced_brokers`), the cluster id and the controller id. Only the brokers
/// endpoint type is supported (else `UNSUPPORTED_ENDPOINT_TYPE`).
pub fn describe_cluster(
    image: &MetadataImage,
    request: &DescribeClusterRequest,
    listener_name: &str,
    cluster_id: &str,
    controller_id: i32,
) -> DescribeClusterResponse {
    let response = DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(str_bytes(cluster_id))
        .with_controller_id(BrokerId(controller_id));
    if request.endpoint_type != ENDPOINT_TYPE_BROKERS {
        return response
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(str_bytes(format!(
                "Unsupported endpoint type {}",
                request.endpoint_type
            ))));
    }
    let brokers = image
        .brokers()
        .values()
        .filter(|b| request.include_fenced_brokers || !b.fenced)
        .filter_map(|b| {
            b.endpoint(listener_name).map(|e| {
                describe_cluster_response::DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.id))
                    .with_host(str_bytes(e.host.clone()))
                    .with_port(i32::from(e.port))
                    .with_rack(b.rack.clone().map(str_bytes))
                    .with_is_fenced(b.fenced)
            })
        })
        .collect();
    response.with_brokers(brokers)
}

mod configs;
pub use configs::{validate_topic_configs, RESOURCE_TYPE_BROKER, RESOURCE_TYPE_TOPIC};

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod config_tests;
