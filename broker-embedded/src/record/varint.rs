//! Zig-zag varints as used inside Kafka record batches v2 (protobuf-style, little-endian base
//! 128 groups).

use super::RecordError;

/// Appends `value` as a zig-zag varint (Kafka's `varint`, 32-bit).
pub(crate) fn put_varint(buf: &mut Vec<u8>, value: i32) {
    put_unsigned_varlong(buf, u64::from(((value << 1) ^ (value >> 31)) as u32));
}

/// Appends `value` as a zig-zag varlong (Kafka's `varlong`, 64-bit).
pub(crate) fn put_varlong(buf: &mut Vec<u8>, value: i64) {
    put_unsigned_varlong(buf, ((value << 1) ^ (value >> 63)) as u64);
}

fn put_unsigned_varlong(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Number of bytes `put_varint(value)` writes.
pub(crate) fn varint_len(value: i32) -> usize {
    let mut v = u64::from(((value << 1) ^ (value >> 31)) as u32);
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// A cursor over a byte slice that reads Kafka's primitive types with typed errors.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn unsigned_varlong(&mut self, max_bytes: usize) -> Result<u64, RecordError> {
        let mut result: u64 = 0;
        for i in 0..max_bytes {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(RecordError::InvalidRecord("truncated varint".into()));
            };
            self.pos += 1;
            result |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(result);
            }
        }
        Err(RecordError::InvalidRecord("varint is too long".into()))
    }

    pub(crate) fn varint(&mut self) -> Result<i32, RecordError> {
        let raw = self.unsigned_varlong(5)?;
        let raw = u32::try_from(raw)
            .map_err(|_| RecordError::InvalidRecord("varint overflows 32 bits".into()))?;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    pub(crate) fn varlong(&mut self) -> Result<i64, RecordError> {
        let raw = self.unsigned_varlong(10)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    pub(crate) fn i8(&mut self) -> Result<i8, RecordError> {
        let b = self.bytes(1)?;
        Ok(b[0] as i8)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.remaining() < n {
            return Err(RecordError::InvalidRecord(format!(
                "field of {n} bytes overruns the record ({} bytes left)",
                self.remaining()
            )));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// A varint length followed by that many bytes; a length of -1 is `None` (null).
    pub(crate) fn nullable_bytes(&mut self) -> Result<Option<&'a [u8]>, RecordError> {
        let len = self.varint()?;
        match len {
            -1 => Ok(None),
            n if n < -1 => Err(RecordError::InvalidRecord(format!("negative length {n}"))),
            n => self.bytes(n as usize).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trips(v in any::<i32>()) {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            prop_assert_eq!(buf.len(), varint_len(v));
            let mut r = Reader::new(&buf);
            prop_assert_eq!(r.varint().unwrap(), v);
            prop_assert_eq!(r.remaining(), 0);
        }

        #[test]
        fn varlong_round_trips(v in any::<i64>()) {
            let mut buf = Vec::new();
            put_varlong(&mut buf, v);
            let mut r = Reader::new(&buf);
            prop_assert_eq!(r.varlong().unwrap(), v);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let mut r = Reader::new(&bytes);
            let _ = r.varint();
            let _ = r.varlong();
            let _ = r.nullable_bytes();
        }
    }

    #[test]
    fn known_encodings() {
        // Values from the protobuf/Kafka zig-zag definition.
        let mut buf = Vec::new();
        put_varint(&mut buf, 0);
        put_varint(&mut buf, -1);
        put_varint(&mut buf, 1);
        put_varint(&mut buf, 300);
        assert_eq!(buf, vec![0x00, 0x01, 0x02, 0xd8, 0x04]);
    }
}
