//! The GPS-trucks fleet application: every truck reports its position every 20 seconds to
//! [`POSITIONS_TOPIC`] (10 partitions, key = truck id, value = JSON [`Position`], record
//! timestamp = the report's event time). The topology keeps:
//!
//! - **the latest position of each truck**: a table (store [`LATEST_STORE`], updates to
//!   [`LATEST_TOPIC`]) holding, per truck, the report with the largest event time seen (an
//!   out-of-order report never replaces a newer one);
//! - **distance and average speed per truck and 5-minute tumbling window** (grace 2
//!   minutes), one final result per window once it has closed (emit on window close), to
//!   [`STATS_TOPIC`];
//! - **speeding alerts**: a truck whose average speed over a 10-minute window (hopping by 5
//!   minutes, grace 2 minutes, emitted on close) is above [`SPEED_LIMIT_KMH`], to
//!   [`SPEEDING_TOPIC`];
//! - **geofence alerts**: a truck entering or leaving one of the zones of [`ZONES_TOPIC`], to
//!   [`GEOFENCE_TOPIC`] (see [`geofence`]).
//!
//! ## The distance rule
//! A truck's route is the sequence of its accepted reports in event-time order. Each pair of
//! consecutive reports is a *segment*: its haversine distance and its duration count in the
//! window of the segment's later report. Average speed = distance / duration of the
//! window's segments. A report is accepted unless its 5-minute window has already closed when
//! it is processed (window end + grace at or before the task's stream time, the same rule as
//! Kafka's windowed aggregations; such a report is dropped and counted, and it changes
//! nothing), or it repeats the event time of an accepted report of the same truck.
//!
//! A report arriving out of order (within grace) lands between two reports already seen:
//! the segmenter ([`Segmenter`], a Processor API step with a store of each truck's recent
//! reports) replaces the segment between them by the two new ones, forwarding the
//! difference as a correction to the later report's window (which is still open, since the
//! earlier report's is). The windowed sums therefore equal, once every report is in, the
//! distances of the route in event-time order.

pub mod cluster;
pub mod generator;
pub mod geo;
pub mod geofence;
pub mod oracle;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use broker_embedded::{Broker, BrokerConfig, BrokerError, IsolationLevel, NewTopic, ProduceRecord};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use streams_core::{
    EmbeddedCluster, JsonSerde, Nullable, ProcessingGuarantee, Processor, ProcessorContext, Record,
    Serde, StoreBuilder, StreamsApp, StreamsConfig, StreamsError, StreamsState, StringSerde,
    TimeWindowedSerde, Topology, Windowed,
};
use streams_dsl::{
    Consumed, EmitStrategy, Grouped, Joined, Materialized, Produced, Repartitioned, StreamsBuilder,
    TimeWindows,
};

use generator::Fleet;

/// The application id (consumer group, prefix of internal topics).
pub const APPLICATION_ID: &str = "gps-trucks";
/// Where the trucks report: key = truck id, value = JSON [`Position`].
pub const POSITIONS_TOPIC: &str = "trucks_gps";
/// Partitions of [`POSITIONS_TOPIC`].
pub const POSITIONS_PARTITIONS: u32 = 10;
/// Updates of the latest-position table (key = truck id, value = JSON [`Position`]).
pub const LATEST_TOPIC: &str = "truck-latest-positions";
/// Final distance and speed per truck and 5-minute window (key = Kafka's time-windowed
/// key bytes, value = JSON [`WindowStats`]).
pub const STATS_TOPIC: &str = "truck-window-stats";
/// Speeding alerts (key = truck id, value = JSON [`SpeedingAlert`]).
pub const SPEEDING_TOPIC: &str = "truck-speeding-alerts";
/// Geofence zones (compacted; key = zone id, value = JSON [`geofence::Zone`], null deletes).
pub const ZONES_TOPIC: &str = "zones";
/// Geofence alerts (key = truck id, value = JSON [`geofence::GeofenceAlert`]).
pub const GEOFENCE_TOPIC: &str = "truck-geofence-alerts";
/// The table of zones per grid cell.
pub const CELL_ZONES_STORE: &str = "cell-zones";
/// The latest-position table's store.
pub const LATEST_STORE: &str = "latest-positions";
/// The segmenter's store of each truck's recent reports.
pub const TRACK_STORE: &str = "truck-tracks";
/// The zone-cells step's store of each zone's current definition.
pub const ZONE_CELLS_STORE: &str = "zone-definitions";
/// The geofence tracker's store of each truck's current zones.
pub const TRACKER_STORE: &str = "truck-zones";
/// The 5-minute windows' store.
pub const STATS_STORE: &str = "truck-stats";
/// The 10-minute speed windows' store.
pub const SPEED_STORE: &str = "truck-speed";

