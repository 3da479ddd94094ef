//! Errors of the cluster crate.

pub use crate::quorum::QuorumError;
