//! The suppression buffer: Kafka Streams' `InMemoryTimeOrderedKeyValueChangeBuffer`, a
//! store of table updates ordered by buffer time then key bytes, one entry per key, logged
//! at flush time in Kafka's changelog format (`BufferValue` + buffer time, header `v` = 3).

use std::collections::{BTreeMap, HashMap};

use crate::error::{Result, StoreError};
use crate::logging::ChangelogSink;
use crate::restore::ChangelogRecord;
use crate::store::{Restorable, StateStore};

/// Kafka's `NULL_VALUE_SENTINEL` in a `BufferValue`.
const NULL_VALUE_SENTINEL: i32 = -1;
/// Kafka's `OLD_PREV_DUPLICATE_VALUE_SENTINEL`: the old value equals the prior value.
const OLD_PREV_DUPLICATE_VALUE_SENTINEL: i32 = -2;

/// The header Kafka 2.6+ puts on every buffer changelog value: `v` = 3.
pub const BUFFER_CHANGELOG_VERSION_HEADER: (&str, &[u8]) = ("v", &[3]);

/// The context of a buffered record (Kafka's `ProcessorRecordContext`): what it is
/// forwarded with when evicted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferRecordContext {
    /// The record's timestamp.
    pub timestamp: i64,
    /// Offset of the input record it came from (-1 if unknown).
    pub offset: i64,
    /// Topic of the input record it came from (empty if unknown).
    pub topic: String,
    /// Partition of the input record it came from (-1 if unknown).
    pub partition: i32,
    /// The record's headers: key and nullable value.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl BufferRecordContext {
    /// Kafka's `ProcessorRecordContext.serialize`: timestamp, offset (8 bytes each), topic
    /// (4-byte length + UTF-8), partition, header count, then per header the key (length +
    /// UTF-8) and the value (length or -1 for null, bytes); all big-endian.
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        put_array(out, Some(self.topic.as_bytes()));
        out.extend_from_slice(&self.partition.to_be_bytes());
        put_len(out, self.headers.len());
        for (k, v) in &self.headers {
            put_array(out, Some(k.as_bytes()));
            put_array(out, v.as_deref());
        }
    }

    fn read(r: &mut Reader<'_>) -> std::result::Result<Self, String> {
        let timestamp = r.i64()?;
        let offset = r.i64()?;
        let topic = r
            .nullable_array()?
            .ok_or_else(|| "null topic in the record context".to_owned())?;
        let topic = String::from_utf8(topic).map_err(|e| format!("topic: {e}"))?;
        let partition = r.i32()?;
        let count = r.i32()?;
        let mut headers = Vec::new();
        // -1: Kafka's backward-compatible "no headers".
        for _ in 0..count.max(0) {
            let key = r
                .nullable_array()?
                .ok_or_else(|| "null header key".to_owned())?;
            let key = String::from_utf8(key).map_err(|e| format!("header key: {e}"))?;
            headers.push((key, r.nullable_array()?));
        }
        Ok(BufferRecordContext {
            timestamp,
            offset,
            topic,
            partition,
            headers,
        })
    }

    /// Kafka's `residentMemorySizeEstimate`: timestamp, offset, topic characters,
    /// partition, header key characters and value bytes.
    fn size_estimate(&self) -> u64 {
        let mut size = 8 + 8 + 4 + self.topic.encode_utf16().count() as u64;
        for (k, v) in &self.headers {
            size += k.encode_utf16().count() as u64 + v.as_ref().map_or(0, |v| v.len() as u64);
        }
        size
    }
}

/// A buffered table update (Kafka's `BufferValue`): the value the key had before the first
/// update still buffered (`prior`), and the `old` and `new` values of the latest update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferValue {
    /// The value before the first buffered update of the key.
    pub prior: Option<Vec<u8>>,
    /// The old value of the latest update.
    pub old: Option<Vec<u8>>,
    /// The new value of the latest update (`None`: a delete).
    pub new: Option<Vec<u8>>,
    /// The latest update's record context.
    pub context: BufferRecordContext,
}

