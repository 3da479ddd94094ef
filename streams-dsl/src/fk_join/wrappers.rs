//! The records of the foreign-key join's internal topics and subscription store, in
//! Kafka's byte layouts (`org.apache.kafka.streams.kstream.internals.foreignkeyjoin`):
//! `SubscriptionWrapper` (+`SubscriptionWrapperSerde`, version 1),
//! `SubscriptionResponseWrapper` (+`SubscriptionResponseWrapperSerde`, version 0) and the
//! subscription store's keys (`CombinedKeySchema`).

use std::sync::{Arc, OnceLock};

use streams_core::{Result, Serde, SerdeError, SerdeRegistry, SharedSerde, StreamsError};

/// A serde known when the join is built, or taken from the application's defaults when
/// the first processor of the join is initialized (Kafka's `setIfUnset` on its wrapping
/// serdes). Shared by the nodes of one join.
pub(crate) struct SerdeSlot<T>(Arc<OnceLock<SharedSerde<T>>>);

impl<T> Clone for SerdeSlot<T> {
    fn clone(&self) -> Self {
        SerdeSlot(Arc::clone(&self.0))
    }
}

impl<T: 'static> SerdeSlot<T> {
    pub(crate) fn new(given: Option<SharedSerde<T>>) -> Self {
        let cell = OnceLock::new();
        if let Some(s) = given {
            let _ = cell.set(s);
        }
        SerdeSlot(Arc::new(cell))
    }

    /// Fills the slot from the application's default serdes if it is still empty.
    pub(crate) fn resolve(
        &self,
        registry: &SerdeRegistry,
        what: &'static str,
        node: &str,
    ) -> Result<()> {
        if self.0.get().is_some() {
            return Ok(());
        }
        let serde = registry
            .get::<T>()
            .ok_or_else(|| StreamsError::MissingSerde {
                what,
                type_name: std::any::type_name::<T>(),
                node: node.to_owned(),
            })?;
        let _ = self.0.set(serde);
        Ok(())
    }

    pub(crate) fn get(&self) -> std::result::Result<&SharedSerde<T>, SerdeError> {
        self.0.get().ok_or_else(|| {
            SerdeError::new(format!(
                "the serde of {} for a foreign-key join is not resolved",
                std::any::type_name::<T>()
            ))
        })
    }
}

impl<T: 'static> Serde<T> for SerdeSlot<T> {
    fn serialize(
        &self,
        topic: &str,
        value: &T,
    ) -> std::result::Result<Option<Vec<u8>>, SerdeError> {
        self.get()?.serialize(topic, value)
    }
    fn deserialize(&self, topic: &str, bytes: Option<&[u8]>) -> std::result::Result<T, SerdeError> {
        self.get()?.deserialize(topic, bytes)
    }
    fn is_null(&self, value: &T) -> bool {
        self.get().is_ok_and(|s| s.is_null(value))
    }
}

/// Kafka's `SubscriptionWrapper.Instruction`: what the right side does with a
/// subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Instruction {
    /// Unsubscribe; send nothing (`0x00`).
    DeleteKeyNoPropagate,
    /// Unsubscribe and send `(k, null)` (`0x01`).
    DeleteKeyAndPropagate,
    /// Subscribe; send `(k, fk-value)`, or `(k, null)` if there is no foreign row (`0x02`).
    PropagateNullIfNoFkValAvailable,
    /// Subscribe; send `(k, fk-value)` only if there is a foreign row (`0x03`).
    PropagateOnlyIfFkValAvailable,
}

impl Instruction {
    pub(crate) fn value(self) -> u8 {
        match self {
            Instruction::DeleteKeyNoPropagate => 0,
            Instruction::DeleteKeyAndPropagate => 1,
            Instruction::PropagateNullIfNoFkValAvailable => 2,
            Instruction::PropagateOnlyIfFkValAvailable => 3,
        }
    }

    fn from_value(b: u8) -> std::result::Result<Self, SerdeError> {
        Ok(match b {
            0 => Instruction::DeleteKeyNoPropagate,
            1 => Instruction::DeleteKeyAndPropagate,
            2 => Instruction::PropagateNullIfNoFkValAvailable,
            3 => Instruction::PropagateOnlyIfFkValAvailable,
            other => {
                return Err(SerdeError::new(format!(
                    "Unknown instruction byte value = {other}"
                )));
            }
        })
    }
}

/// Kafka's `SubscriptionWrapper.CURRENT_VERSION`.
pub(crate) const SUBSCRIPTION_VERSION: u8 = 1;
/// Kafka's `SubscriptionResponseWrapper.CURRENT_VERSION`.
pub(crate) const RESPONSE_VERSION: u8 = 0;