/// Size of the distance/speed windows.
pub const STATS_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Size of the speeding windows.
pub const SPEED_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Advance of the speeding windows.
pub const SPEED_ADVANCE: Duration = Duration::from_secs(5 * 60);
/// Grace of every window: reports up to 2 minutes after their window's end still count.
pub const GRACE: Duration = Duration::from_secs(2 * 60);
/// Average speed above which a speeding window raises an alert.
pub const SPEED_LIMIT_KMH: f64 = 100.0;
/// A speeding window needs at least this much driving data (seconds of segments).
pub const SPEEDING_MIN_SECS: f64 = 300.0;

/// One GPS report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Event time (ms since the epoch), also the record's timestamp.
    pub ts: i64,
    /// Latitude (degrees).
    pub lat: f64,
    /// Longitude (degrees).
    pub lon: f64,
}

/// A signed piece of route: kilometres and seconds to add to a window (negative for the
/// correction of a segment that an out-of-order report split).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Distance (km).
    pub km: f64,
    /// Duration (s).
    pub secs: f64,
}

/// Distance and driving time of one truck in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    /// Distance (km).
    pub km: f64,
    /// Time covered by the window's segments (s).
    pub secs: f64,
}

impl WindowStats {
    /// Average speed over the window's segments (km/h), 0 without any.
    pub fn avg_kmh(&self) -> f64 {
        if self.secs > 0.0 {
            self.km / (self.secs / 3600.0)
        } else {
            0.0
        }
    }

    fn add(self, s: Segment) -> Self {
        WindowStats {
            km: self.km + s.km,
            secs: self.secs + s.secs,
        }
    }
}

/// A truck too fast over a speeding window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeedingAlert {
    /// The truck.
    pub truck: String,
    /// Window start (ms).
    pub start: i64,
    /// Window end (ms, exclusive).
    pub end: i64,
    /// Average speed over the window (km/h).
    pub avg_kmh: f64,
}

/// The segmenter's state for one truck: its accepted reports that a later report may still
/// need (event-time order).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Track {
    /// Accepted reports, by event time.
    pub points: Vec<Position>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The end (exclusive) of the 5-minute window holding event time `ts`.
pub fn stats_window_end(ts: i64) -> i64 {
    let size = ms(STATS_WINDOW);
    ts - ts.rem_euclid(size) + size
}

fn segment(a: &Position, b: &Position) -> Segment {
    Segment {
        km: geo::haversine_km(a.lat, a.lon, b.lat, b.lon),
        secs: (b.ts - a.ts) as f64 / 1000.0,
    }
}

/// Turns each truck's reports into segments (see the crate docs' distance rule), keeping
/// per truck the reports a later one may still need in [`TRACK_STORE`]. Its stream time is
/// its own, like Kafka's window aggregation processors' (the largest timestamp it has seen,
/// starting again after a restart), so it accepts exactly the reports the window
/// aggregations downstream accept.
#[derive(Debug)]
pub struct Segmenter {
    stream_time: i64,
}

impl Default for Segmenter {
    fn default() -> Self {
        Segmenter { stream_time: -1 }
    }
}

