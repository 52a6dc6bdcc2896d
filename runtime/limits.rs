//! Every bound the runtime enforces on what comes from outside, in one place, each with its reason.
//!
//! Overload past one of these is a typed, counted rejection, never unbounded memory.

/// Largest Raft log entry a node proposes, as encoded in the log (a proposal and its log id). Every
/// write is checked against it on the leader before it is appended, so no entry that the consensus
/// stream cannot carry ever enters the log. 8 MiB holds the largest single value a client may send
/// (a 1 MiB znode, a 1 MiB task input or result) with room for batches of them, and keeps one entry's
/// fsync and replication well under a heartbeat's worth of bandwidth on a LAN.
pub const ENTRY_BYTES_MAX: usize = 8 << 20;

/// What an entry's log id, term and enum tags add around its proposal, at most. A proposal is
/// checked against `ENTRY_BYTES_MAX - ENTRY_OVERHEAD_BYTES`.
pub const ENTRY_OVERHEAD_BYTES: usize = 256;

/// Largest AppendEntries batch, in encoded bytes, that the leader sends in one call; a longer batch is
/// cut (openraft's partial success) and the rest follows in the next call. A batch always carries at
/// least one entry, so an entry larger than this (written by an earlier version) still replicates.
pub const APPEND_BATCH_BYTES_MAX: usize = ENTRY_BYTES_MAX;

/// Largest piece of one consensus-stream message (an RPC request or reply) per mesh frame. Longer
/// messages (big batches, snapshots, an oversized entry from an earlier version) travel in pieces of
/// this size and are reassembled by the receiver.
pub const RPC_CHUNK_BYTES: usize = 4 << 20;

/// Largest consensus-stream message a receiver reassembles: a snapshot of the whole state at its byte
/// budgets fits with room to spare. A peer announcing more is refused before anything is buffered.
pub const RPC_MESSAGE_BYTES_MAX: usize = 2 << 30;

/// Messages being reassembled from one peer at once; past it the oldest partial message is dropped
/// (its call times out and is retried above).
pub const RPC_REASSEMBLIES_PER_PEER_MAX: usize = 4;

/// Bytes a frame adds around its payload: the frame header, the archive's framing, the payload's
/// topic and the chunk's own header, rounded up generously.
pub const FRAME_OVERHEAD_BYTES: usize = 4 << 10;

/// Largest frame body accepted on any mesh stream, derived from the entry limit: any one entry, and
/// any chunk of a longer consensus message, fits in one frame. A peer that announces more is
/// misbehaving, and we refuse before allocating.
pub const FRAME_BYTES_MAX: usize = 2 * ENTRY_BYTES_MAX;

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

/// Bytes of a request body the admin API reads (axum's default, stated): a 1 MiB znode or task input
/// in JSON with room to spare. A larger body is refused with 413 before it is parsed.
pub const ADMIN_REQUEST_BYTES_MAX: usize = 2 << 20;

/// Bytes of a body on the two bulk routes, `/grid/submit` and `/grid/worker/report`: a submission of
/// `SUBMIT_BYTES_MAX` or a report batch of `REPORT_BATCH_BYTES_MAX` (4 MiB each), which JSON writes as
/// arrays of numbers (up to four characters a byte), with room for the rest. Only a caller that
/// presented the token gets its body read.
pub const BULK_REQUEST_BYTES_MAX: usize = 4 * (ENTRY_BYTES_MAX / 2) + (1 << 20);

/// Bytes of a configuration file a node reads.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1 << 20;

/// Smallest heartbeat interval a config may set: below this, heartbeats cost more than they tell.
pub const HEARTBEAT_INTERVAL_MS_MIN: u64 = 10;

/// A peer must be silent for at least this many heartbeat intervals before it is declared down, so
/// that one lost or late heartbeat never causes a false down.
pub const SILENCE_INTERVALS_MIN: u64 = 3;

