//! A deterministic fleet: N trucks driving around a city, one GPS report per truck every
//! 20 seconds of event time, some of them arriving out of order and a few late.

use super::geo::{destination, haversine_km};
use super::geofence::{zones, Zone};
use super::Position;

/// Seconds of event time between two reports of a truck.
pub const REPORT_INTERVAL_MS: i64 = 20_000;

/// The area the trucks drive in (around Berlin): (south, west, north, east) in degrees.
pub const AREA: (f64, f64, f64, f64) = (52.35, 13.10, 52.65, 13.70);

/// What to generate.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Number of trucks (`truck-001`, ...).
    pub trucks: usize,
    /// Minutes of event time.
    pub minutes: u32,
    /// Seed of the pseudo-random generator: the same seed gives the same fleet.
    pub seed: u64,
    /// Event time of the first reports (ms since the epoch).
    pub start_ms: i64,
    /// Number of geofence zones.
    pub zones: usize,
}

impl FleetConfig {
    /// `trucks` trucks for `minutes` minutes from 2026-06-01 08:00 UTC, with `seed`.
    pub fn new(trucks: usize, minutes: u32, seed: u64) -> Self {
        FleetConfig {
            trucks,
            minutes,
            seed,
            start_ms: 1_780_300_800_000,
            zones: 8,
        }
    }
}

/// How a report reaches the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// In event-time order with the other reports.
    OnTime,
    /// 20 to 90 seconds after its event time: out of order, within the windows' grace.
    OutOfOrder,
    /// 8 to 15 minutes after its event time: beyond the grace of its window.
    Late,
}

/// One GPS report, in the order it is produced.
#[derive(Debug, Clone)]
pub struct Report {
    /// The truck id (the record key).
    pub truck: String,
    /// Where the truck was and when (the record value; `ts` is also the record timestamp).
    pub position: Position,
    /// How it arrives.
    pub arrival: Arrival,
    /// When it arrives (ms since the epoch, on the event-time clock): the event time plus
    /// its delay. Reports are produced in this order.
    pub arrival_ms: i64,
}

/// The generated fleet: every report, in produce order.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The reports in the order they are written to the topic (by arrival time).
    pub reports: Vec<Report>,
    /// Each truck's true distance driven over the whole run (km), for the summary.
    pub true_km: Vec<(String, f64)>,
    /// The geofence zones (id, zone), written before the reports.
    pub zones: Vec<(String, Zone)>,
}

/// SplitMix64: a small, good, deterministic generator.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    fn ticks(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next_u64() % u64::from(hi - lo + 1)) as u32
    }
}

/// A truck's driving style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// Cruises at 45–80 km/h, rarely stops.
    Normal,
    /// Like normal, but half of its driving stretches are at 106–125 km/h.
    Speeder,
    /// Stops often, for 3–8 minutes (deliveries).
    Stopper,
}

