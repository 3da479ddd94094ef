//! Windowed keys on topics: [`Windowed`]'s `Display`, [`TimeWindowedSerde`] (Kafka's
//! `TimeWindowedSerializer` / `TimeWindowedDeserializer` byte layout) and
//! [`SessionWindowedSerde`] (Kafka's `SessionWindowedSerializer` / `Deserializer`).

use std::fmt;
use std::time::Duration;

use crate::error::SerdeError;
use crate::serde::{Serde, SharedSerde};
use crate::store::{Window, Windowed};

impl<K: fmt::Display> fmt::Display for Windowed<K> {
    /// Kafka's `Windowed.toString`: `[key@start/end]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}@{}/{}]",
            self.key, self.window.start, self.window.end
        )
    }
}

/// The serde of time-windowed keys (Kafka's `TimeWindowedSerde`): the inner key's bytes,
/// then the window start as 8 bytes big-endian. The end is not written; reading takes it
/// as start + the window size given here (Kafka's `TimeWindowedDeserializer` with a
/// window size). What windowed tables write to output topics by default.
///
/// ```
/// use std::time::Duration;
/// use streams_core::{Serde, StringSerde, TimeWindowedSerde, Window, Windowed};
/// let serde = TimeWindowedSerde::new(StringSerde, Duration::from_secs(60));
/// let key = Windowed { key: "k".to_owned(), window: Window { start: 60_000, end: 120_000 } };
/// let bytes = serde.serialize("t", &key)?.unwrap();
/// assert_eq!(bytes, [b"k".as_slice(), &60_000i64.to_be_bytes()].concat());
/// assert_eq!(serde.deserialize("t", Some(&bytes))?, key);
/// assert_eq!(key.to_string(), "[k@60000/120000]");
/// # Ok::<(), streams_core::SerdeError>(())
/// ```
pub struct TimeWindowedSerde<K> {
    inner: SharedSerde<K>,
    window_size_ms: i64,
}

impl<K> Clone for TimeWindowedSerde<K> {
    fn clone(&self) -> Self {
        TimeWindowedSerde {
            inner: self.inner.clone(),
            window_size_ms: self.window_size_ms,
        }
    }
}

impl<K> fmt::Debug for TimeWindowedSerde<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeWindowedSerde")
            .field("window_size_ms", &self.window_size_ms)
            .finish()
    }
}

impl<K: 'static> TimeWindowedSerde<K> {
    /// Windowed keys of `inner` keys, in windows of `window_size`.
    pub fn new(inner: impl Serde<K>, window_size: Duration) -> Self {
        Self::from_shared(
            std::sync::Arc::new(inner),
            i64::try_from(window_size.as_millis()).unwrap_or(i64::MAX),
        )
    }

    /// Windowed keys of a shared serde, in windows of `window_size_ms` milliseconds.
    pub fn from_shared(inner: SharedSerde<K>, window_size_ms: i64) -> Self {
        TimeWindowedSerde {
            inner,
            window_size_ms,
        }
    }
}

impl<K: 'static> Serde<Windowed<K>> for TimeWindowedSerde<K> {
    fn serialize(&self, topic: &str, value: &Windowed<K>) -> Result<Option<Vec<u8>>, SerdeError> {
        let Some(mut bytes) = self.inner.serialize(topic, &value.key)? else {
            return Err(SerdeError::new(
                "the key of a windowed key serialized to null; a windowed key needs key bytes",
            ));
        };
        bytes.extend_from_slice(&value.window.start.to_be_bytes());
        Ok(Some(bytes))
    }

    fn deserialize(&self, topic: &str, bytes: Option<&[u8]>) -> Result<Windowed<K>, SerdeError> {
        let Some((key, start)) = bytes.and_then(<[u8]>::split_last_chunk::<8>) else {
            return Err(SerdeError::new(format!(
                "a time-windowed key needs the key bytes and an 8-byte window start; got {}",
                bytes.map_or_else(|| "null".to_owned(), |b| format!("{} bytes", b.len()))
            )));
        };
        let start = i64::from_be_bytes(*start);
        Ok(Windowed {
            key: self.inner.deserialize(topic, Some(key))?,
            window: Window {
                start,
                end: start.saturating_add(self.window_size_ms),
            },
        })
    }
}

/// The serde of session-windowed keys (Kafka's `SessionWindowedSerde`, whose bytes are
/// `SessionKeySchema.toBinary`): the inner key's bytes, then the session end, then the
/// session start, each 8 bytes big-endian. What session-windowed tables write to output
/// topics by default.
///
/// ```
/// use streams_core::{Serde, SessionWindowedSerde, StringSerde, Window, Windowed};
/// let serde = SessionWindowedSerde::new(StringSerde);
/// let key = Windowed { key: "k".to_owned(), window: Window { start: 1_000, end: 5_000 } };
/// let bytes = serde.serialize("t", &key)?.unwrap();
/// assert_eq!(bytes, [b"k".as_slice(), &5_000i64.to_be_bytes(), &1_000i64.to_be_bytes()].concat());
/// assert_eq!(serde.deserialize("t", Some(&bytes))?, key);
/// # Ok::<(), streams_core::SerdeError>(())
/// ```
pub struct SessionWindowedSerde<K> {
    inner: SharedSerde<K>,
}

impl<K> Clone for SessionWindowedSerde<K> {
    fn clone(&self) -> Self {
        SessionWindowedSerde {
            inner: self.inner.clone(),
        }
    }
}

impl<K> fmt::Debug for SessionWindowedSerde<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionWindowedSerde")
            .finish_non_exhaustive()
    }
}

impl<K: 'static> SessionWindowedSerde<K> {
    /// Session-windowed keys of `inner` keys.
    pub fn new(inner: impl Serde<K>) -> Self {
        Self::from_shared(std::sync::Arc::new(inner))
    }

    /// Session-windowed keys of a shared serde.
    pub fn from_shared(inner: SharedSerde<K>) -> Self {
        SessionWindowedSerde { inner }
    }
}

impl<K: 'static> Serde<Windowed<K>> for SessionWindowedSerde<K> {
    fn serialize(&self, topic: &str, value: &Windowed<K>) -> Result<Option<Vec<u8>>, SerdeError> {
        let Some(mut bytes) = self.inner.serialize(topic, &value.key)? else {
            return Err(SerdeError::new(
                "the key of a session-windowed key serialized to null; it needs key bytes",
            ));
        };
        bytes.extend_from_slice(&value.window.end.to_be_bytes());
        bytes.extend_from_slice(&value.window.start.to_be_bytes());
        Ok(Some(bytes))
    }

    fn deserialize(&self, topic: &str, bytes: Option<&[u8]>) -> Result<Windowed<K>, SerdeError> {
        let parts = bytes
            .and_then(<[u8]>::split_last_chunk::<8>)
            .and_then(|(rest, start)| rest.split_last_chunk::<8>().map(|(k, end)| (k, end, start)));
        let Some((key, end, start)) = parts else {
            return Err(SerdeError::new(format!(
                "a session-windowed key needs the key bytes, an 8-byte end and an 8-byte start; \
                 got {}",
                bytes.map_or_else(|| "null".to_owned(), |b| format!("{} bytes", b.len()))
            )));
        };
        Ok(Windowed {
            key: self.inner.deserialize(topic, Some(key))?,
            window: Window {
                start: i64::from_be_bytes(*start),
                end: i64::from_be_bytes(*end),
            },
        })
    }
}
