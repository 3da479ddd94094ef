//! Throughput of the state stores: put/get/range for RocksDB and in-memory key-value stores
//! (16-byte keys, 100-byte values, 1M keys), window put/fetch, cached vs uncached
//! word-count-like updates with Zipf-distributed keys, and restoration of 1M changelog
//! records into RocksDB.
//!
//! Run: `cargo bench -p state-store --bench stores`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use state_store::{
    CachingKeyValueStore, ChangeLoggingKeyValueStore, ChangelogRecord, ChangelogSink, Direction,
    InMemoryKeyValueStore, InMemoryWindowStore, KeyValueStore, RecordTimestamp, Restorer,
    RocksDbConfig, RocksDbKeyValueStore, RocksDbResources, RocksDbWindowStore, StateStore,
    TopicPartition, WindowStore, WindowStoreOptions,
};

const KEYS: u64 = 1_000_000;
const OPS_PER_ITER: u64 = 10_000;
const VALUE: [u8; 100] = [7u8; 100];

fn key(i: u64) -> [u8; 16] {
    // Spread keys over the keyspace (multiplicative hash), fixed 16 bytes.
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&h.to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Zipf(s = 1.0) over `n` ranks, by inverse CDF.
struct Zipf {
    cdf: Vec<f64>,
}
impl Zipf {
    fn new(n: usize) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for r in 1..=n {
            acc += 1.0 / r as f64;
            cdf.push(acc);
        }
        let total = acc;
        cdf.iter_mut().for_each(|c| *c /= total);
        Zipf { cdf }
    }
    fn sample(&self, rng: &mut Rng) -> u64 {
        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf.partition_point(|&c| c < u) as u64
    }
}

fn resources() -> RocksDbResources {
    RocksDbResources::new(RocksDbConfig::default()).unwrap()
}

fn preload(store: &mut dyn KeyValueStore) {
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..KEYS {
        batch.push((key(i).to_vec(), Some(VALUE.to_vec())));
        if batch.len() == 10_000 {
            store.write_batch(&batch).unwrap();
            batch.clear();
        }
    }
    store.flush().unwrap();
}

fn kv_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let res = resources();
    let mut stores: Vec<(&str, Box<dyn KeyValueStore>)> = vec![
        ("in-memory", Box::new(InMemoryKeyValueStore::new("kv"))),
        (
            "rocksdb",
            Box::new(RocksDbKeyValueStore::open("kv", dir.path().join("kv"), &res).unwrap()),
        ),
    ];
    for (_, store) in stores.iter_mut() {
        preload(store.as_mut());
    }
    let mut group = c.benchmark_group("kv");
    group.throughput(Throughput::Elements(OPS_PER_ITER));
    for (name, store) in stores.iter_mut() {
        let mut rng = Rng(42);
        group.bench_function(format!("put/{name}"), |b| {
            b.iter(|| {
                for _ in 0..OPS_PER_ITER {
                    store.put(&key(rng.next() % KEYS), &VALUE).unwrap();
                }
            })
        });
        group.bench_function(format!("get/{name}"), |b| {
            b.iter(|| {
                for _ in 0..OPS_PER_ITER {
                    black_box(store.get(&key(rng.next() % KEYS)).unwrap());
                }
            })
        });
        group.bench_function(format!("range-100/{name}"), |b| {
            // Each range returns ~100 consecutive entries; throughput counts entries.
            b.iter(|| {
                let mut n = 0;
                while n < OPS_PER_ITER {
                    let from = key(rng.next() % KEYS);
                    let from_h = u64::from_be_bytes(from[..8].try_into().unwrap());
                    // About 100 keys lie in 100/KEYS of the hashed keyspace.
                    let to_h = from_h.saturating_add(u64::MAX / KEYS * 100);
                    let mut to = [0xffu8; 16];
                    to[..8].copy_from_slice(&to_h.to_be_bytes());
                    n += store
                        .range(&from, &to, Direction::Forward)
                        .unwrap()
                        .count()
                        .max(1) as u64;
                }
            })
        });
    }
    group.finish();
}

