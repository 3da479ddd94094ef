//! Checks a request frame against its wire layout before the `kafka-protocol` decoders see it.
//!
//! Those decoders reserve `Vec` capacity from array counts read off the wire before reading
//! the elements (`Vec::with_capacity(n)`, and `vec![0; n]` for some byte fields), so a 20-byte
//! frame claiming two billion elements makes the allocator fail and Rust abort the whole
//! process. This walker follows exactly the same layout (generated from the decoders, see
//! [`super::wire_schema`]) without allocating and refuses any array that claims more elements
//! than there are bytes left in the frame (every element takes at least one byte), so what the
//! decoders later reserve is bounded by the frame the client actually sent.
//!
//! The walk is deliberately lenient where leniency cannot hurt (UTF-8, null where a value is
//! required): the decoder still rejects those. It only has to consume exactly the bytes the
//! decoder consumes, which the tests below check for every supported API and version.

use kafka_protocol::messages::ApiKey;

use super::wire_schema as ws;

/// How a field is encoded on the wire.
#[derive(Debug, Clone, Copy)]
pub(super) enum Enc {
    /// A fixed number of bytes (integers, booleans, floats, UUIDs).
    Fixed(usize),
    /// `i16` length (-1 = null) and bytes.
    Str,
    /// Unsigned varint length + 1 (0 = null) and bytes.
    CStr,
    /// `i32` length (-1 = null) and bytes.
    Bytes,
    /// Unsigned varint length + 1 (0 = null) and bytes.
    CBytes,
    /// `i32` count (-1 = null) and elements.
    Arr(Elem),
    /// Unsigned varint count + 1 (0 = null) and elements.
    CArr(Elem),
    /// A nested structure at the same version.
    Struct(&'static Schema),
    /// An `i8` presence marker (1 = present) and, if present, a nested structure.
    OptStruct(&'static Schema),
}

/// An array element.
#[derive(Debug, Clone, Copy)]
pub(super) enum Elem {
    Fixed(usize),
    Str,
    CStr,
    Struct(&'static Schema),
}

/// One field: its encoding per inclusive version range (absent outside all of them).
#[derive(Debug)]
pub(super) struct Field {
    pub(super) name: &'static str,
    pub(super) alts: &'static [(i16, i16, Enc)],
}

/// A known tagged field: its encoding per version range (the decoder fails on the tag in any
/// other version).
#[derive(Debug)]
pub(super) struct Tag {
    pub(super) tag: u32,
    pub(super) alts: &'static [(i16, i16, Enc)],
}

/// The layout of one message or nested structure.
#[derive(Debug)]
pub(super) struct Schema {
    /// Versions the decoder accepts.
    pub(super) versions: (i16, i16),
    /// First version with a tagged-field section (`i16::MAX`: none).
    pub(super) flexible_from: i16,
    pub(super) fields: &'static [Field],
    pub(super) tags: &'static [Tag],
}

/// Walks a whole request frame (header, then body) as the decoders will read it. Returns the
/// number of bytes the decoders will consume, or why the frame must be refused.
pub(super) fn check_request(
    api: ApiKey,
    version: i16,
    header_version: i16,
    frame: &[u8],
) -> Result<usize, String> {
    let body = ws::request_schema(api);
    let mut c = Cursor { buf: frame, pos: 0 };
    walk(
        &mut c,
        &ws::REQUEST_HEADER__REQUEST_HEADER,
        header_version,
        "RequestHeader",
    )?;
    walk(&mut c, body, version, "request")?;
    Ok(c.pos)
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "{what}: needs {n} bytes at offset {}, only {} left",
                self.pos,
                self.remaining()
            ));
        }
        let start = self.pos;
        self.pos += n;
        Ok(&self.buf[start..start + n])
    }

    fn i16(&mut self, what: &str) -> Result<i16, String> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &str) -> Result<i32, String> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// `kafka-protocol`'s unsigned varint: at most five bytes, extra high bits ignored.
    fn uvarint(&mut self, what: &str) -> Result<u32, String> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = u32::from(self.take(1, what)?[0]);
            value |= (b & 0x7f).wrapping_shl(i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// Checks an element count against the bytes left (each element takes at least one).
    fn count(&mut self, n: usize, what: &str) -> Result<usize, String> {
        if n > self.remaining() {
            return Err(format!(
                "{what}: claims {n} elements with only {} bytes left",
                self.remaining()
            ));
        }
        Ok(n)
    }
}

fn pick(alts: &[(i16, i16, Enc)], version: i16) -> Option<Enc> {
    alts.iter()
        .find(|(lo, hi, _)| (*lo..=*hi).contains(&version))
        .map(|(_, _, enc)| *enc)
}