/// A left row's subscription to a foreign key (Kafka's `SubscriptionWrapper`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubscriptionWrapper<K> {
    /// Murmur3-128 of the serialized left value (`None` for a deleted row).
    pub(crate) hash: Option<[i64; 2]>,
    pub(crate) instruction: Instruction,
    pub(crate) version: u8,
    pub(crate) primary_key: K,
    /// The partition of the left row (version 1; absent in version 0).
    pub(crate) primary_partition: Option<i32>,
}

/// Kafka's `SubscriptionWrapperSerde`:
/// `{1-bit isHashNull}{7-bit version}{1-byte instruction}{16-byte hash?}{primary key}{4-byte
/// primary partition (version 1)}`; the primary key is written with the left table's key
/// serde.
pub(crate) struct SubscriptionWrapperSerde<K> {
    pub(crate) primary_key: SerdeSlot<K>,
    /// The pseudo topic the primary key is (de)serialized for (`<app>-<topic>-pk`).
    pub(crate) pk_topic: Arc<OnceLock<String>>,
}

impl<K> Clone for SubscriptionWrapperSerde<K> {
    fn clone(&self) -> Self {
        SubscriptionWrapperSerde {
            primary_key: self.primary_key.clone(),
            pk_topic: Arc::clone(&self.pk_topic),
        }
    }
}

impl<K: 'static> SubscriptionWrapperSerde<K> {
    fn topic<'a>(&'a self, fallback: &'a str) -> &'a str {
        self.pk_topic.get().map_or(fallback, String::as_str)
    }
}

impl<K: Send + Sync + 'static> Serde<SubscriptionWrapper<K>> for SubscriptionWrapperSerde<K> {
    fn serialize(
        &self,
        topic: &str,
        data: &SubscriptionWrapper<K>,
    ) -> std::result::Result<Option<Vec<u8>>, SerdeError> {
        if data.version > 0x7f {
            return Err(SerdeError::new(
                "SubscriptionWrapper version is larger than maximum supported 0x7F",
            ));
        }
        let pk = self
            .primary_key
            .serialize(self.topic(topic), &data.primary_key)?
            .ok_or_else(|| SerdeError::new("primaryKey cannot be null"))?;
        let mut out = Vec::with_capacity(2 + 16 + pk.len() + 4);
        match &data.hash {
            Some(_) => out.push(data.version),
            None => out.push(data.version | 0x80),
        }
        out.push(data.instruction.value());
        if let Some([h1, h2]) = data.hash {
            out.extend_from_slice(&h1.to_be_bytes());
            out.extend_from_slice(&h2.to_be_bytes());
        }
        out.extend_from_slice(&pk);
        match data.version {
            0 => {}
            1 => {
                let p = data.primary_partition.ok_or_else(|| {
                    SerdeError::new("a version 1 SubscriptionWrapper needs its primary partition")
                })?;
                out.extend_from_slice(&p.to_be_bytes());
            }
            v => {
                return Err(SerdeError::new(format!(
                    "Unsupported SubscriptionWrapper version {v}"
                )));
            }
        }
        Ok(Some(out))
    }

    fn deserialize(
        &self,
        topic: &str,
        bytes: Option<&[u8]>,
    ) -> std::result::Result<SubscriptionWrapper<K>, SerdeError> {
        let data = bytes.ok_or_else(|| SerdeError::new("a null SubscriptionWrapper"))?;
        let short = || SerdeError::new("a SubscriptionWrapper shorter than its header");
        let (&first, rest) = data.split_first().ok_or_else(short)?;
        let (&inst, mut rest) = rest.split_first().ok_or_else(short)?;
        let version = first & 0x7f;
        let hash_null = first & 0x80 != 0;
        let instruction = Instruction::from_value(inst)?;
        let hash = if hash_null {
            None
        } else {
            if rest.len() < 16 {
                return Err(short());
            }
            let (h, r) = rest.split_at(16);
            rest = r;
            Some([read_i64(&h[..8]), read_i64(&h[8..])])
        };
        let (pk, primary_partition) = if version > 0 {
            if rest.len() < 4 {
                return Err(short());
            }
            let (pk, p) = rest.split_at(rest.len() - 4);
            (pk, Some(i32::from_be_bytes([p[0], p[1], p[2], p[3]])))
        } else {
            (rest, None)
        };
        let primary_key = self.primary_key.deserialize(self.topic(topic), Some(pk))?;
        if version > SUBSCRIPTION_VERSION {
            return Err(SerdeError::new(format!(
                "SubscriptionWrapper does not support version {version}"
            )));
        }
        Ok(SubscriptionWrapper {
            hash,
            instruction,
            version,
            primary_key,
            primary_partition,
        })
    }
}

fn read_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}

