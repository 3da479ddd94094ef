//! Serdes: turning typed keys and values into Kafka record bytes and back.
//!
//! The built-in serdes are byte-compatible with Kafka's Java `Serdes`: [`StringSerde`]
//! (UTF-8), [`I16Serde`], [`I32Serde`], [`I64Serde`] (big-endian two's complement),
//! [`F32Serde`], [`F64Serde`] (IEEE 754 bits, big-endian), [`BoolSerde`] (one byte),
//! [`BytesSerde`] (as is) and [`VoidSerde`] (always null). [`JsonSerde`] handles any `serde`
//! type. A Kafka null (no key, or a tombstone value) is not a value of `String` or `i64`:
//! read such data as `Option<T>` with [`Nullable`].
//!
//! [`SerdeRegistry`] maps Rust types to their default serde; it is the typed form of Kafka's
//! `default.key.serde` / `default.value.serde` and is consulted whenever a topology node needs
//! a serde that was not given explicitly.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::error::SerdeError;

/// Serializes values of type `T` to nullable bytes and back, like a Kafka `Serde<T>`.
///
/// `topic` is the topic the bytes are read from or written to (serdes may depend on it, as
/// schema-registry serdes do). Returning `None` from [`Serde::serialize`] writes a null.
pub trait Serde<T>: Send + Sync + 'static {
    /// Turns `value` into bytes (`None` writes a Kafka null).
    fn serialize(&self, topic: &str, value: &T) -> Result<Option<Vec<u8>>, SerdeError>;
    /// Turns bytes (`None` for a Kafka null) into a value.
    fn deserialize(&self, topic: &str, bytes: Option<&[u8]>) -> Result<T, SerdeError>;
    /// True if `value` is this serde's Kafka null (what [`Serde::serialize`] writes as no
    /// bytes), without serializing it: `None` for [`Nullable`], always for [`VoidSerde`].
    /// Aggregations use it to skip null keys and values as Kafka Streams does. The
    /// default says no value is null.
    fn is_null(&self, value: &T) -> bool {
        let _ = value;
        false
    }
}

impl<T, S: Serde<T> + ?Sized> Serde<T> for Arc<S> {
    fn serialize(&self, topic: &str, value: &T) -> Result<Option<Vec<u8>>, SerdeError> {
        (**self).serialize(topic, value)
    }
    fn deserialize(&self, topic: &str, bytes: Option<&[u8]>) -> Result<T, SerdeError> {
        (**self).deserialize(topic, bytes)
    }
    fn is_null(&self, value: &T) -> bool {
        (**self).is_null(value)
    }
}

/// A shared, type-erased serde for `T`.
pub type SharedSerde<T> = Arc<dyn Serde<T>>;

fn null_error(what: &str) -> SerdeError {
    SerdeError::new(format!(
        "cannot deserialize a null as {what}; read nullable data as Option<T> (Nullable serde)"
    ))
}

fn require<'a>(bytes: Option<&'a [u8]>, what: &str) -> Result<&'a [u8], SerdeError> {
    bytes.ok_or_else(|| null_error(what))
}

fn fixed<const N: usize>(bytes: Option<&[u8]>, what: &str) -> Result<[u8; N], SerdeError> {
    let b = require(bytes, what)?;
    b.try_into().map_err(|_| {
        SerdeError::new(format!(
            "size of data received by the {what} deserializer is {} bytes, not {N}",
            b.len()
        ))
    })
}

/// UTF-8 strings (Kafka's `Serdes.String()`).
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerde;

impl Serde<String> for StringSerde {
    fn serialize(&self, _: &str, value: &String) -> Result<Option<Vec<u8>>, SerdeError> {
        Ok(Some(value.as_bytes().to_vec()))
    }
    fn deserialize(&self, _: &str, bytes: Option<&[u8]>) -> Result<String, SerdeError> {
        let b = require(bytes, "String")?;
        String::from_utf8(b.to_vec())
            .map_err(|e| SerdeError::new(format!("invalid UTF-8 in a string: {e}")))
    }
}

