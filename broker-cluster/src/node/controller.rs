//! The active controller: Kafka's controller APIs on the controller listener, decided by
//! [`ControllerState`] and made durable through the Raft quorum.
//!
//! Every write request is handled under one lock (Kafka's controller is single-threaded the
//! same way): the decision is computed against the image of everything committed so far, its
//! records are written to the quorum, and only once they are committed and applied does the
//! response go out. A voter that is not the Raft leader answers NOT_CONTROLLER, which the
//! brokers' [`crate::quorum::ControllerClient`] follows to the leader. The in-memory part of
//! the controller's state (heartbeat times) starts afresh on each new leadership, with every
//! registered broker given a full session from that moment, as Kafka's new active controller
//! does.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AllocateProducerIdsResponse,
    AlterConfigsResponse, AlterPartitionResponse, ApiKey, BrokerHeartbeatResponse,
    BrokerRegistrationResponse, CreatePartitionsResponse, CreateTopicsResponse,
    DeleteTopicsResponse, ElectLeadersResponse, IncrementalAlterConfigsResponse, RequestHeader,
    RequestKind, ResponseKind,
};
use kafka_protocol::ResponseError;
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use crate::metadata::{ControllerConfig, ControllerState, MetadataImage, MetadataRecord};
use crate::quorum::{ControllerApi, Quorum, QuorumError, ReplicatedState, SnapshotCodecError};

impl ReplicatedState for MetadataImage {
    type Command = Vec<MetadataRecord>;

    fn apply(&mut self, log_index: u64, command: &Self::Command) {
        self.apply_entry(log_index, command);
    }

    fn to_snapshot(&self) -> Result<Vec<u8>, SnapshotCodecError> {
        MetadataImage::to_snapshot(self).map_err(|e| SnapshotCodecError(e.to_string()))
    }

    fn from_snapshot(bytes: &[u8]) -> Result<Self, SnapshotCodecError> {
        MetadataImage::from_snapshot(bytes).map_err(|e| SnapshotCodecError(e.to_string()))
    }
}

/// Milliseconds on a monotonic clock, counted from the first call in this process. Broker
/// sessions and the controller's periodic checks measure intervals, which a step of the wall
/// clock (NTP, a virtual machine paused and resumed) must not stretch: Kafka's controller
/// measures them with `Time.nanoseconds()` too. With the wall clock, a 9-second jump fenced
/// every broker whose last heartbeat was "older" than `broker.session.timeout.ms`.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The controller's decision state for one leadership term.
struct Active {
    term: u64,
    state: ControllerState,
}

/// Kafka's controller APIs for one controller node; see the module doc.
pub struct ControllerService {
    config: ControllerConfig,
    active: Mutex<Option<Active>>,
}

impl std::fmt::Debug for ControllerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerService").finish_non_exhaustive()
    }
}

/// The controller APIs served, with the versions brokers and admin clients use.
const APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::BrokerRegistration, 0, 4),
    (ApiKey::BrokerHeartbeat, 0, 1),
    (ApiKey::AlterPartition, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AllocateProducerIds, 0, 0),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
];

impl ControllerService {
    /// A service deciding with `config`.
    pub fn new(config: ControllerConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            active: Mutex::new(None),
        })
    }

    /// Runs the controller's timers (fencing brokers whose session expired, preferred-leader
    /// rebalancing) every `interval` while this node leads. Runs until aborted.
    pub async fn run_ticks(self: Arc<Self>, quorum: Quorum<MetadataImage>, interval: Duration) {
        let mut timer = tokio::time::interval(interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            timer.tick().await;
            if !quorum.is_leader() {
                continue;
            }
            let mut guard = self.active.lock().await;
            let Some(active) = self.activate(&quorum, &mut guard) else {
                continue;
            };
            let records = active.state.tick(now_ms());
            if records.is_empty() {
                continue;
            }
            debug!(?records, "controller timers");
            if let Err(e) = write(&quorum, active, &records).await {
                warn!(error = %e, "writing the controller's timer records failed");
                *guard = None;
            }
        }
    }

    /// The decision state for the current term, rebuilt from the applied image when the term
    /// changed (a new leadership). `None` when this node does not lead.
    fn activate<'a>(
        &self,
        quorum: &Quorum<MetadataImage>,
        guard: &'a mut Option<Active>,
    ) -> Option<&'a mut Active> {
        let metrics = quorum.raft_metrics();
        if !quorum.is_leader() {
            *guard = None;
            return None;
        }
        let term = metrics.current_term;
        // The new leader's first entry (openraft's blank entry of the term) must be applied
        // before the image reflects every committed record.
        let caught_up = metrics.last_applied.map(|l| l.index) == metrics.last_log_index;
        if guard.as_ref().is_some_and(|a| a.term == term) {
            return guard.as_mut();
        }
        if !caught_up {
            return None;
        }
        let image = quorum.state().as_ref().clone();
        info!(
            term,
            offset = image.offset(),
            "became the active controller"
        );
        *guard = Some(Active {
            term,
            state: ControllerState::new(self.config.clone(), image, now_ms()),
        });
        guard.as_mut()
    }
}

/// Writes `records` as one entry and applies them to the decision state's image.
async fn write(
    quorum: &Quorum<MetadataImage>,
    active: &mut Active,
    records: &Vec<MetadataRecord>,
) -> Result<u64, QuorumError> {
    let index = quorum.write(records).await?;
    active.state.apply_entry(index, records);
    Ok(index)
}

impl ControllerApi<MetadataImage> for Arc<ControllerService> {
    fn api_versions(&self) -> Vec<(ApiKey, i16, i16)> {
        APIS.to_vec()
    }

