//! The durable producer-id allocator: ids are reserved in blocks whose end is written to
//! `meta/producer-id-block` before any id of the block is handed out.

use std::path::PathBuf;

use super::Broker;
use crate::error::Result;
use crate::fsutil::write_atomic;

const PRODUCER_ID_BLOCK: i64 = 1000;

pub(super) struct ProducerIdAllocator {
    pub(super) path: PathBuf,
    pub(super) next: i64,
    pub(super) block_end: i64,
}

impl Broker {
    /// Hands out a new producer id. Ids are reserved durably in blocks of 1000 before use, so
    /// an id is never handed out twice, across restarts and crashes.
    pub fn allocate_producer_id(&self) -> Result<i64> {
        self.check_open()?;
        let mut a = self.inner.producer_ids.lock();
        if a.next >= a.block_end {
            let end = a.next + PRODUCER_ID_BLOCK;
            write_atomic(&*self.inner.storage, &a.path, end.to_string().as_bytes())?;
            a.block_end = end;
        }
        let id = a.next;
        a.next += 1;
        Ok(id)
    }
}
