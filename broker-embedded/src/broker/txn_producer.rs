//! [`TransactionalProducer`]: the in-process counterpart of a Kafka producer with a
//! `transactional.id` — what the streams runtime's embedded backend uses under
//! `exactly_once_v2`. It drives the same transaction coordinator and partition logs as
//! the wire protocol's InitProducerId, AddPartitionsToTxn, Produce, AddOffsetsToTxn,
//! TxnOffsetCommit and EndTxn, with the same checks (epoch fencing, KIP-890 verification,
//! sequence numbers, KIP-447 generation checks of the offsets).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::types::ProduceRecord;
use super::{now_ms, Broker};
use crate::error::BrokerError;
use crate::group::{CommitMember, GroupError};
use crate::log::{AppendInfo, AppendOrigin};
use crate::offsets::{OffsetAndMetadata, TopicPartition, OFFSETS_TOPIC};
use crate::record::{encode_batch, BatchSpec, Record};
use crate::txn::{ProducerIdAndEpoch, TxnError};
use crate::TxnOffsetCommitError;

/// Why a [`TransactionalProducer`] call failed.
#[derive(Debug, thiserror::Error)]
pub enum TxnProducerError {
    /// Another producer with the same transactional id was initialized (or the coordinator
    /// aborted this producer's transaction on timeout and bumped its epoch): this producer
    /// cannot be used again (Kafka's `ProducerFencedException`).
    #[error("producer of transactional id `{transactional_id}` fenced: {source}")]
    Fenced {
        /// The transactional id.
        transactional_id: String,
        /// What the coordinator answered.
        source: TxnError,
    },
    /// The coordinator refused the call (state, timeout, unknown producer).
    #[error("transaction of `{transactional_id}` refused: {source}")]
    Transaction {
        /// The transactional id.
        transactional_id: String,
        /// What the coordinator answered.
        source: TxnError,
    },
    /// The group refused the transactional offset commit (a stale generation: the member's
    /// partitions moved, KIP-447), or storing it failed.
    #[error("transactional offset commit of `{transactional_id}` refused: {source}")]
    OffsetCommit {
        /// The transactional id.
        transactional_id: String,
        /// What the group or the coordinator answered.
        source: Box<TxnOffsetCommitError>,
    },
    /// Appending to a partition failed.
    #[error("producing to {partition} in the transaction of `{transactional_id}`: {source}")]
    Produce {
        /// The transactional id.
        transactional_id: String,
        /// The partition.
        partition: TopicPartition,
        /// What the log answered.
        source: Box<BrokerError>,
    },
    /// A call out of order (sending outside a transaction, beginning twice).
    #[error("transactional producer `{transactional_id}`: {detail}")]
    IllegalState {
        /// The transactional id.
        transactional_id: String,
        /// What was wrong.
        detail: &'static str,
    },
}

impl TxnProducerError {
    /// True when the producer was fenced and must be dropped (a new one may be initialized
    /// with the same transactional id).
    pub fn is_fenced(&self) -> bool {
        match self {
            Self::Fenced { .. } => true,
            Self::OffsetCommit { source, .. } => matches!(
                **source,
                TxnOffsetCommitError::Transaction(TxnError::ProducerFenced { .. })
            ),
            Self::Produce { source, .. } => {
                matches!(**source, BrokerError::InvalidProducerEpoch { .. })
            }
            _ => false,
        }
    }

    /// True when the group refused the offsets because the member is not in the group's
    /// current generation (its partitions moved: Kafka Streams' `TaskMigratedException`).
    pub fn is_group_membership(&self) -> bool {
        match self {
            Self::OffsetCommit { source, .. } => match &**source {
                TxnOffsetCommitError::Group(g) => !matches!(g, GroupError::Storage(_)),
                TxnOffsetCommitError::Transaction(_) => false,
            },
            _ => false,
        }
    }
}

/// Result of [`TransactionalProducer`] calls.
pub type TxnProducerResult<T> = std::result::Result<T, TxnProducerError>;