impl BufferValue {
    /// Kafka's `BufferValue.serialize`: the record context, then prior, old and new value
    /// (4-byte length or -1 for null; the old value is -2 when equal to the prior one).
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.context.write(&mut out);
        put_array(&mut out, self.prior.as_deref());
        match &self.old {
            None => out.extend_from_slice(&NULL_VALUE_SENTINEL.to_be_bytes()),
            Some(old) if self.prior.as_ref() == Some(old) => {
                out.extend_from_slice(&OLD_PREV_DUPLICATE_VALUE_SENTINEL.to_be_bytes())
            }
            Some(old) => put_array(&mut out, Some(old)),
        }
        put_array(&mut out, self.new.as_deref());
        out
    }

    /// The changelog value Kafka writes (version 3): [`BufferValue::serialize`], then the
    /// buffer time as 8 bytes big-endian.
    pub fn changelog_value(&self, time: i64) -> Vec<u8> {
        let mut out = self.serialize();
        out.extend_from_slice(&time.to_be_bytes());
        out
    }

    /// Reads a version-3 changelog value: the buffered value and its buffer time.
    pub fn from_changelog_value(bytes: &[u8]) -> std::result::Result<(Self, i64), String> {
        let mut r = Reader { bytes, pos: 0 };
        let context = BufferRecordContext::read(&mut r)?;
        let prior = r.nullable_array()?;
        let old = match r.i32()? {
            OLD_PREV_DUPLICATE_VALUE_SENTINEL => prior.clone(),
            len => r.array_of(len)?,
        };
        let new = r.nullable_array()?;
        let time = r.i64()?;
        if r.pos != bytes.len() {
            return Err(format!(
                "{} trailing bytes after the buffer time",
                bytes.len() - r.pos
            ));
        }
        Ok((
            BufferValue {
                prior,
                old,
                new,
                context,
            },
            time,
        ))
    }

    /// Kafka's `residentMemorySizeEstimate` (the old value not counted when it is the
    /// prior one).
    fn size_estimate(&self) -> u64 {
        let len = |v: &Option<Vec<u8>>| v.as_ref().map_or(0, |v| v.len() as u64);
        let old = if self.old.is_none() || self.old == self.prior {
            0
        } else {
            len(&self.old)
        };
        len(&self.prior) + old + len(&self.new) + self.context.size_estimate()
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&i32::try_from(len).unwrap_or(i32::MAX).to_be_bytes());
}

fn put_array(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.extend_from_slice(&NULL_VALUE_SENTINEL.to_be_bytes()),
        Some(b) => {
            put_len(out, b.len());
            out.extend_from_slice(b);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(format!(
                "needs {n} bytes at position {}, {} left",
                self.pos,
                self.bytes.len() - self.pos
            )),
        }
    }
    fn i64(&mut self) -> std::result::Result<i64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    fn i32(&mut self) -> std::result::Result<i32, String> {
        let b = self.take(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(i32::from_be_bytes(a))
    }
    fn array_of(&mut self, len: i32) -> std::result::Result<Option<Vec<u8>>, String> {
        if len == NULL_VALUE_SENTINEL {
            return Ok(None);
        }
        let n = usize::try_from(len).map_err(|_| format!("bad length {len}"))?;
        Ok(Some(self.take(n)?.to_vec()))
    }
    fn nullable_array(&mut self) -> std::result::Result<Option<Vec<u8>>, String> {
        let len = self.i32()?;
        self.array_of(len)
    }
}

/// A buffered entry taken out of the buffer by [`InMemoryTimeOrderedKeyValueBuffer::pop_oldest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferEviction {
    /// The buffer time it was ordered by.
    pub time: i64,
    /// The key bytes.
    pub key: Vec<u8>,
    /// The buffered update.
    pub value: BufferValue,
}

/// Kafka Streams' `InMemoryTimeOrderedKeyValueChangeBuffer` over bytes: one entry per key,
/// ordered by buffer time then key bytes (unsigned), where a later update of a buffered
/// key replaces its value but keeps its place (Kafka's "non-resetting" `cleanPut`). Sizes
/// are Kafka's estimates (8 bytes of buffer time, the key, the values and the record
/// context). With a changelog, the keys written or evicted since the last flush are
/// logged at [`StateStore::flush_cache`] / [`StateStore::flush`] (a commit): the current
/// entry as [`BufferValue::changelog_value`] with header `v` = 3, or a tombstone for a key
/// no longer buffered. Not persistent: restored from the changelog on start.
pub struct InMemoryTimeOrderedKeyValueBuffer {
    name: String,
    open: bool,
    sorted: BTreeMap<(i64, Vec<u8>), BufferValue>,
    index: HashMap<Vec<u8>, i64>,
    /// Keys to log at the next flush, with the timestamp of their last update.
    dirty: BTreeMap<Vec<u8>, i64>,
    size: u64,
    changelog: Option<Box<dyn ChangelogSink>>,
}

