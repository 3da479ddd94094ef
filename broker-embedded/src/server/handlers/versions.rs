//! API versions: which APIs and versions are implemented (and so advertised in ApiVersions,
//! never more), the ApiVersions response, and `fit_to_version`, which clears response fields
//! the negotiated version does not carry.

use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, BrokerId, ResponseKind};
use kafka_protocol::protocol::StrBytes;

/// The versions implemented, per API; `None` = not implemented (never advertised).
pub(crate) fn supported_versions(api: ApiKey) -> Option<(i16, i16)> {
    Some(match api {
        ApiKey::Produce => (3, 9),
        ApiKey::Fetch => (4, 12),
        ApiKey::ListOffsets => (1, 6),
        // Every version kafka-protocol 0.18 knows (librdkafka 2.x asks for v2).
        ApiKey::OffsetForLeaderEpoch => (2, 4),
        ApiKey::Metadata => (1, 12),
        ApiKey::ApiVersions => (0, 3),
        ApiKey::CreateTopics => (2, 7),
        ApiKey::DeleteTopics => (1, 6),
        ApiKey::DescribeConfigs => (1, 4),
        ApiKey::AlterConfigs => (0, 2),
        ApiKey::CreatePartitions => (0, 3),
        ApiKey::IncrementalAlterConfigs => (0, 1),
        ApiKey::InitProducerId => (0, 4),
        ApiKey::FindCoordinator => (0, 3),
        ApiKey::OffsetCommit => (2, 8),
        ApiKey::OffsetFetch => (1, 7),
        ApiKey::JoinGroup => (0, 7),
        ApiKey::SyncGroup => (0, 5),
        ApiKey::Heartbeat => (0, 4),
        ApiKey::LeaveGroup => (0, 4),
        ApiKey::DescribeGroups => (0, 5),
        ApiKey::ListGroups => (0, 4),
        ApiKey::DeleteGroups => (0, 2),
        ApiKey::OffsetDelete => (0, 0),
        // Transactions, without KIP-890 part 2 (`transaction.version` is not advertised):
        // AddPartitionsToTxn v4+ is broker-to-broker batching, EndTxn v5 bumps epochs, the
        // later TxnOffsetCommit/AddOffsetsToTxn versions add TRANSACTION_ABORTABLE.
        ApiKey::AddPartitionsToTxn => (0, 3),
        ApiKey::AddOffsetsToTxn => (0, 3),
        ApiKey::TxnOffsetCommit => (0, 3),
        ApiKey::EndTxn => (0, 4),
        ApiKey::DescribeTransactions => (0, 0),
        ApiKey::ListTransactions => (0, 1),
        ApiKey::DescribeProducers => (0, 0),
        _ => return None,
    })
}

/// The versions implemented per API when the broker is one node of a cluster: those of
/// [`supported_versions`] plus the APIs only a cluster serves (ElectLeaders, forwarded to the
/// controller; DescribeCluster, from the cluster view; WriteTxnMarkers, from transaction
/// coordinators on other brokers).
pub(crate) fn cluster_supported_versions(api: ApiKey) -> Option<(i16, i16)> {
    match api {
        ApiKey::ElectLeaders => Some((0, 2)),
        ApiKey::DescribeCluster => Some((0, 1)),
        ApiKey::WriteTxnMarkers => Some((1, 1)),
        _ => supported_versions(api),
    }
}

/// APIs advertised only in cluster mode.
const CLUSTER_ONLY: &[ApiKey] = &[
    ApiKey::ElectLeaders,
    ApiKey::DescribeCluster,
    ApiKey::WriteTxnMarkers,
];

const ADVERTISED: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::OffsetForLeaderEpoch,
    ApiKey::Metadata,
    ApiKey::ApiVersions,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::DescribeConfigs,
    ApiKey::AlterConfigs,
    ApiKey::CreatePartitions,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::InitProducerId,
    ApiKey::FindCoordinator,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::DescribeGroups,
    ApiKey::ListGroups,
    ApiKey::DeleteGroups,
    ApiKey::OffsetDelete,
    ApiKey::AddPartitionsToTxn,
    ApiKey::AddOffsetsToTxn,
    ApiKey::TxnOffsetCommit,
    ApiKey::EndTxn,
    ApiKey::DescribeTransactions,
    ApiKey::ListTransactions,
    ApiKey::DescribeProducers,
];

