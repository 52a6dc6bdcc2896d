//! The ZooKeeper client protocol front end.
//!
//! The core files decide and do no I/O: `jute.rs` (jute's primitive encoding), `proto.rs` (the
//! records ZooKeeper 3.5 to 3.9 clients send and expect), `frame.rs` (length framing and
//! four-letter words), `codes.rs` (the contract's error codes as ZooKeeper's) and `config.rs`. The
//! shell is thin: `server.rs` accepts within the connection bounds, `connection.rs` runs one
//! connection's handshake and ordered request loop, `ops.rs` answers each operation through the
//! service layer (`service::registry`), and `words.rs` the four-letter words.

pub mod codes;
pub mod config;
mod connection;
pub mod frame;
pub mod jute;
mod ops;
pub mod proto;
mod server;
mod words;

pub use config::{ZkConfig, ZkSettings};
pub use server::{ZkAuth, ZkServer};
pub use words::ZOOKEEPER_VERSION;
