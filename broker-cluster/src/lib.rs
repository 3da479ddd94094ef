//! KRaft-style cluster mode for the broker: the Raft controller quorum ([`quorum`]), and (from
//! other modules) the metadata model and the controller decisions.
//!
//! `broker-embedded` must not depend on this crate: it exposes traits this crate implements.

pub mod error;
pub mod quorum;
