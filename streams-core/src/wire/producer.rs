//! A stream thread's producer on librdkafka: idempotent, Java-compatible partitioner (the
//! runtime picks partitions itself, but records a user produces through the same client
//! settings must land where Java's would), delivery reports collected per partition so
//! [`ClusterProducer::flush`] can return the last acknowledged offset of each partition (the
//! changelog offsets the runtime checkpoints).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as RdHeader, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message};
use state_store::TopicPartition;

use super::{rdkafka_error, ClientKind, WireSettings};
use crate::client::ClusterProducer;
use crate::error::Result;
use crate::record::ProducedRecord;

/// Delivery reports since the last flush.
#[derive(Default)]
struct Deliveries {
    acked: BTreeMap<TopicPartition, i64>,
    /// The first failed delivery, with its partition.
    failed: Option<(TopicPartition, KafkaError)>,
}

struct DeliveryContext {
    deliveries: Arc<Mutex<Deliveries>>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut d = self.deliveries.lock();
        match result {
            Ok(m) => {
                let tp = TopicPartition::new(m.topic(), m.partition());
                let e = d.acked.entry(tp).or_insert(m.offset());
                *e = (*e).max(m.offset());
            }
            Err((e, m)) => {
                if d.failed.is_none() {
                    d.failed = Some((TopicPartition::new(m.topic(), m.partition()), e.clone()));
                }
            }
        }
    }
}

pub(super) struct WireProducer {
    producer: BaseProducer<DeliveryContext>,
    deliveries: Arc<Mutex<Deliveries>>,
    flush_timeout: Duration,
}

impl WireProducer {
    pub(super) fn new(settings: &WireSettings, client_id: &str) -> Result<Self> {
        let deliveries = Arc::new(Mutex::new(Deliveries::default()));
        let mut config = settings.client_config(ClientKind::Producer, client_id);
        config
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random");
        if config.get("linger.ms").is_none() {
            // Kafka Streams' producer default is 100 ms; the runtime flushes at every
            // commit anyway, so batching longer only adds latency.
            config.set("linger.ms", "5");
        }
        let producer = config
            .create_with_context(DeliveryContext {
                deliveries: Arc::clone(&deliveries),
            })
            .map_err(|e| rdkafka_error("creating a producer", e))?;
        Ok(WireProducer {
            producer,
            deliveries,
            flush_timeout: settings.request_timeout.max(Duration::from_secs(30)) * 2,
        })
    }
}

impl ClusterProducer for WireProducer {
    fn send(&mut self, tp: &TopicPartition, records: Vec<ProducedRecord>) -> Result<()> {
        for r in &records {
            let headers = if r.headers.is_empty() {
                None
            } else {
                let mut h = OwnedHeaders::new_with_capacity(r.headers.len());
                for x in &r.headers {
                    h = h.insert(RdHeader {
                        key: &x.key,
                        value: x.value.as_deref(),
                    });
                }
                Some(h)
            };
            loop {
                let mut rec: BaseRecord<'_, [u8], [u8], ()> = BaseRecord::to(&tp.topic)
                    .partition(tp.partition)
                    .timestamp(r.timestamp);
                if let Some(k) = r.key.as_deref() {
                    rec = rec.key(k);
                }
                if let Some(v) = r.value.as_deref() {
                    rec = rec.payload(v);
                }
                if let Some(h) = headers.clone() {
                    rec = rec.headers(h);
                }
                match self.producer.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // The local queue is full: serve delivery reports, then retry.
                        self.producer.poll(Duration::from_millis(50));
                    }
                    Err((e, _)) => return Err(rdkafka_error(format!("producing to {tp}"), e)),
                }
            }
        }
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    fn flush(&mut self) -> Result<BTreeMap<TopicPartition, i64>> {
        self.producer
            .flush(self.flush_timeout)
            .map_err(|e| rdkafka_error("flushing the producer", e))?;
        let mut d = self.deliveries.lock();
        if let Some((tp, e)) = d.failed.take() {
            d.acked.clear();
            return Err(rdkafka_error(
                format!("a record to {tp} was not delivered"),
                e,
            ));
        }
        Ok(std::mem::take(&mut d.acked))
    }
}

impl Drop for WireProducer {
    /// librdkafka drops what is still queued when its producer goes away: deliver it first
    /// (bounded by the flush timeout), so nothing sent is silently lost at shutdown.
    fn drop(&mut self) {
        if let Err(e) = self.producer.flush(self.flush_timeout) {
            tracing::warn!(error = %e, "flushing the producer at close");
        }
    }
}