/// Generates the fleet for `config`.
pub fn generate(config: &FleetConfig) -> Fleet {
    let mut rng = Rng(config.seed ^ 0x5eed_0000_0000_0001);
    let ticks = u64::from(config.minutes) * 60_000 / REPORT_INTERVAL_MS as u64;
    let mut with_arrival: Vec<(i64, usize, Report)> = Vec::new();
    let mut true_km = Vec::new();
    for t in 0..config.trucks {
        let truck = format!("truck-{:03}", t + 1);
        let style = match t % 5 {
            1 => Style::Speeder,
            3 => Style::Stopper,
            _ => Style::Normal,
        };
        let (s, w, n, e) = AREA;
        let (mut lat, mut lon) = (rng.range(s, n), rng.range(w, e));
        let mut heading = rng.range(0.0, 360.0);
        let mut speed = 0.0;
        let mut phase_left = 0u32;
        let mut km = 0.0;
        for i in 0..ticks {
            if phase_left == 0 {
                let stop = match style {
                    Style::Stopper => rng.unit() < 0.4,
                    _ => rng.unit() < 0.05,
                };
                if stop {
                    speed = 0.0;
                    phase_left = rng.ticks(9, 24);
                } else {
                    speed = if style == Style::Speeder && rng.unit() < 0.5 {
                        rng.range(106.0, 125.0)
                    } else {
                        rng.range(45.0, 80.0)
                    };
                    phase_left = rng.ticks(15, 45);
                }
            }
            phase_left -= 1;
            let ts = config.start_ms + i as i64 * REPORT_INTERVAL_MS;
            if i > 0 && speed > 0.0 {
                let step_km = speed * REPORT_INTERVAL_MS as f64 / 3_600_000.0;
                heading = (heading + rng.range(-15.0, 15.0)).rem_euclid(360.0);
                let (mut nlat, mut nlon) = destination(lat, lon, heading, step_km);
                // Turn back at the edge of the area.
                if !(s..=n).contains(&nlat) || !(w..=e).contains(&nlon) {
                    heading = (heading + 180.0).rem_euclid(360.0);
                    (nlat, nlon) = destination(lat, lon, heading, step_km);
                }
                km += haversine_km(lat, lon, nlat, nlon);
                (lat, lon) = (nlat, nlon);
            }
            let r = rng.unit();
            let (arrival, delay) = if r < 0.05 {
                (Arrival::OutOfOrder, rng.range(20_000.0, 90_000.0) as i64)
            } else if r < 0.055 && i > 0 {
                (Arrival::Late, rng.range(480_000.0, 900_000.0) as i64)
            } else {
                (Arrival::OnTime, 0)
            };
            with_arrival.push((
                ts + delay,
                t,
                Report {
                    truck: truck.clone(),
                    position: Position { ts, lat, lon },
                    arrival,
                    arrival_ms: ts + delay,
                },
            ));
        }
        true_km.push((truck, km));
    }
    // Stable: equal arrival times keep truck order.
    with_arrival.sort_by_key(|(arrival, t, _)| (*arrival, *t));
    Fleet {
        reports: with_arrival.into_iter().map(|(_, _, r)| r).collect(),
        true_km,
        zones: zones(config.zones, config.seed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_fleet_and_another_seed_another() {
        let a = generate(&FleetConfig::new(10, 30, 7));
        let b = generate(&FleetConfig::new(10, 30, 7));
        let c = generate(&FleetConfig::new(10, 30, 8));
        let key = |f: &Fleet| {
            f.reports
                .iter()
                .map(|r| (r.truck.clone(), r.position.ts, r.position.lat.to_bits()))
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&c));
        // One report per truck per 20 s.
        assert_eq!(a.reports.len(), 10 * 30 * 3);
    }

    #[test]
    fn reports_stay_in_the_area_at_plausible_speeds_with_some_out_of_order_and_late() {
        let fleet = generate(&FleetConfig::new(20, 60, 42));
        let (s, w, n, e) = AREA;
        let mut by_truck: std::collections::BTreeMap<&str, Vec<&Position>> = Default::default();
        for r in &fleet.reports {
            assert!((s..=n).contains(&r.position.lat) && (w..=e).contains(&r.position.lon));
            by_truck.entry(&r.truck).or_default().push(&r.position);
        }
        let mut max_kmh: f64 = 0.0;
        for points in by_truck.values_mut() {
            points.sort_by_key(|p| p.ts);
            for pair in points.windows(2) {
                let km = haversine_km(pair[0].lat, pair[0].lon, pair[1].lat, pair[1].lon);
                max_kmh = max_kmh.max(km / (REPORT_INTERVAL_MS as f64 / 3_600_000.0));
            }
        }
        assert!(max_kmh > 105.0 && max_kmh < 126.0, "{max_kmh}");
        let count = |a: Arrival| fleet.reports.iter().filter(|r| r.arrival == a).count();
        assert!(
            count(Arrival::OutOfOrder) > 50,
            "{}",
            count(Arrival::OutOfOrder)
        );
        assert!(count(Arrival::Late) > 5, "{}", count(Arrival::Late));
        // Produce order is not event-time order.
        assert!(fleet
            .reports
            .windows(2)
            .any(|w| w[1].position.ts < w[0].position.ts));
    }
}
