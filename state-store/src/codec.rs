//! Key layouts: the order-preserving layouts used inside segments, and Kafka Streams'
//! changelog key layouts for window and session stores.

/// Width of an encoded timestamp.
const TS: usize = 8;
/// Width of an encoded sequence number.
const SEQ: usize = 4;

/// Maps an `i64` to 8 bytes whose unsigned order is the signed order (sign bit flipped).
fn ordered_i64(v: i64) -> [u8; TS] {
    ((v as u64) ^ (1u64 << 63)).to_be_bytes()
}

fn from_ordered_i64(b: [u8; TS]) -> i64 {
    (u64::from_be_bytes(b) ^ (1u64 << 63)) as i64
}

/// Appends `key` escaped so that `escape(a) ++ x < escape(b) ++ y` whenever `a < b`: every
/// `0x00` becomes `0x00 0xff` and the key ends with `0x00 0x01`.
fn push_escaped(out: &mut Vec<u8>, key: &[u8]) {
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

/// Splits an escaped key off the front of `bytes`, returning the key and the rest.
fn split_escaped(bytes: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut key = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == 0 {
            match bytes.get(i + 1)? {
                0xff => key.push(0),
                0x01 => return Some((key, &bytes[i + 2..])),
                _ => return None,
            }
            i += 2;
        } else {
            key.push(b);
            i += 1;
        }
    }
    None
}

/// The escaped form of `key` alone: every segment key of `key` starts with it.
pub(crate) fn escaped_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2);
    push_escaped(&mut out, key);
    out
}

/// Segment key of a window: escaped key, ordered window start, sequence number.
pub(crate) fn window_segment_key(key: &[u8], window_start: i64, seq: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2 + TS + SEQ);
    push_escaped(&mut out, key);
    out.extend_from_slice(&ordered_i64(window_start));
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

/// Decodes a window segment key into (key, window start, seq).
pub(crate) fn decode_window_segment_key(bytes: &[u8]) -> Option<(Vec<u8>, i64, u32)> {
    let (key, rest) = split_escaped(bytes)?;
    if rest.len() != TS + SEQ {
        return None;
    }
    let ts: [u8; TS] = rest[..TS].try_into().ok()?;
    let seq: [u8; SEQ] = rest[TS..].try_into().ok()?;
    Some((key, from_ordered_i64(ts), u32::from_be_bytes(seq)))
}

/// Segment key of a session: escaped key, ordered end, ordered start.
pub(crate) fn session_segment_key(key: &[u8], start: i64, end: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2 + 2 * TS);
    push_escaped(&mut out, key);
    out.extend_from_slice(&ordered_i64(end));
    out.extend_from_slice(&ordered_i64(start));
    out
}

/// The smallest segment key of `key` with a session end of at least `end`.
pub(crate) fn session_segment_lower(key: &[u8], end: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2 + TS);
    push_escaped(&mut out, key);
    out.extend_from_slice(&ordered_i64(end));
    out
}

/// Decodes a session segment key into (key, start, end).
pub(crate) fn decode_session_segment_key(bytes: &[u8]) -> Option<(Vec<u8>, i64, i64)> {
    let (key, rest) = split_escaped(bytes)?;
    if rest.len() != 2 * TS {
        return None;
    }
    let end: [u8; TS] = rest[..TS].try_into().ok()?;
    let start: [u8; TS] = rest[TS..].try_into().ok()?;
    Some((key, from_ordered_i64(start), from_ordered_i64(end)))
}

