//! The active controller's settings (Kafka's names in the docs of each field).

use serde::{Deserialize, Serialize};

/// Settings the controller's decisions depend on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerConfig {
    /// The cluster id brokers must register with (`CLUSTER_ID` / `meta.properties`).
    pub cluster_id: String,
    /// `default.replication.factor`: used when CreateTopics asks for replication factor -1.
    pub default_replication_factor: i16,
    /// `num.partitions`: used when CreateTopics asks for -1 partitions.
    pub num_partitions: i32,
    /// `min.insync.replicas`: the default of topics that do not set it.
    pub min_insync_replicas: i32,
    /// `broker.session.timeout.ms`: a broker without a heartbeat for this long is fenced.
    pub broker_session_timeout_ms: u64,
    /// `unclean.leader.election.enable`: the default of topics that do not set it.
    pub unclean_leader_election_enable: bool,
    /// `auto.leader.rebalance.enable`: move leadership back to preferred replicas.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`, in milliseconds.
    pub leader_imbalance_check_interval_ms: u64,
    /// `offsets.topic.num.partitions` (for `__consumer_offsets`).
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor` (for `__consumer_offsets`).
    pub offsets_topic_replication_factor: i16,
    /// `transaction.state.log.num.partitions` (for `__transaction_state`).
    pub transaction_state_log_num_partitions: i32,
    /// `transaction.state.log.replication.factor` (for `__transaction_state`).
    pub transaction_state_log_replication_factor: i16,
    /// `transaction.state.log.min.isr` (for `__transaction_state`).
    pub transaction_state_log_min_isr: i32,
}

impl Default for ControllerConfig {
    /// Kafka's defaults (and an empty cluster id).
    fn default() -> Self {
        Self {
            cluster_id: String::new(),
            default_replication_factor: 1,
            num_partitions: 1,
            min_insync_replicas: 1,
            broker_session_timeout_ms: 9000,
            unclean_leader_election_enable: false,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 300_000,
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 3,
            transaction_state_log_num_partitions: 50,
            transaction_state_log_replication_factor: 3,
            transaction_state_log_min_isr: 2,
        }
    }
}