fn window_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let res = resources();
    let opts = WindowStoreOptions {
        retention_ms: 3_600_000,
        segment_interval_ms: 600_000,
        retain_duplicates: false,
    };
    let mut stores: Vec<(&str, Box<dyn WindowStore>)> = vec![
        (
            "in-memory",
            Box::new(InMemoryWindowStore::in_memory("w", opts).unwrap()),
        ),
        (
            "rocksdb",
            Box::new(RocksDbWindowStore::rocksdb("w", dir.path().join("w"), &res, opts).unwrap()),
        ),
    ];
    let mut group = c.benchmark_group("window");
    group.throughput(Throughput::Elements(OPS_PER_ITER));
    for (name, store) in stores.iter_mut() {
        let mut rng = Rng(7);
        let mut now = 0i64;
        group.bench_function(format!("put/{name}"), |b| {
            b.iter(|| {
                for _ in 0..OPS_PER_ITER {
                    now += 1;
                    let window = now / 60_000 * 60_000;
                    store
                        .put(&key(rng.next() % 10_000), Some(&VALUE), window)
                        .unwrap();
                }
            })
        });
        // One key's windows over the last hour (up to 60 one-minute windows per fetch);
        // throughput counts windows returned.
        group.bench_function(format!("fetch-key-1h/{name}"), |b| {
            b.iter(|| {
                let mut n = 0;
                while n < OPS_PER_ITER {
                    let k = key(rng.next() % 10_000);
                    let found = store.fetch_range(&k, now - 3_600_000, now).unwrap();
                    n += found.len().max(1) as u64;
                    black_box(found);
                }
            })
        });
    }
    group.finish();
}

/// A changelog sink that only counts (the producer is not what is measured).
struct CountingSink(u64);
impl ChangelogSink for CountingSink {
    fn send(&mut self, _: &[u8], _: Option<&[u8]>, _: i64) -> state_store::Result<()> {
        self.0 += 1;
        Ok(())
    }
}

fn caching_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let res = resources();
    let zipf = Zipf::new(100_000);
    let mut group = c.benchmark_group("word-count-zipf");
    group.throughput(Throughput::Elements(OPS_PER_ITER));
    let ts = RecordTimestamp::new();
    let logged = |name: &str| {
        ChangeLoggingKeyValueStore::new(
            RocksDbKeyValueStore::open(name, dir.path().join(name), &res).unwrap(),
            CountingSink(0),
            ts.clone(),
        )
    };
    let mut uncached = logged("uncached");
    let mut cached = CachingKeyValueStore::new(logged("cached"), 10 << 20, ts.clone());
    let update = |store: &mut dyn KeyValueStore, rng: &mut Rng| {
        for _ in 0..OPS_PER_ITER {
            let k = key(zipf.sample(rng));
            let n = store
                .get(&k)
                .unwrap()
                .map_or(0u64, |v| u64::from_be_bytes(v[..8].try_into().unwrap()));
            store.put(&k, &(n + 1).to_be_bytes()).unwrap();
        }
    };
    let mut rng = Rng(99);
    // Both variants commit (flush) once per 10k updates, as a commit interval would.
    group.bench_function("uncached", |b| {
        b.iter(|| {
            update(&mut uncached, &mut rng);
            uncached.flush().unwrap();
        })
    });
    group.bench_function("cached", |b| {
        b.iter(|| {
            update(&mut cached, &mut rng);
            cached.flush().unwrap();
        })
    });
    group.finish();
    eprintln!(
        "changelog records: uncached {} vs cached {}",
        uncached.sink().0,
        cached.inner().sink().0
    );
}

fn restore_benches(c: &mut Criterion) {
    let records: Vec<ChangelogRecord> = (0..KEYS)
        .map(|i| ChangelogRecord {
            offset: i as i64,
            key: key(i).to_vec(),
            value: Some(VALUE.to_vec()),
            timestamp: 0,
        })
        .collect();
    let res = resources();
    let mut group = c.benchmark_group("restore");
    group.sample_size(10);
    group.throughput(Throughput::Elements(KEYS));
    group.bench_function("rocksdb-1M", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let store = RocksDbKeyValueStore::open("r", dir.path().join("r"), &res).unwrap();
                // The records as a consumer hands them over (owned), made outside the timing.
                (dir, store, records.clone())
            },
            |(dir, mut store, records)| {
                let tp = TopicPartition::new("app-r-changelog", 0);
                let mut listener = state_store::LoggingRestoreListener;
                Restorer::default()
                    .restore(
                        &mut store,
                        &tp,
                        0,
                        KEYS as i64,
                        records.into_iter().map(Ok),
                        &mut listener,
                    )
                    .unwrap();
                // Part of restoring: a checkpoint may only follow a flush.
                store.flush().unwrap();
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = kv_benches, window_benches, caching_benches, restore_benches
}
criterion_main!(benches);
