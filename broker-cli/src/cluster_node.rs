//! `broker serve` in cluster mode: runs this node's controller (a voter of the Raft quorum
//! on its controller listener) and/or broker (the embedded log and Kafka server driven by
//! the quorum) from a validated [`NodeConfig`], until SIGTERM or SIGINT. A broker stops with a
//! controlled shutdown (leadership moved away first).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use broker_cluster::metadata::{ControllerConfig, MetadataImage};
use broker_cluster::node::{BrokerListener, BrokerNode, BrokerNodeConfig, ControllerService};
use broker_cluster::quorum::{Quorum, QuorumConfig};
use broker_embedded::replica::ReplicaConfig;
use broker_embedded::{BrokerConfig, ServerConfig};

use crate::node_config::NodeConfig;
use crate::storage::MetaProperties;
use crate::AnyResult;

/// How often the active controller runs its timers (session expiry, leader rebalancing).
const CONTROLLER_TICK: Duration = Duration::from_millis(250);
/// Bound of a controlled shutdown.
const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

fn controller_config(
    node: &NodeConfig,
    broker: &BrokerConfig,
    cluster_id: &str,
) -> ControllerConfig {
    ControllerConfig {
        cluster_id: cluster_id.to_owned(),
        default_replication_factor: i16::try_from(node.default_replication_factor).unwrap_or(1),
        num_partitions: i32::try_from(broker.num_partitions).unwrap_or(1),
        min_insync_replicas: node.min_insync_replicas,
        broker_session_timeout_ms: node.broker_session_timeout_ms,
        unclean_leader_election_enable: node.unclean_leader_election_enable,
        auto_leader_rebalance_enable: node.auto_leader_rebalance_enable,
        offsets_topic_num_partitions: i32::try_from(broker.offsets_topic_num_partitions)
            .unwrap_or(50),
        offsets_topic_replication_factor: node.offsets_topic_replication_factor,
        transaction_state_log_num_partitions: i32::try_from(
            broker.transaction_state_log_num_partitions,
        )
        .unwrap_or(50),
        transaction_state_log_replication_factor: node.transaction_state_log_replication_factor,
        ..ControllerConfig::default()
    }
}

/// Runs the node until a signal; see the module doc.
pub(crate) fn run(
    node: NodeConfig,
    meta: MetaProperties,
    broker: BrokerConfig,
    server: ServerConfig,
) -> AnyResult {
    let voters = node
        .quorum_voters
        .iter()
        .map(|v| (v.id, v.address.to_string()))
        .collect::<std::collections::BTreeMap<_, _>>();
    if voters.is_empty() {
        return Err(
            "controller.quorum.voters is required (controller.quorum.bootstrap.servers \
                    alone, KIP-853's dynamic quorum, is not supported yet)"
                .into(),
        );
    }
    let rt = crate::runtime()?;
    rt.block_on(async move {
        let mut quorum = None;
        let mut ticks = None;
        if node.is_controller() {
            let listener = node
                .controller_listeners()
                .first()
                .map(|e| e.bind_addr())
                .ok_or("a controller needs a controller listener")?;
            let tcp = tokio::net::TcpListener::bind(&listener)
                .await
                .map_err(|e| format!("cannot listen on {listener}: {e}"))?;
            let mut qc = QuorumConfig::new(
                node.node_id,
                voters.clone(),
                node.metadata_log_dir().to_path_buf(),
            );
            // Kafka's controller.quorum.election.timeout.ms default.
            qc.election_timeout_ms = 1000;
            let service =
                ControllerService::new(controller_config(&node, &broker, &meta.cluster_id));
            let q: Quorum<MetadataImage> = Quorum::start(
                qc,
                durable_fs::OsStorage::shared(),
                tcp,
                Arc::clone(&service),
            )
            .await?;
            ticks = Some(tokio::spawn(
                Arc::clone(&service).run_ticks(q.clone(), CONTROLLER_TICK),
            ));
            println!("controller listening on {}", q.local_addr());
            quorum = Some(q);
        }
        let mut broker_node = None;
        if node.is_broker() {
            let advertised = node.effective_advertised_listeners().to_vec();
            let listeners = node
                .broker_listeners()
                .into_iter()
                .map(|l| {
                    let adv = advertised
                        .iter()
                        .find(|a| a.listener_name == l.listener_name);
                    BrokerListener {
                        name: l.listener_name.clone(),
                        bind: l.bind_addr(),
                        advertised_host: adv.and_then(|a| a.host.clone()).filter(|h| !h.is_empty()),
                        advertised_port: adv.map(|a| a.port).filter(|p| *p != 0),
                    }
                })
                .collect();
            let mut replica = ReplicaConfig::new(node.node_id);
            replica.replica_lag_time_max_ms =
                i64::try_from(node.replica_lag_time_max_ms).unwrap_or(30_000);
            let mut broker = broker.clone();
            broker.node_id = node.node_id;
            let internal_topics = controller_config(&node, &broker, &meta.cluster_id);
            let b = BrokerNode::start(BrokerNodeConfig {
                node_id: node.node_id,
                cluster_id: meta.cluster_id.clone(),
                broker,
                server,
                listeners,
                inter_broker_listener: node.inter_broker_listener_name.clone(),
                controller_voters: voters.clone(),
                heartbeat_interval: Duration::from_millis(node.broker_heartbeat_interval_ms),
                replica,
                internal_topics,
            })
            .await?;
            for (name, addr) in b.listener_addresses() {
                println!("listening on {addr} ({name})");
            }
            broker_node = Some(b);
        }
        std::io::stdout().flush()?;
        crate::serve::wait_for_signal().await?;
        tracing::info!("shutting down");
        if let Some(b) = broker_node {
            b.shutdown(CONTROLLED_SHUTDOWN_TIMEOUT).await;
        }
        if let Some(t) = ticks {
            t.abort();
        }
        if let Some(q) = quorum {
            q.shutdown().await?;
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
