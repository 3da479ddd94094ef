//! Background work of the [`Broker`]: the flusher thread (time-based fsyncs and the
//! `recovery-point-offset-checkpoint` file), the cleaner thread (retention and
//! compaction), the group-coordinator thread (session and rebalance timeouts) and the
//! transaction thread (timed-out transactions, marker retries), plus the same operations on demand (cleaner pass, flush, segment roll).

use std::collections::HashMap;
use std::path::Path;

use durable_fs::Storage;
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tracing::{debug, error};

use super::{now_ms, Broker, Inner, RECOVERY_CHECKPOINT_FILE, REPLICATION_CHECKPOINT_FILE};
use crate::error::{BrokerError, Result};
use crate::fsutil::write_atomic;
use crate::group::GroupCoordinator;
use crate::log::{CleanerStats, PartitionLog};

pub(super) struct Stop {
    pub(super) stopped: Mutex<bool>,
    pub(super) cv: Condvar,
}

impl Stop {
    /// Sleeps up to `d`; returns true if shutdown was requested.
    fn wait(&self, d: Duration) -> bool {
        let mut stopped = self.stopped.lock();
        if !*stopped {
            self.cv.wait_for(&mut stopped, d);
        }
        *stopped
    }
}

/// Kafka's `OffsetCheckpointFile` text: version `0`, the entry count, then one
/// `<topic> <partition> <offset>` line per partition.
pub(super) fn encode_offset_checkpoint(entries: &[(&str, i32, i64)]) -> String {
    let mut text = format!("0\n{}\n", entries.len());
    for (topic, partition, offset) in entries {
        text.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    text
}

/// Writes `recovery-point-offset-checkpoint` (each log's recovery point) and
/// `replication-offset-checkpoint` (each log's high watermark) in `data_dir`.
pub(super) fn write_offset_checkpoints(
    storage: &dyn Storage,
    data_dir: &Path,
    logs: &[Arc<PartitionLog>],
) -> Result<()> {
    let recovery: Vec<(&str, i32, i64)> = logs
        .iter()
        .map(|l| (l.topic(), l.partition(), l.recovery_point()))
        .collect();
    write_atomic(
        storage,
        &data_dir.join(RECOVERY_CHECKPOINT_FILE),
        encode_offset_checkpoint(&recovery).as_bytes(),
    )?;
    let hws: Vec<(&str, i32, i64)> = logs
        .iter()
        .map(|l| (l.topic(), l.partition(), l.high_watermark()))
        .collect();
    write_atomic(
        storage,
        &data_dir.join(REPLICATION_CHECKPOINT_FILE),
        encode_offset_checkpoint(&hws).as_bytes(),
    )
}

/// Reads an `OffsetCheckpointFile` (recovery points or high watermarks); a missing or
/// unreadable file, or a malformed line, yields no entry for it.
pub(super) fn read_recovery_points(
    storage: &dyn Storage,
    path: &Path,
) -> HashMap<(String, i32), i64> {
    let mut out = HashMap::new();
    let Ok(bytes) = storage.read(path) else {
        return out;
    };
    let text = String::from_utf8_lossy(&bytes);
    for line in text.lines().skip(2) {
        let mut parts = line.split_whitespace();
        if let (Some(t), Some(p), Some(o)) = (parts.next(), parts.next(), parts.next()) {
            if let (Ok(p), Ok(o)) = (p.parse(), o.parse()) {
                out.insert((t.to_string(), p), o);
            }
        }
    }
    out
}

impl Broker {
    pub(super) fn start_background_threads(&self) -> Result<()> {
        let weak = Arc::downgrade(&self.inner);
        let stop = Arc::clone(&self.inner.stop);
        let ckpt_every = self.inner.config.recovery_checkpoint_interval;
        let flusher = thread::Builder::new()
            .name("broker-flusher".into())
            .spawn(move || flusher_loop(weak, stop, ckpt_every))
            .map_err(|e| BrokerError::io("<thread>", e))?;
        let mut threads = vec![flusher];
        if let Some(every) = self.inner.config.cleaner_interval {
            let weak = Arc::downgrade(&self.inner);
            let stop = Arc::clone(&self.inner.stop);
            let compaction_every = self.inner.config.compaction_check_interval;
            threads.push(
                thread::Builder::new()
                    .name("broker-cleaner".into())
                    .spawn(move || cleaner_loop(weak, stop, every, compaction_every))
                    .map_err(|e| BrokerError::io("<thread>", e))?,
            );
        }
        let groups = Arc::clone(&self.inner.groups);
        let stop = Arc::clone(&self.inner.stop);
        threads.push(
            thread::Builder::new()
                .name("broker-groups".into())
                .spawn(move || groups_loop(&groups, &stop))
                .map_err(|e| BrokerError::io("<thread>", e))?,
        );
        let txn = Arc::clone(&self.inner.txn);
        let stop = Arc::clone(&self.inner.stop);
        let every = self
            .inner
            .config
            .transaction_abort_timed_out_transaction_cleanup_interval
            .max(Duration::from_millis(1));
        threads.push(
            thread::Builder::new()
                .name("broker-transactions".into())
                .spawn(move || {
                    while !stop.wait(every) {
                        txn.tick(now_ms());
                    }
                })
                .map_err(|e| BrokerError::io("<thread>", e))?,
        );
        *self.inner.threads.lock() = threads;
        Ok(())
    }

    /// Runs retention and compaction on every partition now (compaction forced, ignoring
    /// `min.cleanable.dirty.ratio`), at the current time. Deterministic for tests.
    pub fn run_cleaner_pass(&self) -> Result<CleanerStats> {
        self.run_cleaner_pass_at(now_ms(), true)
    }

    /// As [`Broker::run_cleaner_pass`], as if the clock read `now_ms`.
    pub fn run_cleaner_pass_at(&self, now_ms: i64, force: bool) -> Result<CleanerStats> {
        self.check_open()?;
        let mut stats = CleanerStats::default();
        for log in self.all_logs() {
            stats.segments_deleted += log.apply_retention(now_ms)?;
            stats += log.compact(now_ms, force)?;
        }
        Ok(stats)
    }

    /// One pass of the background cleaner: retention (when `retention`) and compaction of the
    /// logs that are due (not forced).
    fn background_cleaner_pass(&self, now_ms: i64, retention: bool) -> Result<CleanerStats> {
        self.check_open()?;
        let mut stats = CleanerStats::default();
        for log in self.all_logs() {
            if retention {
                stats.segments_deleted += log.apply_retention(now_ms)?;
            }
            stats += log.compact(now_ms, false)?;
        }
        Ok(stats)
    }

    /// Rolls the active segment of a partition (tests and tools).
    pub fn roll_segment(&self, topic: &str, partition: i32) -> Result<()> {
        self.log(topic, partition)?.roll()
    }

    /// fsyncs every partition and writes the recovery-point checkpoint.
    pub fn flush(&self) -> Result<()> {
        self.check_open()?;
        for log in self.all_logs() {
            log.flush()?;
        }
        self.write_recovery_checkpoint()
    }

    /// Writes the recovery-point checkpoint and the high-watermark checkpoint
    /// (`replication-offset-checkpoint`), which share their cadence as in Kafka.
    pub(super) fn write_recovery_checkpoint(&self) -> Result<()> {
        let logs = self.all_logs();
        write_offset_checkpoints(&*self.inner.storage, &self.inner.config.data_dir, &logs)
    }
}

fn flusher_loop(weak: Weak<Inner>, stop: Arc<Stop>, checkpoint_every: Duration) {
    let mut last_checkpoint = Instant::now();
    loop {
        if stop.wait(Duration::from_millis(50)) {
            return;
        }
        let Some(inner) = weak.upgrade() else { return };
        let broker = Broker {
            inner,
            _guard: None,
        };
        for log in broker.all_logs() {
            if let Err(e) = log.flush_if_due() {
                error!(topic = log.topic(), partition = log.partition(), error = %e, "background flush failed");
            }
        }
        if last_checkpoint.elapsed() >= checkpoint_every {
            last_checkpoint = Instant::now();
            if let Err(e) = broker.write_recovery_checkpoint() {
                error!(error = %e, "writing the recovery-point and high-watermark checkpoints failed");
            }
        }
    }
}

/// How often the group coordinator's timers are checked.
const GROUP_TICK: Duration = Duration::from_millis(100);

fn groups_loop(groups: &GroupCoordinator, stop: &Stop) {
    while !stop.wait(GROUP_TICK) {
        groups.tick();
    }
}

/// Retention every `every`; compaction checks (dirty ratio, `max.compaction.lag.ms`) every
/// `compaction_every` (Kafka's `log.cleaner.backoff.ms`), or `every` if that is shorter.
fn cleaner_loop(weak: Weak<Inner>, stop: Arc<Stop>, every: Duration, compaction_every: Duration) {
    let tick = every.min(compaction_every).max(Duration::from_millis(10));
    let mut last_retention = Instant::now();
    loop {
        if stop.wait(tick) {
            return;
        }
        let Some(inner) = weak.upgrade() else { return };
        let broker = Broker {
            inner,
            _guard: None,
        };
        let retention = last_retention.elapsed() >= every;
        if retention {
            last_retention = Instant::now();
        }
        match broker.background_cleaner_pass(now_ms(), retention) {
            Ok(s) if s != CleanerStats::default() => debug!(?s, "cleaner pass"),
            Ok(_) | Err(BrokerError::Closed) => {}
            Err(e) => error!(error = %e, "cleaner pass failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::record::{encode_batch, BatchSpec, Record};
    use crate::{AppendOrigin, BrokerConfig, NewTopic};

    fn open(dir: &Path) -> Broker {
        let mut c = BrokerConfig::new(dir);
        c.cleaner_interval = None;
        Broker::open(c).unwrap()
    }

    fn append(b: &Broker, partition: i32, n: usize) {
        let recs: Vec<Record> = (0..n)
            .map(|i| Record {
                offset: i as i64,
                timestamp: 1,
                key: None,
                value: Some(bytes::Bytes::from_static(b"v")),
                headers: Vec::new(),
            })
            .collect();
        let mut batch = encode_batch(&BatchSpec::default(), &recs).unwrap();
        b.partition_log("t", partition)
            .unwrap()
            .append(&mut batch, AppendOrigin::Client, 1)
            .unwrap();
    }

    #[test]
    fn high_watermarks_are_checkpointed_and_restored() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        b.create_topic(NewTopic::new("t", 2)).unwrap();
        append(&b, 0, 5);
        append(&b, 1, 3);
        let log0 = b.partition_log("t", 0).unwrap();
        log0.set_replicated(true);
        log0.restore_high_watermark(0);
        assert_eq!(log0.set_high_watermark(2), 2);
        append(&b, 0, 4);
        b.flush().unwrap();
        let text = std::fs::read_to_string(dir.path().join(REPLICATION_CHECKPOINT_FILE)).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        assert_eq!(&lines[..2], &["0", "2"], "{text}");
        lines.drain(..2);
        lines.sort_unstable();
        assert_eq!(lines, vec!["t 0 2", "t 1 3"]);
        // ListOffsets(latest) answers the high watermark.
        let latest = b
            .list_offsets("t", 0, crate::OffsetSpec::Latest)
            .unwrap()
            .unwrap();
        assert_eq!(latest.offset, 2);
        log0.set_high_watermark(7);
        b.shutdown().unwrap();
        drop((b, log0));

        let b = open(dir.path());
        let log0 = b.partition_log("t", 0).unwrap();
        assert_eq!(log0.high_watermark(), 9, "single-node mode: the log end");
        log0.set_replicated(true);
        assert_eq!(log0.high_watermark(), 7, "restored from the checkpoint");
        let log1 = b.partition_log("t", 1).unwrap();
        log1.set_replicated(true);
        assert_eq!(log1.high_watermark(), 3);
    }
}