fn walk(c: &mut Cursor<'_>, schema: &Schema, version: i16, what: &str) -> Result<(), String> {
    let (min, max) = schema.versions;
    if version < min || version > max {
        return Err(format!("{what}: version {version} is not supported"));
    }
    for field in schema.fields {
        if let Some(enc) = pick(field.alts, version) {
            walk_enc(c, enc, version, field.name)?;
        }
    }
    if version >= schema.flexible_from {
        let tagged = c.uvarint(what)?;
        for _ in 0..tagged {
            let tag = c.uvarint(what)?;
            let size = c.uvarint(what)?;
            match schema.tags.iter().find(|t| t.tag == tag) {
                // The decoder reads a known tag's value in place, ignoring the size.
                Some(known) => match pick(known.alts, version) {
                    Some(enc) => walk_enc(c, enc, version, what)?,
                    None => return Err(format!("{what}: tag {tag} is not valid in v{version}")),
                },
                None => {
                    c.take(size as usize, what)?;
                }
            }
        }
    }
    Ok(())
}

fn walk_enc(c: &mut Cursor<'_>, enc: Enc, version: i16, what: &str) -> Result<(), String> {
    match enc {
        Enc::Fixed(n) => {
            c.take(n, what)?;
        }
        Enc::Str => {
            let n = c.i16(what)?;
            if n < -1 {
                return Err(format!("{what}: string length {n}"));
            }
            if n > 0 {
                c.take(n as usize, what)?;
            }
        }
        Enc::Bytes => {
            let n = c.i32(what)?;
            if n < -1 {
                return Err(format!("{what}: bytes length {n}"));
            }
            if n > 0 {
                c.take(n as usize, what)?;
            }
        }
        Enc::CStr | Enc::CBytes => {
            let n = c.uvarint(what)?;
            if n > 1 {
                c.take((n - 1) as usize, what)?;
            }
        }
        Enc::Arr(elem) => {
            let n = c.i32(what)?;
            if n < -1 {
                return Err(format!("{what}: array length {n}"));
            }
            if n > 0 {
                let n = c.count(n as usize, what)?;
                for _ in 0..n {
                    walk_elem(c, elem, version, what)?;
                }
            }
        }
        Enc::CArr(elem) => {
            let n = c.uvarint(what)?;
            if n > 1 {
                let n = c.count((n - 1) as usize, what)?;
                for _ in 0..n {
                    walk_elem(c, elem, version, what)?;
                }
            }
        }
        Enc::Struct(schema) => walk(c, schema, version, what)?,
        Enc::OptStruct(schema) => {
            if c.take(1, what)?[0] == 1 {
                walk(c, schema, version, what)?;
            }
        }
    }
    Ok(())
}

fn walk_elem(c: &mut Cursor<'_>, elem: Elem, version: i16, what: &str) -> Result<(), String> {
    let enc = match elem {
        Elem::Fixed(n) => Enc::Fixed(n),
        Elem::Str => Enc::Str,
        Elem::CStr => Enc::CStr,
        Elem::Struct(schema) => Enc::Struct(schema),
    };
    walk_enc(c, enc, version, what)
}

/// Builds well-formed request frames (header and body) for every supported API and version,
/// following the same layouts: once with empty arrays and no tagged fields, once with one
/// element in every array and every known tagged field plus an unknown one. Used as a seed
/// corpus for fuzzing and to check the layouts against the decoders.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn sample_frames() -> Vec<(ApiKey, i16, Vec<u8>)> {
    sample_frames_where(super::handlers::supported_versions)
}

/// As [`sample_frames`], for the versions `versions` picks per API.
#[cfg(any(test, feature = "fuzzing"))]
fn sample_frames_where(
    versions: impl Fn(ApiKey) -> Option<(i16, i16)>,
) -> Vec<(ApiKey, i16, Vec<u8>)> {
    let mut out = Vec::new();
    for key in 0..=i16::from(u8::MAX) {
        let Ok(api) = ApiKey::try_from(key) else {
            continue;
        };
        let Some((min, max)) = versions(api) else {
            continue;
        };
        let body = ws::request_schema(api);
        for version in min..=max {
            for fill in [false, true] {
                let header_version = api.request_header_version(version);
                let mut frame = Vec::new();
                frame.extend_from_slice(&key.to_be_bytes());
                frame.extend_from_slice(&version.to_be_bytes());
                frame.extend_from_slice(&(i32::from(version) + 1).to_be_bytes());
                frame.extend_from_slice(&6i16.to_be_bytes());
                frame.extend_from_slice(b"client");
                if header_version >= 2 {
                    frame.push(0);
                }
                sample(&mut frame, body, version, fill);
                out.push((api, version, frame));
            }
        }
    }
    out
}