impl std::fmt::Debug for InMemoryTimeOrderedKeyValueBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryTimeOrderedKeyValueBuffer")
            .field("name", &self.name)
            .field("open", &self.open)
            .field("records", &self.index.len())
            .field("size", &self.size)
            .field("dirty", &self.dirty.len())
            .field("logging", &self.changelog.is_some())
            .finish()
    }
}

fn record_size(key: &[u8], value: &BufferValue) -> u64 {
    8 + key.len() as u64 + value.size_estimate()
}

impl InMemoryTimeOrderedKeyValueBuffer {
    /// An empty, open buffer, logged to `changelog` if given.
    pub fn new(name: impl Into<String>, changelog: Option<Box<dyn ChangelogSink>>) -> Self {
        InMemoryTimeOrderedKeyValueBuffer {
            name: name.into(),
            open: true,
            sorted: BTreeMap::new(),
            index: HashMap::new(),
            dirty: BTreeMap::new(),
            size: 0,
            changelog,
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.open {
            Ok(())
        } else {
            Err(StoreError::closed(&self.name))
        }
    }

    /// Buffers an update of `key` at buffer `time` (Kafka's `put`): its prior value is the
    /// one of the entry already buffered for the key, else the update's old value; an
    /// already buffered key keeps its place in the order.
    pub fn put(
        &mut self,
        time: i64,
        key: &[u8],
        new: Option<Vec<u8>>,
        old: Option<Vec<u8>>,
        context: BufferRecordContext,
    ) -> Result<()> {
        self.check_open()?;
        let prior = match self.buffered(key) {
            Some(v) => v.prior.clone(),
            None => old.clone(),
        };
        let timestamp = context.timestamp;
        self.clean_put(
            time,
            key.to_vec(),
            BufferValue {
                prior,
                old,
                new,
                context,
            },
        );
        if self.changelog.is_some() {
            self.dirty.insert(key.to_vec(), timestamp);
        }
        Ok(())
    }

    fn buffered(&self, key: &[u8]) -> Option<&BufferValue> {
        let time = self.index.get(key)?;
        self.sorted.get(&(*time, key.to_vec()))
    }

    fn clean_put(&mut self, time: i64, key: Vec<u8>, value: BufferValue) {
        let added = record_size(&key, &value);
        match self.index.get(&key) {
            None => {
                self.index.insert(key.clone(), time);
                self.sorted.insert((time, key), value);
            }
            Some(previous) => {
                let removed = self.sorted.insert((*previous, key.clone()), value);
                if let Some(r) = removed {
                    self.size = self.size.saturating_sub(record_size(&key, &r));
                }
            }
        }
        self.size += added;
    }

    fn remove_key(&mut self, key: &[u8]) -> Option<(i64, BufferValue)> {
        let time = self.index.remove(key)?;
        let value = self.sorted.remove(&(time, key.to_vec()))?;
        self.size = self.size.saturating_sub(record_size(key, &value));
        Some((time, value))
    }

    /// The prior value of a buffered key (Kafka's `priorValueForBuffered`): `None` if the
    /// key is not buffered, else the value it had before its first buffered update.
    pub fn prior_value_for_buffered(&self, key: &[u8]) -> Option<Option<Vec<u8>>> {
        self.buffered(key).map(|v| v.prior.clone())
    }

    /// The smallest buffer time, `i64::MAX` when empty (Kafka's `minTimestamp`).
    pub fn min_timestamp(&self) -> i64 {
        self.sorted.keys().next().map_or(i64::MAX, |(t, _)| *t)
    }

    /// The number of buffered keys.
    pub fn num_records(&self) -> u64 {
        self.index.len() as u64
    }

    /// The estimated size of the buffer in bytes (Kafka's `bufferSize`).
    pub fn buffer_size(&self) -> u64 {
        self.size
    }

    /// Takes the entry with the smallest buffer time (then key) out of the buffer; with a
    /// changelog, its key is logged as a tombstone at the next flush.
    pub fn pop_oldest(&mut self) -> Result<Option<BufferEviction>> {
        self.check_open()?;
        let Some(((time, key), value)) = self.sorted.pop_first() else {
            return Ok(None);
        };
        self.index.remove(&key);
        self.size = self.size.saturating_sub(record_size(&key, &value));
        if self.changelog.is_some() {
            self.dirty.insert(key.clone(), value.context.timestamp);
        }
        Ok(Some(BufferEviction { time, key, value }))
    }

    /// Logs every key written or evicted since the last flush (Kafka's `flush`).
    fn log_dirty(&mut self) -> Result<()> {
        let Some(sink) = self.changelog.as_mut() else {
            return Ok(());
        };
        while let Some((key, timestamp)) = self.dirty.pop_first() {
            let sent = match self.index.get(&key) {
                None => sink.send(&key, None, timestamp),
                Some(time) => match self.sorted.get(&(*time, key.clone())) {
                    Some(value) => sink.send_with_headers(
                        &key,
                        Some(&value.changelog_value(*time)),
                        value.context.timestamp,
                        &[BUFFER_CHANGELOG_VERSION_HEADER],
                    ),
                    None => sink.send(&key, None, timestamp),
                },
            };
            if let Err(e) = sent {
                // Keep it dirty so the next flush retries it.
                self.dirty.insert(key, timestamp);
                return Err(e);
            }
        }
        Ok(())
    }
}

impl StateStore for InMemoryTimeOrderedKeyValueBuffer {
    fn name(&self) -> &str {
        &self.name
    }
    fn persistent(&self) -> bool {
        false
    }
    fn is_open(&self) -> bool {
        self.open
    }
    fn flush(&mut self) -> Result<()> {
        self.check_open()?;
        self.log_dirty()?;
        match self.changelog.as_mut() {
            Some(sink) => sink.flush(),
            None => Ok(()),
        }
    }
    fn flush_cache(&mut self) -> Result<()> {
        self.check_open()?;
        self.log_dirty()
    }
    fn close(&mut self) -> Result<()> {
        self.open = false;
        self.sorted.clear();
        self.index.clear();
        self.dirty.clear();
        self.size = 0;
        Ok(())
    }
}

impl Restorable for InMemoryTimeOrderedKeyValueBuffer {
    /// Kafka's `restoreBatch` for version-3 records (what Kafka 2.6 and later write): a
    /// tombstone removes the key, a value replaces the key's entry (keeping its place if
    /// buffered). The `v` header is not checked (restored records carry no headers here);
    /// values of the older versions 0–2 fail to decode as version 3 and are reported as
    /// corrupt.
    fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
        self.check_open()?;
        for record in records {
            match &record.value {
                None => {
                    self.remove_key(&record.key);
                }
                Some(bytes) => {
                    let (value, time) =
                        BufferValue::from_changelog_value(bytes).map_err(|detail| {
                            StoreError::CorruptChangelogRecord {
                                store: self.name.clone(),
                                offset: record.offset,
                                detail,
                            }
                        })?;
                    self.clean_put(time, record.key.clone(), value);
                }
            }
        }
        Ok(())
    }
}

