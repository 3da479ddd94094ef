//! The [`Broker`]'s side of the transaction coordinator: `__transaction_state` (compacted,
//! `transaction.state.log.num.partitions` partitions, the partition of a transactional id
//! chosen by Java's `String.hashCode` as Kafka does), its reload at open, transaction markers
//! written into the local partition logs, and transactional offset commits
//! (`TxnOffsetCommit`): written to the group's `__consumer_offsets` partition as a
//! transactional batch of the producer, held as pending until the transaction's marker
//! reaches that partition, then visible as committed offsets (commit) or dropped (abort).

use std::collections::{BTreeMap, HashMap};
use std::sync::Weak;

use tracing::{debug, warn};

use super::coordination::CoordinatorKind;
use super::produce_fetch::encode_produce_batch;
use super::types::{NewTopic, ProduceRecord};
use super::{now_ms, Broker, Inner};
use crate::error::{BrokerError, Result};
use crate::group::{CommitMember, GroupError};
use crate::log::{PartitionLog, ProducerEntry};
use crate::offsets::{self, OffsetAndMetadata, TopicPartition, OFFSETS_TOPIC};
use crate::partitioner::{java_abs, java_string_hash};
use crate::record::{decode_records, encode_batch, BatchIter, BatchSpec, Record};
use crate::txn::record::{self as txn_record, TxnLogValue};
use crate::txn::{TransactionCoordinator, TxnError, TxnLog, TxnMarkerWriter};

/// Kafka's name of the transaction state topic.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Offsets committed in open transactions: producer id -> group -> partition -> offset.
pub(super) type PendingTxnOffsets =
    HashMap<i64, HashMap<String, BTreeMap<TopicPartition, OffsetAndMetadata>>>;

/// The coordinator's way into the broker (a weak handle: the broker owns the coordinator).
pub(super) struct BrokerTxnBackend(pub(super) Weak<Inner>);

impl BrokerTxnBackend {
    fn broker(&self) -> Result<Broker> {
        let inner = self.0.upgrade().ok_or(BrokerError::Closed)?;
        Ok(Broker {
            inner,
            _guard: None,
        })
    }
}

impl TxnLog for BrokerTxnBackend {
    fn allocate_producer_id(&self) -> Result<i64> {
        self.broker()?.allocate_producer_id()
    }

    fn append(&self, transactional_id: &str, value: &TxnLogValue) -> Result<()> {
        self.broker()?.append_txn_state(transactional_id, value)
    }

    fn coordinator_epoch(&self, transactional_id: &str) -> i32 {
        self.broker().map_or(0, |b| {
            let partition = b.transaction_state_partition_for(transactional_id);
            b.coordinator_epoch_of(CoordinatorKind::Transaction, partition)
        })
    }
}

impl TxnMarkerWriter for BrokerTxnBackend {
    fn write_txn_marker(
        &self,
        tp: &TopicPartition,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    ) -> Result<()> {
        let broker = self.broker()?;
        match broker.txn_marker_router() {
            // A cluster: the partition's leader may be another broker.
            Some(router) => {
                router.write_txn_marker(tp, producer_id, producer_epoch, coordinator_epoch, commit)
            }
            None => broker.write_txn_marker_as_leader(
                tp,
                producer_id,
                producer_epoch,
                coordinator_epoch,
                commit,
            ),
        }
    }
}

impl Broker {
    /// The broker's transaction coordinator (InitProducerId with a transactional id,
    /// AddPartitionsToTxn, EndTxn, DescribeTransactions, ListTransactions).
    pub fn transaction_coordinator(&self) -> &TransactionCoordinator {
        &self.inner.txn
    }

    /// The `__transaction_state` partition of a transactional id (Kafka's
    /// `partitionFor`: `abs(hashCode) % transaction.state.log.num.partitions`).
    pub fn transaction_state_partition_for(&self, transactional_id: &str) -> i32 {
        let n = self
            .inner
            .config
            .transaction_state_log_num_partitions
            .max(1) as i32;
        java_abs(java_string_hash(transactional_id)) % n
    }

