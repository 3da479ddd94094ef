//! Geofences: zones (rectangles) on a grid of cells, and the per-truck tracker that turns
//! the zones a truck is in into entry and exit alerts.
//!
//! Zones live in the compacted [`ZONES_TOPIC`](super::ZONES_TOPIC) keyed by zone id (a null
//! value deletes a zone). The topology derives a table keyed by grid cell: [`ZoneCells`]
//! turns each zone update into one [`CellZone`] per cell the zone covered before or covers
//! now, grouped by cell into the set of zones of each cell. Positions are re-keyed by the
//! cell they fall in and joined with that table; the zones that really contain the point are
//! kept, the result is re-keyed by truck, and the [`ZoneTracker`] compares them with the
//! truck's previous zones.
//!
//! The tracker follows each truck's reports in the order they reach it and ignores a report
//! not newer than the last one it used for that truck (an out-of-order or late report). The
//! reports of one truck pass through the cell repartition, so reports of one truck in
//! different cells can reach the tracker in another order than they were produced when they
//! are processed in the same moment; which out-of-order report is ignored may then differ
//! from run to run. Fed in arrival order (each batch processed before the next arrives, as
//! a live feed is), the alerts are exactly those of the reports in arrival order.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use streams_core::{Processor, ProcessorContext, Record};

use super::generator::AREA;
use super::{Position, TRACKER_STORE, ZONE_CELLS_STORE};

/// Cells are this many degrees wide and high (0.01° is about 1.1 km × 0.7 km here).
pub const CELL_DEGREES: f64 = 0.01;

/// A rectangular zone: `south <= lat < north`, `west <= lon < east`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Zone {
    /// A readable name.
    pub name: String,
    /// Southern edge (degrees, inclusive).
    pub south: f64,
    /// Western edge (degrees, inclusive).
    pub west: f64,
    /// Northern edge (degrees, exclusive).
    pub north: f64,
    /// Eastern edge (degrees, exclusive).
    pub east: f64,
}

impl Zone {
    /// True if the point is inside the zone.
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        (self.south..self.north).contains(&lat) && (self.west..self.east).contains(&lon)
    }

    /// The cells the zone covers (at least partly).
    pub fn cells(&self) -> Vec<String> {
        let (s, n) = (cell_index(self.south), cell_index(self.north));
        let (w, e) = (cell_index(self.west), cell_index(self.east));
        (s..=n)
            .flat_map(|la| (w..=e).map(move |lo| format!("{la}:{lo}")))
            .collect()
    }
}

fn cell_index(deg: f64) -> i64 {
    (deg / CELL_DEGREES).floor() as i64
}

/// The cell of a point, as `"<lat index>:<lon index>"`.
pub fn cell_of(lat: f64, lon: f64) -> String {
    format!("{}:{}", cell_index(lat), cell_index(lon))
}

/// One zone's presence in one cell: the zone's definition, or `None` once the zone no longer
/// covers the cell (moved or deleted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellZone {
    /// The zone id.
    pub zone_id: String,
    /// The zone, if it covers the cell.
    pub zone: Option<Zone>,
}

/// The zones covering one cell, by id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CellZones {
    /// Zone id → zone.
    pub zones: BTreeMap<String, Zone>,
}

impl CellZones {
    /// Applies one zone's change for this cell.
    pub fn apply(mut self, change: CellZone) -> Self {
        match change.zone {
            Some(z) => {
                self.zones.insert(change.zone_id, z);
            }
            None => {
                self.zones.remove(&change.zone_id);
            }
        }
        self
    }

