//! Joins and the GPS-trucks application end to end on the embedded broker (report-only; see
//! BENCHMARKS.md).
//!
//! ```text
//! cargo bench -p examples --bench joins -- [--records N] [--keys K] [--trucks T] [--hours H]
//!     [--dir DIR] [--only stream-stream|stream-table|gps]
//! ```
//!
//! 1. Stream–stream inner join: two topics of N records each (1 M by default, 8 partitions)
//!    over K keys (100 k), event time advancing 6 ms per record, joined within 1-minute
//!    windows (RocksDB join buffers, which Kafka never caches).
//! 2. Stream–table join: a table topic of K keys (one record each) and a stream of N
//!    records over the same keys, the table's RocksDB store with the record cache on and off.
//! 3. The GPS-trucks application (`examples::gps_trucks`): T trucks (1 000) over H hours
//!    (24) of event time, every report pre-loaded, from `start()` until every output is
//!    written.
//!
//! Each run uses 2 stream threads and commit.interval.ms 100 ms, and reports records/s from
//! `start()` until the input is processed, with the number of results written.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use broker_embedded::{
    partition_for_key, Broker, BrokerConfig, NewTopic, OffsetSpec, ProduceRecord,
};
use bytes::Bytes;
use examples::gps_trucks::generator::{generate, FleetConfig};
use examples::gps_trucks::{GpsTrucks, Options};
use streams_core::{
    EmbeddedCluster, StreamsApp, StreamsConfig, StreamsState, StringSerde, Topology,
};
use streams_dsl::{
    Consumed, JoinWindows, Joined, Materialized, Produced, StreamJoined, StreamsBuilder,
};

const PARTITIONS: u32 = 8;

