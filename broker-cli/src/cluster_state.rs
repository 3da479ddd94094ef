//! The state of a running cluster as `broker cluster status` shows it: the controller quorum
//! from DescribeQuorum (asked of each controller until one answers as the leader) and the
//! brokers and partitions from a Metadata request to a broker, both over the Kafka protocol.

use std::fmt::Write as _;
use std::time::Duration;

use broker_embedded::client::KafkaConnection;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{DescribeQuorumRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

/// The metadata log's topic, the one DescribeQuorum answers for.
const METADATA_TOPIC: &str = "__cluster_metadata";
const CLIENT_ID: &str = "broker-cluster-status";

/// The controller quorum as its leader reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumState {
    /// The controller that answered.
    pub answered_by: String,
    /// The leader's id.
    pub leader_id: i32,
    /// The leader's epoch.
    pub leader_epoch: i32,
    /// The metadata log's high watermark.
    pub high_watermark: i64,
    /// Each voter's id and log end offset.
    pub voters: Vec<(i32, i64)>,
    /// Each observer's id and log end offset.
    pub observers: Vec<(i32, i64)>,
}

/// One partition's replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// Partition index.
    pub partition: i32,
    /// Leader id, -1 when offline.
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Assigned replicas.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// The partition's error code in the Metadata response.
    pub error_code: i16,
}

/// The brokers and topics as a broker reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokersState {
    /// The broker that answered.
    pub answered_by: String,
    /// The active controller's id as the broker knows it.
    pub controller_id: i32,
    /// Registered (unfenced) brokers: id, host, port.
    pub brokers: Vec<(i32, String, i32)>,
    /// Topics (name, error code, partitions), by name.
    pub topics: Vec<(String, i16, Vec<PartitionState>)>,
}

fn addresses(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Asks each controller in `controllers` (`host:port,...`) for the quorum until one answers
/// as the leader. The error lists what each controller said.
pub async fn describe_quorum(controllers: &str, timeout: Duration) -> Result<QuorumState, String> {
    let mut problems = Vec::new();
    for addr in addresses(controllers) {
        match describe_quorum_at(&addr, timeout).await {
            Ok(q) => return Ok(q),
            Err(e) => problems.push(format!("{addr}: {e}")),
        }
    }
    if problems.is_empty() {
        problems.push("no controller address given".into());
    }
    Err(problems.join("; "))
}

async fn describe_quorum_at(addr: &str, timeout: Duration) -> Result<QuorumState, String> {
    let mut conn = KafkaConnection::connect(addr, CLIENT_ID, timeout)
        .await
        .map_err(|e| e.to_string())?;
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let (_, response) = conn
        .send(request, 0, 2, timeout)
        .await
        .map_err(|e| e.to_string())?;
    if response.error_code != 0 {
        return Err(format!("error code {}", response.error_code));
    }
    let p = response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == 0)
        .ok_or("no partition in the answer")?;
    if p.error_code != 0 {
        return Err(format!(
            "error code {} (not the leader; leader {} epoch {})",
            p.error_code, p.leader_id.0, p.leader_epoch
        ));
    }
    Ok(QuorumState {
        answered_by: addr.to_string(),
        leader_id: p.leader_id.0,
        leader_epoch: p.leader_epoch,
        high_watermark: p.high_watermark,
        voters: p
            .current_voters
            .iter()
            .map(|v| (v.replica_id.0, v.log_end_offset))
            .collect(),
        observers: p
            .observers
            .iter()
            .map(|v| (v.replica_id.0, v.log_end_offset))
            .collect(),
    })
}

/// Asks the first broker in `bootstrap` (`host:port,...`) that answers for the metadata of
/// every topic.
pub async fn describe_brokers(bootstrap: &str, timeout: Duration) -> Result<BrokersState, String> {
    let mut problems = Vec::new();
    for addr in addresses(bootstrap) {
        match describe_brokers_at(&addr, timeout).await {
            Ok(s) => return Ok(s),
            Err(e) => problems.push(format!("{addr}: {e}")),
        }
    }
    if problems.is_empty() {
        problems.push("no broker address given".into());
    }
    Err(problems.join("; "))
}

