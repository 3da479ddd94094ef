//! The GPS-trucks application end to end on the embedded broker, checked against an
//! independent computation of the same numbers from the generated reports
//! (`gps_trucks::oracle`, which applies the module's rules without the streams runtime).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use examples::gps_trucks::generator::{generate, Arrival, FleetConfig};
use examples::gps_trucks::geofence::Crossing;
use examples::gps_trucks::{oracle, GpsTrucks, Options};
use streams_core::ProcessingGuarantee;

fn seed() -> u64 {
    let seed = std::env::var("GPS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_202);
    eprintln!("GPS_SEED={seed}");
    seed
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn fleet_output_matches_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    check_fleet_output(Options::new(dir.path()));
}

/// The same under `exactly_once_v2`: every output is written in the thread's transactions and
/// read back `read_committed`.
#[test]
fn fleet_output_matches_an_independent_computation_under_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(dir.path());
    options.processing_guarantee = ProcessingGuarantee::ExactlyOnceV2;
    check_fleet_output(options);
}

fn check_fleet_output(options: Options) {
    let seed = seed();
    let fleet = generate(&FleetConfig::new(20, 45, seed));
    let want = oracle::expected(&fleet);
    // The cases this test exists for really happen in the input.
    let count = |a: Arrival| fleet.reports.iter().filter(|r| r.arrival == a).count();
    assert!(count(Arrival::OutOfOrder) > 0 && count(Arrival::Late) > 0);
    assert!(want.late > 0, "no report is dropped as late");
    assert!(!want.closed_windows.is_empty() && !want.speeding.is_empty());

    let app = GpsTrucks::start(&options).unwrap();
    app.produce(&fleet).unwrap();
    app.wait_until_processed(Duration::from_secs(300)).unwrap();
    let got = app.results().unwrap();
    let dropped = app.app().dropped_records();
    app.close().unwrap();

    assert_eq!(got.latest, want.latest, "latest positions");
    assert_eq!(dropped, want.late as u64, "late reports dropped");

    // Emit on window close: exactly the closed windows, one result each.
    assert_eq!(
        got.windows.keys().collect::<Vec<_>>(),
        want.closed_windows.keys().collect::<Vec<_>>(),
        "closed windows"
    );
    assert!(
        got.window_updates.values().all(|n| *n == 1),
        "a window was emitted more than once: {:?}",
        got.window_updates
            .iter()
            .filter(|(_, n)| **n > 1)
            .collect::<Vec<_>>()
    );
    for (key, w) in &want.closed_windows {
        let g = got.windows[key];
        assert!(
            close(g.km, w.km) && close(g.secs, w.secs),
            "{key:?}: got {g:?}, want {w:?}"
        );
    }
    let got_speeding: Vec<(String, i64)> = {
        let mut v: Vec<_> = got
            .speeding
            .iter()
            .map(|a| (a.truck.clone(), a.start))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        got_speeding,
        want.speeding.keys().cloned().collect::<Vec<_>>(),
        "speeding alerts"
    );
    for a in &got.speeding {
        let w = want.speeding[&(a.truck.clone(), a.start)];
        assert!(close(a.avg_kmh, w), "{a:?}: want {w} km/h");
    }
}

/// Geofence alerts from a live feed (each arrival time's reports processed before the next
/// arrive, so every truck's reports reach the tracker in arrival order through the cell
/// repartition and the stream-table join) against the oracle's, computed from the zones'
/// rectangles directly.
#[test]
fn geofence_alerts_of_a_live_feed_match_an_independent_computation() {
    let seed = seed();
    let mut config = FleetConfig::new(8, 30, seed);
    config.zones = 12;
    let fleet = generate(&config);
    let want = oracle::expected_geofence(&fleet, &fleet.zones);
    let crossings = |c: Crossing| want.iter().filter(|a| a.crossing == c).count();
    assert!(
        crossings(Crossing::Enter) > 0 && crossings(Crossing::Exit) > 0,
        "the fleet never crosses a zone: {want:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(dir.path());
    options.commit_interval = Duration::from_millis(20);
    let app = GpsTrucks::start(&options).unwrap();
    app.produce_live(&fleet, 1, Duration::from_secs(60), |_, _| Ok(()))
        .unwrap();
    let mut got = app.results().unwrap().geofence;
    app.close().unwrap();
    got.sort_by(|a, b| {
        (&a.truck, a.ts, a.crossing, &a.zone).cmp(&(&b.truck, b.ts, b.crossing, &b.zone))
    });
    assert_eq!(got, want);
}