struct Args {
    records: usize,
    keys: usize,
    trucks: usize,
    hours: u32,
    dir: Option<PathBuf>,
    only: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        records: 1_000_000,
        keys: 100_000,
        trucks: 1000,
        hours: 24,
        dir: None,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = |d: usize| it.next().and_then(|v| v.parse().ok()).unwrap_or(d);
        match flag.as_str() {
            "--records" => a.records = num(a.records),
            "--keys" => a.keys = num(a.keys),
            "--trucks" => a.trucks = num(a.trucks),
            "--hours" => a.hours = num(a.hours as usize) as u32,
            "--dir" => a.dir = it.next().map(PathBuf::from),
            "--only" => a.only = it.next(),
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

fn open_broker(dir: &Path, topics: &[&str]) -> Broker {
    let mut config = BrokerConfig::new(dir.join("broker"));
    config.group_initial_rebalance_delay = Duration::ZERO;
    let broker = Broker::open(config).expect("open broker");
    for t in topics {
        broker
            .create_topic(NewTopic::new(*t, PARTITIONS))
            .expect("create topic");
    }
    broker
}

/// Writes `n` records over `keys` keys (pseudo-random, seeded by `seed`) to `topic`, each
/// to its key's partition, event time `step_ms` apart.
fn preload(broker: &Broker, topic: &str, n: usize, keys: usize, seed: u64, step_ms: i64) {
    let mut x = seed | 1;
    let mut per_p: Vec<Vec<ProduceRecord>> = vec![Vec::new(); PARTITIONS as usize];
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = format!("key-{:06}", x % keys as u64);
        let p = partition_for_key(key.as_bytes(), PARTITIONS).expect("partitions") as usize;
        per_p[p].push(
            ProduceRecord::new(Bytes::from(key.into_bytes()), Bytes::from(format!("v{i}")))
                .with_timestamp(1_700_000_000_000 + i as i64 * step_ms),
        );
        if per_p[p].len() == 1000 {
            broker.produce(topic, p as i32, &per_p[p]).expect("produce");
            per_p[p].clear();
        }
    }
    for (p, recs) in per_p.iter().enumerate() {
        if !recs.is_empty() {
            broker.produce(topic, p as i32, recs).expect("produce");
        }
    }
}

/// Writes one record per key `0..keys` to `topic`.
fn preload_table(broker: &Broker, topic: &str, keys: usize) {
    let mut per_p: Vec<Vec<ProduceRecord>> = vec![Vec::new(); PARTITIONS as usize];
    for k in 0..keys {
        let key = format!("key-{k:06}");
        let p = partition_for_key(key.as_bytes(), PARTITIONS).expect("partitions") as usize;
        per_p[p].push(
            ProduceRecord::new(Bytes::from(key.into_bytes()), Bytes::from(format!("t{k}")))
                .with_timestamp(1_600_000_000_000),
        );
    }
    for (p, recs) in per_p.iter().enumerate() {
        for chunk in recs.chunks(1000) {
            broker.produce(topic, p as i32, chunk).expect("produce");
        }
    }
}

fn written(broker: &Broker, topic: &str) -> i64 {
    (0..PARTITIONS as i32)
        .map(|p| {
            broker
                .list_offsets(topic, p, OffsetSpec::Latest)
                .expect("list offsets")
                .map_or(0, |o| o.offset)
        })
        .sum()
}

/// Runs `topology` until `target` source records are processed; returns seconds.
fn run(
    broker: &Broker,
    dir: &Path,
    app_id: &str,
    topology: Topology,
    cache: usize,
    target: u64,
) -> f64 {
    let config = StreamsConfig::new(app_id)
        .state_dir(dir.join("state"))
        .num_stream_threads(2)
        .commit_interval(Duration::from_millis(100))
        .cache_max_bytes(cache);
    let t0 = Instant::now();
    let mut app =
        StreamsApp::new(topology, config, EmbeddedCluster::new(broker.clone())).expect("app");
    app.start().expect("start");
    assert!(
        app.wait_for_state(StreamsState::Running, Duration::from_secs(300)),
        "not running: {:?}",
        app.errors()
    );
    while app.processed_records() < target {
        assert!(t0.elapsed() < Duration::from_secs(3600), "timed out");
        assert!(app.errors().is_empty(), "{:?}", app.errors());
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = t0.elapsed().as_secs_f64();
    app.close();
    secs
}

fn stream_stream(base: &Path, records: usize, keys: usize) {
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let broker = open_broker(dir.path(), &["left", "right", "joined"]);
    preload(&broker, "left", records, keys, 0x9e37_79b9_7f4a_7c15, 6);
    preload(&broker, "right", records, keys, 0x2545_f491_4f6c_dd1d, 6);
    let builder = StreamsBuilder::new();
    let right = builder.stream("right", Consumed::with(StringSerde, StringSerde));
    builder
        .stream("left", Consumed::with(StringSerde, StringSerde))
        .join(
            &right,
            |l: &String, r: &String| format!("{l}+{r}"),
            JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(60))
                .expect("windows"),
            StreamJoined::with(StringSerde, StringSerde, StringSerde),
        )
        .to("joined", Produced::with(StringSerde, StringSerde));
    let total = 2 * records as u64;
    let secs = run(
        &broker,
        dir.path(),
        "bench-ss-join",
        builder.build().expect("topology"),
        10 << 20,
        total,
    );
    println!(
        "[stream-stream inner join, 1-min windows, RocksDB buffers]: {} records in {:.2} s: {:.0} records/s; {} joined records written",
        total,
        secs,
        total as f64 / secs,
        written(&broker, "joined")
    );
}

fn stream_table(base: &Path, records: usize, keys: usize, caching: bool) {
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let broker = open_broker(dir.path(), &["table", "stream", "enriched"]);
    preload_table(&broker, "table", keys);
    preload(&broker, "stream", records, keys, 0x9e37_79b9_7f4a_7c15, 6);
    let builder = StreamsBuilder::new();
    let mut materialized = Materialized::as_store("table-store");
    if !caching {
        materialized = materialized.with_caching_disabled();
    }
    let table = builder.table(
        "table",
        Consumed::with(StringSerde, StringSerde),
        materialized,
    );
    builder
        .stream("stream", Consumed::with(StringSerde, StringSerde))
        .join_table(
            &table,
            |s: &String, t: &String| format!("{s}+{t}"),
            Joined::with(StringSerde, StringSerde, StringSerde),
        )
        .to("enriched", Produced::with(StringSerde, StringSerde));
    let total = (records + keys) as u64;
    let secs = run(
        &broker,
        dir.path(),
        "bench-st-join",
        builder.build().expect("topology"),
        if caching { 10 << 20 } else { 0 },
        total,
    );
    println!(
        "[stream-table join, table cache {}]: {} records ({} table + {} stream) in {:.2} s: {:.0} records/s; {} joined records written",
        if caching { "on" } else { "off" },
        total,
        keys,
        records,
        secs,
        total as f64 / secs,
        written(&broker, "enriched")
    );
}

fn gps(base: &Path, trucks: usize, hours: u32) {
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let fleet = generate(&FleetConfig::new(trucks, hours * 60, 42));
    let app = GpsTrucks::start(&Options::new(dir.path())).expect("start");
    let t0 = Instant::now();
    app.produce(&fleet).expect("produce");
    app.wait_until_processed(Duration::from_secs(7200))
        .expect("processed");
    let secs = t0.elapsed().as_secs_f64();
    let results = app.results().expect("results");
    app.close().expect("close");
    println!(
        "[gps-trucks, {trucks} trucks, {hours} h of event time]: {} reports in {:.2} s (produce included): {:.0} reports/s; {} window results, {} speeding and {} geofence alerts",
        fleet.reports.len(),
        secs,
        fleet.reports.len() as f64 / secs,
        results.windows.len(),
        results.speeding.len(),
        results.geofence.len()
    );
}

fn main() {
    let args = parse_args();
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let want = |name: &str| args.only.as_deref().is_none_or(|o| o == name);
    if want("stream-stream") {
        stream_stream(&base, args.records, args.keys);
    }
    if want("stream-table") {
        stream_table(&base, args.records, args.keys, true);
        stream_table(&base, args.records, args.keys, false);
    }
    if want("gps") {
        gps(&base, args.trucks, args.hours);
    }
}