macro_rules! number_serde {
    ($(#[$doc:meta])* $name:ident, $ty:ty, $n:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;

        impl Serde<$ty> for $name {
            fn serialize(&self, _: &str, value: &$ty) -> Result<Option<Vec<u8>>, SerdeError> {
                Ok(Some(value.to_be_bytes().to_vec()))
            }
            fn deserialize(&self, _: &str, bytes: Option<&[u8]>) -> Result<$ty, SerdeError> {
                Ok(<$ty>::from_be_bytes(fixed::<$n>(bytes, $what)?))
            }
        }
    };
}

number_serde!(
    /// 16-bit integers, big-endian (Kafka's `Serdes.Short()`).
    I16Serde, i16, 2, "Short"
);
number_serde!(
    /// 32-bit integers, big-endian (Kafka's `Serdes.Integer()`).
    I32Serde, i32, 4, "Integer"
);
number_serde!(
    /// 64-bit integers, big-endian (Kafka's `Serdes.Long()`).
    I64Serde, i64, 8, "Long"
);
number_serde!(
    /// 32-bit floats, IEEE 754 bits big-endian (Kafka's `Serdes.Float()`).
    F32Serde, f32, 4, "Float"
);
number_serde!(
    /// 64-bit floats, IEEE 754 bits big-endian (Kafka's `Serdes.Double()`).
    F64Serde, f64, 8, "Double"
);

/// Booleans as one byte, 1 or 0 (Kafka's `Serdes.Boolean()`).
#[derive(Debug, Clone, Copy, Default)]
pub struct BoolSerde;

impl Serde<bool> for BoolSerde {
    fn serialize(&self, _: &str, value: &bool) -> Result<Option<Vec<u8>>, SerdeError> {
        Ok(Some(vec![u8::from(*value)]))
    }
    fn deserialize(&self, _: &str, bytes: Option<&[u8]>) -> Result<bool, SerdeError> {
        match fixed::<1>(bytes, "Boolean")? {
            [0] => Ok(false),
            [1] => Ok(true),
            [b] => Err(SerdeError::new(format!(
                "unexpected byte {b} for a boolean (expected 0 or 1)"
            ))),
        }
    }
}

/// Raw bytes, unchanged (Kafka's `Serdes.ByteArray()`).
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerde;

impl Serde<Vec<u8>> for BytesSerde {
    fn serialize(&self, _: &str, value: &Vec<u8>) -> Result<Option<Vec<u8>>, SerdeError> {
        Ok(Some(value.clone()))
    }
    fn deserialize(&self, _: &str, bytes: Option<&[u8]>) -> Result<Vec<u8>, SerdeError> {
        Ok(require(bytes, "bytes")?.to_vec())
    }
}

/// Only nulls (Kafka's `Serdes.Void()`): for topics whose keys are always null.
/// Deserializing a non-null is an error, as in Kafka.
#[derive(Debug, Clone, Copy, Default)]
pub struct VoidSerde;

impl Serde<()> for VoidSerde {
    fn serialize(&self, _: &str, _: &()) -> Result<Option<Vec<u8>>, SerdeError> {
        Ok(None)
    }
    fn deserialize(&self, _: &str, bytes: Option<&[u8]>) -> Result<(), SerdeError> {
        match bytes {
            None => Ok(()),
            Some(b) => Err(SerdeError::new(format!(
                "data should be null for a VoidDeserializer, got {} bytes",
                b.len()
            ))),
        }
    }
    fn is_null(&self, _: &()) -> bool {
        true
    }
}

/// Wraps a serde of `T` into a serde of `Option<T>` where `None` is a Kafka null.
#[derive(Debug, Clone, Copy, Default)]
pub struct Nullable<S>(pub S);

impl<T, S: Serde<T>> Serde<Option<T>> for Nullable<S> {
    fn serialize(&self, topic: &str, value: &Option<T>) -> Result<Option<Vec<u8>>, SerdeError> {
        match value {
            Some(v) => self.0.serialize(topic, v),
            None => Ok(None),
        }
    }
    fn deserialize(&self, topic: &str, bytes: Option<&[u8]>) -> Result<Option<T>, SerdeError> {
        match bytes {
            Some(b) => self.0.deserialize(topic, Some(b)).map(Some),
            None => Ok(None),
        }
    }
    fn is_null(&self, value: &Option<T>) -> bool {
        value.as_ref().is_none_or(|v| self.0.is_null(v))
    }
}

/// JSON for any `serde` type (UTF-8 JSON text, as Kafka's JSON serdes write it).
pub struct JsonSerde<T>(PhantomData<fn() -> T>);

impl<T> JsonSerde<T> {
    /// A JSON serde for `T`.
    pub fn new() -> Self {
        JsonSerde(PhantomData)
    }
}

impl<T> Default for JsonSerde<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for JsonSerde<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for JsonSerde<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonSerde<{}>", std::any::type_name::<T>())
    }
}

impl<T> Serde<T> for JsonSerde<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    fn serialize(&self, _: &str, value: &T) -> Result<Option<Vec<u8>>, SerdeError> {
        serde_json::to_vec(value)
            .map(Some)
            .map_err(|e| SerdeError::new(format!("JSON serialization failed: {e}")))
    }
    fn deserialize(&self, _: &str, bytes: Option<&[u8]>) -> Result<T, SerdeError> {
        let b = require(bytes, std::any::type_name::<T>())?;
        serde_json::from_slice(b).map_err(|e| SerdeError::new(format!("invalid JSON: {e}")))
    }
}

