//! State-machine tests of the coordinator against an in-memory log and marker writer.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use super::*;

#[derive(Default)]
struct MemLog {
    next_pid: AtomicI64,
    records: Mutex<Vec<(String, TxnLogValue)>>,
    fail: AtomicBool,
}

impl TxnLog for Arc<MemLog> {
    fn allocate_producer_id(&self) -> Result<i64> {
        Ok(self.next_pid.fetch_add(1, Ordering::SeqCst) + 1000)
    }
    fn append(&self, id: &str, value: &TxnLogValue) -> Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(BrokerError::Closed);
        }
        // Through the real codec, as the broker stores it.
        let key = record::encode_key(id).ok_or(BrokerError::Closed)?;
        let bytes = record::encode_value(value).ok_or(BrokerError::Closed)?;
        let id = record::decode_key(&key).ok_or(BrokerError::Closed)?;
        let value = record::decode_value(&bytes).ok_or(BrokerError::Closed)?;
        self.records.lock().push((id, value));
        Ok(())
    }
    fn coordinator_epoch(&self, _transactional_id: &str) -> i32 {
        0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Marker {
    tp: TopicPartition,
    producer_id: i64,
    epoch: i16,
    commit: bool,
}

#[derive(Default)]
struct MemMarkers {
    written: Mutex<Vec<Marker>>,
    fail: AtomicBool,
}

impl TxnMarkerWriter for Arc<MemMarkers> {
    fn write_txn_marker(
        &self,
        tp: &TopicPartition,
        producer_id: i64,
        producer_epoch: i16,
        _coordinator_epoch: i32,
        commit: bool,
    ) -> Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(BrokerError::Closed);
        }
        self.written.lock().push(Marker {
            tp: tp.clone(),
            producer_id,
            epoch: producer_epoch,
            commit,
        });
        Ok(())
    }
}

struct Fixture {
    log: Arc<MemLog>,
    markers: Arc<MemMarkers>,
    coord: TransactionCoordinator,
}

fn fixture() -> Fixture {
    let log = Arc::new(MemLog::default());
    let markers = Arc::new(MemMarkers::default());
    let coord = TransactionCoordinator::new(
        900_000,
        Box::new(Arc::clone(&log)),
        Box::new(Arc::clone(&markers)),
    );
    Fixture {
        log,
        markers,
        coord,
    }
}

fn tp(t: &str, p: i32) -> TopicPartition {
    TopicPartition::new(t, p)
}

fn last_state(f: &Fixture, id: &str) -> TxnState {
    f.log
        .records
        .lock()
        .iter()
        .rev()
        .find(|(i, _)| i == id)
        .map(|(_, v)| v.state)
        .unwrap()
}

#[test]
fn init_gives_a_new_id_then_bumps_the_epoch() {
    let f = fixture();
    let a = f.coord.init_producer_id("t", 60_000, None, 1).unwrap();
    assert_eq!(a.producer_epoch, 0);
    let b = f.coord.init_producer_id("t", 60_000, None, 2).unwrap();
    assert_eq!(b.producer_id, a.producer_id);
    assert_eq!(b.producer_epoch, 1);
    assert_eq!(last_state(&f, "t"), TxnState::Empty);
    // The old epoch is fenced.
    let e = f
        .coord
        .add_partitions("t", a.producer_id, 0, &[tp("x", 0)], 3)
        .unwrap_err();
    assert_eq!(e.kafka_error(), ResponseError::ProducerFenced);
}

#[test]
fn timeouts_are_validated() {
    let f = fixture();
    for bad in [0, -1, 900_001] {
        let e = f.coord.init_producer_id("t", bad, None, 1).unwrap_err();
        assert_eq!(e.kafka_error(), ResponseError::InvalidTransactionTimeout);
    }
    assert_eq!(
        f.coord
            .init_producer_id("", 1000, None, 1)
            .unwrap_err()
            .kafka_error(),
        ResponseError::InvalidRequest
    );
}

