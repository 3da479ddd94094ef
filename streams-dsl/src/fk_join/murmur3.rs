//! Kafka's `Murmur3.hash128` (`org.apache.kafka.streams.state.internals.Murmur3`, taken
//! from Hive): MurmurHash3 x64 128-bit, seed 104729 by default, returned as Kafka returns
//! it, the two 64-bit halves `[h1, h2]` as signed longs. The foreign-key join hashes the
//! serialized left value with it to recognize stale subscription responses.

/// Kafka's `Murmur3.DEFAULT_SEED`.
pub(crate) const DEFAULT_SEED: i32 = 104_729;

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;
const R1: u32 = 31;
const R2: u32 = 27;
const R3: u32 = 33;
const M: u64 = 5;
const N1: u64 = 0x52dc_e729;
const N2: u64 = 0x3849_5ab5;

fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// `Murmur3.hash128(data)`: the default seed.
pub(crate) fn hash128(data: &[u8]) -> [i64; 2] {
    hash128_with_seed(data, DEFAULT_SEED)
}

/// `Murmur3.hash128(data, 0, data.length, seed)`.
pub(crate) fn hash128_with_seed(data: &[u8], seed: i32) -> [i64; 2] {
    // Java: `long h1 = seed;` sign-extends the int seed.
    let mut h1 = i64::from(seed) as u64;
    let mut h2 = h1;
    let mut blocks = data.chunks_exact(16);
    for block in &mut blocks {
        let (a, b) = block.split_at(8);
        let mut k1 = u64::from_le_bytes(a.try_into().unwrap_or([0; 8]));
        let mut k2 = u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));

        k1 = k1.wrapping_mul(C1).rotate_left(R1).wrapping_mul(C2);
        h1 ^= k1;
        h1 = h1
            .rotate_left(R2)
            .wrapping_add(h2)
            .wrapping_mul(M)
            .wrapping_add(N1);

        k2 = k2.wrapping_mul(C2).rotate_left(R3).wrapping_mul(C1);
        h2 ^= k2;
        h2 = h2
            .rotate_left(R1)
            .wrapping_add(h1)
            .wrapping_mul(M)
            .wrapping_add(N2);
    }
    let tail = blocks.remainder();
    let mut k1: u64 = 0;
    let mut k2: u64 = 0;
    if tail.len() > 8 {
        for (i, &b) in tail[8..].iter().enumerate() {
            k2 ^= u64::from(b) << (8 * i);
        }
        k2 = k2.wrapping_mul(C2).rotate_left(R3).wrapping_mul(C1);
        h2 ^= k2;
    }
    if !tail.is_empty() {
        for (i, &b) in tail.iter().take(8).enumerate() {
            k1 ^= u64::from(b) << (8 * i);
        }
        k1 = k1.wrapping_mul(C1).rotate_left(R1).wrapping_mul(C2);
        h1 ^= k1;
    }
    // Java xors the int length, sign-extended (lengths are never negative).
    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    [h1 as i64, h2 as i64]
}

#[cfg(test)]
mod tests {
    use super::{hash128, hash128_with_seed};

    /// Kafka's `Murmur3Test.testMurmur3_128` vectors (seed 123).
    #[test]
    fn kafka_murmur3_128_vectors() {
        let cases: [(&[u8], [i64; 2]); 6] = [
            (b"21", [5857341059704281894, -5288187638297930763]),
            (b"foobar", [-351361463397418609, 8959716011862540668]),
            (
                b"a-little-bit-long-string",
                [8836256500583638442, -198172363548498523],
            ),
            (
                b"a-little-bit-longer-string",
                [1838346159335108511, 8794688210320490705],
            ),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                [-4024021876037397259, -1482317706335141238],
            ),
            (b"abc", [1489494923063836066, -5440978547625122829]),
        ];
        for (data, expected) in cases {
            assert_eq!(hash128_with_seed(data, 123), expected, "{data:?}");
        }
    }

    /// The reference MurmurHash3_x64_128 of the empty input with seed 0 is all zeros; every
    /// tail length gives a distinct hash under the default seed.
    #[test]
    fn edge_cases() {
        assert_eq!(hash128_with_seed(b"", 0), [0, 0]);
        let data: Vec<u8> = (0u8..40).collect();
        let mut seen = std::collections::HashSet::new();
        for n in 0..=data.len() {
            assert!(seen.insert(hash128(&data[..n])), "collision at length {n}");
        }
    }
}