/// The right side's answer to a subscription (Kafka's `SubscriptionResponseWrapper`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubscriptionResponseWrapper<VO> {
    /// The hash of the left value the subscription was sent for.
    pub(crate) original_value_hash: Option<[i64; 2]>,
    /// The foreign row's value (`None`: no row).
    pub(crate) foreign_value: Option<VO>,
    pub(crate) version: u8,
    /// Not serialized: the partition the response goes to (the left row's).
    pub(crate) primary_partition: Option<i32>,
}

/// Kafka's `SubscriptionResponseWrapperSerde`:
/// `{1-bit isHashNull}{7-bit version}{16-byte hash?}{foreign value, absent if null}`.
pub(crate) struct ResponseWrapperSerde<VO> {
    pub(crate) foreign_value: SerdeSlot<VO>,
}

impl<VO: Send + Sync + 'static> Serde<SubscriptionResponseWrapper<VO>>
    for ResponseWrapperSerde<VO>
{
    fn serialize(
        &self,
        topic: &str,
        data: &SubscriptionResponseWrapper<VO>,
    ) -> std::result::Result<Option<Vec<u8>>, SerdeError> {
        if data.version > 0x7f {
            return Err(SerdeError::new(
                "SubscriptionResponseWrapper version cannot be negative",
            ));
        }
        let value = match &data.foreign_value {
            Some(v) => self.foreign_value.serialize(topic, v)?,
            None => None,
        };
        let mut out = Vec::with_capacity(17 + value.as_ref().map_or(0, Vec::len));
        match data.original_value_hash {
            Some([h1, h2]) => {
                out.push(data.version);
                out.extend_from_slice(&h1.to_be_bytes());
                out.extend_from_slice(&h2.to_be_bytes());
            }
            None => out.push(data.version | 0x80),
        }
        if let Some(v) = value {
            out.extend_from_slice(&v);
        }
        Ok(Some(out))
    }

    fn deserialize(
        &self,
        topic: &str,
        bytes: Option<&[u8]>,
    ) -> std::result::Result<SubscriptionResponseWrapper<VO>, SerdeError> {
        let data = bytes.ok_or_else(|| SerdeError::new("a null SubscriptionResponseWrapper"))?;
        let (&first, mut rest) = data
            .split_first()
            .ok_or_else(|| SerdeError::new("an empty SubscriptionResponseWrapper"))?;
        let version = first & 0x7f;
        let original_value_hash = if first & 0x80 != 0 {
            None
        } else {
            if rest.len() < 16 {
                return Err(SerdeError::new(
                    "a SubscriptionResponseWrapper shorter than its hash",
                ));
            }
            let (h, r) = rest.split_at(16);
            rest = r;
            Some([read_i64(&h[..8]), read_i64(&h[8..])])
        };
        // As Kafka: no bytes after the header is a null foreign value.
        let foreign_value = if rest.is_empty() {
            None
        } else {
            Some(self.foreign_value.deserialize(topic, Some(rest))?)
        };
        Ok(SubscriptionResponseWrapper {
            original_value_hash,
            foreign_value,
            version,
            primary_partition: None,
        })
    }
}

/// Kafka's `CombinedKeySchema` bytes: `{4-byte foreign key length}{foreign key}{primary
/// key}`; the prefix of a foreign key is its first two parts.
pub(crate) fn combined_key(fk: &[u8], pk: &[u8]) -> std::result::Result<Vec<u8>, SerdeError> {
    let mut out = prefix(fk)?;
    out.extend_from_slice(pk);
    Ok(out)
}