#[test]
fn commit_logs_prepare_writes_markers_then_completes() {
    let f = fixture();
    let p = f.coord.init_producer_id("t", 60_000, None, 1).unwrap();
    let parts = [tp("a", 0), tp("a", 1), tp("b", 0)];
    f.coord
        .add_partitions("t", p.producer_id, p.producer_epoch, &parts[..2], 10)
        .unwrap();
    f.coord
        .add_partitions("t", p.producer_id, p.producer_epoch, &parts[2..], 11)
        .unwrap();
    let d = f.coord.describe("t").unwrap();
    assert_eq!(d.state, TxnState::Ongoing);
    assert_eq!(d.start_ms, 10);
    assert_eq!(d.partitions.len(), 3);
    f.coord
        .verify_partition("t", p.producer_id, p.producer_epoch, &parts[0])
        .unwrap();
    assert_eq!(
        f.coord
            .verify_partition("t", p.producer_id, p.producer_epoch, &tp("c", 0))
            .unwrap_err()
            .kafka_error(),
        ResponseError::TransactionAbortable
    );
    f.coord
        .end_txn("t", p.producer_id, p.producer_epoch, true, 20)
        .unwrap();
    let states: Vec<TxnState> = f.log.records.lock().iter().map(|(_, v)| v.state).collect();
    assert_eq!(
        states,
        [
            TxnState::Empty,
            TxnState::Ongoing,
            TxnState::Ongoing,
            TxnState::PrepareCommit,
            TxnState::CompleteCommit
        ]
    );
    let prepare = f.log.records.lock()[3].1.clone();
    assert_eq!(prepare.partitions.len(), 3);
    let markers = f.markers.written.lock().clone();
    assert_eq!(markers.len(), 3);
    assert!(markers
        .iter()
        .all(|m| m.commit && m.producer_id == p.producer_id && m.epoch == p.producer_epoch));
    // A retried commit succeeds; an abort now is an invalid transition.
    f.coord
        .end_txn("t", p.producer_id, p.producer_epoch, true, 21)
        .unwrap();
    assert_eq!(
        f.coord
            .end_txn("t", p.producer_id, p.producer_epoch, false, 22)
            .unwrap_err()
            .kafka_error(),
        ResponseError::InvalidTxnState
    );
    // The next transaction starts afresh.
    f.coord
        .add_partitions("t", p.producer_id, p.producer_epoch, &[tp("z", 0)], 30)
        .unwrap();
    let d = f.coord.describe("t").unwrap();
    assert_eq!(d.partitions.into_iter().collect::<Vec<_>>(), [tp("z", 0)]);
    assert_eq!(d.start_ms, 30);
}

#[test]
fn abort_writes_abort_markers_and_end_without_transaction_is_invalid() {
    let f = fixture();
    let p = f.coord.init_producer_id("t", 60_000, None, 1).unwrap();
    assert_eq!(
        f.coord
            .end_txn("t", p.producer_id, p.producer_epoch, true, 2)
            .unwrap_err()
            .kafka_error(),
        ResponseError::InvalidTxnState
    );
    f.coord
        .add_partitions("t", p.producer_id, p.producer_epoch, &[tp("a", 0)], 3)
        .unwrap();
    f.coord
        .end_txn("t", p.producer_id, p.producer_epoch, false, 4)
        .unwrap();
    assert_eq!(last_state(&f, "t"), TxnState::CompleteAbort);
    assert!(!f.markers.written.lock()[0].commit);
    assert_eq!(
        f.coord
            .end_txn("t", p.producer_id + 1, p.producer_epoch, false, 4)
            .unwrap_err()
            .kafka_error(),
        ResponseError::InvalidProducerIdMapping
    );
}

#[test]
fn a_new_producer_aborts_the_ongoing_transaction_and_fences_the_old_one() {
    let f = fixture();
    let old = f.coord.init_producer_id("t", 60_000, None, 1).unwrap();
    f.coord
        .add_partitions("t", old.producer_id, old.producer_epoch, &[tp("a", 0)], 2)
        .unwrap();
    // The new producer first gets CONCURRENT_TRANSACTIONS while the old transaction aborts.
    let e = f.coord.init_producer_id("t", 60_000, None, 3).unwrap_err();
    assert_eq!(e.kafka_error(), ResponseError::ConcurrentTransactions);
    let markers = f.markers.written.lock().clone();
    assert_eq!(
        markers,
        [Marker {
            tp: tp("a", 0),
            producer_id: old.producer_id,
            epoch: 1,
            commit: false
        }]
    );
    assert_eq!(last_state(&f, "t"), TxnState::CompleteAbort);
    let new = f.coord.init_producer_id("t", 60_000, None, 4).unwrap();
    assert_eq!(new.producer_epoch, 2);
    for e in [
        f.coord
            .end_txn("t", old.producer_id, old.producer_epoch, true, 5)
            .unwrap_err(),
        f.coord
            .add_partitions("t", old.producer_id, old.producer_epoch, &[tp("a", 0)], 5)
            .unwrap_err(),
    ] {
        assert_eq!(e.kafka_error(), ResponseError::ProducerFenced);
    }
}

