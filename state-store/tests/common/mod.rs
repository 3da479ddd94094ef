//! Shared helpers for the integration tests.
#![allow(dead_code)]

use state_store::{RocksDbConfig, RocksDbResources};

/// Small RocksDB budget for tests.
#[allow(clippy::expect_used)] // test helper: a fixed valid config
pub(crate) fn small_resources() -> RocksDbResources {
    RocksDbResources::new(RocksDbConfig {
        block_cache_bytes: 8 << 20,
        write_buffer_manager_bytes: 64 << 20,
        write_buffer_size: 4 << 20,
        max_write_buffer_number: 2,
        disable_wal: true,
        lz4_compression: false,
    })
    .expect("resources")
}