impl Processor<String, Position, String, Segment> for Segmenter {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, Segment>,
        record: Record<String, Position>,
    ) -> streams_core::Result<()> {
        let p = record.value;
        let ts = record.timestamp;
        self.stream_time = self.stream_time.max(ts);
        if stats_window_end(ts) + ms(GRACE) <= self.stream_time {
            tracing::debug!(truck = %record.key, ts, stream_time = self.stream_time,
                "dropping a late report: its window has closed");
            ctx.record_dropped();
            return Ok(());
        }
        let p = Position { ts, ..p };
        let mut store = ctx.key_value_store::<String, Track>(TRACK_STORE)?;
        let mut track = store.get(&record.key)?.unwrap_or_default();
        let i = match track.points.binary_search_by_key(&ts, |q| q.ts) {
            Ok(_) => {
                tracing::debug!(truck = %record.key, ts, "dropping a repeated report");
                return Ok(());
            }
            Err(i) => i,
        };
        track.points.insert(i, p);
        let pred = i.checked_sub(1).map(|j| track.points[j]);
        let succ = track.points.get(i + 1).copied();
        // A report accepted later has an event time after its window's start, which is
        // after `stream time - grace - window size`: older reports are no longer needed,
        // except the newest of them (the predecessor of such a report).
        let bound = self.stream_time - ms(GRACE) - ms(STATS_WINDOW);
        let keep_from = track
            .points
            .iter()
            .position(|q| q.ts >= bound)
            .unwrap_or(track.points.len());
        if keep_from > 1 {
            track.points.drain(..keep_from - 1);
        }
        store.put(&record.key, &track)?;
        // The segment ending at the new report (a zero one for a truck's first report, so
        // that the windows downstream see its timestamp too).
        let first = pred.map_or(Segment::default(), |a| segment(&a, &p));
        ctx.forward(Record {
            key: record.key.clone(),
            value: first,
            timestamp: ts,
            headers: Vec::new(),
        })?;
        if let Some(b) = succ {
            // The segment (pred, succ) is now (pred, p) + (p, succ): correct succ's window.
            let new = segment(&p, &b);
            let old = pred.map_or(Segment::default(), |a| segment(&a, &b));
            ctx.forward(Record {
                key: record.key,
                value: Segment {
                    km: new.km - old.km,
                    secs: new.secs - old.secs,
                },
                timestamp: b.ts,
                headers: Vec::new(),
            })?;
        }
        Ok(())
    }
}

