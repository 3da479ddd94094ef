//! `__transaction_state` record layouts, as Kafka writes them: the key is
//! `TransactionLogKey` v0 (the transactional id), the value `TransactionLogValue` v0 (written;
//! v0 and the flexible v1 are read), a null value being a tombstone.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::state::TxnState;
use crate::offsets::{put_string, Reader, TopicPartition};

/// One `TransactionLogValue`: the state of a transactional id as the log stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnLogValue {
    pub(crate) producer_id: i64,
    /// v1 tagged field 0 (`PreviousProducerId`); -1 when absent.
    pub(crate) previous_producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) timeout_ms: i32,
    pub(crate) state: TxnState,
    pub(crate) partitions: BTreeSet<TopicPartition>,
    pub(crate) last_update_ms: i64,
    pub(crate) start_ms: i64,
}

/// `TransactionLogKey` v0.
pub(crate) fn encode_key(transactional_id: &str) -> Option<Bytes> {
    let mut out = Vec::with_capacity(4 + transactional_id.len());
    out.extend_from_slice(&0i16.to_be_bytes());
    put_string(&mut out, transactional_id)?;
    Some(Bytes::from(out))
}

/// The transactional id of a `TransactionLogKey` v0; `None` for other versions or garbage.
pub(crate) fn decode_key(key: &[u8]) -> Option<String> {
    let mut r = Reader(key);
    if r.i16()? != 0 {
        return None;
    }
    let id = r.string()?;
    r.0.is_empty().then_some(id)
}

/// `TransactionLogValue` v0, as Kafka writes it while `transaction.version` is below 1. The
/// partitions array is null in the Empty state (Kafka's rule), grouped by topic otherwise.
pub(crate) fn encode_value(v: &TxnLogValue) -> Option<Bytes> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&v.producer_id.to_be_bytes());
    out.extend_from_slice(&v.producer_epoch.to_be_bytes());
    out.extend_from_slice(&v.timeout_ms.to_be_bytes());
    out.push(v.state.id() as u8);
    if v.state == TxnState::Empty {
        out.extend_from_slice(&(-1i32).to_be_bytes());
    } else {
        let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
        for tp in &v.partitions {
            match topics.last_mut() {
                Some((t, ps)) if *t == tp.topic => ps.push(tp.partition),
                _ => topics.push((&tp.topic, vec![tp.partition])),
            }
        }
        out.extend_from_slice(&i32::try_from(topics.len()).ok()?.to_be_bytes());
        for (topic, ps) in topics {
            put_string(&mut out, topic)?;
            out.extend_from_slice(&i32::try_from(ps.len()).ok()?.to_be_bytes());
            for p in ps {
                out.extend_from_slice(&p.to_be_bytes());
            }
        }
    }
    out.extend_from_slice(&v.last_update_ms.to_be_bytes());
    out.extend_from_slice(&v.start_ms.to_be_bytes());
    Some(Bytes::from(out))
}

