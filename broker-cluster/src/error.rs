//! Errors of the cluster crate.

use thiserror::Error;

/// An error raised by the cluster crate's metadata model or controller.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// A metadata snapshot could not be encoded or decoded.
    #[error("metadata snapshot (de)serialization failed: {0}")]
    Snapshot(#[from] serde_json::Error),
    /// A configuration value is invalid.
    #[error("invalid configuration {name}={value}: {reason}")]
    InvalidConfig {
        /// The configuration key.
        name: String,
        /// The offending value.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
}

/// A `Result` with [`ClusterError`].
pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

pub use crate::quorum::QuorumError;
