//! Restoration of a store from its changelog partition, with progress reporting.

use std::fmt;

use crate::error::Result;
use crate::store::Restorable;

/// A changelog partition: `<application.id>-<store>-changelog` and a partition number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// A topic partition.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// The changelog topic of a store, as Kafka Streams names it:
    /// `<application.id>-<store>-changelog`.
    pub fn changelog(application_id: &str, store: &str, partition: i32) -> Self {
        TopicPartition::new(format!("{application_id}-{store}-changelog"), partition)
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// One record of a changelog partition, as read back for restoration (or as produced by a
/// change-logging store, before the broker assigned it an offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogRecord {
    /// Offset in the changelog partition.
    pub offset: i64,
    /// The store key in changelog layout (for window and session stores, the key with its
    /// time suffix).
    pub key: Vec<u8>,
    /// The value, or `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Record timestamp in milliseconds.
    pub timestamp: i64,
}

/// Where a restoration stands. Offsets are counted, not records: compaction and
/// transaction markers leave gaps, so `offsets_restored` may grow faster than
/// `records_restored`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreProgress {
    /// First offset to restore (the checkpointed offset + 1, or the log start).
    pub start_offset: i64,
    /// Offset to restore up to, exclusive (the changelog's end offset when restoration began).
    pub end_offset: i64,
    /// Offset of the last record applied, if any.
    pub last_restored_offset: Option<i64>,
    /// Records applied so far.
    pub records_restored: u64,
    /// Offsets covered so far: `last_restored_offset + 1 - start_offset`.
    pub offsets_restored: u64,
    /// Offsets to cover in all: `end_offset - start_offset`.
    pub offsets_to_restore: u64,
}

/// Receives restoration progress, as Kafka Streams' `StateRestoreListener` does.
pub trait RestoreListener {
    /// Restoration of `store` from `partition` starts.
    fn on_restore_start(
        &mut self,
        store: &str,
        partition: &TopicPartition,
        progress: &RestoreProgress,
    ) {
        let _ = (store, partition, progress);
    }
    /// A batch was written to the store.
    fn on_batch_restored(
        &mut self,
        store: &str,
        partition: &TopicPartition,
        progress: &RestoreProgress,
    );
    /// Restoration finished.
    fn on_restore_end(
        &mut self,
        store: &str,
        partition: &TopicPartition,
        progress: &RestoreProgress,
    ) {
        let _ = (store, partition, progress);
    }
}

/// A listener that only logs (at debug level per batch, info at the end).
#[derive(Debug, Default, Clone, Copy)]
pub struct LoggingRestoreListener;

impl RestoreListener for LoggingRestoreListener {
    fn on_batch_restored(&mut self, store: &str, partition: &TopicPartition, p: &RestoreProgress) {
        tracing::debug!(
            store,
            %partition,
            offsets_restored = p.offsets_restored,
            offsets_to_restore = p.offsets_to_restore,
            records = p.records_restored,
            "restored batch"
        );
    }
    fn on_restore_end(&mut self, store: &str, partition: &TopicPartition, p: &RestoreProgress) {
        tracing::info!(store, %partition, records = p.records_restored, "restoration done");
    }
}

/// Replays changelog records into a store, in batches (50 000 records by default: RocksDB
/// writes each batch as one write batch with the WAL off, in key order).
#[derive(Debug, Clone)]
pub struct Restorer {
    batch_size: usize,
}

impl Default for Restorer {
    fn default() -> Self {
        Restorer { batch_size: 50_000 }
    }
}

impl Restorer {
    /// A restorer writing batches of `batch_size` records (at least 1).
    pub fn new(batch_size: usize) -> Self {
        Restorer {
            batch_size: batch_size.max(1),
        }
    }

    /// The offset to start reading the changelog from, given a checkpointed offset (the
    /// offset of the last record the store reflects) and the log start offset.
    pub fn start_offset(checkpoint: Option<i64>, log_start_offset: i64) -> i64 {
        match checkpoint {
            Some(c) => c.saturating_add(1).max(log_start_offset),
            None => log_start_offset,
        }
    }

    /// Applies every record with `start_offset <= offset < end_offset` from `records`
    /// (records outside that range are skipped, so gaps and over-reads are harmless), in
    /// batches, and reports progress. Returns the final progress; its
    /// `last_restored_offset` is what the next checkpoint may claim once the store is
    /// flushed.
    pub fn restore<S, I>(
        &self,
        store: &mut S,
        partition: &TopicPartition,
        start_offset: i64,
        end_offset: i64,
        records: I,
        listener: &mut dyn RestoreListener,
    ) -> Result<RestoreProgress>
    where
        S: Restorable + ?Sized,
        I: IntoIterator<Item = Result<ChangelogRecord>>,
    {
        let mut progress = RestoreProgress {
            start_offset,
            end_offset,
            last_restored_offset: None,
            records_restored: 0,
            offsets_restored: 0,
            offsets_to_restore: u64::try_from(end_offset.saturating_sub(start_offset)).unwrap_or(0),
        };
        let name = store.name().to_owned();
        let _span = tracing::debug_span!("restore", store = %name, %partition).entered();
        listener.on_restore_start(&name, partition, &progress);
        let mut batch = Vec::with_capacity(self.batch_size.min(100_000));
        for record in records {
            let record = record?;
            if record.offset < start_offset {
                continue;
            }
            if record.offset >= end_offset {
                break;
            }
            batch.push(record);
            if batch.len() >= self.batch_size {
                self.apply(store, &mut batch, &mut progress)?;
                listener.on_batch_restored(&name, partition, &progress);
            }
        }
        if !batch.is_empty() {
            self.apply(store, &mut batch, &mut progress)?;
            listener.on_batch_restored(&name, partition, &progress);
        }
        listener.on_restore_end(&name, partition, &progress);
        Ok(progress)
    }

    fn apply<S: Restorable + ?Sized>(
        &self,
        store: &mut S,
        batch: &mut Vec<crate::restore::ChangelogRecord>,
        progress: &mut RestoreProgress,
    ) -> Result<()> {
        store.restore_batch(batch)?;
        if let Some(last) = batch.last() {
            progress.last_restored_offset = Some(last.offset);
            progress.offsets_restored = u64::try_from(
                last.offset
                    .saturating_add(1)
                    .saturating_sub(progress.start_offset),
            )
            .unwrap_or(0);
        }
        progress.records_restored += batch.len() as u64;
        batch.clear();
        Ok(())
    }
}
