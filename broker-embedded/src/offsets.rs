//! Committed consumer-group offsets, stored durably in the compacted `__consumer_offsets`
//! topic with Kafka's record layouts, and cached in memory.
//!
//! Key (Kafka's `OffsetCommitKey` v1): `version i16 = 1 | group string | topic string |
//! partition i32`. Value (`OffsetCommitValue` v3): `version i16 = 3 | offset i64 |
//! leader_epoch i32 | metadata string | commit_timestamp i64`. Strings are `i16 length + UTF-8`.
//! A null value (tombstone) deletes the commit. A group maps to partition
//! `abs(javaHashCode(group)) % offsets.topic.num.partitions`, as in Kafka.

use bytes::Bytes;

/// Name of the internal offsets topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// A topic and a partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// A topic-partition.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A committed offset: the next offset the group will consume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    /// The offset of the next record to consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record, if known.
    pub leader_epoch: Option<i32>,
    /// Free-form client metadata.
    pub metadata: String,
    /// When the commit was made (ms since the epoch).
    pub commit_timestamp: i64,
}

impl OffsetAndMetadata {
    /// A commit of `offset` with no metadata, timestamped now.
    pub fn new(offset: i64) -> Self {
        Self {
            offset,
            leader_epoch: None,
            metadata: String::new(),
            commit_timestamp: crate::broker::now_ms(),
        }
    }
}

pub(crate) fn put_string(out: &mut Vec<u8>, s: &str) -> Option<()> {
    let len = i16::try_from(s.len()).ok()?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Some(())
}

pub(crate) fn encode_key(group: &str, tp: &TopicPartition) -> Option<Bytes> {
    let mut out = Vec::with_capacity(8 + group.len() + tp.topic.len());
    out.extend_from_slice(&1i16.to_be_bytes());
    put_string(&mut out, group)?;
    put_string(&mut out, &tp.topic)?;
    out.extend_from_slice(&tp.partition.to_be_bytes());
    Some(Bytes::from(out))
}

pub(crate) fn encode_value(v: &OffsetAndMetadata) -> Option<Bytes> {
    let mut out = Vec::with_capacity(24 + v.metadata.len());
    out.extend_from_slice(&3i16.to_be_bytes());
    out.extend_from_slice(&v.offset.to_be_bytes());
    out.extend_from_slice(&v.leader_epoch.unwrap_or(-1).to_be_bytes());
    put_string(&mut out, &v.metadata)?;
    out.extend_from_slice(&v.commit_timestamp.to_be_bytes());
    Some(Bytes::from(out))
}

pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    pub(crate) fn i16(&mut self) -> Option<i16> {
        let b = self.take(2)?;
        Some(i16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn i32(&mut self) -> Option<i32> {
        let b = self.take(4)?;
        Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn i64(&mut self) -> Option<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(i64::from_be_bytes(a))
    }
    pub(crate) fn string(&mut self) -> Option<String> {
        let len = self.i16()?;
        if len < 0 {
            return Some(String::new());
        }
        let b = self.take(len as usize)?;
        String::from_utf8(b.to_vec()).ok()
    }
}

/// Decodes an offset-commit key; `None` for other record kinds (group metadata) or garbage.
pub(crate) fn decode_key(key: &[u8]) -> Option<(String, TopicPartition)> {
    let mut r = Reader(key);
    let version = r.i16()?;
    if !(0..=1).contains(&version) {
        return None;
    }
    let group = r.string()?;
    let topic = r.string()?;
    let partition = r.i32()?;
    Some((group, TopicPartition { topic, partition }))
}

/// Decodes `OffsetCommitValue` v0-v3.
pub(crate) fn decode_value(value: &[u8]) -> Option<OffsetAndMetadata> {
    let mut r = Reader(value);
    let version = r.i16()?;
    let offset = r.i64()?;
    let (leader_epoch, metadata, commit_timestamp) = match version {
        0 => {
            let m = r.string()?;
            (None, m, r.i64()?)
        }
        1 => {
            let m = r.string()?;
            let ts = r.i64()?;
            let _expire = r.i64()?;
            (None, m, ts)
        }
        2 => {
            let m = r.string()?;
            (None, m, r.i64()?)
        }
        3 => {
            let e = r.i32()?;
            let m = r.string()?;
            (if e >= 0 { Some(e) } else { None }, m, r.i64()?)
        }
        _ => return None,
    };
    Some(OffsetAndMetadata {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_value_round_trip() {
        let tp = TopicPartition::new("orders", 7);
        let key = encode_key("app", &tp).unwrap();
        assert_eq!(decode_key(&key), Some(("app".to_string(), tp)));
        let v = OffsetAndMetadata {
            offset: 42,
            leader_epoch: Some(3),
            metadata: "m".into(),
            commit_timestamp: 1000,
        };
        assert_eq!(decode_value(&encode_value(&v).unwrap()), Some(v));
        assert_eq!(decode_key(&[0, 2, 0]), None);
        assert_eq!(decode_value(&[0, 9]), None);
    }

    #[test]
    fn over_long_strings_are_refused() {
        let long = "x".repeat(40_000);
        assert!(encode_key(&long, &TopicPartition::new("t", 0)).is_none());
    }
}
