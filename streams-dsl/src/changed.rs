//! Kafka's `ChangedSerializer` / `ChangedDeserializer` byte format for the values of a
//! table repartition topic (`KGroupedTable` aggregations): a [`Change`] of old and new value.
//!
//! The last byte is the encoding flag:
//! - `0`: `old bytes, 0` (only an old value),
//! - `1`: `new bytes, 1` (only a new value),
//! - `2`: `varint(len(new)), new bytes, old bytes, 2` (both; the varint is Kafka's
//!   zig-zag `ByteUtils.writeVarint`),
//! - `3`, `4`, `5`: the same three with an `is_latest` byte before the flag (versioned
//!   tables); read, never written.

use streams_core::{Change, SerdeError, SharedSerde};

/// The serde of a table repartition topic's values: a [`Change`] in Kafka's format, each
/// value written with `inner`.
pub(crate) struct ChangedSerde<V> {
    pub(crate) inner: SharedSerde<V>,
}

fn write_varint(value: i32, out: &mut Vec<u8>) {
    // Zig-zag, then 7 bits at a time, lowest first.
    let mut v = ((value << 1) ^ (value >> 31)) as u32;
    while v & !0x7f != 0 {
        out.push(((v & 0x7f) | 0x80) as u8);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(bytes: &[u8]) -> Result<(i32, usize), SerdeError> {
    let mut v: u32 = 0;
    for (i, b) in bytes.iter().take(5).enumerate() {
        v |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let decoded = ((v >> 1) as i32) ^ -((v & 1) as i32);
            return Ok((decoded, i + 1));
        }
    }
    Err(SerdeError::new("bad varint in a Change value"))
}

impl<V: 'static> streams_core::Serde<Change<V>> for ChangedSerde<V> {
    fn serialize(&self, topic: &str, value: &Change<V>) -> Result<Option<Vec<u8>>, SerdeError> {
        let new = match &value.new {
            Some(v) => self.inner.serialize(topic, v)?,
            None => None,
        };
        let old = match &value.old {
            Some(v) => self.inner.serialize(topic, v)?,
            None => None,
        };
        let bytes = match (new, old) {
            (Some(mut new), Some(old)) => {
                let len = i32::try_from(new.len())
                    .map_err(|_| SerdeError::new("a Change value is too large"))?;
                let mut out = Vec::with_capacity(5 + new.len() + old.len() + 1);
                write_varint(len, &mut out);
                out.append(&mut new);
                out.extend_from_slice(&old);
                out.push(2);
                out
            }
            (Some(mut new), None) => {
                new.push(1);
                new
            }
            (None, Some(mut old)) => {
                old.push(0);
                old
            }
            (None, None) => {
                return Err(SerdeError::new(
                    "both old and new values are null in a Change, which is not allowed",
                ));
            }
        };
        Ok(Some(bytes))
    }

    fn deserialize(&self, topic: &str, bytes: Option<&[u8]>) -> Result<Change<V>, SerdeError> {
        let data = bytes.ok_or_else(|| SerdeError::new("a Change value cannot be null"))?;
        let (&flag, body) = data
            .split_last()
            .ok_or_else(|| SerdeError::new("an empty Change value"))?;
        let (body, flag) = if (3..=5).contains(&flag) {
            // Versioned encodings carry an is_latest byte before the flag.
            let (_, rest) = body
                .split_last()
                .ok_or_else(|| SerdeError::new("a Change value without its is_latest byte"))?;
            (rest, flag - 3)
        } else {
            (body, flag)
        };
        let (new, old) = match flag {
            0 => (None, Some(body)),
            1 => (Some(body), None),
            2 => {
                let (len, used) = read_varint(body)?;
                let len = usize::try_from(len)
                    .map_err(|_| SerdeError::new("a negative length in a Change value"))?;
                let rest = &body[used..];
                if rest.len() < len {
                    return Err(SerdeError::new("a Change value shorter than its new value"));
                }
                let (new, old) = rest.split_at(len);
                (Some(new), Some(old))
            }
            other => {
                return Err(SerdeError::new(format!(
                    "unknown encoding flag {other} in a Change value"
                )));
            }
        };
        Ok(Change {
            new: new
                .map(|b| self.inner.deserialize(topic, Some(b)))
                .transpose()?,
            old: old
                .map(|b| self.inner.deserialize(topic, Some(b)))
                .transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use streams_core::{Change, Serde, StringSerde};

    use super::ChangedSerde;

    fn serde() -> ChangedSerde<String> {
        ChangedSerde {
            inner: Arc::new(StringSerde),
        }
    }

    /// The bytes of Kafka's `ChangedSerializer` for each case, and back.
    #[test]
    fn kafka_change_bytes() {
        let s = serde();
        let both = Change {
            new: Some("ab".to_owned()),
            old: Some("xyz".to_owned()),
        };
        let bytes = s.serialize("t", &both).unwrap().unwrap();
        // varint(2) zig-zag = 4, "ab", "xyz", flag 2
        assert_eq!(bytes, b"\x04abxyz\x02");
        assert_eq!(s.deserialize("t", Some(&bytes)).unwrap(), both);
        let new_only = Change {
            new: Some("ab".to_owned()),
            old: None,
        };
        let bytes = s.serialize("t", &new_only).unwrap().unwrap();
        assert_eq!(bytes, b"ab\x01");
        assert_eq!(s.deserialize("t", Some(&bytes)).unwrap(), new_only);
        let old_only = Change {
            new: None,
            old: Some("xyz".to_owned()),
        };
        let bytes = s.serialize("t", &old_only).unwrap().unwrap();
        assert_eq!(bytes, b"xyz\x00");
        assert_eq!(s.deserialize("t", Some(&bytes)).unwrap(), old_only);
        // Versioned encodings: is_latest byte before the flag.
        assert_eq!(s.deserialize("t", Some(b"ab\x01\x04")).unwrap(), new_only);
        assert!(
            s.serialize(
                "t",
                &Change {
                    new: None,
                    old: None
                }
            )
            .is_err()
        );
        assert!(s.deserialize("t", Some(b"ab\x09")).is_err());
        assert!(s.deserialize("t", None).is_err());
        // A long new value: two-byte varint.
        let long = Change {
            new: Some("n".repeat(200)),
            old: Some("o".to_owned()),
        };
        let bytes = s.serialize("t", &long).unwrap().unwrap();
        assert_eq!(&bytes[..2], &[0x90, 0x03]);
        assert_eq!(s.deserialize("t", Some(&bytes)).unwrap(), long);
    }
}
