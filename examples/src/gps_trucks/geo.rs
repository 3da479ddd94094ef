//! Geography for the fleet: great-circle distances, moving along a heading, and UTC dates.

/// Mean Earth radius (km), as the haversine formula is usually given.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// The haversine (great-circle) distance between two points, in km.
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

/// The point `km` away from (`lat`, `lon`) along `heading_deg` (0 = north, 90 = east), on
/// the sphere.
pub fn destination(lat: f64, lon: f64, heading_deg: f64, km: f64) -> (f64, f64) {
    let d = km / EARTH_RADIUS_KM;
    let (p1, l1, h) = (lat.to_radians(), lon.to_radians(), heading_deg.to_radians());
    let p2 = (p1.sin() * d.cos() + p1.cos() * d.sin() * h.cos()).asin();
    let l2 = l1 + (h.sin() * d.sin() * p1.cos()).atan2(d.cos() - p1.sin() * p2.sin());
    (p2.to_degrees(), l2.to_degrees())
}

/// `ms` since the epoch as `YYYY-MM-DD hh:mm:ss` (UTC).
pub fn format_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `ms` since the epoch as `hh:mm:ss` (UTC).
pub fn format_time(ms: i64) -> String {
    format_utc(ms)[11..].to_owned()
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (the well-known
/// era-based conversion: 400-year eras of 146 097 days, years starting in March).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_matches_known_distances() {
        // Berlin (Brandenburg Gate) to Paris (Eiffel Tower): about 878 km.
        let d = haversine_km(52.5163, 13.3777, 48.8584, 2.2945);
        assert!((d - 878.0).abs() < 3.0, "{d}");
        // One degree of latitude: about 111.2 km.
        let d = haversine_km(10.0, 20.0, 11.0, 20.0);
        assert!((d - 111.19).abs() < 0.05, "{d}");
        assert_eq!(haversine_km(1.0, 2.0, 1.0, 2.0), 0.0);
    }

    #[test]
    fn destination_is_the_inverse_of_haversine() {
        for heading in [0.0, 45.0, 90.0, 200.0, 315.0] {
            let (lat, lon) = destination(52.5, 13.4, heading, 1.234);
            let d = haversine_km(52.5, 13.4, lat, lon);
            assert!((d - 1.234).abs() < 1e-9, "{heading}: {d}");
        }
    }

    #[test]
    fn dates_are_formatted_in_utc() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(
            format_utc(1_780_272_000_000 + 8 * 3_600_000),
            "2026-06-01 08:00:00"
        );
        assert_eq!(format_time(1_780_272_000_000 + 3_725_000), "01:02:05");
        assert_eq!(format_utc(-1000), "1969-12-31 23:59:59");
    }
}