    /// The ids of the zones containing the point.
    pub fn containing(&self, lat: f64, lon: f64) -> Vec<String> {
        self.zones
            .iter()
            .filter(|(_, z)| z.contains(lat, lon))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// Turns zone updates (key zone id, `None` = deleted) into per-cell changes: a removal for
/// every cell the zone's previous definition covered and the new one does not, the new
/// definition for every cell it covers. Keeps each zone's current definition in
/// [`ZONE_CELLS_STORE`].
#[derive(Debug, Default)]
pub struct ZoneCells;

impl Processor<String, Option<Zone>, String, CellZone> for ZoneCells {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, CellZone>,
        record: Record<String, Option<Zone>>,
    ) -> streams_core::Result<()> {
        let previous = {
            let mut store = ctx.key_value_store::<String, Zone>(ZONE_CELLS_STORE)?;
            let previous = store.get(&record.key)?;
            match &record.value {
                Some(z) => store.put(&record.key, z)?,
                None => {
                    store.delete(&record.key)?;
                }
            }
            previous
        };
        let new_cells: BTreeSet<String> = record
            .value
            .as_ref()
            .map(|z| z.cells().into_iter().collect())
            .unwrap_or_default();
        let old_cells: BTreeSet<String> = previous
            .map(|z| z.cells().into_iter().collect())
            .unwrap_or_default();
        for cell in old_cells.difference(&new_cells) {
            ctx.forward(Record {
                key: cell.clone(),
                value: CellZone {
                    zone_id: record.key.clone(),
                    zone: None,
                },
                timestamp: record.timestamp,
                headers: Vec::new(),
            })?;
        }
        for cell in &new_cells {
            ctx.forward(Record {
                key: cell.clone(),
                value: CellZone {
                    zone_id: record.key.clone(),
                    zone: record.value.clone(),
                },
                timestamp: record.timestamp,
                headers: Vec::new(),
            })?;
        }
        Ok(())
    }
}

/// A report with the zones that contain it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZonedPosition {
    /// The truck.
    pub truck: String,
    /// The report.
    pub position: Position,
    /// Ids of the zones containing it.
    pub zones: Vec<String>,
}

/// Entering or leaving a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Crossing {
    /// The truck left the zone.
    Exit,
    /// The truck entered the zone (or was first seen in it).
    Enter,
}

/// A geofence alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeofenceAlert {
    /// The truck.
    pub truck: String,
    /// The zone.
    pub zone: String,
    /// Entry or exit.
    pub crossing: Crossing,
    /// Event time of the report that showed it.
    pub ts: i64,
    /// Where the truck was then.
    pub lat: f64,
    /// Where the truck was then.
    pub lon: f64,
}

/// What the tracker remembers of a truck.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrackerState {
    /// Event time of the last report used.
    pub last_ts: i64,
    /// The zones the truck was in then.
    pub zones: BTreeSet<String>,
}

/// The zone transitions of `state` to a report in `now` (exits, then entries, each by
/// zone id), updating `state`; nothing for a report not newer than the last one used.
pub fn transitions(
    state: &mut Option<TrackerState>,
    truck: &str,
    p: &Position,
    now: &[String],
) -> Vec<GeofenceAlert> {
    if state.as_ref().is_some_and(|s| p.ts <= s.last_ts) {
        return Vec::new();
    }
    let now: BTreeSet<String> = now.iter().cloned().collect();
    let before = state.take().map(|s| s.zones).unwrap_or_default();
    let alert = |zone: &String, crossing| GeofenceAlert {
        truck: truck.to_owned(),
        zone: zone.clone(),
        crossing,
        ts: p.ts,
        lat: p.lat,
        lon: p.lon,
    };
    let mut alerts: Vec<GeofenceAlert> = before
        .difference(&now)
        .map(|z| alert(z, Crossing::Exit))
        .collect();
    alerts.extend(now.difference(&before).map(|z| alert(z, Crossing::Enter)));
    *state = Some(TrackerState {
        last_ts: p.ts,
        zones: now,
    });
    alerts
}

/// Per truck: compares the zones of each newer report with the previous ones (state in
/// [`TRACKER_STORE`]) and forwards an alert per zone entered or left.
#[derive(Debug, Default)]
pub struct ZoneTracker;

