//! Group metadata records in `__consumer_offsets`, with Kafka's layouts, so groups,
//! generations and static members survive a broker restart.
//!
//! Key (`GroupMetadataKey`, record type 2): `version i16 = 2 | group string`. Value
//! (`GroupMetadataValue` v3, the last non-flexible version): `version i16 = 3 |
//! protocol_type string | generation i32 | protocol nullable string | leader nullable string |
//! current_state_timestamp i64 | members [member_id string | group_instance_id nullable string |
//! client_id string | client_host string | rebalance_timeout i32 | session_timeout i32 |
//! subscription bytes | assignment bytes]`. Strings are `i16 length + UTF-8` (-1 = null),
//! bytes and arrays `i32 length`. A null value (tombstone) deletes the group. Versions 0-3
//! are read; the flexible version 4 is not (such a record is skipped with a warning).

use bytes::Bytes;

use crate::offsets::{put_string, Reader};

/// The key version (record type) of group metadata.
const GROUP_KEY_VERSION: i16 = 2;
/// The value version written.
const GROUP_VALUE_VERSION: i16 = 3;

/// A group as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredGroup {
    pub(crate) protocol_type: String,
    pub(crate) generation: i32,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) current_state_timestamp: i64,
    pub(crate) members: Vec<StoredMember>,
}

/// A member as stored (metadata of the group's protocol only, as in Kafka).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredMember {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) session_timeout_ms: i32,
    pub(crate) subscription: Bytes,
    pub(crate) assignment: Bytes,
}

fn put_nullable(out: &mut Vec<u8>, s: Option<&str>) -> Option<()> {
    match s {
        Some(s) => put_string(out, s),
        None => {
            out.extend_from_slice(&(-1i16).to_be_bytes());
            Some(())
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) -> Option<()> {
    let len = i32::try_from(b.len()).ok()?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b);
    Some(())
}

fn nullable(r: &mut Reader<'_>) -> Option<Option<String>> {
    let len = r.i16()?;
    if len < 0 {
        return Some(None);
    }
    let b = r.take(usize::try_from(len).ok()?)?;
    String::from_utf8(b.to_vec()).ok().map(Some)
}

fn bytes(r: &mut Reader<'_>) -> Option<Bytes> {
    let len = r.i32()?;
    if len < 0 {
        return Some(Bytes::new());
    }
    Some(Bytes::copy_from_slice(r.take(usize::try_from(len).ok()?)?))
}

/// `GroupMetadataKey`; `None` if the group id is longer than an `i16` string allows.
pub(crate) fn encode_key(group: &str) -> Option<Bytes> {
    let mut out = Vec::with_capacity(4 + group.len());
    out.extend_from_slice(&GROUP_KEY_VERSION.to_be_bytes());
    put_string(&mut out, group)?;
    Some(Bytes::from(out))
}

/// The group id of a `GroupMetadataKey`; `None` for other record kinds or garbage.
pub(crate) fn decode_key(key: &[u8]) -> Option<String> {
    let mut r = Reader(key);
    if r.i16()? != GROUP_KEY_VERSION {
        return None;
    }
    r.string()
}

/// `GroupMetadataValue` v3; `None` if a string or byte field is too long for its length.
pub(crate) fn encode_value(g: &StoredGroup) -> Option<Bytes> {
    let mut out = Vec::with_capacity(64 + g.members.len() * 128);
    out.extend_from_slice(&GROUP_VALUE_VERSION.to_be_bytes());
    put_string(&mut out, &g.protocol_type)?;
    out.extend_from_slice(&g.generation.to_be_bytes());
    put_nullable(&mut out, g.protocol.as_deref())?;
    put_nullable(&mut out, g.leader.as_deref())?;
    out.extend_from_slice(&g.current_state_timestamp.to_be_bytes());
    out.extend_from_slice(&i32::try_from(g.members.len()).ok()?.to_be_bytes());
    for m in &g.members {
        put_string(&mut out, &m.member_id)?;
        put_nullable(&mut out, m.group_instance_id.as_deref())?;
        put_string(&mut out, &m.client_id)?;
        put_string(&mut out, &m.client_host)?;
        out.extend_from_slice(&m.rebalance_timeout_ms.to_be_bytes());
        out.extend_from_slice(&m.session_timeout_ms.to_be_bytes());
        put_bytes(&mut out, &m.subscription)?;
        put_bytes(&mut out, &m.assignment)?;
    }
    Some(Bytes::from(out))
}

/// Decodes `GroupMetadataValue` v0-v3 (fields a version lacks take Kafka's defaults).
pub(crate) fn decode_value(value: &[u8]) -> Option<StoredGroup> {
    let mut r = Reader(value);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return None;
    }
    let protocol_type = r.string()?;
    let generation = r.i32()?;
    let protocol = nullable(&mut r)?;
    let leader = nullable(&mut r)?;
    let current_state_timestamp = if version >= 2 { r.i64()? } else { -1 };
    let n = usize::try_from(r.i32()?).ok()?;
    // Each member takes at least 20 bytes: refuse counts the bytes cannot hold.
    if n.saturating_mul(20) > r.0.len() {
        return None;
    }
    let mut members = Vec::with_capacity(n);
    for _ in 0..n {
        let member_id = r.string()?;
        let group_instance_id = if version >= 3 {
            nullable(&mut r)?
        } else {
            None
        };
        let client_id = r.string()?;
        let client_host = r.string()?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout_ms = r.i32()?;
        let subscription = bytes(&mut r)?;
        let assignment = bytes(&mut r)?;
        members.push(StoredMember {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms: if version >= 1 {
                rebalance_timeout_ms
            } else {
                session_timeout_ms
            },
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Some(StoredGroup {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_metadata_round_trips_and_truncation_is_refused() {
        let g = StoredGroup {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp: 1234,
            members: vec![
                StoredMember {
                    member_id: "m1".into(),
                    group_instance_id: Some("i1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 60_000,
                    session_timeout_ms: 10_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                },
                StoredMember {
                    member_id: "m2".into(),
                    group_instance_id: None,
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 60_000,
                    session_timeout_ms: 10_000,
                    subscription: Bytes::new(),
                    assignment: Bytes::new(),
                },
            ],
        };
        let v = encode_value(&g).unwrap();
        assert_eq!(&v[..2], &3i16.to_be_bytes());
        assert_eq!(decode_value(&v), Some(g));
        for cut in 0..v.len() {
            assert_eq!(decode_value(&v[..cut]), None, "cut at {cut}");
        }
        let k = encode_key("app").unwrap();
        assert_eq!(&k[..], &[0, 2, 0, 3, b'a', b'p', b'p']);
        assert_eq!(decode_key(&k).as_deref(), Some("app"));
        // Offset-commit keys (versions 0 and 1) are not group keys.
        assert_eq!(decode_key(&[0, 1, 0, 1, b'g']), None);
    }
}
