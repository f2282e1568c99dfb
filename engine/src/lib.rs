//! Tessera's storage engine: the IO boundary, the on-disk format, the shard store,
//! the erasure codec and the thread-per-core runtime. It knows nothing of HTTP or
//! S3; the gateway crate turns S3 requests into calls on it.
pub mod applied;
pub mod erasure;
pub mod format;
pub mod io;
pub mod object;
pub mod placement;
pub mod runtime;
pub mod store;

pub use format::ShardKey;
pub use store::{Applied, ShardStore, StoreConfig, StoreError};