#[test]
fn kip_360_bump_with_the_current_epoch_and_its_retry() {
    let f = fixture();
    let p = f.coord.init_producer_id("t", 60_000, None, 1).unwrap();
    let bumped = f.coord.init_producer_id("t", 60_000, Some(p), 2).unwrap();
    assert_eq!(bumped.producer_epoch, p.producer_epoch + 1);
    // The same request again (its answer was lost): the same epoch.
    let again = f.coord.init_producer_id("t", 60_000, Some(p), 3).unwrap();
    assert_eq!(again, bumped);
    // An epoch older than the previous one is fenced.
    let stale = ProducerIdAndEpoch {
        producer_id: p.producer_id,
        producer_epoch: -5,
    };
    assert_eq!(
        f.coord
            .init_producer_id("t", 60_000, Some(stale), 4)
            .unwrap_err()
            .kafka_error(),
        ResponseError::ProducerFenced
    );
    // Another producer id is fenced.
    let other = ProducerIdAndEpoch {
        producer_id: p.producer_id + 77,
        producer_epoch: 0,
    };
    assert_eq!(
        f.coord
            .init_producer_id("t", 60_000, Some(other), 5)
            .unwrap_err()
            .kafka_error(),
        ResponseError::ProducerFenced
    );
}

#[test]
fn an_exhausted_epoch_rotates_the_producer_id() {
    let f = fixture();
    let p = f.coord.init_producer_id("t", 60_000, None, 1).unwrap();
    f.coord.entry("t").unwrap().lock().producer_epoch = i16::MAX - 1;
    let n = f.coord.init_producer_id("t", 60_000, None, 2).unwrap();
    assert_ne!(n.producer_id, p.producer_id);
    assert_eq!(n.producer_epoch, 0);
    assert_eq!(
        f.coord.entry("t").unwrap().lock().previous_producer_id,
        p.producer_id
    );
}

#[test]
fn timed_out_transactions_are_aborted_by_the_tick() {
    let f = fixture();
    let p = f.coord.init_producer_id("t", 1000, None, 0).unwrap();
    f.coord
        .add_partitions("t", p.producer_id, p.producer_epoch, &[tp("a", 0)], 100)
        .unwrap();
    assert_eq!(f.coord.tick(1100), 0, "not yet past the timeout");
    assert_eq!(f.coord.tick(1101), 1);
    assert_eq!(last_state(&f, "t"), TxnState::CompleteAbort);
    let m = f.markers.written.lock()[0].clone();
    assert!(!m.commit);
    assert_eq!(m.epoch, p.producer_epoch + 1);
    // The producer of the timed-out transaction is fenced.
    assert_eq!(
        f.coord
            .end_txn("t", p.producer_id, p.producer_epoch, true, 1200)
            .unwrap_err()
            .kafka_error(),
        ResponseError::ProducerFenced
    );
}

#[test]
fn failed_markers_leave_the_transaction_prepared_until_a_tick_completes_it() {
    let f = fixture();
    let p = f.coord.init_producer_id("t", 60_000, None, 0).unwrap();
    f.coord
        .add_partitions(
            "t",
            p.producer_id,
            p.producer_epoch,
            &[tp("a", 0), tp("b", 0)],
            1,
        )
        .unwrap();
    f.markers.fail.store(true, Ordering::SeqCst);
    // The Prepare record is durable: the commit is decided.
    f.coord
        .end_txn("t", p.producer_id, p.producer_epoch, true, 2)
        .unwrap();
    assert_eq!(
        f.coord.describe("t").unwrap().state,
        TxnState::PrepareCommit
    );
    assert_eq!(
        f.coord
            .add_partitions("t", p.producer_id, p.producer_epoch, &[tp("a", 0)], 3)
            .unwrap_err()
            .kafka_error(),
        ResponseError::ConcurrentTransactions
    );
    assert_eq!(
        f.coord
            .init_producer_id("t", 60_000, None, 3)
            .unwrap_err()
            .kafka_error(),
        ResponseError::ConcurrentTransactions
    );
    f.markers.fail.store(false, Ordering::SeqCst);
    f.coord.tick(4);
    assert_eq!(
        f.coord.describe("t").unwrap().state,
        TxnState::CompleteCommit
    );
    assert_eq!(f.markers.written.lock().len(), 2);
}

