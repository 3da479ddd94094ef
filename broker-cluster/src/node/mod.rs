//! The node glue: what runs a controller and/or a broker of a cluster in one process.

pub mod controller;

pub use controller::ControllerService;
pub mod broker;

pub use broker::{BrokerListener, BrokerNode, BrokerNodeConfig, BrokerNodeError};