impl Processor<String, ZonedPosition, String, GeofenceAlert> for ZoneTracker {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, GeofenceAlert>,
        record: Record<String, ZonedPosition>,
    ) -> streams_core::Result<()> {
        let alerts = {
            let mut store = ctx.key_value_store::<String, TrackerState>(TRACKER_STORE)?;
            let mut state = store.get(&record.key)?;
            let z = &record.value;
            let last = state.as_ref().map(|s| s.last_ts);
            let alerts = transitions(&mut state, &z.truck, &z.position, &z.zones);
            if let Some(s) = state.as_ref().filter(|s| Some(s.last_ts) != last) {
                store.put(&record.key, s)?;
            }
            alerts
        };
        for a in alerts {
            ctx.forward(Record {
                key: record.key.clone(),
                value: a,
                timestamp: record.timestamp,
                headers: Vec::new(),
            })?;
        }
        Ok(())
    }
}

/// `n` zones inside the area (depots, a city centre, ...): rectangles of 1.5 to 5 km a
/// side, deterministic for `seed`.
pub fn zones(n: usize, seed: u64) -> Vec<(String, Zone)> {
    let mut x = seed ^ 0x2f0e_5a11_d00d_cafe;
    let mut unit = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let names = ["Depot", "Centre", "Harbour", "Airport", "Market", "Works"];
    let (s, w, n_edge, e) = AREA;
    (0..n)
        .map(|i| {
            let h = 0.013 + 0.03 * unit(); // 1.5 to 5 km north-south
            let v = 0.022 + 0.05 * unit(); // 1.5 to 5 km east-west
            let south = s + (n_edge - s - h) * unit();
            let west = w + (e - w - v) * unit();
            (
                format!("zone-{:02}", i + 1),
                Zone {
                    name: format!("{} {}", names[i % names.len()], i / names.len() + 1),
                    south,
                    west,
                    north: south + h,
                    east: west + v,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_in_a_zone_is_in_one_of_its_cells() {
        for (_, z) in zones(20, 3) {
            let cells: BTreeSet<String> = z.cells().into_iter().collect();
            for i in 0..=10 {
                for j in 0..=10 {
                    let lat = z.south + (z.north - z.south) * f64::from(i) / 10.5;
                    let lon = z.west + (z.east - z.west) * f64::from(j) / 10.5;
                    assert!(z.contains(lat, lon));
                    assert!(cells.contains(&cell_of(lat, lon)), "{lat} {lon}");
                }
            }
            assert!(!z.contains(z.north, z.west) && !z.contains(z.south, z.east));
        }
    }

    #[test]
    fn transitions_report_exits_then_entries_and_ignore_older_reports() {
        let p = |ts| Position {
            ts,
            lat: 1.0,
            lon: 2.0,
        };
        let ids = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let mut state = None;
        let a = transitions(&mut state, "t", &p(10), &ids(&["a"]));
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].zone.as_str(), a[0].crossing), ("a", Crossing::Enter));
        let a = transitions(&mut state, "t", &p(20), &ids(&["b"]));
        let got: Vec<_> = a.iter().map(|x| (x.zone.as_str(), x.crossing)).collect();
        assert_eq!(got, vec![("a", Crossing::Exit), ("b", Crossing::Enter)]);
        // Older than the last one used: ignored.
        assert!(transitions(&mut state, "t", &p(15), &ids(&[])).is_empty());
        assert!(transitions(&mut state, "t", &p(20), &ids(&[])).is_empty());
        assert!(transitions(&mut state, "t", &p(30), &ids(&["b"])).is_empty());
    }

    #[test]
    fn cell_zones_follow_updates_and_deletes() {
        let (_, z) = zones(1, 1).remove(0);
        let c = CellZones::default().apply(CellZone {
            zone_id: "z".into(),
            zone: Some(z.clone()),
        });
        let (lat, lon) = ((z.south + z.north) / 2.0, (z.west + z.east) / 2.0);
        assert_eq!(c.containing(lat, lon), vec!["z".to_owned()]);
        let c = c.apply(CellZone {
            zone_id: "z".into(),
            zone: None,
        });
        assert!(c.containing(lat, lon).is_empty());
    }
}
