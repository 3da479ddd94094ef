//! The fleet application against a Kafka-protocol cluster (`broker serve`, or any Kafka),
//! through the wire backend ([`streams_core::KafkaCluster`]): the same topology, input and
//! output topics as on the embedded broker, and several processes with the same application
//! id share the tasks.
//!
//! [`ensure_topics`] creates the input and output topics when missing (with
//! [`POSITIONS_PARTITIONS`] partitions, [`ZONES_TOPIC`] compacted), [`produce`] writes a
//! generated fleet with a Kafka producer (same records, partitions and timestamps as
//! [`GpsTrucks::produce`](super::GpsTrucks::produce)), [`start`] runs an instance, and
//! [`read_results`] reads the output topics back into [`FleetResults`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use streams_core::{KafkaCluster, ProcessingGuarantee, StreamsApp, StreamsConfig};

use super::generator::Fleet;
use super::{
    report_record, results_from, topology, with_app_settings, zone_records, FleetResults, GpsError,
    InputRecord, Result, GEOFENCE_TOPIC, LATEST_TOPIC, POSITIONS_PARTITIONS, POSITIONS_TOPIC,
    SPEEDING_TOPIC, STATS_TOPIC, ZONES_TOPIC,
};

/// A record's key and value.
pub type KeyValue = (Option<Bytes>, Option<Bytes>);

fn kafka(context: impl Into<String>, source: KafkaError) -> GpsError {
    GpsError::Kafka {
        context: context.into(),
        source,
    }
}

/// Settings of one instance on a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// `application.id` (the group every instance joins, the prefix of internal topics).
    pub application_id: String,
    /// `state.dir` of this instance.
    pub state_dir: PathBuf,
    /// `num.stream.threads`.
    pub threads: usize,
    /// `commit.interval.ms`.
    pub commit_interval: Duration,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
    /// `processing.guarantee`.
    pub processing_guarantee: ProcessingGuarantee,
}

impl ClusterOptions {
    /// Defaults: the application id [`APPLICATION_ID`](super::APPLICATION_ID), 2 threads,
    /// commit every 200 ms (as embedded), a 10 s session timeout.
    pub fn new(bootstrap: &str, state_dir: impl Into<PathBuf>) -> Self {
        ClusterOptions {
            bootstrap: bootstrap.to_owned(),
            application_id: super::APPLICATION_ID.to_owned(),
            state_dir: state_dir.into(),
            threads: 2,
            commit_interval: Duration::from_millis(200),
            session_timeout: Duration::from_secs(10),
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
        }
    }

    /// The streams configuration of these options.
    pub fn config(&self) -> Result<StreamsConfig> {
        let config = StreamsConfig::new(&self.application_id)
            .bootstrap_servers(&self.bootstrap)?
            .state_dir(&self.state_dir)
            .num_stream_threads(self.threads)
            .commit_interval(self.commit_interval)
            .session_timeout(self.session_timeout)
            .processing_guarantee(self.processing_guarantee);
        Ok(with_app_settings(config))
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| GpsError::Timeout(format!("cannot start a tokio runtime: {e}")))
}

/// Creates the input topics ([`POSITIONS_TOPIC`]; [`ZONES_TOPIC`] with
/// `cleanup.policy=compact`) and the output topics with [`POSITIONS_PARTITIONS`] partitions
/// each and no time-based retention (`retention.ms=-1`), those that are missing. Existing
/// topics are left as they are.
pub fn ensure_topics(bootstrap: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| kafka("creating an admin client", e))?;
    let partitions = i32::try_from(POSITIONS_PARTITIONS).unwrap_or(i32::MAX);
    // The fleet's event times (the record timestamps) are in the past: time-based retention
    // (Kafka's default: 7 days) would let the broker delete them at its next check.
    let new = |name| {
        NewTopic::new(name, partitions, TopicReplication::Fixed(1)).set("retention.ms", "-1")
    };
    let topics = [
        new(POSITIONS_TOPIC),
        NewTopic::new(ZONES_TOPIC, partitions, TopicReplication::Fixed(1))
            .set("cleanup.policy", "compact"),
        new(LATEST_TOPIC),
        new(STATS_TOPIC),
        new(SPEEDING_TOPIC),
        new(GEOFENCE_TOPIC),
    ];
    let results = runtime()?
        .block_on(admin.create_topics(&topics, &AdminOptions::new()))
        .map_err(|e| kafka("creating topics", e))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(kafka(
                    format!("creating topic `{name}`"),
                    KafkaError::AdminOp(code),
                ))
            }
        }
    }
    Ok(())
}

