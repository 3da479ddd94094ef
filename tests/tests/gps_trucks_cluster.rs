#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The GPS-trucks application over the Kafka protocol (the wire backend) against this
//! project's Kafka server (`broker_embedded::KafkaServer` in process, the server of `broker
//! serve`), checked against the embedded run of the same fleet and the oracle
//! (`gps_trucks::oracle`).
//!
//! - `the_fleet_on_a_kafka_protocol_server_gives_the_embedded_output`: the library functions
//!   the example's cluster mode uses (`gps_trucks::cluster`).
//! - `the_gps_trucks_example_prints_the_same_summary_embedded_and_on_a_cluster`: the
//!   `gps-trucks` example binary itself, run embedded and with `--bootstrap-server`. It needs
//!   `target/<profile>/examples/gps-trucks` (`cargo test --workspace` builds it, or
//!   `cargo build -p examples --example gps-trucks`) and fails loudly when it is missing.
//!
//! Geofence alerts are left out of the comparison: with the whole input already in the
//! topics, the order in which a truck's reports reach the geofence tracker through the two
//! repartitions depends on timing, embedded as well (see `gps_trucks::geofence`); the live
//! feed that makes them deterministic is the embedded tests' business.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use broker_embedded::{Broker, BrokerConfig, KafkaServer, ServerConfig};
use examples::gps_trucks::cluster::{self, ClusterOptions};
use examples::gps_trucks::generator::{generate, FleetConfig};
use examples::gps_trucks::{oracle, FleetResults, GpsTrucks, Options};
use streams_core::StreamsState;

fn seed() -> u64 {
    let seed = std::env::var("GPS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_202);
    eprintln!("GPS_SEED={seed}");
    seed
}

/// An in-process Kafka-protocol server on an ephemeral port, on its own tokio runtime.
struct Server {
    addr: String,
    _server: KafkaServer,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn serve() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut config = BrokerConfig::new(dir.path());
    config.group_initial_rebalance_delay = Duration::from_millis(300);
    let broker = Broker::open(config).unwrap();
    let server = runtime
        .block_on(KafkaServer::start(
            broker,
            ServerConfig {
                listen: "127.0.0.1:0".into(),
                ..ServerConfig::default()
            },
        ))
        .unwrap();
    Server {
        addr: server.local_addr().to_string(),
        _server: server,
        _runtime: runtime,
        _dir: dir,
    }
}

fn sorted_speeding(r: &FleetResults) -> Vec<(String, i64, String)> {
    let mut v: Vec<_> = r
        .speeding
        .iter()
        .map(|a| (a.truck.clone(), a.start, format!("{a:?}")))
        .collect();
    v.sort();
    v
}

#[test]
fn the_fleet_on_a_kafka_protocol_server_gives_the_embedded_output() {
    let seed = seed();
    let fleet = generate(&FleetConfig::new(8, 30, seed));
    let want = oracle::expected(&fleet);
    assert!(want.late > 0 && !want.speeding.is_empty() && !want.closed_windows.is_empty());

    // The embedded run.
    let dir = tempfile::tempdir().unwrap();
    let app = GpsTrucks::start(&Options::new(dir.path())).unwrap();
    app.produce(&fleet).unwrap();
    app.wait_until_processed(Duration::from_secs(300)).unwrap();
    let embedded = app.results().unwrap();
    let embedded_dropped = app.app().dropped_records();
    app.close().unwrap();

    // The same fleet over the wire.
    let server = serve();
    cluster::ensure_topics(&server.addr).unwrap();
    let (zones, reports) = cluster::produce(&server.addr, &fleet).unwrap();
    assert_eq!((zones, reports), (fleet.zones.len(), fleet.reports.len()));
    let state = tempfile::tempdir().unwrap();
    let mut options = ClusterOptions::new(&server.addr, state.path());
    // One member: no rebalance in the middle of the input.
    options.threads = 1;
    let mut app = cluster::start(&options).unwrap();
    assert!(
        app.wait_for_state(StreamsState::Running, Duration::from_secs(60)),
        "not RUNNING: {:?} {:?}",
        app.state(),
        app.errors()
    );
    assert!(
        app.wait_until_caught_up(Duration::from_secs(300)).unwrap(),
        "not caught up: {:?}",
        app.errors()
    );
    let dropped = app.dropped_records();
    app.close();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
    let got = cluster::read_results(&server.addr).unwrap();

    // Exactly the embedded output (same per-partition order, so the same sums).
    assert_eq!(got.latest, embedded.latest, "latest positions");
    assert_eq!(got.windows, embedded.windows, "window stats");
    assert_eq!(
        got.window_updates, embedded.window_updates,
        "window results"
    );
    assert!(got.window_updates.values().all(|n| *n == 1));
    assert_eq!(
        sorted_speeding(&got),
        sorted_speeding(&embedded),
        "speeding"
    );
    assert_eq!(dropped, embedded_dropped, "late reports dropped");
    // And what the oracle says.
    assert_eq!(got.latest, want.latest);
    assert_eq!(dropped, want.late as u64);
    assert_eq!(
        got.windows.keys().collect::<Vec<_>>(),
        want.closed_windows.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        sorted_speeding(&got)
            .into_iter()
            .map(|(t, s, _)| (t, s))
            .collect::<Vec<_>>(),
        want.speeding.keys().cloned().collect::<Vec<_>>()
    );
}

/// `target/<profile>`, from this test binary's path (`target/<profile>/deps/<test>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn run_example(args: &[&str]) -> String {
    let bin = profile_dir().join("examples").join("gps-trucks");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p examples --example gps-trucks`; \
         `cargo test --workspace` builds it too)",
        bin.display()
    );
    let out = Command::new(&bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "gps-trucks {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The summary without the geofence alerts (see the module doc) and without the cluster
/// mode's progress lines.
fn comparable(stdout: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_geofence = false;
    for line in stdout.lines() {
        if line.starts_with("tasks owned:") || line.starts_with("produced ") {
            continue;
        }
        if line.starts_with("Geofence alerts:") {
            in_geofence = true;
            continue;
        }
        if line.starts_with("Late reports dropped:") {
            in_geofence = false;
        }
        if !in_geofence {
            out.push(line.to_owned());
        }
    }
    out
}

#[test]
fn the_gps_trucks_example_prints_the_same_summary_embedded_and_on_a_cluster() {
    let seed = seed().to_string();
    let common = ["--trucks", "4", "--minutes", "20", "--seed", seed.as_str()];
    let embedded = run_example(&common);
    let server = serve();
    let state = tempfile::tempdir().unwrap();
    let mut args = common.to_vec();
    let state_arg = state.path().display().to_string();
    args.extend([
        "--bootstrap-server",
        server.addr.as_str(),
        "--application-id",
        "gps-cli",
        "--threads",
        "1",
        "--data-dir",
        state_arg.as_str(),
    ]);
    let on_cluster = run_example(&args);
    eprintln!("embedded:\n{embedded}\non the cluster:\n{on_cluster}");
    assert!(on_cluster.contains("tasks owned: "), "{on_cluster}");
    assert!(on_cluster.contains("produced "), "{on_cluster}");
    let (a, b) = (comparable(&embedded), comparable(&on_cluster));
    assert!(a.iter().any(|l| l.starts_with("Per truck")), "{embedded}");
    assert!(
        a.iter().any(|l| l.starts_with("Speeding alerts")),
        "{embedded}"
    );
    assert_eq!(a, b);
}