/// The subscription store prefix of a serialized foreign key.
pub(crate) fn prefix(fk: &[u8]) -> std::result::Result<Vec<u8>, SerdeError> {
    let len = i32::try_from(fk.len()).map_err(|_| SerdeError::new("a foreign key is too large"))?;
    let mut out = Vec::with_capacity(4 + fk.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(fk);
    Ok(out)
}

/// Splits combined key bytes into the serialized foreign and primary keys.
pub(crate) fn split_combined_key(data: &[u8]) -> std::result::Result<(&[u8], &[u8]), SerdeError> {
    let bad = || SerdeError::new("a malformed subscription store key");
    if data.len() < 4 {
        return Err(bad());
    }
    let len = i32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    let len = usize::try_from(len).map_err(|_| bad())?;
    let rest = &data[4..];
    if rest.len() < len {
        return Err(bad());
    }
    Ok(rest.split_at(len))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, OnceLock};

    use streams_core::{I32Serde, Serde, StringSerde};

    use super::*;

    fn sub_serde() -> SubscriptionWrapperSerde<String> {
        SubscriptionWrapperSerde {
            primary_key: SerdeSlot::new(Some(Arc::new(StringSerde))),
            pk_topic: Arc::new(OnceLock::new()),
        }
    }

    /// The bytes Kafka's `SubscriptionWrapperSerializer` writes (version 1), and back.
    #[test]
    fn subscription_wrapper_bytes() {
        let s = sub_serde();
        let w = SubscriptionWrapper {
            hash: Some([1, -2]),
            instruction: Instruction::PropagateNullIfNoFkValAvailable,
            version: 1,
            primary_key: "pk".to_owned(),
            primary_partition: Some(3),
        };
        let bytes = s.serialize("t", &w).unwrap().unwrap();
        let mut expected = vec![0x01, 0x02];
        expected.extend_from_slice(&1i64.to_be_bytes());
        expected.extend_from_slice(&(-2i64).to_be_bytes());
        expected.extend_from_slice(b"pk");
        expected.extend_from_slice(&[0, 0, 0, 3]);
        assert_eq!(bytes, expected);
        assert_eq!(s.deserialize("t", Some(&bytes)).unwrap(), w);
        // No hash: the high bit of the version byte.
        let del = SubscriptionWrapper {
            hash: None,
            instruction: Instruction::DeleteKeyAndPropagate,
            ..w.clone()
        };
        let bytes = s.serialize("t", &del).unwrap().unwrap();
        assert_eq!(bytes, [0x81, 0x01, b'p', b'k', 0, 0, 0, 3]);
        assert_eq!(s.deserialize("t", Some(&bytes)).unwrap(), del);
        // Version 0 (written by Kafka before 3.5 / with upgrade.from): no partition.
        let v0 = [0x80u8, 0x03, b'a', b'b'];
        let read = s.deserialize("t", Some(&v0)).unwrap();
        assert_eq!(
            (
                read.version,
                read.primary_key.as_str(),
                read.primary_partition,
                read.instruction
            ),
            (0, "ab", None, Instruction::PropagateOnlyIfFkValAvailable)
        );
        assert!(
            s.deserialize("t", Some(&[0x81, 0x09, b'a', 0, 0, 0, 0]))
                .is_err()
        );
        assert!(s.deserialize("t", Some(&[0x01])).is_err());
        assert!(
            s.deserialize("t", Some(&[0x02, 0x00, b'a', 0, 0, 0, 0]))
                .is_err()
        );
    }

    /// Kafka's `SubscriptionResponseWrapperSerializer` bytes, and back.
    #[test]
    fn response_wrapper_bytes() {
        let s = ResponseWrapperSerde {
            foreign_value: SerdeSlot::new(Some(Arc::new(I32Serde))),
        };
        let r = SubscriptionResponseWrapper {
            original_value_hash: Some([-1, 7]),
            foreign_value: Some(258),
            version: 0,
            primary_partition: Some(2),
        };
        let bytes = s.serialize("t", &r).unwrap().unwrap();
        let mut expected = vec![0x00];
        expected.extend_from_slice(&(-1i64).to_be_bytes());
        expected.extend_from_slice(&7i64.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 1, 2]);
        assert_eq!(bytes, expected);
        let back = s.deserialize("t", Some(&bytes)).unwrap();
        assert_eq!(
            back,
            SubscriptionResponseWrapper {
                primary_partition: None,
                ..r
            }
        );
        let none = SubscriptionResponseWrapper::<i32> {
            original_value_hash: None,
            foreign_value: None,
            version: 0,
            primary_partition: None,
        };
        let bytes = s.serialize("t", &none).unwrap().unwrap();
        assert_eq!(bytes, [0x80]);
        assert_eq!(s.deserialize("t", Some(&bytes)).unwrap(), none);
        assert!(s.deserialize("t", Some(&[0x00, 1, 2])).is_err());
    }

    /// `CombinedKeySchema`: length-prefixed foreign key, then the primary key.
    #[test]
    fn combined_keys() {
        let k = combined_key(b"fk", b"pk1").unwrap();
        assert_eq!(k, [0, 0, 0, 2, b'f', b'k', b'p', b'k', b'1']);
        assert!(k.starts_with(&prefix(b"fk").unwrap()));
        assert!(!k.starts_with(&prefix(b"f").unwrap()));
        assert_eq!(split_combined_key(&k).unwrap(), (&b"fk"[..], &b"pk1"[..]));
        assert!(split_combined_key(&[0, 0, 0, 9, 1]).is_err());
    }

    #[test]
    fn unresolved_slot_is_an_error() {
        let slot = SerdeSlot::<String>::new(None);
        assert!(slot.serialize("t", &"x".to_owned()).is_err());
        let mut registry = streams_core::SerdeRegistry::new();
        registry.register::<String>(StringSerde);
        slot.resolve(&registry, "key", "node").unwrap();
        assert_eq!(
            slot.serialize("t", &"x".to_owned()).unwrap(),
            Some(b"x".to_vec())
        );
        assert!(
            SerdeSlot::<u8>::new(None)
                .resolve(&registry, "key", "n")
                .is_err()
        );
    }
}