/// The ApiVersions response of a single-node broker (`cluster` false) or of a cluster node,
/// which also advertises [`CLUSTER_ONLY`] APIs (after the others, so a single node's response
/// is unchanged).
pub(crate) fn api_versions_response_for(error_code: i16, cluster: bool) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error_code;
    let cluster_only: &[ApiKey] = if cluster { CLUSTER_ONLY } else { &[] };
    r.api_keys = ADVERTISED
        .iter()
        .chain(cluster_only)
        .filter_map(|api| {
            let (min, max) = if cluster {
                cluster_supported_versions(*api)?
            } else {
                supported_versions(*api)?
            };
            let mut v = ApiVersion::default();
            v.api_key = *api as i16;
            v.min_version = min;
            v.max_version = max;
            Some(v)
        })
        .collect();
    r
}

pub(super) fn api_versions(_r: &ApiVersionsRequest, cluster: bool) -> ApiVersionsResponse {
    api_versions_response_for(0, cluster)
}

/// Resets fields that the negotiated version does not carry to their defaults. The encoder
/// refuses non-default values in fields a version lacks (unless Kafka marks them ignorable),
/// and older clients (e.g. librdkafka 2.0 asking for ListOffsets v2) must still get answers.
pub(super) fn fit_to_version(response: &mut ResponseKind, v: i16) {
    match response {
        // The top-level error code exists from v1 on.
        ResponseKind::ElectLeaders(r) if v < 1 => r.error_code = 0,
        ResponseKind::Metadata(r) => {
            if v < 2 {
                r.cluster_id = None;
            }
            for t in &mut r.topics {
                if v < 10 {
                    t.topic_id = uuid::Uuid::nil();
                }
                for p in &mut t.partitions {
                    if v < 7 {
                        p.leader_epoch = -1;
                    }
                    if v < 5 {
                        p.offline_replicas.clear();
                    }
                }
            }
        }
        ResponseKind::ListOffsets(r) => {
            for t in &mut r.topics {
                for p in &mut t.partitions {
                    if v < 4 {
                        p.leader_epoch = -1;
                    }
                }
            }
        }
        ResponseKind::Produce(r) => {
            for t in &mut r.responses {
                for p in &mut t.partition_responses {
                    if v < 5 {
                        p.log_start_offset = -1;
                    }
                    if v < 8 {
                        p.error_message = None;
                        p.record_errors.clear();
                    }
                }
            }
        }
        ResponseKind::Fetch(r) => {
            for t in &mut r.responses {
                for p in &mut t.partitions {
                    if v < 5 {
                        p.log_start_offset = -1;
                    }
                    if v < 11 {
                        p.preferred_read_replica = BrokerId(-1);
                    }
                    if v < 12 {
                        p.diverging_epoch = Default::default();
                        p.current_leader = Default::default();
                    }
                }
            }
        }
        ResponseKind::CreateTopics(r) => {
            for t in &mut r.topics {
                if v < 7 {
                    t.topic_id = uuid::Uuid::nil();
                }
                if v < 5 {
                    t.num_partitions = -1;
                    t.replication_factor = -1;
                    t.configs = Some(Vec::new());
                    t.topic_config_error_code = 0;
                }
            }
        }
        ResponseKind::DeleteTopics(r) => {
            for t in &mut r.responses {
                if v < 5 {
                    t.error_message = None;
                }
                if v < 6 {
                    t.topic_id = uuid::Uuid::nil();
                }
            }
        }
        ResponseKind::FindCoordinator(r) if v < 1 => r.error_message = None,
        ResponseKind::JoinGroup(r) => {
            if v < 7 {
                r.protocol_type = None;
                if r.protocol_name.is_none() {
                    r.protocol_name = Some(StrBytes::default());
                }
            }
            if v < 5 {
                for m in &mut r.members {
                    m.group_instance_id = None;
                }
            }
        }
        ResponseKind::SyncGroup(r) if v < 5 => {
            r.protocol_type = None;
            r.protocol_name = None;
        }
        ResponseKind::DescribeGroups(r) if v < 4 => {
            for g in &mut r.groups {
                for m in &mut g.members {
                    m.group_instance_id = None;
                }
            }
        }
        ResponseKind::ListGroups(r) if v < 4 => {
            for g in &mut r.groups {
                g.group_state = StrBytes::default();
            }
        }
        ResponseKind::OffsetFetch(r) => {
            for t in &mut r.topics {
                for p in &mut t.partitions {
                    if v < 5 {
                        p.committed_leader_epoch = -1;
                    }
                }
            }
        }
        ResponseKind::DescribeConfigs(r) => {
            for res in &mut r.results {
                for c in &mut res.configs {
                    if v < 3 {
                        c.config_type = 0;
                        c.documentation = Some(StrBytes::default());
                    }
                }
            }
        }
        _ => {}
    }
}
