//! The metadata a task commits with its input offsets, in Kafka Streams' format
//! (`TopicPartitionMetadata` and `ProcessorMetadata`): base64 of a magic byte (2), the
//! partition time (8 bytes, big-endian) and, when processors stored any, their metadata
//! (entry count, then per entry the UTF-8 key's length, the key and an 8-byte value, all
//! big-endian). Emit-on-window-close aggregations keep their last emitted window close time
//! there (`lastEmitWindowCloseTime`, keyed by store name), so that a restarted task does not
//! emit the same closed windows again.

use std::collections::BTreeMap;

use base64::Engine;

/// Kafka's `TopicPartitionMetadata.LATEST_MAGIC_BYTE`.
const MAGIC: u8 = 2;

/// Encodes `partition_time` and the processor metadata as Kafka's
/// `TopicPartitionMetadata.encode`.
pub(crate) fn encode(partition_time: i64, processor_metadata: &BTreeMap<String, i64>) -> String {
    let mut buf = Vec::with_capacity(9);
    buf.push(MAGIC);
    buf.extend_from_slice(&partition_time.to_be_bytes());
    if !processor_metadata.is_empty() {
        let count = i32::try_from(processor_metadata.len()).unwrap_or(i32::MAX);
        buf.extend_from_slice(&count.to_be_bytes());
        for (key, value) in processor_metadata
            .iter()
            .take(usize::try_from(count).unwrap_or(0))
        {
            let len = i32::try_from(key.len()).unwrap_or(i32::MAX);
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(key.as_bytes());
            buf.extend_from_slice(&value.to_be_bytes());
        }
    }
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Decodes Kafka's `TopicPartitionMetadata`: the partition time (-1 if unknown) and the
/// processor metadata. As Kafka's `decode`, anything unreadable (another client's
/// metadata, an unknown version) gives no metadata and a warning, never an error.
pub(crate) fn decode(encoded: &str) -> (i64, BTreeMap<String, i64>) {
    let mut metadata = BTreeMap::new();
    if encoded.is_empty() {
        return (-1, metadata);
    }
    let parsed = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|bytes| parse(&bytes, &mut metadata));
    match parsed {
        Some(time) => (time, metadata),
        None => {
            tracing::warn!("Unsupported offset metadata found");
            (-1, BTreeMap::new())
        }
    }
}

fn parse(bytes: &[u8], metadata: &mut BTreeMap<String, i64>) -> Option<i64> {
    let (&version, rest) = bytes.split_first()?;
    let (time, mut rest) = take_i64(rest)?;
    match version {
        1 => Some(time),
        MAGIC => {
            if rest.is_empty() {
                return Some(time);
            }
            let (count, r) = take_i32(rest)?;
            rest = r;
            for _ in 0..count {
                let (len, r) = take_i32(rest)?;
                let len = usize::try_from(len).ok()?;
                let key = r.get(..len)?;
                let (value, r) = take_i64(r.get(len..)?)?;
                metadata.insert(String::from_utf8(key.to_vec()).ok()?, value);
                rest = r;
            }
            Some(time)
        }
        _ => None,
    }
}

fn take_i64(b: &[u8]) -> Option<(i64, &[u8])> {
    let bytes: [u8; 8] = b.get(..8)?.try_into().ok()?;
    Some((i64::from_be_bytes(bytes), &b[8..]))
}

fn take_i32(b: &[u8]) -> Option<(i32, &[u8])> {
    let bytes: [u8; 4] = b.get(..4)?.try_into().ok()?;
    Some((i32::from_be_bytes(bytes), &b[4..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_kafkas_layout() {
        let mut m = BTreeMap::new();
        m.insert("store".to_owned(), 42);
        let encoded = encode(7, &m);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&encoded)
            .unwrap();
        let mut expected = vec![2u8];
        expected.extend_from_slice(&7i64.to_be_bytes());
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&5i32.to_be_bytes());
        expected.extend_from_slice(b"store");
        expected.extend_from_slice(&42i64.to_be_bytes());
        assert_eq!(raw, expected);
        assert_eq!(decode(&encoded), (7, m));
        // Without processor metadata: magic and partition time only (Kafka's version 2).
        assert_eq!(decode(&encode(-1, &BTreeMap::new())), (-1, BTreeMap::new()));
    }

    #[test]
    fn unreadable_metadata_is_ignored() {
        assert_eq!(decode(""), (-1, BTreeMap::new()));
        assert_eq!(decode("not base64!"), (-1, BTreeMap::new()));
        // Version 1 (partition time only) is read; unknown versions are not.
        let v1 = base64::engine::general_purpose::STANDARD
            .encode([&[1u8][..], &9i64.to_be_bytes()].concat());
        assert_eq!(decode(&v1), (9, BTreeMap::new()));
        let v9 = base64::engine::general_purpose::STANDARD
            .encode([&[9u8][..], &9i64.to_be_bytes()].concat());
        assert_eq!(decode(&v9), (-1, BTreeMap::new()));
        // A truncated entry.
        let mut bad = vec![2u8];
        bad.extend_from_slice(&0i64.to_be_bytes());
        bad.extend_from_slice(&1i32.to_be_bytes());
        bad.extend_from_slice(&50i32.to_be_bytes());
        let bad = base64::engine::general_purpose::STANDARD.encode(bad);
        assert_eq!(decode(&bad), (-1, BTreeMap::new()));
    }
}
