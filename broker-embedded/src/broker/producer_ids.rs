//! Producer ids. A single node reserves them durably in blocks whose end is written to
//! `meta/producer-id-block` before any id of the block is handed out. A broker in a cluster
//! gets its blocks from the controller instead (Kafka's `AllocateProducerIds`, KIP-730),
//! through a [`ProducerIdBlockSource`]: the next block is requested in the background when
//! 90% of the current one is used, and while none is available InitProducerId answers
//! COORDINATOR_LOAD_IN_PROGRESS, which clients retry.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::warn;

use super::Broker;
use crate::error::{BrokerError, Result};
use crate::fsutil::write_atomic;

const PRODUCER_ID_BLOCK: i64 = 1000;

/// A block of producer ids `[first, first + size)` handed to this broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdBlock {
    /// The first id of the block.
    pub first: i64,
    /// How many ids it holds.
    pub size: i64,
}

/// Where a broker in a cluster gets its producer-id blocks (the controller).
pub trait ProducerIdBlockSource: Send + Sync {
    /// Starts a request for a new block and returns at once; `done` is called (on any thread)
    /// with the block, or with a description of why there is none this time (the broker asks
    /// again on its next need).
    fn request_block(
        &self,
        done: Box<dyn FnOnce(std::result::Result<ProducerIdBlock, String>) + Send>,
    );
}

pub(super) struct ProducerIdAllocator {
    pub(super) path: PathBuf,
    pub(super) next: i64,
    pub(super) block_end: i64,
    /// Set in a cluster: blocks come from here, nothing is written locally.
    pub(super) source: Option<Arc<dyn ProducerIdBlockSource>>,
    /// The block fetched ahead of need.
    pub(super) prefetched: Option<ProducerIdBlock>,
    /// A request to the source is under way.
    pub(super) requesting: bool,
    /// Size of the current block (for the 90% prefetch threshold).
    pub(super) block_size: i64,
}

impl Broker {
    /// Hands out a new producer id. On a single node, ids are reserved durably in blocks of
    /// 1000 before use, so an id is never handed out twice, across restarts and crashes. In a
    /// cluster (see [`Broker::set_producer_id_source`]) ids come from blocks the controller
    /// hands out; while no block is available this fails with
    /// [`BrokerError::ProducerIdsUnavailable`] (COORDINATOR_LOAD_IN_PROGRESS, retriable).
    pub fn allocate_producer_id(&self) -> Result<i64> {
        self.check_open()?;
        let mut a = self.inner.producer_ids.lock();
        let Some(source) = a.source.clone() else {
            if a.next >= a.block_end {
                let end = a.next + PRODUCER_ID_BLOCK;
                write_atomic(&*self.inner.storage, &a.path, end.to_string().as_bytes())?;
                a.block_end = end;
            }
            let id = a.next;
            a.next += 1;
            return Ok(id);
        };
        if a.next >= a.block_end {
            match a.prefetched.take() {
                Some(block) => {
                    a.next = block.first;
                    a.block_end = block.first + block.size;
                    a.block_size = block.size;
                }
                None => {
                    drop(a);
                    self.request_producer_id_block(&source);
                    return Err(BrokerError::ProducerIdsUnavailable);
                }
            }
        }
        let id = a.next;
        a.next += 1;
        // Prefetch once 90% of the block is used.
        let used = a.block_size - (a.block_end - a.next);
        let want_more = a.prefetched.is_none() && used * 10 >= a.block_size * 9;
        drop(a);
        if want_more {
            self.request_producer_id_block(&source);
        }
        Ok(id)
    }

    /// Makes this broker take its producer ids from `source` (a controller) instead of its
    /// own durable counter, and asks for the first block at once.
    pub fn set_producer_id_source(&self, source: Arc<dyn ProducerIdBlockSource>) {
        {
            let mut a = self.inner.producer_ids.lock();
            a.source = Some(Arc::clone(&source));
            a.next = 0;
            a.block_end = 0;
            a.block_size = 0;
            a.prefetched = None;
        }
        self.request_producer_id_block(&source);
    }

    fn request_producer_id_block(&self, source: &Arc<dyn ProducerIdBlockSource>) {
        {
            let mut a = self.inner.producer_ids.lock();
            if a.requesting || a.prefetched.is_some() {
                return;
            }
            a.requesting = true;
        }
        let weak = Arc::downgrade(&self.inner);
        source.request_block(Box::new(move |result| {
            let Some(inner) = weak.upgrade() else { return };
            let mut a = inner.producer_ids.lock();
            a.requesting = false;
            match result {
                Ok(block) if block.size > 0 && block.first >= 0 => a.prefetched = Some(block),
                Ok(block) => warn!(
                    ?block,
                    "the controller handed out an empty producer-id block"
                ),
                Err(reason) => {
                    warn!(%reason, "no producer-id block from the controller; will ask again")
                }
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BrokerConfig;
    use parking_lot::Mutex;

    /// Hands out consecutive blocks of 10, synchronously or on demand.
    struct Blocks {
        next: Mutex<i64>,
        calls: Mutex<u32>,
        fail: bool,
    }

    impl ProducerIdBlockSource for Blocks {
        fn request_block(
            &self,
            done: Box<dyn FnOnce(std::result::Result<ProducerIdBlock, String>) + Send>,
        ) {
            *self.calls.lock() += 1;
            if self.fail {
                done(Err("controller unavailable".into()));
                return;
            }
            let mut n = self.next.lock();
            let first = *n;
            *n += 10;
            done(Ok(ProducerIdBlock { first, size: 10 }));
        }
    }

    #[test]
    fn ids_come_from_the_sources_blocks_without_gaps_or_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        let source = Arc::new(Blocks {
            next: Mutex::new(5000),
            calls: Mutex::new(0),
            fail: false,
        });
        broker.set_producer_id_source(source.clone());
        let ids: Vec<i64> = (0..35)
            .map(|_| broker.allocate_producer_id().unwrap())
            .collect();
        assert_eq!(ids, (5000..5035).collect::<Vec<_>>());
        // One request per block: the first at start, then one prefetch per block used.
        assert_eq!(*source.calls.lock(), 4);
        broker.shutdown().unwrap();
    }

    #[test]
    fn without_a_block_the_error_is_retriable_coordinator_load_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        let source = Arc::new(Blocks {
            next: Mutex::new(0),
            calls: Mutex::new(0),
            fail: true,
        });
        broker.set_producer_id_source(source.clone());
        let err = broker.allocate_producer_id().unwrap_err();
        assert!(matches!(err, BrokerError::ProducerIdsUnavailable), "{err}");
        assert_eq!(
            err.kafka_error(),
            kafka_protocol::ResponseError::CoordinatorLoadInProgress
        );
        // Every need asks again.
        assert!(broker.allocate_producer_id().is_err());
        assert_eq!(*source.calls.lock(), 3);
        broker.shutdown().unwrap();
    }
}