/// Default serdes by Rust type: the typed form of Kafka's `default.key.serde` and
/// `default.value.serde`.
///
/// [`SerdeRegistry::with_builtins`] knows `String`, `i16`, `i32`, `i64`, `f32`, `f64`,
/// `bool`, `Vec<u8>`, `()` and `Option<_>` of each of these; register your own types with
/// [`SerdeRegistry::register`].
///
/// ```
/// use streams_core::{JsonSerde, Serde, SerdeRegistry};
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Position { lat: f64, lon: f64 }
///
/// let mut registry = SerdeRegistry::with_builtins();
/// registry.register::<Position>(JsonSerde::new());
/// let serde = registry.get::<Position>().unwrap();
/// let bytes = serde.serialize("t", &Position { lat: 1.0, lon: 2.0 })?.unwrap();
/// assert_eq!(bytes, br#"{"lat":1.0,"lon":2.0}"#);
/// assert_eq!(registry.get::<i64>().unwrap().serialize("t", &1)?.unwrap(), [0, 0, 0, 0, 0, 0, 0, 1]);
/// # Ok::<(), streams_core::SerdeError>(())
/// ```
#[derive(Clone, Default)]
pub struct SerdeRegistry {
    by_type: HashMap<TypeId, (Arc<dyn Any + Send + Sync>, &'static str)>,
}

impl fmt::Debug for SerdeRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.by_type.values().map(|(_, n)| *n).collect();
        names.sort_unstable();
        f.debug_struct("SerdeRegistry")
            .field("types", &names)
            .finish()
    }
}

impl SerdeRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with the built-in serdes for the primitive types and their `Option`s.
    pub fn with_builtins() -> Self {
        let mut r = Self::new();
        r.register_with_nullable::<String, _>(StringSerde);
        r.register_with_nullable::<i16, _>(I16Serde);
        r.register_with_nullable::<i32, _>(I32Serde);
        r.register_with_nullable::<i64, _>(I64Serde);
        r.register_with_nullable::<f32, _>(F32Serde);
        r.register_with_nullable::<f64, _>(F64Serde);
        r.register_with_nullable::<bool, _>(BoolSerde);
        r.register_with_nullable::<Vec<u8>, _>(BytesSerde);
        r.register::<()>(VoidSerde);
        r
    }

    fn register_with_nullable<T: 'static, S: Serde<T> + Clone>(&mut self, serde: S) {
        self.register::<Option<T>>(Nullable(serde.clone()));
        self.register::<T>(serde);
    }

    /// Makes `serde` the default for `T` (replacing any previous one).
    pub fn register<T: 'static>(&mut self, serde: impl Serde<T>) {
        let shared: SharedSerde<T> = Arc::new(serde);
        self.by_type.insert(
            TypeId::of::<T>(),
            (Arc::new(shared), std::any::type_name::<T>()),
        );
    }

    /// The default serde for `T`, if one is registered.
    pub fn get<T: 'static>(&self) -> Option<SharedSerde<T>> {
        self.by_type
            .get(&TypeId::of::<T>())
            .and_then(|(any, _)| any.downcast_ref::<SharedSerde<T>>())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_compatible_bytes() {
        assert_eq!(
            I32Serde.serialize("t", &-2).unwrap().unwrap(),
            [0xff, 0xff, 0xff, 0xfe]
        );
        assert_eq!(
            I64Serde.serialize("t", &258).unwrap().unwrap(),
            [0, 0, 0, 0, 0, 0, 1, 2]
        );
        // Java: Double.doubleToLongBits(1.5) = 0x3FF8000000000000
        assert_eq!(
            F64Serde.serialize("t", &1.5).unwrap().unwrap(),
            [0x3f, 0xf8, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            StringSerde
                .serialize("t", &"tópico".to_owned())
                .unwrap()
                .unwrap(),
            "tópico".as_bytes()
        );
        assert_eq!(VoidSerde.serialize("t", &()).unwrap(), None);
    }

    #[test]
    fn wrong_sizes_and_nulls_are_errors() {
        assert!(I64Serde.deserialize("t", Some(&[1, 2, 3])).is_err());
        assert!(I32Serde.deserialize("t", None).is_err());
        assert!(StringSerde.deserialize("t", Some(&[0xff, 0xfe])).is_err());
        assert!(VoidSerde.deserialize("t", Some(b"x")).is_err());
        assert!(BoolSerde.deserialize("t", Some(&[2])).is_err());
        assert_eq!(Nullable(I32Serde).deserialize("t", None).unwrap(), None);
    }

    proptest::proptest! {
        #[test]
        fn round_trips(s in ".*", i in proptest::num::i64::ANY, f in proptest::num::f64::NORMAL) {
            let r = SerdeRegistry::with_builtins();
            let ss = r.get::<String>().unwrap();
            proptest::prop_assert_eq!(ss.deserialize("t", ss.serialize("t", &s).unwrap().as_deref()).unwrap(), s);
            let is = r.get::<i64>().unwrap();
            proptest::prop_assert_eq!(is.deserialize("t", is.serialize("t", &i).unwrap().as_deref()).unwrap(), i);
            let fs = r.get::<Option<f64>>().unwrap();
            proptest::prop_assert_eq!(fs.deserialize("t", fs.serialize("t", &Some(f)).unwrap().as_deref()).unwrap(), Some(f));
        }
    }
}