/// The fleet topology (see the module docs).
pub fn topology() -> streams_core::Result<Topology> {
    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::key_value(TRACK_STORE).with_serdes(
        Some(shared(StringSerde)),
        Some(shared(JsonSerde::<Track>::new())),
    ));
    let positions = builder.stream(
        POSITIONS_TOPIC,
        Consumed::with(StringSerde, JsonSerde::<Position>::new()),
    );

    // The latest position of each truck, by event time.
    positions
        .clone()
        .group_by_key(Grouped::with(StringSerde, JsonSerde::<Position>::new()))
        .aggregate(
            || Position {
                ts: i64::MIN,
                lat: 0.0,
                lon: 0.0,
            },
            |_, p: Position, latest: Position| if p.ts >= latest.ts { p } else { latest },
            Materialized::as_store(LATEST_STORE).with_value_serde(JsonSerde::<Position>::new()),
        )
        .to_stream()
        .to(
            LATEST_TOPIC,
            Produced::with(StringSerde, Nullable(JsonSerde::<Position>::new())),
        );

    let segments = positions
        .clone()
        .process(Segmenter::default, &[TRACK_STORE]);
    let grouped = || {
        segments
            .clone()
            .group_by_key(Grouped::with(StringSerde, JsonSerde::<Segment>::new()))
    };

    // Distance and speed per 5-minute window, one final result per window.
    grouped()
        .windowed_by(TimeWindows::of_size_and_grace(STATS_WINDOW, GRACE)?)
        .emit_strategy(EmitStrategy::on_window_close())
        .aggregate(
            WindowStats::default,
            |_, s: Segment, agg: WindowStats| agg.add(s),
            Materialized::as_store(STATS_STORE).with_value_serde(JsonSerde::<WindowStats>::new()),
        )
        .to_stream()
        .to(
            STATS_TOPIC,
            Produced::with(
                TimeWindowedSerde::new(StringSerde, STATS_WINDOW),
                Nullable(JsonSerde::<WindowStats>::new()),
            ),
        );

    // Speeding: the average over 10-minute windows hopping by 5.
    grouped()
        .windowed_by(
            TimeWindows::of_size_and_grace(SPEED_WINDOW, GRACE)?.advance_by(SPEED_ADVANCE)?,
        )
        .emit_strategy(EmitStrategy::on_window_close())
        .aggregate(
            WindowStats::default,
            |_, s: Segment, agg: WindowStats| agg.add(s),
            Materialized::as_store(SPEED_STORE).with_value_serde(JsonSerde::<WindowStats>::new()),
        )
        .to_stream()
        .filter(|_, stats: &Option<WindowStats>| {
            stats.is_some_and(|s| s.secs >= SPEEDING_MIN_SECS && s.avg_kmh() > SPEED_LIMIT_KMH)
        })
        .map(|w: Windowed<String>, stats: Option<WindowStats>| {
            let avg_kmh = stats.map_or(0.0, |s| s.avg_kmh());
            let alert = SpeedingAlert {
                truck: w.key.clone(),
                start: w.window.start,
                end: w.window.end,
                avg_kmh,
            };
            (w.key, alert)
        })
        .to(
            SPEEDING_TOPIC,
            Produced::with(StringSerde, JsonSerde::<SpeedingAlert>::new()),
        );
    // Geofences: zones → a table of the zones of each grid cell; positions re-keyed by cell
    // and joined with it; entries and exits found per truck (see `geofence`).
    builder.add_state_store(StoreBuilder::key_value(ZONE_CELLS_STORE).with_serdes(
        Some(shared(StringSerde)),
        Some(shared(JsonSerde::<geofence::Zone>::new())),
    ));
    builder.add_state_store(StoreBuilder::key_value(TRACKER_STORE).with_serdes(
        Some(shared(StringSerde)),
        Some(shared(JsonSerde::<geofence::TrackerState>::new())),
    ));
    let cell_zones = builder
        .stream(
            ZONES_TOPIC,
            Consumed::with(StringSerde, Nullable(JsonSerde::<geofence::Zone>::new())),
        )
        .process(geofence::ZoneCells::default, &[ZONE_CELLS_STORE])
        .group_by_key(Grouped::with(
            StringSerde,
            JsonSerde::<geofence::CellZone>::new(),
        ))
        .aggregate(
            geofence::CellZones::default,
            |_, change: geofence::CellZone, zones: geofence::CellZones| zones.apply(change),
            Materialized::as_store(CELL_ZONES_STORE)
                .with_value_serde(JsonSerde::<geofence::CellZones>::new()),
        );
    positions
        .map(|truck: String, p: Position| {
            (
                geofence::cell_of(p.lat, p.lon),
                geofence::ZonedPosition {
                    truck,
                    position: p,
                    zones: Vec::new(),
                },
            )
        })
        .left_join_table(
            &cell_zones,
            |z: &geofence::ZonedPosition, cell: Option<&geofence::CellZones>| {
                geofence::ZonedPosition {
                    zones: cell
                        .map_or_else(Vec::new, |c| c.containing(z.position.lat, z.position.lon)),
                    ..z.clone()
                }
            },
            Joined::with(
                StringSerde,
                JsonSerde::<geofence::ZonedPosition>::new(),
                JsonSerde::<geofence::CellZones>::new(),
            )
            .with_name("positions-by-cell"),
        )
        .select_key(|_, z: &geofence::ZonedPosition| z.truck.clone())
        .repartition(
            Repartitioned::with(StringSerde, JsonSerde::<geofence::ZonedPosition>::new())
                .with_name("positions-by-truck"),
        )
        .process(geofence::ZoneTracker::default, &[TRACKER_STORE])
        .to(
            GEOFENCE_TOPIC,
            Produced::with(StringSerde, JsonSerde::<geofence::GeofenceAlert>::new()),
        );
    builder.build()
}

fn shared<T: 'static>(serde: impl Serde<T>) -> streams_core::SharedSerde<T> {
    std::sync::Arc::new(serde)
}