    fn ensure_transaction_state_topic(&self) -> Result<()> {
        if self.topic_exists(TRANSACTION_STATE_TOPIC) {
            return Ok(());
        }
        if self.inner.config.elected_coordinators {
            // A cluster's controller creates the topic; until then there is no coordinator.
            return Err(BrokerError::NotCoordinator(
                kafka_protocol::ResponseError::CoordinatorNotAvailable,
            ));
        }
        let config = &self.inner.config;
        let new = NewTopic::new(
            TRANSACTION_STATE_TOPIC,
            config.transaction_state_log_num_partitions.max(1),
        )
        .config("cleanup.policy", "compact")
        .config(
            "segment.bytes",
            config.transaction_state_log_segment_bytes.to_string(),
        );
        match self.create_topic(new) {
            Ok(_) | Err(BrokerError::TopicAlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn append_txn_state(&self, transactional_id: &str, value: &TxnLogValue) -> Result<()> {
        self.check_open()?;
        self.ensure_transaction_state_topic()?;
        let key = txn_record::encode_key(transactional_id).ok_or_else(|| {
            BrokerError::InvalidRecord("transactional id longer than 32767 bytes".into())
        })?;
        let value = txn_record::encode_value(value).ok_or_else(|| {
            BrokerError::InvalidRecord("topic name of the transaction too long".into())
        })?;
        let record = ProduceRecord {
            key: Some(key),
            value: Some(value),
            headers: Vec::new(),
            timestamp: Some(now_ms()),
        };
        let partition = self.transaction_state_partition_for(transactional_id);
        let mut batch = encode_produce_batch(&[record])?;
        self.append_coordinator_batch(CoordinatorKind::Transaction, partition, &mut batch)?;
        Ok(())
    }

    /// Reads `__transaction_state` back into the coordinator (last record per id; the
    /// single-node broker, at open).
    pub(super) fn load_transaction_state(&self) -> Result<()> {
        let mut states: HashMap<String, Option<TxnLogValue>> = HashMap::new();
        if let Ok(topic) = self.topic(TRANSACTION_STATE_TOPIC) {
            let logs: Vec<_> = topic.logs.read().clone();
            for log in logs {
                states.extend(scan_txn_state_log(&log)?);
            }
        }
        self.inner.txn.load(states);
        Ok(())
    }

    /// TxnOffsetCommit: offsets committed inside the transaction of `transactional_id`
    /// (KIP-98; KIP-447's generation, member and instance checks when `member` carries
    /// them). The producer must have added the group's `__consumer_offsets` partition to its
    /// transaction (AddOffsetsToTxn). The offsets are written durably as a transactional batch
    /// of the producer and become visible to OffsetFetch when the transaction commits.
    pub fn commit_txn_offsets(
        &self,
        transactional_id: &str,
        group: &str,
        producer_id: i64,
        producer_epoch: i16,
        member: &CommitMember,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> std::result::Result<(), TxnOffsetCommitError> {
        self.check_open().map_err(GroupError::Storage)?;
        let partition = self.offsets_partition_for(group);
        // KIP-890's check that the group's partition is in the transaction, made where the
        // transaction coordinator is (in a cluster it may be another broker: not checked).
        if self
            .coordinates(CoordinatorKind::Transaction, transactional_id)
            .is_ok()
        {
            self.inner
                .txn
                .verify_partition(
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    &TopicPartition::new(OFFSETS_TOPIC, partition),
                )
                .map_err(TxnOffsetCommitError::Transaction)?;
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let write = || -> Result<()> {
            self.ensure_offsets_topic()?;
            let mut records = Vec::with_capacity(offsets.len());
            for (i, (tp, om)) in offsets.iter().enumerate() {
                let key = offsets::encode_key(group, tp).ok_or_else(|| {
                    BrokerError::InvalidRecord(
                        "group id or topic name longer than 32767 bytes".into(),
                    )
                })?;
                let value = offsets::encode_value(om).ok_or_else(|| {
                    BrokerError::InvalidRecord("offset metadata longer than 32767 bytes".into())
                })?;
                records.push(Record {
                    offset: i as i64,
                    timestamp: om.commit_timestamp,
                    key: Some(key),
                    value: Some(value),
                    headers: Vec::new(),
                });
            }
            let spec = BatchSpec {
                transactional: true,
                producer_id,
                producer_epoch,
                base_sequence: -1,
                ..BatchSpec::default()
            };
            let mut batch = encode_batch(&spec, &records).map_err(BrokerError::InvalidBatch)?;
            let _guard = self.inner.offsets_lock.lock();
            self.append_coordinator_batch(CoordinatorKind::Group, partition, &mut batch)?;
            let mut pending = self.inner.pending_txn_offsets.lock();
            let entry = pending
                .entry(producer_id)
                .or_default()
                .entry(group.to_string())
                .or_default();
            for (tp, om) in offsets {
                entry.insert(tp.clone(), om.clone());
            }
            Ok(())
        };
        self.inner
            .groups
            .commit_checked(group, member, write)
            .map_err(TxnOffsetCommitError::Group)?
            .map_err(|e| TxnOffsetCommitError::Group(GroupError::Storage(e)))
    }

    /// A marker reached `__consumer_offsets` partition `partition`: the producer's pending
    /// offsets of the groups stored there become committed (or are dropped).
    pub(super) fn complete_txn_offsets(&self, partition: i32, producer_id: i64, commit: bool) {
        let _guard = self.inner.offsets_lock.lock();
        let mut pending = self.inner.pending_txn_offsets.lock();
        let Some(groups) = pending.get_mut(&producer_id) else {
            return;
        };
        let done: Vec<String> = groups
            .keys()
            .filter(|g| self.offsets_partition_for(g) == partition)
            .cloned()
            .collect();
        let mut committed = self.inner.committed.write();
        for g in done {
            if let Some(offsets) = groups.remove(&g) {
                debug!(
                    group = g,
                    producer_id,
                    commit,
                    partitions = offsets.len(),
                    "transactional offsets completed"
                );
                if commit {
                    committed.entry(g).or_default().extend(offsets);
                }
            }
        }
        if groups.is_empty() {
            pending.remove(&producer_id);
        }
    }

    /// The producers a partition remembers (idempotent and transactional), by producer id:
    /// what DescribeProducers reports.
    pub fn active_producers(&self, tp: &TopicPartition) -> Result<Vec<(i64, ProducerEntry)>> {
        Ok(self.log(&tp.topic, tp.partition)?.active_producers())
    }

    /// Whether `group` has offsets of `tp` committed in a transaction not yet completed
    /// (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT for them).
    pub fn has_pending_txn_offset(&self, group: &str, tp: &TopicPartition) -> bool {
        self.inner
            .pending_txn_offsets
            .lock()
            .values()
            .any(|groups| groups.get(group).is_some_and(|m| m.contains_key(tp)))
    }
}

/// Why a TxnOffsetCommit was refused.
#[derive(Debug, thiserror::Error)]
pub enum TxnOffsetCommitError {
    /// The producer or its transaction does not allow the commit.
    #[error(transparent)]
    Transaction(TxnError),
    /// The group refused the member, or storing failed.
    #[error(transparent)]
    Group(#[from] GroupError),
}

impl TxnOffsetCommitError {
    /// The Kafka error a client receives for this error.
    pub fn kafka_error(&self) -> kafka_protocol::ResponseError {
        match self {
            Self::Transaction(e) => e.kafka_error(),
            Self::Group(e) => e.kafka_error(),
        }
    }
}

/// Reads one partition of `__transaction_state` from its start to its log end: the last
/// state of each transactional id in it (`None`: a tombstone).
pub(super) fn scan_txn_state_log(
    log: &PartitionLog,
) -> Result<HashMap<String, Option<TxnLogValue>>> {
    let mut states = HashMap::new();
    let mut skipped = 0usize;
    let mut offset = log.offsets().log_start_offset;
    loop {
        let data = log.read_for_replica(offset, 4 << 20)?;
        if data.records.is_empty() {
            break;
        }
        for item in BatchIter::new(&data.records) {
            let b = item.map_err(|(pos, source)| BrokerError::Corrupt {
                path: log.dir().to_path_buf(),
                position: pos as u64,
                source,
            })?;
            offset = offset.max(b.header.next_offset());
            if b.header.is_control() {
                continue;
            }
            let records = decode_records(b.bytes).map_err(|source| BrokerError::Corrupt {
                path: log.dir().to_path_buf(),
                position: 0,
                source,
            })?;
            for r in records {
                let Some(id) = r.key.as_deref().and_then(txn_record::decode_key) else {
                    skipped += 1;
                    continue;
                };
                match r.value.as_deref() {
                    None => {
                        states.insert(id, None);
                    }
                    Some(v) => match txn_record::decode_value(v) {
                        Some(v) => {
                            states.insert(id, Some(v));
                        }
                        None => skipped += 1,
                    },
                }
            }
        }
    }
    if skipped > 0 {
        warn!(
            skipped,
            partition = log.partition(),
            "skipped undecodable records in {TRANSACTION_STATE_TOPIC}"
        );
    }
    Ok(states)
}

/// Reads a control record's key (version, type): `Some(true)` for COMMIT, `Some(false)` for
/// ABORT.
pub(super) fn control_type(key: &[u8]) -> Option<bool> {
    if key.len() < 4 {
        return None;
    }
    match i16::from_be_bytes([key[2], key[3]]) {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::Bytes;

    use super::*;
    use crate::log::{AppendOrigin, IsolationLevel};
    use crate::txn::TxnState;
    use crate::{BrokerConfig, FetchData};

    fn open(dir: &std::path::Path) -> Broker {
        let mut c = BrokerConfig::new(dir);
        c.cleaner_interval = None;
        c.transaction_state_log_num_partitions = 3;
        c.offsets_topic_num_partitions = 3;
        Broker::open(c).unwrap()
    }

    fn txn_batch(pid: i64, epoch: i16, values: &[&str]) -> Vec<u8> {
        let spec = BatchSpec {
            transactional: true,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: 0,
            ..BatchSpec::default()
        };
        let recs: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                offset: i as i64,
                timestamp: now_ms(),
                key: Some(Bytes::from(v.to_string())),
                value: Some(Bytes::from(v.to_string())),
                headers: Vec::new(),
            })
            .collect();
        encode_batch(&spec, &recs).unwrap()
    }

    fn committed_values(b: &Broker) -> Vec<String> {
        let data: FetchData = b
            .read_partition("t", 0, 0, 1 << 20, IsolationLevel::ReadCommitted)
            .unwrap();
        crate::decode_fetched("t", &data.records, 0)
            .unwrap()
            .into_iter()
            .filter_map(|r| r.value.map(|v| String::from_utf8_lossy(&v).into_owned()))
            .collect()
    }

    /// A broker stopped between logging PrepareCommit and writing the markers completes the
    /// transaction when it opens again: markers in the data partition and in the group's
    /// offsets partition (the transactional offset commit becomes visible), then
    /// CompleteCommit.
    #[test]
    fn a_prepared_commit_is_completed_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        b.create_topic(NewTopic::new("t", 1)).unwrap();
        b.create_topic(NewTopic::new("in", 1)).unwrap();
        let txn = b.transaction_coordinator();
        let p = txn.init_producer_id("tx", 60_000, None, now_ms()).unwrap();
        let group_tp = TopicPartition::new(OFFSETS_TOPIC, b.offsets_partition_for("g"));
        b.ensure_offsets_topic().unwrap();
        let tp = TopicPartition::new("t", 0);
        txn.add_partitions(
            "tx",
            p.producer_id,
            p.producer_epoch,
            &[tp.clone(), group_tp],
            now_ms(),
        )
        .unwrap();
        let mut batch = txn_batch(p.producer_id, p.producer_epoch, &["x", "y"]);
        b.append_batches("t", 0, &mut batch, AppendOrigin::Client)
            .unwrap();
        let in0 = TopicPartition::new("in", 0);
        b.commit_txn_offsets(
            "tx",
            "g",
            p.producer_id,
            p.producer_epoch,
            &CommitMember::simple(),
            &[(in0.clone(), OffsetAndMetadata::new(42))],
        )
        .unwrap();
        assert!(b.has_pending_txn_offset("g", &in0));
        assert!(committed_values(&b).is_empty());
        // What EndTxn(commit) logs first; the "crash" comes before any marker.
        let mut prepared = txn.describe("tx").unwrap();
        prepared.state = TxnState::PrepareCommit;
        b.append_txn_state(
            "tx",
            &TxnLogValue {
                producer_id: prepared.producer_id,
                previous_producer_id: -1,
                producer_epoch: prepared.producer_epoch,
                timeout_ms: prepared.timeout_ms,
                state: TxnState::PrepareCommit,
                partitions: prepared.partitions.clone(),
                last_update_ms: now_ms(),
                start_ms: prepared.start_ms,
            },
        )
        .unwrap();
        b.shutdown().unwrap();
        drop(b);

        // Pending offsets are reloaded, the prepared transaction completed at open.
        let b = open(dir.path());
        let d = b.transaction_coordinator().describe("tx").unwrap();
        assert_eq!(d.state, TxnState::CompleteCommit);
        assert!(d.partitions.is_empty());
        assert_eq!(committed_values(&b), ["x", "y"]);
        assert_eq!(b.committed_offset("g", &in0).unwrap().offset, 42);
        assert!(!b.has_pending_txn_offset("g", &in0));
        let producers = b.active_producers(&tp).unwrap();
        assert_eq!(producers.len(), 1);
        assert_eq!(producers[0].0, p.producer_id);
        assert_eq!(producers[0].1.current_txn_first_offset, None);
        b.shutdown().unwrap();
        drop(b);

        // And the committed offset survives another restart (the marker is in the log).
        let b = open(dir.path());
        assert_eq!(b.committed_offset("g", &in0).unwrap().offset, 42);
        assert_eq!(
            b.transaction_coordinator().describe("tx").unwrap().state,
            TxnState::CompleteCommit
        );
    }

    /// An open transaction's offset commit stays pending across a restart and is dropped by
    /// the abort.
    #[test]
    fn pending_offsets_survive_a_restart_and_an_abort_drops_them() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        b.create_topic(NewTopic::new("in", 1)).unwrap();
        let txn = b.transaction_coordinator();
        let p = txn.init_producer_id("tx", 60_000, None, now_ms()).unwrap();
        b.ensure_offsets_topic().unwrap();
        let group_tp = TopicPartition::new(OFFSETS_TOPIC, b.offsets_partition_for("g"));
        let in0 = TopicPartition::new("in", 0);
        // Without AddOffsetsToTxn the commit is refused (KIP-890 verification).
        let e = b
            .commit_txn_offsets(
                "tx",
                "g",
                p.producer_id,
                p.producer_epoch,
                &CommitMember::simple(),
                &[(in0.clone(), OffsetAndMetadata::new(7))],
            )
            .unwrap_err();
        assert_eq!(
            e.kafka_error(),
            kafka_protocol::ResponseError::TransactionAbortable
        );
        txn.add_partitions("tx", p.producer_id, p.producer_epoch, &[group_tp], now_ms())
            .unwrap();
        b.commit_txn_offsets(
            "tx",
            "g",
            p.producer_id,
            p.producer_epoch,
            &CommitMember::simple(),
            &[(in0.clone(), OffsetAndMetadata::new(7))],
        )
        .unwrap();
        b.shutdown().unwrap();
        drop(b);
        let b = open(dir.path());
        assert!(b.has_pending_txn_offset("g", &in0));
        assert_eq!(b.committed_offset("g", &in0), None);
        b.transaction_coordinator()
            .end_txn("tx", p.producer_id, p.producer_epoch, false, now_ms())
            .unwrap();
        assert!(!b.has_pending_txn_offset("g", &in0));
        assert_eq!(b.committed_offset("g", &in0), None);
    }
}