/// An in-process transactional producer on a [`Broker`] (see the module doc). Created by
/// [`TransactionalProducer::init`] (Kafka's `initTransactions`); then
/// [`begin`](TransactionalProducer::begin), [`send`](TransactionalProducer::send) and
/// [`send_offsets`](TransactionalProducer::send_offsets) any number of times, and
/// [`commit`](TransactionalProducer::commit) or [`abort`](TransactionalProducer::abort).
///
/// ```
/// # use broker_embedded::{Broker, BrokerConfig, NewTopic, ProduceRecord, TransactionalProducer};
/// let dir = tempfile::tempdir().unwrap();
/// let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
/// broker.create_topic(NewTopic::new("out", 1)).unwrap();
/// let mut p = TransactionalProducer::init(&broker, "app-1", 10_000).unwrap();
/// p.begin().unwrap();
/// let tp = broker_embedded::TopicPartition::new("out", 0);
/// p.send(&tp, &[ProduceRecord::new("k", "v")]).unwrap();
/// p.commit().unwrap();
/// ```
#[derive(Debug)]
pub struct TransactionalProducer {
    broker: Broker,
    transactional_id: String,
    id: ProducerIdAndEpoch,
    /// Next sequence number per partition (reset when the epoch changes).
    sequences: HashMap<TopicPartition, i32>,
    /// Partitions added to the open transaction.
    added: BTreeSet<TopicPartition>,
    in_transaction: bool,
}

impl TransactionalProducer {
    /// Initializes transactions for `transactional_id` with `transaction_timeout_ms`: a new
    /// producer id or a bumped epoch, which fences any previous producer of the id; an open
    /// transaction of that producer is aborted first (retried here while the coordinator
    /// answers CONCURRENT_TRANSACTIONS, for up to the transaction timeout).
    pub fn init(
        broker: &Broker,
        transactional_id: &str,
        transaction_timeout_ms: i32,
    ) -> TxnProducerResult<Self> {
        let deadline = Instant::now()
            + Duration::from_millis(u64::try_from(transaction_timeout_ms).unwrap_or(0));
        let coordinator = broker.transaction_coordinator();
        let id = loop {
            match coordinator.init_producer_id(
                transactional_id,
                transaction_timeout_ms,
                None,
                now_ms(),
            ) {
                Ok(id) => break id,
                Err(TxnError::ConcurrentTransactions) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(source) => {
                    return Err(TxnProducerError::Transaction {
                        transactional_id: transactional_id.to_string(),
                        source,
                    })
                }
            }
        };
        tracing::debug!(
            transactional_id,
            producer_id = id.producer_id,
            epoch = id.producer_epoch,
            "transactional producer initialized"
        );
        Ok(TransactionalProducer {
            broker: broker.clone(),
            transactional_id: transactional_id.to_string(),
            id,
            sequences: HashMap::new(),
            added: BTreeSet::new(),
            in_transaction: false,
        })
    }

    /// The transactional id.
    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// The producer id and epoch.
    pub fn producer_id_and_epoch(&self) -> ProducerIdAndEpoch {
        self.id
    }

    /// True between [`begin`](Self::begin) and the end of the transaction.
    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// Starts a transaction (local: the coordinator learns of it with the first partition).
    pub fn begin(&mut self) -> TxnProducerResult<()> {
        if self.in_transaction {
            return Err(self.illegal("a transaction is already open"));
        }
        self.in_transaction = true;
        self.added.clear();
        Ok(())
    }

    fn illegal(&self, detail: &'static str) -> TxnProducerError {
        TxnProducerError::IllegalState {
            transactional_id: self.transactional_id.clone(),
            detail,
        }
    }

    fn txn_error(&self, source: TxnError) -> TxnProducerError {
        if matches!(source, TxnError::ProducerFenced { .. }) {
            TxnProducerError::Fenced {
                transactional_id: self.transactional_id.clone(),
                source,
            }
        } else {
            TxnProducerError::Transaction {
                transactional_id: self.transactional_id.clone(),
                source,
            }
        }
    }