#[test]
fn a_failed_log_write_changes_nothing() {
    let f = fixture();
    let p = f.coord.init_producer_id("t", 60_000, None, 0).unwrap();
    f.log.fail.store(true, Ordering::SeqCst);
    assert!(f
        .coord
        .add_partitions("t", p.producer_id, p.producer_epoch, &[tp("a", 0)], 1)
        .is_err());
    assert_eq!(f.coord.describe("t").unwrap().state, TxnState::Empty);
}

#[test]
fn reloaded_prepared_transactions_are_completed() {
    let f = fixture();
    let p = f.coord.init_producer_id("t", 60_000, None, 0).unwrap();
    f.coord
        .add_partitions(
            "t",
            p.producer_id,
            p.producer_epoch,
            &[tp("a", 0), tp("a", 1)],
            1,
        )
        .unwrap();
    f.markers.fail.store(true, Ordering::SeqCst);
    f.coord
        .end_txn("t", p.producer_id, p.producer_epoch, false, 2)
        .unwrap();
    f.coord.init_producer_id("u", 60_000, None, 0).unwrap();
    // A "restart": a new coordinator reading the log back (last record per id).
    let records = f.log.records.lock().clone();
    let g = fixture();
    g.coord
        .load(records.into_iter().map(|(id, v)| (id, Some(v))));
    assert_eq!(g.coord.describe("t").unwrap().state, TxnState::PrepareAbort);
    assert_eq!(g.coord.describe("u").unwrap().state, TxnState::Empty);
    g.coord.complete_prepared(5);
    assert_eq!(
        g.coord.describe("t").unwrap().state,
        TxnState::CompleteAbort
    );
    let markers = g.markers.written.lock().clone();
    assert_eq!(markers.len(), 2);
    assert!(markers
        .iter()
        .all(|m| !m.commit && m.epoch == p.producer_epoch));
    // The restored producer continues with its epoch.
    g.coord
        .add_partitions("t", p.producer_id, p.producer_epoch, &[tp("a", 0)], 6)
        .unwrap();
}

#[test]
fn list_filters_by_state_and_producer_id() {
    let f = fixture();
    let a = f.coord.init_producer_id("a", 60_000, None, 0).unwrap();
    let b = f.coord.init_producer_id("b", 60_000, None, 0).unwrap();
    f.coord
        .add_partitions("b", b.producer_id, b.producer_epoch, &[tp("x", 0)], 10)
        .unwrap();
    assert_eq!(f.coord.list(&[], &[], -1, 20).len(), 2);
    let ongoing = f.coord.list(&[], &[TxnState::Ongoing], -1, 20);
    assert_eq!(ongoing.len(), 1);
    assert_eq!(ongoing[0].transactional_id, "b");
    let by_pid = f.coord.list(&[a.producer_id], &[], -1, 20);
    assert_eq!(by_pid[0].transactional_id, "a");
    assert!(f.coord.list(&[], &[TxnState::Ongoing], 10, 20).is_empty());
    assert_eq!(f.coord.list(&[], &[TxnState::Ongoing], 9, 20).len(), 1);
    assert_eq!(
        f.coord.describe("nope").unwrap_err().kafka_error(),
        ResponseError::TransactionalIdNotFound
    );
}

/// The load of another `__transaction_state` partition runs under the broker's coordinator
/// ownership lock, which a thread completing a transaction takes while holding that
/// transaction's lock (for the coordinator epoch of its markers): loading must never wait for
/// a transaction's lock, or the two threads deadlock (seen in the fault soak).
#[test]
fn loading_a_partition_never_waits_for_a_transaction_being_completed() {
    let f = fixture();
    f.coord.init_producer_id("busy", 60_000, None, 1).unwrap();
    let busy = f.coord.entry("busy").expect("loaded");
    let mut prepared = TxnMetadata::new(77, 60_000, 1);
    prepared.state = TxnState::PrepareCommit;
    let held = busy.lock();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            f.coord.load_more(vec![
                ("moved-in".to_string(), Some(prepared.to_log())),
                ("gone".to_string(), None),
            ]);
            let _ = done_tx.send(());
        });
        let finished = done_rx.recv_timeout(std::time::Duration::from_secs(10));
        drop(held);
        assert!(
            finished.is_ok(),
            "load_more waited for a transaction's lock held by another thread"
        );
    });
    assert!(f.coord.entry("moved-in").is_some());
    assert!(f.coord.entry("busy").is_some());
}