/// Errors of the fleet application.
#[derive(Debug, thiserror::Error)]
pub enum GpsError {
    /// The broker refused something.
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
    /// The streams application failed.
    #[error("streams: {0}")]
    Streams(#[from] StreamsError),
    /// A report could not be encoded.
    #[error("cannot encode a report: {0}")]
    Encode(String),
    /// Something did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A Kafka client (the cluster mode's admin, producer or reader) failed.
    #[error("{context}: {source}")]
    Kafka {
        /// What was being done.
        context: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// An output record could not be read.
    #[error("bad output record on {topic}: {reason}")]
    BadOutput {
        /// The topic.
        topic: String,
        /// What was wrong.
        reason: String,
    },
}

/// Result of the fleet application's operations.
pub type Result<T> = std::result::Result<T, GpsError>;

/// How to run the application.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory of the broker's log and the application's state.
    pub data_dir: PathBuf,
    /// Stream threads.
    pub threads: usize,
    /// `commit.interval.ms`.
    pub commit_interval: Duration,
    /// `processing.guarantee`.
    pub processing_guarantee: ProcessingGuarantee,
}

impl Options {
    /// Defaults: 2 threads, commit every 200 ms, at-least-once.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Options {
            data_dir: data_dir.into(),
            threads: 2,
            commit_interval: Duration::from_millis(200),
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
        }
    }
}

/// An input record of the application, as any producer writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRecord {
    /// Partition (the Java client's murmur2 partitioner over the key, as a Kafka producer
    /// would choose).
    pub partition: i32,
    /// Key bytes.
    pub key: Bytes,
    /// Value bytes.
    pub value: Bytes,
    /// Record timestamp (ms).
    pub timestamp: i64,
}

fn partition_of(key: &str) -> i32 {
    broker_embedded::partition_for_key(key.as_bytes(), POSITIONS_PARTITIONS)
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or(0)
}

/// The records of the fleet's zones for [`ZONES_TOPIC`]: keyed by zone id, stamped with the
/// first report's event time.
pub fn zone_records(fleet: &Fleet) -> Result<Vec<InputRecord>> {
    let serde = JsonSerde::<geofence::Zone>::new();
    let ts = fleet.reports.first().map_or(0, |r| r.position.ts);
    fleet
        .zones
        .iter()
        .map(|(id, zone)| {
            let value = serde
                .serialize(ZONES_TOPIC, zone)
                .map_err(|e| GpsError::Encode(e.to_string()))?
                .unwrap_or_default();
            Ok(InputRecord {
                partition: partition_of(id),
                key: Bytes::copy_from_slice(id.as_bytes()),
                value: Bytes::from(value),
                timestamp: ts,
            })
        })
        .collect()
}

/// The record of one report for [`POSITIONS_TOPIC`]: keyed by truck id, stamped with the
/// report's event time.
pub fn report_record(r: &generator::Report) -> Result<InputRecord> {
    let value = JsonSerde::<Position>::new()
        .serialize(POSITIONS_TOPIC, &r.position)
        .map_err(|e| GpsError::Encode(e.to_string()))?
        .unwrap_or_default();
    Ok(InputRecord {
        partition: partition_of(&r.truck),
        key: Bytes::copy_from_slice(r.truck.as_bytes()),
        value: Bytes::from(value),
        timestamp: r.position.ts,
    })
}

/// The settings every run of the application uses, embedded or on a cluster.
fn with_app_settings(config: StreamsConfig) -> StreamsConfig {
    // Look for closed windows on every record (Kafka's internal emit interval, 1 s of wall
    // clock by default): a replay then emits exactly what a live feed would.
    config.emit_interval_windowed_aggregation(Duration::ZERO)
}

/// The broker and the running application.
pub struct GpsTrucks {
    broker: Broker,
    app: StreamsApp,
}

impl std::fmt::Debug for GpsTrucks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpsTrucks").field("app", &self.app).finish()
    }
}