    fn add_partition(&mut self, tp: &TopicPartition) -> TxnProducerResult<()> {
        if !self.in_transaction {
            return Err(self.illegal("send outside a transaction"));
        }
        if self.added.contains(tp) {
            return Ok(());
        }
        self.broker
            .transaction_coordinator()
            .add_partitions(
                &self.transactional_id,
                self.id.producer_id,
                self.id.producer_epoch,
                std::slice::from_ref(tp),
                now_ms(),
            )
            .map_err(|e| self.txn_error(e))?;
        self.added.insert(tp.clone());
        Ok(())
    }

    /// Appends `records` to `tp` as one transactional batch (the partition is added to the
    /// transaction first). Returns where they were written.
    pub fn send(
        &mut self,
        tp: &TopicPartition,
        records: &[ProduceRecord],
    ) -> TxnProducerResult<AppendInfo> {
        if records.is_empty() {
            return Err(self.illegal("a batch needs at least one record"));
        }
        self.add_partition(tp)?;
        let base_sequence = self.sequences.get(tp).copied().unwrap_or(0);
        let now = now_ms();
        let recs: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, r)| Record {
                offset: i as i64,
                timestamp: r.timestamp.unwrap_or(now),
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r.headers.clone(),
            })
            .collect();
        let spec = BatchSpec {
            transactional: true,
            producer_id: self.id.producer_id,
            producer_epoch: self.id.producer_epoch,
            base_sequence,
            ..BatchSpec::default()
        };
        let produce_err = |source| TxnProducerError::Produce {
            transactional_id: self.transactional_id.clone(),
            partition: tp.clone(),
            source: Box::new(source),
        };
        let mut batch =
            encode_batch(&spec, &recs).map_err(|e| produce_err(BrokerError::InvalidBatch(e)))?;
        // KIP-890 part 1, as the Produce handler checks it.
        self.broker
            .transaction_coordinator()
            .verify_partition(
                &self.transactional_id,
                self.id.producer_id,
                self.id.producer_epoch,
                tp,
            )
            .map_err(|e| self.txn_error(e))?;
        let info = self
            .broker
            .append_batches(&tp.topic, tp.partition, &mut batch, AppendOrigin::Client)
            .map_err(produce_err)?;
        let count = i32::try_from(records.len()).unwrap_or(i32::MAX);
        // Sequences wrap at i32::MAX, as Kafka's do.
        let next = if base_sequence > i32::MAX - count {
            count - (i32::MAX - base_sequence) - 1
        } else {
            base_sequence + count
        };
        self.sequences.insert(tp.clone(), next);
        Ok(info)
    }

    /// Commits `offsets` of group `group` inside the transaction (AddOffsetsToTxn, then
    /// TxnOffsetCommit as `member`): they become the group's committed offsets when the
    /// transaction commits. A member of an older generation is refused (KIP-447).
    pub fn send_offsets(
        &mut self,
        group: &str,
        member: &CommitMember,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> TxnProducerResult<()> {
        if !self.in_transaction {
            return Err(self.illegal("offsets sent outside a transaction"));
        }
        self.broker
            .ensure_offsets_topic()
            .map_err(|source| TxnProducerError::Produce {
                transactional_id: self.transactional_id.clone(),
                partition: TopicPartition::new(OFFSETS_TOPIC, 0),
                source: Box::new(source),
            })?;
        let tp = TopicPartition::new(OFFSETS_TOPIC, self.broker.offsets_partition_for(group));
        self.add_partition(&tp)?;
        self.broker
            .commit_txn_offsets(
                &self.transactional_id,
                group,
                self.id.producer_id,
                self.id.producer_epoch,
                member,
                offsets,
            )
            .map_err(|source| match source {
                TxnOffsetCommitError::Transaction(e) => self.txn_error(e),
                source => TxnProducerError::OffsetCommit {
                    transactional_id: self.transactional_id.clone(),
                    source: Box::new(source),
                },
            })
    }

    /// Commits the open transaction (EndTxn): markers are written to every partition of it.
    /// A transaction that touched no partition ends locally.
    pub fn commit(&mut self) -> TxnProducerResult<()> {
        self.end(true)
    }

    /// Aborts the open transaction (EndTxn with abort).
    pub fn abort(&mut self) -> TxnProducerResult<()> {
        self.end(false)
    }

    fn end(&mut self, commit: bool) -> TxnProducerResult<()> {
        if !self.in_transaction {
            return Err(self.illegal("no transaction to end"));
        }
        if !self.added.is_empty() {
            self.broker
                .transaction_coordinator()
                .end_txn(
                    &self.transactional_id,
                    self.id.producer_id,
                    self.id.producer_epoch,
                    commit,
                    now_ms(),
                )
                .map_err(|e| self.txn_error(e))?;
        }
        self.in_transaction = false;
        self.added.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{BrokerConfig, NewTopic};

    fn broker() -> (tempfile::TempDir, Broker) {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        broker.create_topic(NewTopic::new("t", 2)).unwrap();
        (dir, broker)
    }

    fn record(v: &str) -> ProduceRecord {
        ProduceRecord::new(v.to_string(), v.to_string())
    }

    #[test]
    fn a_second_init_fences_the_first_producer_and_aborts_its_transaction() {
        let (_dir, broker) = broker();
        let tp = TopicPartition::new("t", 0);
        let mut first = TransactionalProducer::init(&broker, "id", 10_000).unwrap();
        first.begin().unwrap();
        first.send(&tp, &[record("a"), record("b")]).unwrap();
        let mut second = TransactionalProducer::init(&broker, "id", 10_000).unwrap();
        assert!(
            second.producer_id_and_epoch().producer_epoch
                > first.producer_id_and_epoch().producer_epoch
        );
        let e = first.send(&tp, &[record("c")]).unwrap_err();
        assert!(e.is_fenced(), "{e}");
        let e = first.commit().unwrap_err();
        assert!(e.is_fenced(), "{e}");
        // The first producer's records were aborted; the second's commit is what is read.
        second.begin().unwrap();
        second.send(&tp, &[record("d")]).unwrap();
        second.commit().unwrap();
        let read = broker
            .read_records("t", 0, 0, 1 << 20, crate::IsolationLevel::ReadCommitted)
            .unwrap();
        let values: Vec<_> = read
            .records
            .iter()
            .map(|r| r.value.clone().unwrap())
            .collect();
        assert_eq!(values, vec![bytes::Bytes::from("d")]);
    }

    #[test]
    fn calls_out_of_order_are_typed_errors() {
        let (_dir, broker) = broker();
        let tp = TopicPartition::new("t", 1);
        let mut p = TransactionalProducer::init(&broker, "order", 10_000).unwrap();
        assert!(matches!(
            p.send(&tp, &[record("a")]),
            Err(TxnProducerError::IllegalState { .. })
        ));
        assert!(matches!(
            p.commit(),
            Err(TxnProducerError::IllegalState { .. })
        ));
        p.begin().unwrap();
        assert!(matches!(
            p.begin(),
            Err(TxnProducerError::IllegalState { .. })
        ));
        assert!(matches!(
            p.send(&tp, &[]),
            Err(TxnProducerError::IllegalState { .. })
        ));
        // A transaction that touched nothing ends locally.
        p.abort().unwrap();
        assert!(!p.in_transaction());
    }

    #[test]
    fn offsets_of_a_member_the_group_does_not_know_are_a_membership_error() {
        let (_dir, broker) = broker();
        let mut p = TransactionalProducer::init(&broker, "offsets", 10_000).unwrap();
        p.begin().unwrap();
        let stale = CommitMember {
            generation_id: 7,
            member_id: "gone".into(),
            group_instance_id: None,
        };
        let offsets = [(TopicPartition::new("t", 0), OffsetAndMetadata::new(3))];
        let e = p.send_offsets("group", &stale, &offsets).unwrap_err();
        assert!(e.is_group_membership(), "{e}");
        assert!(!e.is_fenced());
        p.abort().unwrap();
        assert!(broker
            .committed_offset("group", &TopicPartition::new("t", 0))
            .is_none());
    }
}
