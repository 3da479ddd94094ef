//! The active controller's settings (Kafka's names in the docs of each field).

use serde::{Deserialize, Serialize};

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

use crate::error::{ClusterError, Result};

/// The consumer offsets topic.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The transaction state topic.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

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
    /// How often leaderless partitions of topics with unclean election enabled are retried
    /// (Kafka's controller checks every 5 minutes).
    pub unclean_leader_election_check_interval_ms: u64,
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
    /// `offsets.topic.segment.bytes` (for `__consumer_offsets`).
    pub offsets_topic_segment_bytes: i32,
    /// `transaction.state.log.segment.bytes` (for `__transaction_state`).
    pub transaction_state_log_segment_bytes: i32,
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
            unclean_leader_election_check_interval_ms: 300_000,
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 3,
            transaction_state_log_num_partitions: 50,
            transaction_state_log_replication_factor: 3,
            transaction_state_log_min_isr: 2,
            offsets_topic_segment_bytes: 104_857_600,
            transaction_state_log_segment_bytes: 104_857_600,
        }
    }
}

impl ControllerConfig {
    /// The CreateTopics entry that creates the internal topic `name` (`__consumer_offsets` or
    /// `__transaction_state`) with Kafka's settings for it; `None` for other names.
    pub fn internal_topic(&self, name: &str) -> Option<CreatableTopic> {
        let (partitions, rf, configs): (i32, i16, Vec<(&str, String)>) = match name {
            CONSUMER_OFFSETS_TOPIC => (
                self.offsets_topic_num_partitions,
                self.offsets_topic_replication_factor,
                vec![
                    ("cleanup.policy", "compact".to_string()),
                    ("compression.type", "producer".to_string()),
                    (
                        "segment.bytes",
                        self.offsets_topic_segment_bytes.to_string(),
                    ),
                ],
            ),
            TRANSACTION_STATE_TOPIC => (
                self.transaction_state_log_num_partitions,
                self.transaction_state_log_replication_factor,
                vec![
                    ("cleanup.policy", "compact".to_string()),
                    // Kafka says `uncompressed` (its brokers recompress); here batches are
                    // stored as written, and the transaction coordinator writes them
                    // uncompressed, so `producer` states exactly what is stored.
                    ("compression.type", "producer".to_string()),
                    (
                        "min.insync.replicas",
                        self.transaction_state_log_min_isr.to_string(),
                    ),
                    (
                        "segment.bytes",
                        self.transaction_state_log_segment_bytes.to_string(),
                    ),
                    ("unclean.leader.election.enable", "false".to_string()),
                ],
            ),
            _ => return None,
        };
        Some(
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.to_string())))
                .with_num_partitions(partitions)
                .with_replication_factor(rf)
                .with_configs(
                    configs
                        .into_iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string(k.to_string()))
                                .with_value(Some(StrBytes::from_string(v)))
                        })
                        .collect(),
                ),
        )
    }

    /// Check the values Kafka's `ConfigDef` constrains (counts and factors at least 1).
    pub fn validate(&self) -> Result<()> {
        let check = |name: &str, value: i64| {
            if value < 1 {
                Err(ClusterError::InvalidConfig {
                    name: name.to_string(),
                    value: value.to_string(),
                    reason: "Value must be at least 1".to_string(),
                })
            } else {
                Ok(())
            }
        };
        check(
            "default.replication.factor",
            i64::from(self.default_replication_factor),
        )?;
        check("num.partitions", i64::from(self.num_partitions))?;
        check("min.insync.replicas", i64::from(self.min_insync_replicas))?;
        check(
            "broker.session.timeout.ms",
            i64::try_from(self.broker_session_timeout_ms).unwrap_or(i64::MAX),
        )?;
        check(
            "offsets.topic.num.partitions",
            i64::from(self.offsets_topic_num_partitions),
        )?;
        check(
            "offsets.topic.replication.factor",
            i64::from(self.offsets_topic_replication_factor),
        )?;
        check(
            "transaction.state.log.num.partitions",
            i64::from(self.transaction_state_log_num_partitions),
        )?;
        check(
            "transaction.state.log.replication.factor",
            i64::from(self.transaction_state_log_replication_factor),
        )?;
        check(
            "transaction.state.log.min.isr",
            i64::from(self.transaction_state_log_min_isr),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas_and_valid() {
        let c = ControllerConfig::default();
        assert_eq!(c.broker_session_timeout_ms, 9000);
        assert_eq!(c.default_replication_factor, 1);
        assert!(!c.unclean_leader_election_enable);
        assert!(c.auto_leader_rebalance_enable);
        c.validate().unwrap();
        let bad = ControllerConfig {
            min_insync_replicas: 0,
            ..c
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("min.insync.replicas=0"), "{err}");
    }

    #[test]
    fn internal_topics_use_their_settings() {
        let c = ControllerConfig {
            offsets_topic_num_partitions: 7,
            offsets_topic_replication_factor: 2,
            transaction_state_log_min_isr: 1,
            ..ControllerConfig::default()
        };
        let t = c.internal_topic(CONSUMER_OFFSETS_TOPIC).unwrap();
        assert_eq!((t.num_partitions, t.replication_factor), (7, 2));
        assert!(t.configs.iter().any(|k| k.name.as_str() == "cleanup.policy"
            && k.value.as_ref().map(|v| v.as_str()) == Some("compact")));
        let t = c.internal_topic(TRANSACTION_STATE_TOPIC).unwrap();
        assert_eq!((t.num_partitions, t.replication_factor), (50, 3));
        assert!(t
            .configs
            .iter()
            .any(|k| k.name.as_str() == "min.insync.replicas"
                && k.value.as_ref().map(|v| v.as_str()) == Some("1")));
        assert!(c.internal_topic("other").is_none());
        // The controller creates them through CreateTopics' validation: every config valid.
        for name in [CONSUMER_OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC] {
            let t = c.internal_topic(name).unwrap();
            let configs = t
                .configs
                .iter()
                .map(|k| {
                    let v = k.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                    (k.name.to_string(), v)
                })
                .collect();
            assert_eq!(
                crate::metadata::controller::validate_topic_configs(&configs),
                Ok(()),
                "{name}"
            );
        }
    }
}
