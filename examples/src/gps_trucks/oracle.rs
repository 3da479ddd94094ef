//! What the fleet application must output for a generated fleet, computed directly from the
//! reports (no streams runtime): the rules of the module docs applied to the reports in the
//! order each partition of [`POSITIONS_TOPIC`](super::POSITIONS_TOPIC) holds them.

use std::collections::{BTreeMap, BTreeSet};

use super::generator::Fleet;
use super::geofence::{Crossing, GeofenceAlert, Zone};
use super::{
    geo, ms, stats_window_end, Position, WindowStats, GRACE, POSITIONS_PARTITIONS,
    SPEEDING_MIN_SECS, SPEED_ADVANCE, SPEED_LIMIT_KMH, SPEED_WINDOW, STATS_WINDOW,
};

/// The expected output.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// The report with the largest event time of each truck (every report counts: the
    /// latest-position table has no grace period).
    pub latest: BTreeMap<String, Position>,
    /// Final stats per (truck, window start) of every 5-minute window that has closed by
    /// the end of the input (window end + grace at or before its partition's final stream
    /// time).
    pub closed_windows: BTreeMap<(String, i64), WindowStats>,
    /// Final stats of the windows still open at the end.
    pub open_windows: BTreeMap<(String, i64), WindowStats>,
    /// Speeding windows that have closed: (truck, start) → average km/h.
    pub speeding: BTreeMap<(String, i64), f64>,
    /// Reports dropped because their window had closed.
    pub late: usize,
}

fn windows_containing(ts: i64, size: i64, advance: i64) -> impl Iterator<Item = i64> {
    let last = ts - ts.rem_euclid(advance);
    (0..)
        .map(move |i| last - i * advance)
        .take_while(move |start| *start > ts - size)
}

/// Computes the expected output for `fleet`.
pub fn expected(fleet: &Fleet) -> Expected {
    let mut e = Expected::default();
    let partition = |truck: &str| {
        broker_embedded::partition_for_key(truck.as_bytes(), POSITIONS_PARTITIONS).unwrap_or(0)
    };
    let mut stream_time: BTreeMap<u32, i64> = BTreeMap::new();
    let mut accepted: BTreeMap<&str, BTreeMap<i64, Position>> = BTreeMap::new();
    for r in &fleet.reports {
        let p = r.position;
        let latest = e.latest.entry(r.truck.clone()).or_insert(p);
        if p.ts > latest.ts {
            *latest = p;
        }
        let st = stream_time.entry(partition(&r.truck)).or_insert(-1);
        *st = (*st).max(p.ts);
        if stats_window_end(p.ts) + ms(GRACE) <= *st {
            e.late += 1;
            continue;
        }
        accepted
            .entry(r.truck.as_str())
            .or_default()
            .entry(p.ts)
            .or_insert(p);
    }
    let (size, speed_size, speed_advance, grace) = (
        ms(STATS_WINDOW),
        ms(SPEED_WINDOW),
        ms(SPEED_ADVANCE),
        ms(GRACE),
    );
    let mut speed: BTreeMap<(String, i64), WindowStats> = BTreeMap::new();
    let mut speed_windows_seen: BTreeSet<(String, i64)> = BTreeSet::new();
    for (truck, points) in &accepted {
        let final_time = stream_time.get(&partition(truck)).copied().unwrap_or(-1);
        let points: Vec<&Position> = points.values().collect();
        let mut add = |b: &Position, km: f64, secs: f64| {
            let start = b.ts - b.ts.rem_euclid(size);
            let target = if start + size + grace <= final_time {
                &mut e.closed_windows
            } else {
                &mut e.open_windows
            };
            let w = target.entry(((*truck).to_owned(), start)).or_default();
            w.km += km;
            w.secs += secs;
            for start in windows_containing(b.ts, speed_size, speed_advance) {
                let key = ((*truck).to_owned(), start);
                let w = speed.entry(key.clone()).or_default();
                w.km += km;
                w.secs += secs;
                if start + speed_size + grace <= final_time {
                    speed_windows_seen.insert(key);
                }
            }
        };
        if let Some(first) = points.first() {
            add(first, 0.0, 0.0);
        }
        for pair in points.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            add(
                b,
                geo::haversine_km(a.lat, a.lon, b.lat, b.lon),
                (b.ts - a.ts) as f64 / 1000.0,
            );
        }
    }
    for key in speed_windows_seen {
        let w = speed[&key];
        if w.secs >= SPEEDING_MIN_SECS && w.avg_kmh() > SPEED_LIMIT_KMH {
            e.speeding.insert(key, w.avg_kmh());
        }
    }
    e
}

/// The geofence alerts for `fleet` and `zones` (all zones known before the first report),
/// each truck's reports taken in arrival order (the order a live feed gives the tracker; see
/// [`geofence`](super::geofence)), zones found directly from their rectangles rather than
/// through grid cells. Sorted by truck, then event time, then exits before entries, then
/// zone.
pub fn expected_geofence(fleet: &Fleet, zones: &[(String, Zone)]) -> Vec<GeofenceAlert> {
    // Per truck: the event time of the last report used and the zones it was in.
    let mut last: BTreeMap<&str, (i64, BTreeSet<&str>)> = BTreeMap::new();
    let mut alerts = Vec::new();
    for r in &fleet.reports {
        let p = r.position;
        let inside: BTreeSet<&str> = zones
            .iter()
            .filter(|(_, z)| {
                p.lat >= z.south && p.lat < z.north && p.lon >= z.west && p.lon < z.east
            })
            .map(|(id, _)| id.as_str())
            .collect();
        let before = match last.get(r.truck.as_str()) {
            Some((ts, _)) if p.ts <= *ts => continue, // not newer: ignored
            Some((_, zones)) => zones.clone(),
            None => BTreeSet::new(),
        };
        let alert = |zone: &str, crossing| GeofenceAlert {
            truck: r.truck.clone(),
            zone: zone.to_owned(),
            crossing,
            ts: p.ts,
            lat: p.lat,
            lon: p.lon,
        };
        alerts.extend(before.difference(&inside).map(|z| alert(z, Crossing::Exit)));
        alerts.extend(
            inside
                .difference(&before)
                .map(|z| alert(z, Crossing::Enter)),
        );
        last.insert(r.truck.as_str(), (p.ts, inside));
    }
    alerts.sort_by(|a, b| {
        (&a.truck, a.ts, a.crossing, &a.zone).cmp(&(&b.truck, b.ts, b.crossing, &b.zone))
    });
    alerts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hopping_windows_of_a_timestamp_are_those_that_contain_it() {
        let m = 60_000;
        let got: Vec<i64> = windows_containing(7 * m, 10 * m, 5 * m).collect();
        assert_eq!(got, vec![5 * m, 0]);
        let got: Vec<i64> = windows_containing(10 * m, 10 * m, 5 * m).collect();
        assert_eq!(got, vec![10 * m, 5 * m]);
        let got: Vec<i64> = windows_containing(3 * m, 5 * m, 5 * m).collect();
        assert_eq!(got, vec![0]);
    }
}
