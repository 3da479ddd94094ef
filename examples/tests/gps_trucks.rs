//! The GPS-trucks application end to end on the embedded broker, checked against an
//! independent computation of the same numbers from the generated reports
//! (`gps_trucks::oracle`, which applies the module's rules without the streams runtime).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use examples::gps_trucks::generator::{generate, Arrival, FleetConfig};
use examples::gps_trucks::{oracle, GpsTrucks, Options};

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
    let seed = seed();
    let fleet = generate(&FleetConfig::new(20, 45, seed));
    let want = oracle::expected(&fleet);
    // The cases this test exists for really happen in the input.
    let count = |a: Arrival| fleet.reports.iter().filter(|r| r.arrival == a).count();
    assert!(count(Arrival::OutOfOrder) > 0 && count(Arrival::Late) > 0);
    assert!(want.late > 0, "no report is dropped as late");
    assert!(!want.closed_windows.is_empty() && !want.speeding.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let app = GpsTrucks::start(&Options::new(dir.path())).unwrap();
    app.produce(&fleet).unwrap();
    app.wait_until_processed(Duration::from_secs(300)).unwrap();
    let got = app.results().unwrap();
    let dropped = app.app().dropped_records();
    app.close().unwrap();

    assert_eq!(got.latest, want.latest, "latest positions");
    assert_eq!(dropped, want.late as u64, "late reports dropped");

    let mut all = want.closed_windows.clone();
    all.extend(want.open_windows.clone());
    assert_eq!(
        got.windows.keys().collect::<Vec<_>>(),
        all.keys().collect::<Vec<_>>(),
        "windows"
    );
    for (key, w) in &all {
        let g = got.windows[key];
        assert!(
            close(g.km, w.km) && close(g.secs, w.secs),
            "{key:?}: got {g:?}, want {w:?}"
        );
    }
}