/// Kafka Streams' window changelog key: key, 8-byte big-endian window start, 4-byte
/// big-endian sequence number (`WindowKeySchema.toStoreKeyBinary`).
pub fn window_changelog_key(key: &[u8], window_start: i64, seq: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + TS + SEQ);
    out.extend_from_slice(key);
    out.extend_from_slice(&window_start.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

/// Splits a window changelog key into (key, window start, seq); `None` if it is shorter
/// than the 12-byte suffix.
pub fn decode_window_changelog_key(bytes: &[u8]) -> Option<(Vec<u8>, i64, u32)> {
    let key_len = bytes.len().checked_sub(TS + SEQ)?;
    let ts: [u8; TS] = bytes[key_len..key_len + TS].try_into().ok()?;
    let seq: [u8; SEQ] = bytes[key_len + TS..].try_into().ok()?;
    Some((
        bytes[..key_len].to_vec(),
        i64::from_be_bytes(ts),
        u32::from_be_bytes(seq),
    ))
}

/// Kafka Streams' session changelog key: key, 8-byte big-endian end, 8-byte big-endian
/// start (`SessionKeySchema.toBinary`).
pub fn session_changelog_key(key: &[u8], start: i64, end: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2 * TS);
    out.extend_from_slice(key);
    out.extend_from_slice(&end.to_be_bytes());
    out.extend_from_slice(&start.to_be_bytes());
    out
}

/// Splits a session changelog key into (key, start, end); `None` if it is shorter than the
/// 16-byte suffix.
pub fn decode_session_changelog_key(bytes: &[u8]) -> Option<(Vec<u8>, i64, i64)> {
    let key_len = bytes.len().checked_sub(2 * TS)?;
    let end: [u8; TS] = bytes[key_len..key_len + TS].try_into().ok()?;
    let start: [u8; TS] = bytes[key_len + TS..].try_into().ok()?;
    Some((
        bytes[..key_len].to_vec(),
        i64::from_be_bytes(start),
        i64::from_be_bytes(end),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn changelog_layouts_match_kafka() {
        assert_eq!(
            window_changelog_key(b"k", 1, 2),
            vec![b'k', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2]
        );
        assert_eq!(
            session_changelog_key(b"k", 1, 2),
            vec![b'k', 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(decode_window_changelog_key(b"short"), None);
        assert_eq!(decode_session_changelog_key(b"short"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn window_segment_keys_preserve_tuple_order(
            a in proptest::collection::vec(0u8..3, 0..4), ta in any::<i64>(), sa in any::<u32>(),
            b in proptest::collection::vec(0u8..3, 0..4), tb in any::<i64>(), sb in any::<u32>(),
        ) {
            let ea = window_segment_key(&a, ta, sa);
            let eb = window_segment_key(&b, tb, sb);
            prop_assert_eq!((&a, ta, sa).cmp(&(&b, tb, sb)), ea.cmp(&eb));
            prop_assert_eq!(decode_window_segment_key(&ea), Some((a.clone(), ta, sa)));
            prop_assert!(ea.starts_with(&escaped_key(&a)));
        }

        #[test]
        fn session_segment_keys_preserve_tuple_order(
            a in proptest::collection::vec(0u8..3, 0..4), sa in any::<i64>(), ea in any::<i64>(),
            b in proptest::collection::vec(0u8..3, 0..4), sb in any::<i64>(), eb in any::<i64>(),
        ) {
            let ka = session_segment_key(&a, sa, ea);
            let kb = session_segment_key(&b, sb, eb);
            prop_assert_eq!((&a, ea, sa).cmp(&(&b, eb, sb)), ka.cmp(&kb));
            prop_assert_eq!(decode_session_segment_key(&ka), Some((a.clone(), sa, ea)));
            prop_assert!(ka >= session_segment_lower(&a, ea));
        }

        #[test]
        fn changelog_keys_round_trip(k in proptest::collection::vec(any::<u8>(), 0..8), t in any::<i64>(), s in any::<u32>(), e in any::<i64>()) {
            prop_assert_eq!(decode_window_changelog_key(&window_changelog_key(&k, t, s)), Some((k.clone(), t, s)));
            prop_assert_eq!(decode_session_changelog_key(&session_changelog_key(&k, t, e)), Some((k.clone(), t, e)));
        }
    }
}