const _: () = assert!(DIAL_BACKOFF_MS_MIN < DIAL_BACKOFF_MS_MAX);
const _: () = assert!(FRAME_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(ENTRY_BYTES_MAX + FRAME_OVERHEAD_BYTES <= FRAME_BYTES_MAX);
const _: () = assert!(RPC_CHUNK_BYTES + FRAME_OVERHEAD_BYTES <= FRAME_BYTES_MAX);
const _: () = assert!(APPEND_BATCH_BYTES_MAX <= RPC_MESSAGE_BYTES_MAX);
const _: () = assert!(RPC_MESSAGE_BYTES_MAX <= u32::MAX as usize);

// Mesh handshakes

/// Incoming mesh handshakes in progress at once; more are refused until one finishes. A member
/// needs one slot per reconnect and a handshake takes a round trip or two on a LAN, so 64 is far more
/// than a healthy cluster uses, while each held slot costs a TLS state.
pub const HANDSHAKES_IN_FLIGHT_MAX: usize = 64;

/// Incoming mesh handshakes in progress at once from one source IP address. A member holds at most
/// one handshake with a given peer, and several members may share a host (test clusters,
/// `LocalCluster`), so a few are allowed; at 8, one address (a flood from a single host whose
/// address passed QUIC's stateless retry) can hold only an eighth of [`HANDSHAKES_IN_FLIGHT_MAX`],
/// and members on other addresses still find a slot.
pub const HANDSHAKES_IN_FLIGHT_PER_SOURCE_MAX: usize = 8;

/// Refused handshakes are logged in full once, then summarized in one line at most this often: a
/// flood must not turn into thousands of WARN lines (a node once logged 960 in 30 s).
pub const HANDSHAKE_REFUSAL_LOG_INTERVAL_MS: u64 = 10_000;

/// Largest heartbeat interval a config may set: beyond a minute the detector tells nothing useful,
/// and the bound keeps `SILENCE_INTERVALS_MIN × interval` and every timer far from overflow.
pub const HEARTBEAT_INTERVAL_MS_MAX: u64 = 60_000;

/// Largest peer silence a config may set: a peer silent for ten minutes is down by any measure, and
/// the bound keeps detector deadlines (now + silence) far from overflowing the clock.
pub const PEER_SILENCE_MS_MAX: u64 = 600_000;

const _: () = assert!(HANDSHAKES_IN_FLIGHT_PER_SOURCE_MAX < HANDSHAKES_IN_FLIGHT_MAX);
const _: () = assert!(SILENCE_INTERVALS_MIN * HEARTBEAT_INTERVAL_MS_MAX <= PEER_SILENCE_MS_MAX);

// Grid requests

/// Encoded bytes one submission may carry (count × each task's encoded spec), checked at the edge
/// before any copy of a task is made. A submission goes in one log entry (alone, or merged with others
/// up to this same bound, see `grid::merge`): half of [`ENTRY_BYTES_MAX`], so
/// the command's envelope always fits and the coordinator's entry check never has to refuse what the
/// edge accepted; and every node's transient copies of one request stay a few times 4 MiB.
pub const SUBMIT_BYTES_MAX: usize = ENTRY_BYTES_MAX / 2;

/// Bytes of task views one `GET /grid/tasks` page holds (the page always holds at least one task,
/// so an answer is at most this plus one task with a 1 MiB result). Larger answers are paged.
pub const QUERY_RESPONSE_BYTES_MAX: usize = 4 << 20;

/// Tasks one query page looks at, matching or not: a filter that matches little cannot hold the
/// state's read lock for a walk of the whole table; the caller follows `next`.
pub const QUERY_SCAN_MAX: usize = 100_000;

const _: () = assert!(SUBMIT_BYTES_MAX + ENTRY_OVERHEAD_BYTES < ENTRY_BYTES_MAX);
const _: () = assert!(QUERY_RESPONSE_BYTES_MAX < ADMIN_RESPONSE_BYTES_MAX / 2);

// Admin connections

/// Connections the admin HTTP server holds at once; past it a new connection is answered 503 and
/// closed at once. Half of the common 1,024 open-file limit: the other half stays for the mesh, the
/// data files, the task workers and the node's own outgoing calls, so held sockets can never starve
/// the node of descriptors (they once stopped the admin API).
pub const ADMIN_CONNECTIONS_MAX: usize = 512;

/// Connections one client IP address holds at once. A client (with all its clones) holds at most
/// [`CLIENT_CONNECTIONS_MAX`] kept-alive connections plus one per watch stream, while every process on
/// the machine shares the loopback address; 128 leaves room for four such clients, and one address can
/// take only a quarter of [`ADMIN_CONNECTIONS_MAX`], so clients on other addresses are still served.
pub const ADMIN_CONNECTIONS_PER_CLIENT_MAX: usize = 128;

/// Connections one `Client` and all its clones hold for calls at once, in use or kept alive for the
/// next call. A call holds one for its whole length (a long `wait` included), so this many calls
/// proceed side by side and the next waits, within its deadline, for one to come back. Sixteen lets a
/// process keep a dozen waits pending (a `TaskHandle` each) while its quick calls and session
/// keepalives still go through at once, and four such clients on one machine, with their watch
/// streams, stay within the admin server's per-address limit.
pub const CLIENT_CONNECTIONS_MAX: usize = 16;
const _: () = assert!(CLIENT_CONNECTIONS_MAX * 4 <= ADMIN_CONNECTIONS_PER_CLIENT_MAX);

/// Watch streams one client IP address holds at once; more are refused with 429. Each stream is
/// its own watcher with one watch, so the bound is per address rather than per watcher: it is half
/// the address's connections, so a client at its watch limit can still make calls, and 8 addresses
/// cannot reach the node-wide watcher limit (10,000) that one client once used up.
pub const ADMIN_WATCHES_PER_CLIENT_MAX: usize = 64;

/// Shortest header or idle timeout a configuration may set: an honest client sends a request head
/// in one packet, and below this a loaded node would close connections it is about to serve.
pub const ADMIN_TIMEOUT_MS_MIN: u64 = 100;

/// Longest header or idle timeout a configuration may set: past an hour a held socket is a leak.
pub const ADMIN_TIMEOUT_MS_MAX: u64 = 3_600_000;

/// Names a node accepts in `--admin-host`; each `Host:` header is compared against every one.
pub const ADMIN_HOSTS_MAX: usize = 64;

const _: () = assert!(ADMIN_CONNECTIONS_PER_CLIENT_MAX < ADMIN_CONNECTIONS_MAX);
const _: () = assert!(ADMIN_WATCHES_PER_CLIENT_MAX < ADMIN_CONNECTIONS_PER_CLIENT_MAX);

// Grid API calls. One submission goes in one log entry, so its count is bounded here and its bytes by
// SUBMIT_BYTES_MAX; waits and cancels name at most what one submission returns.

/// Tasks one submission may create: a large map stage in one call, well within what one entry holds
/// at small inputs (the bytes are bounded separately by [`SUBMIT_BYTES_MAX`]).
pub const SUBMIT_COUNT_MAX: usize = 100_000;
/// Tasks one query page returns at most (pages are also cut at [`QUERY_RESPONSE_BYTES_MAX`]).
pub const QUERY_LIMIT_MAX: usize = 10_000;
/// Ids one wait or cancel may name: as many as one submission returns.
pub const IDS_MAX: usize = SUBMIT_COUNT_MAX;
/// Longest one wait or poll call holds its connection; callers wait longer in several calls, so a
/// dead caller holds a node's wait for at most this long.
pub const WAIT_MS_MAX: u64 = 60_000;

// A worker's reports. Reports are batched into one log entry per write; a batch is cut by count and
// by bytes so that it always fits an entry with room to spare.

/// Reports sent in one write at most: large enough that a busy node reports a burst of short tasks
/// in a few entries, small enough that one batch applies in well under a heartbeat.
pub const REPORT_BATCH_MAX: usize = 8_192;
/// Encoded bytes of one report batch at most: half an entry, so a batch always fits with room for
/// the entry's framing.
pub const REPORT_BATCH_BYTES_MAX: usize = ENTRY_BYTES_MAX / 2;
/// One attempt's result (or error text) at most: half a batch, so a result always fits some batch;
/// a larger result fails its attempt with a message naming this limit (the table's own
/// `result_bytes_max`, at most this, applies after).
pub const REPORT_RESULT_BYTES_MAX: usize = REPORT_BATCH_BYTES_MAX / 2;
/// Attempts a worker remembers after they ended (the newest token per task), so an order sent again
/// after a snapshot does not run twice: far more than a node runs between two snapshots' worth of
/// re-sends.
pub const ENDED_REMEMBERED_MAX: usize = 65_536;
/// Longest `sleep` or `spin` a built-in task accepts: a benchmark tool, not a way to pin a slot for
/// hours.
pub const BUILTIN_DURATION_MS_MAX: u64 = 3_600_000;

// The leader's dispatcher and a node's task waits.

/// Assignments the dispatcher proposes in one entry at most: one entry's worth of a burst, applied in
/// well under a heartbeat.
pub const ASSIGN_BATCH_MAX: usize = 8_192;
/// Task waits (one per awaited task per call) one node holds at once; more are refused as `too many
/// waits`. Only tasks that have not ended get one, and each call releases its own when it returns, so
/// this bounds concurrent waits on live work: ten calls of the largest submission each.
pub const WAITERS_MAX: usize = 1_000_000;
const _: () = assert!(WAITERS_MAX >= 10 * IDS_MAX);
/// Submission entries one node keeps in flight before its next small submissions wait and go out
/// merged into one entry (`grid::merge`). Measured at 5,000 single submissions/s (benches/README.md,
/// "Merged submissions"): with the redb log, 4 gave the best p99 at about 3.8 submissions per entry.
/// With the segment log each entry costs less, and 8 beats 4 at 5,000, 12,000 and 20,000
/// submissions/s and ties it at 30,000 ("More submissions in flight"); 16 loses the tail at 20,000.
pub const SUBMIT_IN_FLIGHT_MAX: usize = 8;
/// Submissions waiting for a merged entry on one node at most; past it a submission is refused as
/// overloaded (nothing applied). Far more than the admit path's connections
/// ([`ADMIN_CONNECTIONS_MAX`]) can have waiting at once.
pub const SUBMIT_MERGE_WAITING_MAX: usize = 16_384;
/// Encoded task bytes waiting for a merged entry on one node at most: eight entries' worth.
pub const SUBMIT_MERGE_WAITING_BYTES_MAX: usize = 8 * SUBMIT_BYTES_MAX;
const _: () = assert!(SUBMIT_MERGE_WAITING_MAX > ADMIN_CONNECTIONS_MAX);
const _: () = assert!(REPORT_RESULT_BYTES_MAX < REPORT_BATCH_BYTES_MAX);
const _: () = assert!(REPORT_BATCH_BYTES_MAX + ENTRY_OVERHEAD_BYTES <= ENTRY_BYTES_MAX);

// A node's own registration.

/// Session timeout of a node's own session: the registry notices a dead node this long after its last
/// keepalive, and its work is re-queued in the same step. A mesh member is usually expired sooner, as
/// soon as the mesh declares it down (200 ms of silence by default); this timeout is what notices a
/// joined worker (no mesh link) and a member whose death a new leader did not see (the leader itself),
/// so it shrinks with the detector: five keepalives (80 ms apart) per timeout, none of which expired
/// in soaks with the machine's cores busy.
pub const NODE_SESSION_TIMEOUT_MS: u64 = 400;
/// Keepalives per node session timeout: several may be lost before the session expires.
pub const KEEPALIVES_PER_NODE_SESSION: u64 = 5;
/// Shortest session timeout the registry grants by default (a shorter request is raised to it): a
/// session must outlive a few lost keepalives (a new leader restarts every session's clock, so an
/// election does not count against it); a node's own session is this short.
pub const SESSION_TIMEOUT_MS_MIN_DEFAULT: u64 = 400;
/// Longest session timeout the registry grants by default: a dead client's ephemerals and locks are
/// released within a minute.
pub const SESSION_TIMEOUT_MS_MAX_DEFAULT: u64 = 60_000;
// A node's session must be one the registry grants as asked, and its keepalives must come several
// times per timeout.
const _: () = assert!(NODE_SESSION_TIMEOUT_MS >= SESSION_TIMEOUT_MS_MIN_DEFAULT);
const _: () = assert!(NODE_SESSION_TIMEOUT_MS <= SESSION_TIMEOUT_MS_MAX_DEFAULT);
const _: () = assert!(KEEPALIVES_PER_NODE_SESSION >= 3);

/// Bytes of one ZooKeeper client frame (after its length prefix) by default: ZooKeeper's own default
/// `jute.maxbuffer`, 0xfffff, checked as ZooKeeper checks it, so a request ZooKeeper would drop the
/// connection for is dropped here too (a create of 1 MiB of data does not fit with its header).
pub const ZK_FRAME_BYTES_MAX_DEFAULT: usize = 0xfffff;
/// Smallest frame bound a configuration may set: a connect request and a small write must fit.
pub const ZK_FRAME_BYTES_MAX_MIN: usize = 4 << 10;
/// ZooKeeper client connections a node holds by default; more are closed as they arrive. With the
/// node's open-file limit raised, each costs a socket and a few KiB.
pub const ZK_CONNECTIONS_MAX_DEFAULT: usize = 20_000;
/// ZooKeeper client connections from one IP address by default (ZooKeeper's `maxClientCnxns` is
/// 60; benchmarks and connection pools run a few hundred from one host).
pub const ZK_CONNECTIONS_PER_CLIENT_MAX_DEFAULT: usize = 1_000;
/// Time a ZooKeeper client has to finish its handshake (or a four-letter word) after connecting.
pub const ZK_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Requests one ZooKeeper connection may have read but not answered; past it, requests are answered
/// with ZooKeeper's `throttled` error (ZooKeeper's own global default is 1,000 outstanding).
pub const ZK_OUTSTANDING_REQUESTS_MAX: usize = 1_000;
/// Bytes of requests one ZooKeeper connection may have read but not answered; past it, as above.
pub const ZK_OUTSTANDING_BYTES_MAX: usize = 16 << 20;
/// Bytes of answers a ZooKeeper connection buffers before it writes them out.
pub const ZK_WRITE_BUFFER_BYTES: usize = 64 << 10;

const _: () = assert!(ZK_FRAME_BYTES_MAX_DEFAULT <= ZK_OUTSTANDING_BYTES_MAX);
const _: () = assert!(ZK_FRAME_BYTES_MAX_MIN < ZK_FRAME_BYTES_MAX_DEFAULT);

/// Task kinds with a `kind` label of their own in the grid's metrics, per process; others are
/// `other`. Every label value is a series kept for good by the node and by Prometheus, and a task's
/// kind is whatever its submitter wrote: only kinds registered nodes advertise are admitted, and at
/// most this many (a grid runs a handful; 64 keeps a dashboard's legend readable).
pub const KIND_LABELS_MAX: usize = 64;

/// Bytes of one task log line's text; a longer text is cut there (at a character boundary) and ends
/// with a marker saying how much was cut. A line is for a person to read, not a data channel.
pub const TASK_LOG_TEXT_BYTES_MAX: usize = 4 << 10;

/// Bytes of one task log line as stored (JSON with its seq, time and level): the text at its limit
/// with every byte escaped as `\u00XX` (six bytes), plus the fields. Longer lines read back from a
/// file are skipped, so a damaged file cannot make a reader allocate more.
pub const TASK_LOG_LINE_BYTES_MAX: usize = 6 * TASK_LOG_TEXT_BYTES_MAX + 1024;

/// Bytes of log kept per attempt: the last 64 KiB of its lines are served, older ones dropped (the
/// answer says `truncated`). On disk an attempt holds at most two segments of this size, so a task
/// that logs in a tight loop costs 128 KiB of disk whatever it writes.
pub const TASK_LOG_ATTEMPT_BYTES_MAX: usize = 64 << 10;

/// Bytes of task log lines waiting for a node's log writer, all attempts together: past it a line is
/// dropped (and counted, and a marker line says how many) rather than stalling the task or growing
/// memory.
pub const TASK_LOG_QUEUE_BYTES_MAX: usize = 4 << 20;

/// Bytes of one attempt's lines waiting for the log writer: twice what is kept of an attempt, so a
/// task logging in a tight loop cannot crowd the other attempts' lines out of the queue.
pub const TASK_LOG_QUEUE_ATTEMPT_BYTES_MAX: usize = 2 * TASK_LOG_ATTEMPT_BYTES_MAX;

/// The disk a log file takes at least, for the node's budget of task log bytes: a file of a few bytes
/// still takes a block, and a node running millions of short attempts must not fill the disk with
/// files its budget counts as nearly empty.
pub const TASK_LOG_FILE_BYTES_MIN: u64 = 4 << 10;

/// Default budget of a node's task logs, all attempts together (`--task-logs-bytes-max`).
pub const TASK_LOGS_BYTES_MAX_DEFAULT: u64 = 256 << 20;

/// Range of `--task-logs-bytes-max`: at least a few hundred attempts' worth, and at most what the
/// node's index of log files (about 100 bytes of memory per file of at least
/// `TASK_LOG_FILE_BYTES_MIN`) keeps small.
pub const TASK_LOGS_BYTES_MAX_RANGE: std::ops::RangeInclusive<u64> = (1 << 20)..=(16 << 30);

/// Default age after which an ended attempt's logs are deleted (`--task-logs-age-max`): 7 days.
pub const TASK_LOGS_AGE_MS_MAX_DEFAULT: u64 = 7 * 24 * 3_600_000;

/// Range of `--task-logs-age-max`: a minute to a year.
pub const TASK_LOGS_AGE_MS_MAX_RANGE: std::ops::RangeInclusive<u64> = 60_000..=366 * 24 * 3_600_000;

const _: () = assert!(TASK_LOG_LINE_BYTES_MAX <= TASK_LOG_ATTEMPT_BYTES_MAX / 2);
const _: () = assert!(TASK_LOG_QUEUE_ATTEMPT_BYTES_MAX <= TASK_LOG_QUEUE_BYTES_MAX);
const _: () = assert!(2 * TASK_LOG_ATTEMPT_BYTES_MAX + (64 << 10) < ADMIN_RESPONSE_BYTES_MAX);

/// Longest actor kind name (`ActorId::kind`), like a task kind: a short name, a metric label.
pub const ACTOR_KIND_BYTES_MAX: usize = 64;

/// Longest actor key (`ActorId::key`): a user's entity id (an account, a device, a session), with room
/// for a composite one.
pub const ACTOR_KEY_BYTES_MAX: usize = 256;

/// Largest snapshot one durable actor commits. Well under the entry bound, so one commit entry groups
/// many actors' snapshots, and a record with its recent replies stays a few MiB at most.
pub const ACTOR_STATE_BYTES_MAX: usize = 256 * 1024;

/// Largest reply an actor gives (and records beside an idempotency key).
pub const ACTOR_REPLY_BYTES_MAX: usize = 64 * 1024;

/// Largest message a caller sends an actor (the JSON of an admin call, or an encoded mesh call).
pub const ACTOR_MESSAGE_BYTES_MAX: usize = 64 * 1024;

/// Longest idempotency key a call may carry: a UUID or a hash, with room to spare.
pub const ACTOR_IDEMPOTENCY_KEY_BYTES_MAX: usize = 64;

/// Replies a durable actor keeps by idempotency key, newest first: enough for a caller's retries of
/// its recent calls, small enough that a record stays bounded.
pub const ACTOR_RECENT_REPLIES_MAX: usize = 32;

/// Actor records the replicated state keeps (owned, orphaned, durable ones passivated, singletons).
/// Every replica holds them all in memory; a million records of a few hundred bytes is a few hundred MiB.
pub const ACTOR_RECORDS_MAX: usize = 1_000_000;

/// Bytes of durable actor state (snapshots and recorded replies) the replicated state keeps in all.
/// Every replica holds it in memory and in every snapshot: 256 MiB keeps a snapshot's transfer to a
/// new member within seconds and leaves room for the registry and the task table.
pub const ACTOR_STATE_BYTES_TOTAL_MAX: usize = 256 << 20;

/// Messages waiting in one activation's mailbox; past it a call is refused as overloaded.
pub const ACTOR_MAILBOX_MAX: usize = 1024;

const _: () = assert!(
    ACTOR_STATE_BYTES_MAX
        + ACTOR_RECENT_REPLIES_MAX * (ACTOR_REPLY_BYTES_MAX + ACTOR_IDEMPOTENCY_KEY_BYTES_MAX)
        + ENTRY_OVERHEAD_BYTES
        < ENTRY_BYTES_MAX / 2
);
const _: () = assert!(ACTOR_STATE_BYTES_MAX < ACTOR_STATE_BYTES_TOTAL_MAX);

/// Longest an actor call through the admin API (`POST /grid/actors/call`) may wait for its reply: well
/// under the client's own 15 s deadline, so the caller hears the node's answer (`unavailable`, `outcome
/// unknown`) rather than a timeout of its own; an actor's move takes well under a second.
pub const ACTOR_CALL_TIMEOUT_MS_MAX: u64 = 10_000;

/// The wait of an actor call that names none.
pub const ACTOR_CALL_TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// Actors one `GET /grid/actors` answer lists at most (it says `truncated` past it; `--kind` narrows
/// it): a page a person or a script reads, a few MiB of JSON at most.
pub const ACTORS_LIST_MAX: usize = 10_000;

const _: () = assert!(ACTOR_CALL_TIMEOUT_MS_DEFAULT <= ACTOR_CALL_TIMEOUT_MS_MAX);

/// Volatile orphans one `ActorForget` entry removes at most (the leader proposes one such entry per
/// upkeep round while orphans wait).
pub const ACTOR_FORGET_BATCH_MAX: usize = 1_000;

// An `ActorForget` entry at its bound (each id with its length prefixes and a zxid) fits an entry.
const _: () = assert!(
    ACTOR_FORGET_BATCH_MAX * (ACTOR_KIND_BYTES_MAX + ACTOR_KEY_BYTES_MAX + 16) < ENTRY_BYTES_MAX - ENTRY_OVERHEAD_BYTES
);