fn ensure_topic(broker: &Broker, topic: NewTopic) -> Result<()> {
    if !broker.topic_exists(&topic.name) {
        match broker.create_topic(topic) {
            Ok(_) | Err(BrokerError::TopicAlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

impl GpsTrucks {
    /// Opens the in-process broker under `options.data_dir`, creates the topics and starts
    /// the application (waiting until it runs).
    pub fn start(options: &Options) -> Result<Self> {
        let mut broker_config = BrokerConfig::new(options.data_dir.join("broker"));
        broker_config.group_initial_rebalance_delay = Duration::ZERO;
        let broker = Broker::open(broker_config)?;
        ensure_topic(
            &broker,
            NewTopic::new(POSITIONS_TOPIC, POSITIONS_PARTITIONS),
        )?;
        ensure_topic(
            &broker,
            NewTopic::new(ZONES_TOPIC, POSITIONS_PARTITIONS).config("cleanup.policy", "compact"),
        )?;
        for t in [LATEST_TOPIC, STATS_TOPIC, SPEEDING_TOPIC, GEOFENCE_TOPIC] {
            ensure_topic(&broker, NewTopic::new(t, POSITIONS_PARTITIONS))?;
        }
        let config = StreamsConfig::new(APPLICATION_ID)
            .state_dir(options.data_dir.join("state"))
            .num_stream_threads(options.threads)
            .commit_interval(options.commit_interval)
            .processing_guarantee(options.processing_guarantee);
        let config = with_app_settings(config);
        let mut app = StreamsApp::new(topology()?, config, EmbeddedCluster::new(broker.clone()))?;
        app.start()?;
        if !app.wait_for_state(StreamsState::Running, Duration::from_secs(120)) {
            return Err(GpsError::Timeout(format!(
                "the application did not reach RUNNING (state {:?}; errors: {})",
                app.state(),
                app.errors().join("; ")
            )));
        }
        Ok(GpsTrucks { broker, app })
    }

    /// The running application (metrics such as `dropped_records`).
    pub fn app(&self) -> &StreamsApp {
        &self.app
    }

    /// Writes the fleet's reports to [`POSITIONS_TOPIC`] in their order, each to its
    /// truck's partition (the Java client's murmur2 partitioner, as a Kafka producer would).
    pub fn produce(&self, fleet: &Fleet) -> Result<()> {
        self.produce_zones(fleet)?;
        self.produce_reports(&fleet.reports)
    }

    /// Writes the fleet's zones to [`ZONES_TOPIC`] (keyed by zone id, partitioned as a Kafka
    /// producer would), stamped with the first report's event time.
    pub fn produce_zones(&self, fleet: &Fleet) -> Result<()> {
        for r in zone_records(fleet)? {
            let record = ProduceRecord::new(r.key, r.value).with_timestamp(r.timestamp);
            self.broker.produce(ZONES_TOPIC, r.partition, &[record])?;
        }
        Ok(())
    }

    fn produce_reports(&self, reports: &[generator::Report]) -> Result<()> {
        let mut batch: BTreeMap<i32, Vec<ProduceRecord>> = BTreeMap::new();
        for r in reports {
            let r = report_record(r)?;
            let p = r.partition;
            batch
                .entry(p)
                .or_default()
                .push(ProduceRecord::new(r.key, r.value).with_timestamp(r.timestamp));
            if batch.get(&p).is_some_and(|b| b.len() >= 500) {
                if let Some(records) = batch.remove(&p) {
                    self.broker.produce(POSITIONS_TOPIC, p, &records)?;
                }
            }
        }
        for (p, records) in batch {
            self.broker.produce(POSITIONS_TOPIC, p, &records)?;
        }
        Ok(())
    }

    /// Writes the fleet's reports as a live feed would: in batches of `batch_ms` of arrival
    /// time, waiting after each until it is processed, then calling `after_batch` with the
    /// batch's last arrival time (to print a dashboard, or pace the feed). With `batch_ms`
    /// = 1 every distinct arrival time is its own batch, so each truck's reports reach every
    /// step in arrival order (see [`geofence`]).
    pub fn produce_live(
        &self,
        fleet: &Fleet,
        batch_ms: i64,
        timeout: Duration,
        mut after_batch: impl FnMut(&Self, i64) -> Result<()>,
    ) -> Result<()> {
        let batch_ms = batch_ms.max(1);
        self.produce_zones(fleet)?;
        self.wait_until_processed(timeout)?;
        let mut rest = fleet.reports.as_slice();
        while let Some(first) = rest.first() {
            let batch_end = first.arrival_ms - first.arrival_ms.rem_euclid(batch_ms) + batch_ms;
            let n = rest
                .iter()
                .position(|r| r.arrival_ms >= batch_end)
                .unwrap_or(rest.len());
            let (batch, tail) = rest.split_at(n);
            self.produce_reports(batch)?;
            self.wait_until_processed(timeout)?;
            after_batch(self, batch_end - 1)?;
            rest = tail;
        }
        Ok(())
    }

    /// Waits until every report written so far is processed and its results written.
    pub fn wait_until_processed(&self, timeout: Duration) -> Result<()> {
        if self.app.wait_until_caught_up(timeout)? {
            Ok(())
        } else {
            Err(GpsError::Timeout(format!(
                "reports not processed within {timeout:?} (state {:?}; errors: {})",
                self.app.state(),
                self.app.errors().join("; ")
            )))
        }
    }

    /// What the application has written so far.
    pub fn results(&self) -> Result<FleetResults> {
        read_results(&self.broker)
    }

    /// Stops the application and the broker; an error if the application failed.
    pub fn close(mut self) -> Result<()> {
        self.app.close();
        let errors = self.app.errors();
        self.broker.shutdown()?;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(GpsError::Streams(StreamsError::IllegalState(
                errors.join("; "),
            )))
        }
    }
}

/// The application's output, as read back from its topics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetResults {
    /// The latest position of each truck.
    pub latest: BTreeMap<String, Position>,
    /// The last result per (truck, window start) of the 5-minute windows.
    pub windows: BTreeMap<(String, i64), WindowStats>,
    /// Results per (truck, window start) of the 5-minute windows: how many were written
    /// (exactly one each once windows emit on close).
    pub window_updates: BTreeMap<(String, i64), usize>,
    /// The speeding alerts, in the order written per partition (partition order).
    pub speeding: Vec<SpeedingAlert>,
    /// The geofence alerts, in the order written per partition (partition order).
    pub geofence: Vec<geofence::GeofenceAlert>,
}

fn read_topic(broker: &Broker, topic: &str) -> Result<Vec<(Option<Bytes>, Option<Bytes>)>> {
    let mut out = Vec::new();
    let partitions = broker.partition_count(topic)?;
    for p in 0..i32::try_from(partitions).unwrap_or(0) {
        let mut offset = broker.partition_offsets(topic, p)?.log_start_offset;
        loop {
            // Records of aborted transactions (exactly-once after a crash) are skipped.
            let read =
                broker.read_records(topic, p, offset, 4 << 20, IsolationLevel::ReadCommitted)?;
            let Some(next) = read.next_offset else {
                break;
            };
            offset = next;
            out.extend(read.records.into_iter().map(|r| (r.key, r.value)));
        }
    }
    Ok(out)
}

fn decode<T: 'static>(serde: &impl Serde<T>, topic: &str, bytes: Option<&[u8]>) -> Result<T> {
    serde
        .deserialize(topic, bytes)
        .map_err(|e| GpsError::BadOutput {
            topic: topic.to_owned(),
            reason: e.to_string(),
        })
}

/// Reads the application's output topics.
pub fn read_results(broker: &Broker) -> Result<FleetResults> {
    results_from(|topic| read_topic(broker, topic))
}

/// Decodes the application's output, `read` giving the (key, value) pairs of a topic in
/// partition order (each partition in offset order).
pub fn results_from(
    mut read: impl FnMut(&str) -> Result<Vec<(Option<Bytes>, Option<Bytes>)>>,
) -> Result<FleetResults> {
    let mut results = FleetResults::default();
    for (k, v) in read(LATEST_TOPIC)? {
        let truck = decode(&StringSerde, LATEST_TOPIC, k.as_deref())?;
        let p = decode(&JsonSerde::<Position>::new(), LATEST_TOPIC, v.as_deref())?;
        results.latest.insert(truck, p);
    }
    let window_serde = TimeWindowedSerde::new(StringSerde, STATS_WINDOW);
    for (k, v) in read(STATS_TOPIC)? {
        let w: Windowed<String> = decode(&window_serde, STATS_TOPIC, k.as_deref())?;
        let stats = decode(&JsonSerde::<WindowStats>::new(), STATS_TOPIC, v.as_deref())?;
        let key = (w.key, w.window.start);
        *results.window_updates.entry(key.clone()).or_default() += 1;
        results.windows.insert(key, stats);
    }
    for (_, v) in read(SPEEDING_TOPIC)? {
        results.speeding.push(decode(
            &JsonSerde::<SpeedingAlert>::new(),
            SPEEDING_TOPIC,
            v.as_deref(),
        )?);
    }
    for (_, v) in read(GEOFENCE_TOPIC)? {
        results.geofence.push(decode(
            &JsonSerde::<geofence::GeofenceAlert>::new(),
            GEOFENCE_TOPIC,
            v.as_deref(),
        )?);
    }
    Ok(results)
}