/// Writes the fleet as [`GpsTrucks::produce`](super::GpsTrucks::produce) does: the zones to
/// [`ZONES_TOPIC`], then the reports to [`POSITIONS_TOPIC`] in their order (an idempotent
/// producer keeps each partition's order), each to its key's partition with its event time
/// as timestamp; waits for every acknowledgement. Returns (zones, reports) written.
pub fn produce(bootstrap: &str, fleet: &Fleet) -> Result<(usize, usize)> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .map_err(|e| kafka("creating a producer", e))?;
    let send = |topic: &str, r: &InputRecord| -> Result<()> {
        loop {
            let record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
                .partition(r.partition)
                .timestamp(r.timestamp)
                .key(&r.key[..])
                .payload(&r.value[..]);
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(kafka(format!("producing to {topic}"), e)),
            }
        }
    };
    let zones = zone_records(fleet)?;
    for r in &zones {
        send(ZONES_TOPIC, r)?;
    }
    for report in &fleet.reports {
        send(POSITIONS_TOPIC, &report_record(report)?)?;
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| kafka("flushing the producer", e))?;
    Ok((zones.len(), fleet.reports.len()))
}

/// Starts an instance of the fleet application on the cluster (it joins the group and gets
/// its share of the tasks through rebalances; internal topics are created when missing).
pub fn start(options: &ClusterOptions) -> Result<StreamsApp> {
    let config = options.config()?;
    let cluster = KafkaCluster::new(&config)?;
    let mut app = StreamsApp::new(topology()?, config, cluster)?;
    app.start()?;
    Ok(app)
}

/// The (key, value) pairs of every partition of `topic` up to its end offset at the time of
/// the call, partition after partition (committed records only).
pub fn read_topic(bootstrap: &str, topic: &str) -> Result<Vec<KeyValue>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.auto.commit", "false")
        // librdkafka assigns only with a group id; this one never joins nor commits.
        .set("group.id", "gps-trucks-reader")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| kafka("creating a consumer", e))?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| kafka(format!("metadata of {topic}"), e))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    let mut ends = BTreeMap::new();
    let mut list = TopicPartitionList::new();
    for p in 0..i32::try_from(partitions).unwrap_or(0) {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(|e| kafka(format!("end offsets of {topic}"), e))?;
        if high > low {
            ends.insert(p, high);
            list.add_partition_offset(topic, p, Offset::Offset(low))
                .map_err(|e| kafka("assigning", e))?;
        }
    }
    let mut read: BTreeMap<i32, Vec<KeyValue>> = BTreeMap::new();
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&list).map_err(|e| kafka("assigning", e))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut done = 0;
    while done < ends.len() {
        if Instant::now() > deadline {
            return Err(GpsError::Timeout(format!(
                "reading {topic}: {done} of {} partitions read to their end",
                ends.len()
            )));
        }
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.map_err(|e| kafka(format!("reading {topic}"), e))?;
        let Some(end) = ends.get(&m.partition()).copied() else {
            continue;
        };
        let records = read.entry(m.partition()).or_default();
        if m.offset() >= end {
            continue;
        }
        records.push((
            m.key().map(Bytes::copy_from_slice),
            m.payload().map(Bytes::copy_from_slice),
        ));
        if m.offset() + 1 >= end {
            done += 1;
        }
    }
    Ok(read.into_values().flatten().collect())
}

/// What the application has written to its output topics on the cluster.
pub fn read_results(bootstrap: &str) -> Result<FleetResults> {
    results_from(|topic| read_topic(bootstrap, topic))
}