fn uvarint(r: &mut Reader<'_>) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = r.take(1)?[0];
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// A compact (v1) string: unsigned varint length + 1.
fn compact_string(r: &mut Reader<'_>) -> Option<String> {
    let n = usize::try_from(uvarint(r)?.checked_sub(1)?).ok()?;
    String::from_utf8(r.take(n)?.to_vec()).ok()
}

/// A compact array length (`None` inside for a null array).
fn compact_len(r: &mut Reader<'_>) -> Option<Option<usize>> {
    match uvarint(r)? {
        0 => Some(None),
        n => Some(Some(usize::try_from(n - 1).ok()?)),
    }
}

/// Skips a tagged-field section, returning the `PreviousProducerId` (tag 0) if present.
fn tagged_fields(r: &mut Reader<'_>) -> Option<Option<i64>> {
    let mut previous = None;
    let count = uvarint(r)?;
    for _ in 0..count {
        let tag = uvarint(r)?;
        let size = usize::try_from(uvarint(r)?).ok()?;
        let data = r.take(size)?;
        if tag == 0 && size == 8 {
            let mut a = [0u8; 8];
            a.copy_from_slice(data);
            previous = Some(i64::from_be_bytes(a));
        }
    }
    Some(previous)
}

/// Decodes `TransactionLogValue` v0 or v1; `None` for an unknown version, an unknown state
/// id or a truncated value.
pub(crate) fn decode_value(value: &[u8]) -> Option<TxnLogValue> {
    let mut r = Reader(value);
    let version = r.i16()?;
    if !(0..=1).contains(&version) {
        return None;
    }
    let flexible = version >= 1;
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let state = TxnState::from_id(r.take(1)?[0] as i8)?;
    let mut partitions = BTreeSet::new();
    let topics = if flexible {
        compact_len(&mut r)?
    } else {
        let n = r.i32()?;
        (n >= 0).then_some(n as usize)
    };
    for _ in 0..topics.unwrap_or(0) {
        let topic = if flexible {
            compact_string(&mut r)?
        } else {
            r.string()?
        };
        let n = if flexible {
            compact_len(&mut r)?.unwrap_or(0)
        } else {
            usize::try_from(r.i32()?).unwrap_or(0)
        };
        for _ in 0..n {
            partitions.insert(TopicPartition::new(topic.clone(), r.i32()?));
        }
        if flexible {
            tagged_fields(&mut r)?;
        }
    }
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    let previous_producer_id = if flexible {
        tagged_fields(&mut r)?.unwrap_or(-1)
    } else {
        -1
    };
    if state == TxnState::Empty {
        partitions.clear();
    }
    Some(TxnLogValue {
        producer_id,
        previous_producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        last_update_ms,
        start_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(state: TxnState, partitions: &[(&str, i32)]) -> TxnLogValue {
        TxnLogValue {
            producer_id: 4000,
            previous_producer_id: -1,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state,
            partitions: partitions
                .iter()
                .map(|(t, p)| TopicPartition::new(*t, *p))
                .collect(),
            last_update_ms: 1_700_000_000_123,
            start_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn key_layout_is_kafkas() {
        let key = encode_key("tx-1").unwrap();
        assert_eq!(&key[..], &[0, 0, 0, 4, b't', b'x', b'-', b'1']);
        assert_eq!(decode_key(&key).as_deref(), Some("tx-1"));
        assert_eq!(decode_key(&[0, 1, 0, 0]), None);
    }

    #[test]
    fn value_v0_layout_and_round_trip() {
        let v = value(TxnState::Ongoing, &[("a", 1), ("a", 0), ("b", 2)]);
        let bytes = encode_value(&v).unwrap();
        // version, producer id, epoch, timeout, state.
        assert_eq!(&bytes[..2], &[0, 0]);
        assert_eq!(&bytes[2..10], &4000i64.to_be_bytes());
        assert_eq!(&bytes[10..12], &3i16.to_be_bytes());
        assert_eq!(&bytes[12..16], &60_000i32.to_be_bytes());
        assert_eq!(bytes[16], 1);
        // Two topics.
        assert_eq!(&bytes[17..21], &2i32.to_be_bytes());
        assert_eq!(decode_value(&bytes), Some(v));
    }

    #[test]
    fn empty_state_writes_a_null_partition_array() {
        let v = value(TxnState::Empty, &[]);
        let bytes = encode_value(&v).unwrap();
        assert_eq!(&bytes[17..21], &(-1i32).to_be_bytes());
        assert_eq!(decode_value(&bytes), Some(v));
    }

    #[test]
    fn flexible_v1_values_are_read() {
        // Hand-built v1: compact arrays, tagged PreviousProducerId.
        let mut b = vec![0, 1];
        b.extend_from_slice(&7i64.to_be_bytes());
        b.extend_from_slice(&2i16.to_be_bytes());
        b.extend_from_slice(&1000i32.to_be_bytes());
        b.push(2); // PrepareCommit
        b.push(2); // one topic
        b.push(2); // "t"
        b.push(b't');
        b.push(3); // two partitions
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&5i32.to_be_bytes());
        b.push(0); // no tagged fields in the topic
        b.extend_from_slice(&11i64.to_be_bytes());
        b.extend_from_slice(&10i64.to_be_bytes());
        b.push(1); // one tagged field
        b.push(0); // tag 0
        b.push(8);
        b.extend_from_slice(&6i64.to_be_bytes());
        let v = decode_value(&b).unwrap();
        assert_eq!(v.producer_id, 7);
        assert_eq!(v.previous_producer_id, 6);
        assert_eq!(v.state, TxnState::PrepareCommit);
        assert_eq!(v.partitions.len(), 2);
        assert_eq!(v.start_ms, 10);
        assert_eq!(v.last_update_ms, 11);
    }

    #[test]
    fn truncated_or_unknown_values_are_refused() {
        let bytes = encode_value(&value(TxnState::Ongoing, &[("a", 0)])).unwrap();
        for n in 0..bytes.len() {
            assert_eq!(decode_value(&bytes[..n]), None, "prefix of {n} bytes");
        }
        let mut bad = bytes.to_vec();
        bad[16] = 9;
        assert_eq!(decode_value(&bad), None);
    }
}