    async fn handle(
        &self,
        quorum: &Quorum<MetadataImage>,
        header: &RequestHeader,
        request: RequestKind,
    ) -> Option<ResponseKind> {
        let mut guard = self.active.lock().await;
        let Some(active) = self.activate(quorum, &mut guard) else {
            return Some(not_controller(&request));
        };
        let next_offset = quorum.raft_metrics().last_log_index.map_or(1, |i| i + 1);
        let now = now_ms();
        let (records, response) = match &request {
            RequestKind::BrokerRegistration(r) => {
                let (rec, resp) = active.state.register_broker(r, next_offset, now);
                (rec, ResponseKind::BrokerRegistration(resp))
            }
            RequestKind::BrokerHeartbeat(r) => {
                let (rec, resp) = active.state.broker_heartbeat(r, next_offset, now);
                (rec, ResponseKind::BrokerHeartbeat(resp))
            }
            RequestKind::AlterPartition(r) => {
                let (rec, resp) = active.state.alter_partition(r);
                (rec, ResponseKind::AlterPartition(resp))
            }
            RequestKind::CreateTopics(r) => {
                let (rec, resp) = active.state.create_topics(r);
                (rec, ResponseKind::CreateTopics(resp))
            }
            RequestKind::DeleteTopics(r) => {
                let (rec, resp) = active.state.delete_topics(r);
                (rec, ResponseKind::DeleteTopics(resp))
            }
            RequestKind::CreatePartitions(r) => {
                let (rec, resp) = active.state.create_partitions(r);
                (rec, ResponseKind::CreatePartitions(resp))
            }
            RequestKind::ElectLeaders(r) => {
                let (rec, resp) = active.state.elect_leaders(r);
                (rec, ResponseKind::ElectLeaders(resp))
            }
            RequestKind::AllocateProducerIds(r) => {
                let (rec, resp) = active.state.allocate_producer_ids(r);
                (rec, ResponseKind::AllocateProducerIds(resp))
            }
            RequestKind::AlterConfigs(r) => {
                let (rec, resp) = active.state.alter_configs(r);
                (rec, ResponseKind::AlterConfigs(resp))
            }
            RequestKind::IncrementalAlterConfigs(r) => {
                let (rec, resp) = active.state.incremental_alter_configs(r);
                (rec, ResponseKind::IncrementalAlterConfigs(resp))
            }
            other => {
                debug!(
                    api = header.request_api_key,
                    "request the controller does not serve"
                );
                let _ = other;
                return None;
            }
        };
        if records.is_empty() {
            return Some(response);
        }
        match write(quorum, active, &records).await {
            Ok(_) => Some(response),
            Err(e) => {
                warn!(error = %e, api = header.request_api_key, "controller write failed");
                // The decision state may hold effects of records that were never committed.
                *guard = None;
                Some(not_controller(&request))
            }
        }
    }
}

/// The NOT_CONTROLLER answer to a write request (clients retry on the active controller).
fn not_controller(request: &RequestKind) -> ResponseKind {
    let code = ResponseError::NotController.code();
    match request {
        RequestKind::BrokerRegistration(_) => ResponseKind::BrokerRegistration(
            BrokerRegistrationResponse::default().with_error_code(code),
        ),
        RequestKind::BrokerHeartbeat(_) => ResponseKind::BrokerHeartbeat(
            BrokerHeartbeatResponse::default()
                .with_error_code(code)
                .with_is_fenced(true),
        ),
        RequestKind::AlterPartition(_) => {
            ResponseKind::AlterPartition(AlterPartitionResponse::default().with_error_code(code))
        }
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(
            CreateTopicsResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        CreatableTopicResult::default()
                            .with_name(t.name.clone())
                            .with_error_code(code)
                    })
                    .collect(),
            ),
        ),
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(
            DeleteTopicsResponse::default().with_responses(
                r.topics
                    .iter()
                    .map(|t| {
                        DeletableTopicResult::default()
                            .with_name(t.name.clone())
                            .with_topic_id(t.topic_id)
                            .with_error_code(code)
                    })
                    .chain(r.topic_names.iter().map(|n| {
                        DeletableTopicResult::default()
                            .with_name(Some(n.clone()))
                            .with_error_code(code)
                    }))
                    .collect(),
            ),
        ),
        RequestKind::CreatePartitions(r) => ResponseKind::CreatePartitions(
            CreatePartitionsResponse::default().with_results(
                r.topics
                    .iter()
                    .map(|t| {
                        CreatePartitionsTopicResult::default()
                            .with_name(t.name.clone())
                            .with_error_code(code)
                    })
                    .collect(),
            ),
        ),
        RequestKind::ElectLeaders(_) => {
            ResponseKind::ElectLeaders(ElectLeadersResponse::default().with_error_code(code))
        }
        RequestKind::AllocateProducerIds(_) => ResponseKind::AllocateProducerIds(
            AllocateProducerIdsResponse::default().with_error_code(code),
        ),
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(
            AlterConfigsResponse::default().with_responses(
                r.resources
                    .iter()
                    .map(|res| {
                        alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_resource_type(res.resource_type)
                            .with_resource_name(res.resource_name.clone())
                            .with_error_code(code)
                    })
                    .collect(),
            ),
        ),
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsResponse::default().with_responses(
                r.resources
                    .iter()
                    .map(|res| {
                        incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_resource_type(res.resource_type)
                            .with_resource_name(res.resource_name.clone())
                            .with_error_code(code)
                    })
                    .collect(),
            ),
        ),
        _ => ResponseKind::AllocateProducerIds(
            AllocateProducerIdsResponse::default().with_error_code(code),
        ),
    }
}
