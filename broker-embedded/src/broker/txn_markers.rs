//! Transaction markers on the [`Broker`]: the call the transaction coordinator makes to end a
//! transaction on one partition, and what a partition leader does with Kafka's
//! `WriteTxnMarkers`. In a cluster the coordinator goes through a marker router (the cluster
//! layer's [`crate::TxnMarkerWriter`]) that sends `WriteTxnMarkers` to other leaders.

use super::{now_ms, Broker};
use crate::error::{BrokerError, Result};
use crate::offsets::{TopicPartition, OFFSETS_TOPIC};

impl Broker {
    /// Writes a COMMIT (`commit = true`) or ABORT marker for `producer_id` to `tp`, a
    /// partition this broker leads (what a leader does for each partition of a
    /// `WriteTxnMarkers` request): a control batch (control and transactional attributes, one
    /// record whose key is `version 0 | type` and value `version 0 | coordinator_epoch`) that
    /// completes the producer's open transaction on the partition, records an aborted one in
    /// the segment's `.txnindex`, and advances the partition's last stable offset. A marker in
    /// `__consumer_offsets` also completes the producer's transactional offset commits there.
    /// In a cluster the marker is appended as leader and the call returns once the in-sync
    /// replicas have it (as Kafka appends markers with acks=all).
    ///
    /// Errors: UNKNOWN_TOPIC_OR_PARTITION for a missing partition, NOT_LEADER_OR_FOLLOWER
    /// (as a [`BrokerError::CoordinatorWrite`]) where this broker does not lead `tp`,
    /// INVALID_PRODUCER_EPOCH when `producer_epoch` is older than the partition has seen for
    /// the producer, TRANSACTION_COORDINATOR_FENCED when `coordinator_epoch` is older than the
    /// last marker's. A marker for a producer without an open transaction on the partition is
    /// still written (as Kafka does) and changes nothing else.
    pub fn write_txn_marker_as_leader(
        &self,
        tp: &TopicPartition,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    ) -> Result<()> {
        self.check_open()?;
        let log = self.log(&tp.topic, tp.partition)?;
        match self.coordinator_replication() {
            None => {
                log.append_txn_marker(
                    producer_id,
                    producer_epoch,
                    coordinator_epoch,
                    commit,
                    now_ms(),
                    None,
                )?;
            }
            Some(replication) => {
                let min_isr = i32::try_from(log.config().min_insync_replicas).unwrap_or(1);
                let mut log_error = None;
                let appended = replication.replicas.append_with(tp, -1, min_isr, |epoch| {
                    log.append_txn_marker(
                        producer_id,
                        producer_epoch,
                        coordinator_epoch,
                        commit,
                        now_ms(),
                        Some(epoch),
                    )
                    .map_err(|e| {
                        let code = e.kafka_error().code();
                        log_error = Some(e);
                        code
                    })
                });
                let (epoch, info) = match appended {
                    Ok(x) => x,
                    Err(code) => {
                        return Err(log_error.unwrap_or(BrokerError::CoordinatorWrite { code }))
                    }
                };
                self.wait_for_replication(replication, tp, epoch, info.last_offset + 1, min_isr)?;
            }
        }
        self.inner.any_append.notify_waiters();
        if tp.topic == OFFSETS_TOPIC {
            self.complete_txn_offsets(tp.partition, producer_id, commit);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::error::BrokerError;
    use crate::log::{AppendOrigin, IsolationLevel};
    use crate::record::{decode_records, encode_batch, BatchIter, BatchSpec, Record};
    use crate::{BrokerConfig, NewTopic};
    use bytes::Bytes;

    fn txn_batch(pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
        let spec = BatchSpec {
            transactional: true,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            ..BatchSpec::default()
        };
        let rec = Record {
            offset: 0,
            // Recent, so that the markers (stamped now) do not roll a segment by time.
            timestamp: now_ms(),
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Vec::new(),
        };
        encode_batch(&spec, &[rec]).unwrap()
    }

    #[test]
    fn markers_complete_transactions_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = BrokerConfig::new(dir.path());
        c.cleaner_interval = None;
        let b = Broker::open(c).unwrap();
        b.create_topic(NewTopic::new("t", 1)).unwrap();
        let tp = TopicPartition::new("t", 0);

        let missing = TopicPartition::new("t", 3);
        let err = b
            .write_txn_marker_as_leader(&missing, 7, 0, 0, true)
            .unwrap_err();
        assert!(matches!(err, BrokerError::UnknownTopicOrPartition { .. }));

        b.append_batches("t", 0, &mut txn_batch(7, 2, 0), AppendOrigin::Client)
            .unwrap();
        assert_eq!(b.partition_offsets("t", 0).unwrap().last_stable_offset, 0);
        // An older producer epoch is fenced; nothing is written.
        let err = b
            .write_txn_marker_as_leader(&tp, 7, 1, 0, true)
            .unwrap_err();
        assert!(
            matches!(err, BrokerError::InvalidProducerEpoch { .. }),
            "{err}"
        );
        assert_eq!(b.partition_offsets("t", 0).unwrap().log_end_offset, 1);

        b.write_txn_marker_as_leader(&tp, 7, 2, 4, false).unwrap();
        let o = b.partition_offsets("t", 0).unwrap();
        assert_eq!((o.log_end_offset, o.last_stable_offset), (2, 2));
        // An older coordinator epoch is fenced.
        let err = b
            .write_txn_marker_as_leader(&tp, 7, 2, 3, true)
            .unwrap_err();
        assert!(
            matches!(err, BrokerError::TransactionCoordinatorFenced { .. }),
            "{err}"
        );
        // A marker with no open transaction is written and changes nothing else.
        b.write_txn_marker_as_leader(&tp, 7, 2, 4, true).unwrap();
        let d = b
            .read_partition("t", 0, 0, 1 << 20, IsolationLevel::ReadCommitted)
            .unwrap();
        assert_eq!(d.last_stable_offset, 3);
        assert_eq!(d.aborted_transactions.len(), 1);
        assert_eq!(d.aborted_transactions[0].first_offset, 0);
        assert_eq!(d.aborted_transactions[0].last_offset, 1);

        // The marker batches, in Kafka's layout.
        let batches: Vec<_> = BatchIter::new(&d.records).map(|r| r.unwrap()).collect();
        assert_eq!(batches.len(), 3);
        for (batch, commit) in [(&batches[1], false), (&batches[2], true)] {
            let h = &batch.header;
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (7, 2, -1)
            );
            let recs = decode_records(batch.bytes).unwrap();
            assert_eq!(recs.len(), 1);
            assert_eq!(
                recs[0].key.as_deref(),
                Some(&[0, 0, 0, u8::from(commit)][..])
            );
            assert_eq!(recs[0].value.as_deref(), Some(&[0, 0, 0, 0, 0, 4][..]));
        }
        b.shutdown().unwrap();
    }
}
