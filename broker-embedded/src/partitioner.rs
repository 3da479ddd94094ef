//! Partitioners that place records exactly where the Java client would.
//!
//! Keyed records: `(murmur2(key) & 0x7fffffff) % partitions`, the Java client's default
//! (`Utils.murmur2` with seed `0x9747b28c`), so keys land on the same partitions as with Java
//! producers and Kafka Streams, and co-partitioning works across clients. Records with a null
//! key are not hashed: [`StickyPartitioner`] keeps them on one partition per batch and then
//! moves on (KIP-480 / KIP-794 style).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// The Java client's `Utils.murmur2` (32-bit MurmurHash2, seed `0x9747b28c`), returned as the
/// signed value Java computes.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client's default partitioner picks for a non-null key.
///
/// Returns `None` when `num_partitions` is zero.
///
/// ```
/// use broker_embedded::partition_for_key;
/// assert_eq!(partition_for_key(b"truck-42", 12), Some(5));
/// ```
pub fn partition_for_key(key: &[u8], num_partitions: u32) -> Option<u32> {
    if num_partitions == 0 {
        return None;
    }
    Some(((murmur2(key) & 0x7fff_ffff) as u32) % num_partitions)
}

/// Java's `String.hashCode()` over UTF-16 code units; Kafka maps a consumer group to its
/// `__consumer_offsets` partition with `abs(groupId.hashCode()) % partitions`.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// Kafka's `Utils.abs`: like `abs` but maps `i32::MIN` to 0.
pub(crate) fn java_abs(n: i32) -> i32 {
    if n == i32::MIN {
        0
    } else {
        n.abs()
    }
}

/// Sticky partitioning for records with a null key: every record goes to the current partition
/// until `batch_size` bytes have been sent there, then a new partition is picked at random
/// (different from the previous one when there is a choice).
#[derive(Debug)]
pub struct StickyPartitioner {
    batch_size: usize,
    current: Option<u32>,
    bytes_in_batch: usize,
    rng_state: u64,
}

impl StickyPartitioner {
    /// A sticky partitioner that switches partition after `batch_size` bytes (Java's
    /// `batch.size`, default 16384).
    pub fn new(batch_size: usize) -> Self {
        let seed = RandomState::new().build_hasher().finish() | 1;
        Self {
            batch_size: batch_size.max(1),
            current: None,
            bytes_in_batch: 0,
            rng_state: seed,
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: enough to spread batches; not for anything security-related.
        let mut x = self.rng_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng_state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The partition for a null-key record of `record_size` bytes, or `None` when
    /// `num_partitions` is zero.
    pub fn partition(&mut self, num_partitions: u32, record_size: usize) -> Option<u32> {
        if num_partitions == 0 {
            return None;
        }
        let needs_new = match self.current {
            None => true,
            Some(p) => p >= num_partitions || self.bytes_in_batch >= self.batch_size,
        };
        if needs_new {
            let previous = self.current;
            let mut p = (self.next_random() % u64::from(num_partitions)) as u32;
            if num_partitions > 1 && Some(p) == previous {
                p = (p + 1) % num_partitions;
            }
            self.current = Some(p);
            self.bytes_in_batch = 0;
        }
        self.bytes_in_batch += record_size;
        self.current
    }
}

impl Default for StickyPartitioner {
    fn default() -> Self {
        Self::new(16_384)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from the Java client's `Utils.murmur2` (shared/REFERENCE.md).
    const VECTORS: &[(&str, i32, u32, u32)] = &[
        ("", 275_646_681, 9, 0),
        ("a", -1_563_381_124, 4, 1),
        ("foo", 597_841_616, 8, 2),
        ("truck-42", -619_178_895, 5, 2),
        ("hello world", 1_221_641_059, 7, 1),
        ("21", -973_932_308, 0, 0),
        ("ñandú", -1_915_788_724, 4, 1),
    ];

    #[test]
    fn murmur2_matches_java_vectors() {
        for &(key, hash, p12, p3) in VECTORS {
            assert_eq!(murmur2(key.as_bytes()), hash, "murmur2({key:?})");
            assert_eq!(
                partition_for_key(key.as_bytes(), 12),
                Some(p12),
                "{key:?} % 12"
            );
            assert_eq!(
                partition_for_key(key.as_bytes(), 3),
                Some(p3),
                "{key:?} % 3"
            );
        }
    }

    #[test]
    fn zero_partitions_is_none() {
        assert_eq!(partition_for_key(b"x", 0), None);
        assert_eq!(StickyPartitioner::default().partition(0, 10), None);
    }

    #[test]
    fn java_string_hash_matches_java() {
        // "hello".hashCode() == 99162322 and "".hashCode() == 0 in Java.
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash(""), 0);
        // Non-BMP characters hash as two UTF-16 surrogates: "😀".hashCode() == 0xD83D * 31 + 0xDE00.
        assert_eq!(java_string_hash("😀"), 1_772_899);
        assert_eq!(java_abs(i32::MIN), 0);
    }

    #[test]
    fn sticky_partitioner_sticks_then_moves() {
        let mut sp = StickyPartitioner::new(100);
        let first = sp.partition(8, 10).unwrap();
        for _ in 0..9 {
            assert_eq!(sp.partition(8, 10), Some(first));
        }
        let next = sp.partition(8, 10).unwrap();
        assert_ne!(next, first, "a full batch moves to another partition");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            seen.insert(sp.partition(8, 50).unwrap());
        }
        assert_eq!(seen.len(), 8, "over time every partition is used");
    }
}
