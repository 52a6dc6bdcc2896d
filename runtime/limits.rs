//! Every bound the runtime enforces on what comes from outside, in one place, each with its reason.
//!
//! Overload past one of these is a typed, counted rejection, never unbounded memory.

/// Largest frame body accepted on any mesh stream. Consensus batches and task batches are cut below
/// this; a peer that announces more is misbehaving, and we refuse before allocating.
pub const FRAME_BYTES_MAX: usize = 16 << 20;

/// Frames waiting to be written to one peer on one traffic class. At 100 µs per frame this is about
/// 0.4 s of backlog: enough to ride out a hiccup, small enough that a dead peer cannot eat memory.
pub const PEER_QUEUE_FRAMES_MAX: usize = 4096;

/// Frames received but not yet taken by the local consumer of one traffic class. When full, the
/// stream reader waits, and QUIC flow control pushes back on the sender.
pub const INBOUND_QUEUE_FRAMES_MAX: usize = 8192;

/// Cluster members a node accepts in its peer list: a Raft group past this size is a mistake, and
/// every per-peer structure is sized from it.
pub const PEERS_MAX: usize = 64;

/// Membership events buffered for a slow subscriber; past this it is told it lagged.
pub const PEER_EVENTS_BUFFERED_MAX: usize = 1024;

/// Longest wait between two attempts to reach a peer. Backoff doubles from the minimum up to this.
pub const DIAL_BACKOFF_MS_MAX: u64 = 1_000;

/// First wait after a failed dial.
pub const DIAL_BACKOFF_MS_MIN: u64 = 20;

/// A restarted child that crashes this many times within [`RESTART_WINDOW_MS`] takes the node down:
/// a crash loop must be visible to the operator, not hidden behind endless restarts.
pub const RESTARTS_IN_WINDOW_MAX: usize = 5;

/// Window over which child restarts are counted, see [`RESTARTS_IN_WINDOW_MAX`].
pub const RESTART_WINDOW_MS: u64 = 10_000;

/// Bytes of an HTTP response the CLI reads from the admin API.
pub const ADMIN_RESPONSE_BYTES_MAX: usize = 16 << 20;

/// Bytes of a configuration file a node reads.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1 << 20;

/// Smallest heartbeat interval a config may set: below this, heartbeats cost more than they tell.
pub const HEARTBEAT_INTERVAL_MS_MIN: u64 = 10;

/// A peer must be silent for at least this many heartbeat intervals before it is declared down, so
/// that one lost or late heartbeat never causes a false down.
pub const SILENCE_INTERVALS_MIN: u64 = 3;

const _: () = assert!(DIAL_BACKOFF_MS_MIN < DIAL_BACKOFF_MS_MAX);
const _: () = assert!(FRAME_BYTES_MAX <= u32::MAX as usize);