#[cfg(any(test, feature = "fuzzing"))]
fn put_uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(any(test, feature = "fuzzing"))]
fn sample(out: &mut Vec<u8>, schema: &Schema, version: i16, fill: bool) {
    for field in schema.fields {
        if let Some(enc) = pick(field.alts, version) {
            sample_enc(out, enc, version, fill);
        }
    }
    if version >= schema.flexible_from {
        if !fill {
            out.push(0);
            return;
        }
        let known: Vec<(u32, Enc)> = schema
            .tags
            .iter()
            .filter_map(|t| pick(t.alts, version).map(|enc| (t.tag, enc)))
            .collect();
        put_uvarint(out, known.len() as u32 + 1);
        for (tag, enc) in known {
            let mut value = Vec::new();
            sample_enc(&mut value, enc, version, fill);
            put_uvarint(out, tag);
            put_uvarint(out, value.len() as u32);
            out.extend_from_slice(&value);
        }
        put_uvarint(out, 99);
        put_uvarint(out, 2);
        out.extend_from_slice(b"??");
    }
}

#[cfg(any(test, feature = "fuzzing"))]
fn sample_enc(out: &mut Vec<u8>, enc: Enc, version: i16, fill: bool) {
    let n = u32::from(fill);
    match enc {
        // Big-endian 1 (a valid boolean, and non-zero for UUIDs).
        Enc::Fixed(size) => {
            out.extend(std::iter::repeat_n(0, size - 1));
            out.push(1);
        }
        Enc::Str => {
            out.extend_from_slice(&2i16.to_be_bytes());
            out.extend_from_slice(b"ab");
        }
        Enc::CStr | Enc::CBytes => {
            put_uvarint(out, 3);
            out.extend_from_slice(b"ab");
        }
        Enc::Bytes => {
            out.extend_from_slice(&2i32.to_be_bytes());
            out.extend_from_slice(b"ab");
        }
        Enc::Arr(elem) => {
            out.extend_from_slice(&(n as i32).to_be_bytes());
            for _ in 0..n {
                sample_elem(out, elem, version, fill);
            }
        }
        Enc::CArr(elem) => {
            put_uvarint(out, n + 1);
            for _ in 0..n {
                sample_elem(out, elem, version, fill);
            }
        }
        Enc::Struct(schema) => sample(out, schema, version, fill),
        Enc::OptStruct(schema) => {
            if fill {
                out.push(1);
                sample(out, schema, version, fill);
            } else {
                out.push(0xff);
            }
        }
    }
}

#[cfg(any(test, feature = "fuzzing"))]
fn sample_elem(out: &mut Vec<u8>, elem: Elem, version: i16, fill: bool) {
    match elem {
        Elem::Fixed(n) => sample_enc(out, Enc::Fixed(n), version, fill),
        Elem::Str => sample_enc(out, Enc::Str, version, fill),
        Elem::CStr => sample_enc(out, Enc::CStr, version, fill),
        Elem::Struct(schema) => sample(out, schema, version, fill),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::messages::{RequestHeader, RequestKind};
    use kafka_protocol::protocol::Decodable;

    /// The layouts agree with the decoders: every sample frame decodes, and the walk and the
    /// decoders consume exactly the same bytes.
    #[test]
    fn sample_frames_walk_exactly_like_the_decoder() {
        assert!(sample_frames().len() > 200);
        // Every API the crate knows, every version its decoder accepts (not only the ones
        // the server implements today).
        let frames = sample_frames_where(|api| Some(ws::request_schema(api).versions));
        assert!(frames.len() > 500, "{}", frames.len());
        for (api, version, frame) in frames {
            let header_version = api.request_header_version(version);
            let walked = check_request(api, version, header_version, &frame)
                .unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"));
            assert_eq!(walked, frame.len(), "{api:?} v{version}");
            let mut rest = Bytes::from(frame);
            RequestHeader::decode(&mut rest, header_version).unwrap();
            RequestKind::decode(api, &mut rest, version)
                .unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"));
            assert!(rest.is_empty(), "{api:?} v{version}: {} left", rest.len());
        }
    }

    #[test]
    fn huge_array_claims_are_refused_before_decoding() {
        // Metadata v1: header v1, then `topics` as an i32 count of i32::MAX.
        let mut frame = Vec::new();
        frame.extend_from_slice(&3i16.to_be_bytes());
        frame.extend_from_slice(&1i16.to_be_bytes());
        frame.extend_from_slice(&7i32.to_be_bytes());
        frame.extend_from_slice(&(-1i16).to_be_bytes());
        frame.extend_from_slice(&i32::MAX.to_be_bytes());
        let err = check_request(ApiKey::Metadata, 1, 1, &frame).unwrap_err();
        assert!(err.contains("claims"), "{err}");
    }
}