/// Keys are unique in the buffer: a set view for tests.
#[cfg(test)]
fn keys(buffer: &InMemoryTimeOrderedKeyValueBuffer) -> std::collections::BTreeSet<Vec<u8>> {
    buffer.index.keys().cloned().collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::logging::InMemoryChangelog;

    fn ctx(ts: i64) -> BufferRecordContext {
        BufferRecordContext {
            timestamp: ts,
            offset: 7,
            topic: "in".into(),
            partition: 0,
            headers: vec![("h".into(), Some(b"x".to_vec())), ("n".into(), None)],
        }
    }

    /// The bytes of Kafka's `BufferValue.serialize` + buffer time, written out by hand.
    #[test]
    fn changelog_value_is_kafkas_version_3_layout() {
        let v = BufferValue {
            prior: Some(b"p".to_vec()),
            old: Some(b"p".to_vec()),
            new: Some(b"nn".to_vec()),
            context: ctx(5),
        };
        let mut expected = Vec::new();
        expected.extend_from_slice(&5i64.to_be_bytes());
        expected.extend_from_slice(&7i64.to_be_bytes());
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.extend_from_slice(b"in");
        expected.extend_from_slice(&0i32.to_be_bytes());
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(b"h");
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(b"x");
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(b"n");
        expected.extend_from_slice(&(-1i32).to_be_bytes());
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(b"p");
        expected.extend_from_slice(&(-2i32).to_be_bytes()); // old == prior
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.extend_from_slice(b"nn");
        expected.extend_from_slice(&99i64.to_be_bytes());
        assert_eq!(v.changelog_value(99), expected);
        assert_eq!(
            BufferValue::from_changelog_value(&expected).unwrap(),
            (v, 99)
        );

        let nulls = BufferValue {
            prior: None,
            old: None,
            new: None,
            context: ctx(1),
        };
        let bytes = nulls.changelog_value(-3);
        assert_eq!(
            BufferValue::from_changelog_value(&bytes).unwrap(),
            (nulls, -3)
        );
        assert!(BufferValue::from_changelog_value(&bytes[..bytes.len() - 1]).is_err());
    }

    /// Order by time then key; a buffered key keeps its place and its prior value; sizes
    /// follow Kafka's estimate.
    #[test]
    fn time_then_key_order_non_resetting_and_sizes() {
        let mut b = InMemoryTimeOrderedKeyValueBuffer::new("buf", None);
        assert_eq!(b.min_timestamp(), i64::MAX);
        b.put(20, b"b", Some(b"1".to_vec()), Some(b"0".to_vec()), ctx(20))
            .unwrap();
        b.put(10, b"c", Some(b"1".to_vec()), None, ctx(10)).unwrap();
        b.put(20, b"a", Some(b"1".to_vec()), None, ctx(20)).unwrap();
        // A later update of `c` at time 30 keeps its place at 10 and its prior (None).
        b.put(30, b"c", Some(b"2".to_vec()), Some(b"1".to_vec()), ctx(30))
            .unwrap();
        assert_eq!(b.num_records(), 3);
        assert_eq!(b.min_timestamp(), 10);
        assert_eq!(b.prior_value_for_buffered(b"c"), Some(None));
        assert_eq!(b.prior_value_for_buffered(b"b"), Some(Some(b"0".to_vec())));
        assert_eq!(b.prior_value_for_buffered(b"z"), None);
        // Context estimate: 8 + 8 + 4 + 2 ("in") + 1 ("h") + 1 ("x") + 1 ("n") = 25.
        let c_size = 8 + 1 + (1 + 1) + 25; // key, old "1" (prior None) + new "2", context
        let b_size = 8 + 1 + 1 + 1 + 25; // prior "0" (old dedup) + new "1"
        let a_size = 8 + 1 + 1 + 25;
        assert_eq!(b.buffer_size(), c_size + b_size + a_size);
        let order: Vec<(i64, Vec<u8>)> = std::iter::from_fn(|| b.pop_oldest().unwrap())
            .map(|e| (e.time, e.key))
            .collect();
        assert_eq!(
            order,
            vec![
                (10, b"c".to_vec()),
                (20, b"a".to_vec()),
                (20, b"b".to_vec())
            ]
        );
        assert_eq!(b.buffer_size(), 0);
        assert!(keys(&b).is_empty());
    }

    /// Writes are logged at flush only, once per key: the current entry with `v` = 3, or a
    /// tombstone for an evicted key; restoring the log rebuilds the buffer.
    #[test]
    fn logs_dirty_keys_at_flush_and_restores() {
        let log = InMemoryChangelog::new();
        let mut b = InMemoryTimeOrderedKeyValueBuffer::new("buf", Some(Box::new(log.clone())));
        b.put(10, b"a", Some(b"1".to_vec()), None, ctx(10)).unwrap();
        b.put(10, b"a", Some(b"2".to_vec()), Some(b"1".to_vec()), ctx(11))
            .unwrap();
        b.put(12, b"b", Some(b"1".to_vec()), None, ctx(12)).unwrap();
        assert!(log.records().unwrap().is_empty());
        b.flush_cache().unwrap();
        let records = log.records().unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].key, b"a");
        assert_eq!(records[0].timestamp, 11);
        let (v, t) = BufferValue::from_changelog_value(records[0].value.as_ref().unwrap()).unwrap();
        assert_eq!(
            (v.prior, v.old, v.new, t),
            (None, Some(b"1".to_vec()), Some(b"2".to_vec()), 10)
        );

        let evicted = b.pop_oldest().unwrap().unwrap();
        assert_eq!(evicted.key, b"a");
        b.put(13, b"c", Some(b"1".to_vec()), None, ctx(13)).unwrap();
        b.flush().unwrap();
        let records = log.records().unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(
            (records[2].key.as_slice(), records[2].value.is_none()),
            (&b"a"[..], true)
        );
        assert_eq!(records[3].key, b"c");

        let mut restored = InMemoryTimeOrderedKeyValueBuffer::new("buf", None);
        restored.restore_batch(&records).unwrap();
        assert_eq!(keys(&restored), keys(&b));
        assert_eq!(restored.buffer_size(), b.buffer_size());
        assert_eq!(restored.min_timestamp(), 12);

        let bad = ChangelogRecord {
            offset: 9,
            key: b"x".to_vec(),
            value: Some(vec![1, 2, 3]),
            timestamp: 0,
        };
        assert!(matches!(
            restored.restore_batch(&[bad]),
            Err(StoreError::CorruptChangelogRecord { offset: 9, .. })
        ));
        restored.close().unwrap();
        assert!(restored.put(1, b"k", None, None, ctx(1)).is_err());
    }
}
