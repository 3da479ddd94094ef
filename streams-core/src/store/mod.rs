//! State stores in the runtime: what a topology declares ([`StoreBuilder`]), how a task
//! opens it (`open`), and the typed handles processors use (`handles`), with serdes
//! applied at this outer layer as Kafka's metered stores do.

mod buffer;
mod builder;
mod handles;
mod open;

pub use buffer::{BufferedRecord, TimeOrderedBufferHandle};
pub use builder::{StoreBuilder, StoreKind};
pub use handles::{
    KeyValueStoreHandle, SessionStoreHandle, StoreIter, ValueAndTimestamp, Window,
    WindowStoreHandle, Windowed,
};

pub(crate) use handles::{
    resolve_store, same, spec_serdes, timestamped, SerdePair, StoreHost, View,
};
pub(crate) use open::{open_store, CacheFlush, OpenStore, StoreEnv};
pub(crate) use open::{
    SharedTaskStore, TaskKeyValueStore, TaskSessionStore, TaskStore, TaskWindowStore,
};