async fn describe_brokers_at(addr: &str, timeout: Duration) -> Result<BrokersState, String> {
    let mut conn = KafkaConnection::connect(addr, CLIENT_ID, timeout)
        .await
        .map_err(|e| e.to_string())?;
    // `topics` null: every topic.
    let request = MetadataRequest::default()
        .with_topics(None)
        .with_allow_auto_topic_creation(false);
    let (_, response) = conn
        .send(request, 1, 12, timeout)
        .await
        .map_err(|e| e.to_string())?;
    let mut brokers: Vec<(i32, String, i32)> = response
        .brokers
        .iter()
        .map(|b| (b.node_id.0, b.host.to_string(), b.port))
        .collect();
    brokers.sort();
    let mut topics: Vec<(String, i16, Vec<PartitionState>)> = response
        .topics
        .iter()
        .map(|t| {
            let mut partitions: Vec<PartitionState> = t
                .partitions
                .iter()
                .map(|p| PartitionState {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            (
                t.name
                    .as_ref()
                    .map_or_else(String::new, |n| n.0.to_string()),
                t.error_code,
                partitions,
            )
        })
        .collect();
    topics.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(BrokersState {
        answered_by: addr.to_string(),
        controller_id: response.controller_id.0,
        brokers,
        topics,
    })
}

fn ids(list: &[i32]) -> String {
    list.iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The quorum section of the status report.
pub fn render_quorum(out: &mut String, quorum: &Result<QuorumState, String>) {
    match quorum {
        Ok(q) => {
            let _ = writeln!(
                out,
                "quorum: leader {} epoch {} high watermark {} (from {})",
                q.leader_id, q.leader_epoch, q.high_watermark, q.answered_by
            );
            let _ = writeln!(out, "{:<8}{:<10}LOG END OFFSET", "VOTER", "ROLE");
            for (id, leo) in &q.voters {
                let role = if *id == q.leader_id {
                    "leader"
                } else {
                    "follower"
                };
                let _ = writeln!(out, "{id:<8}{role:<10}{leo}");
            }
            for (id, leo) in &q.observers {
                let _ = writeln!(out, "{id:<8}{:<10}{leo}", "observer");
            }
        }
        Err(e) => {
            let _ = writeln!(out, "quorum: no controller answers as leader ({e})");
        }
    }
}

/// The brokers and topics section of the status report.
pub fn render_brokers(out: &mut String, state: &Result<BrokersState, String>) {
    let s = match state {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(out, "brokers: no broker answers ({e})");
            return;
        }
    };
    let _ = writeln!(
        out,
        "brokers: {} registered, active controller {} (from {})",
        s.brokers.len(),
        s.controller_id,
        s.answered_by
    );
    for (id, host, port) in &s.brokers {
        let _ = writeln!(out, "  broker {id} {host}:{port}");
    }
    let mut under = 0usize;
    let mut offline = 0usize;
    let _ = writeln!(
        out,
        "{:<30}{:<10}{:<8}{:<7}{:<14}{:<14}STATE",
        "TOPIC", "PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR"
    );
    for (name, error_code, partitions) in &s.topics {
        if *error_code != 0 {
            let _ = writeln!(out, "{name:<30}error code {error_code}");
            continue;
        }
        for p in partitions {
            let mut flags = Vec::new();
            if p.leader < 0 {
                flags.push("offline");
                offline += 1;
            }
            if p.isr.len() < p.replicas.len() {
                flags.push("under-replicated");
                under += 1;
            }
            let state = if flags.is_empty() {
                "ok".to_string()
            } else {
                flags.join(",")
            };
            let _ = writeln!(
                out,
                "{name:<30}{:<10}{:<8}{:<7}{:<14}{:<14}{state}",
                p.partition,
                p.leader,
                p.leader_epoch,
                ids(&p.replicas),
                ids(&p.isr)
            );
        }
    }
    let _ = writeln!(
        out,
        "partitions: {} topics, {under} under-replicated, {offline} offline",
        s.topics.len()
    );
}

/// The cluster-state part of `status`: the quorum (when controllers are known) and the
/// brokers and topics (when brokers are known).
pub fn report(controllers: Option<&str>, bootstrap: Option<&str>, timeout: Duration) -> String {
    let mut out = String::new();
    let rt = match crate::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(out, "cluster state unavailable: {e}");
            return out;
        }
    };
    rt.block_on(async {
        if let Some(c) = controllers {
            render_quorum(&mut out, &describe_quorum(c, timeout).await);
        }
        if let Some(b) = bootstrap {
            render_brokers(&mut out, &describe_brokers(b, timeout).await);
        }
    });
    out
}
