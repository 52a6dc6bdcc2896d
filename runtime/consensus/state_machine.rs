//! The replicated state machine: applies committed entries to the [`Registry`], reports each
//! result and change to an observer (watches, session clocks, metrics), and keeps snapshots on disk.
//!
//! Invariant: entries are applied in log order, each exactly once per incarnation; the registry's
//! zxid is the entry's log index.
//! Invariant: a snapshot on disk is complete (written to a temporary file, fsync'd, renamed).
//!
//! Snapshots carry a format version. Format 5 (this build) is [`SNAPSHOT_MAGIC`], the version as a
//! little-endian `u16`, the postcard state, the postcard [`StateExtras`] (settings and session
//! secrets, which format 1 had no place for), then the postcard [`StateExtras3`] (the state version
//! and the ACLs, which format 2 had no place for), then the postcard [`StateExtras4`] (jobs' zones and
//! pauses, which format 3 had no place for), then the postcard [`StateExtras5`] (actors' ownership
//! records, which format 4 had no place for). Format 4 is the same without the last part, format 3
//! without the last two, format 2 without the last three; format 1 (no magic) is the bare postcard
//! state, as written before versions existed. All still load.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use futures_util::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::types::{LogId, Response, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use crate::registry::{Change, Registry, RegistryLimits};
use crate::state::{
    Applied, Effects, Proposal, ReplicatedState, StateExtras, StateExtras3, StateExtras4, StateExtras5, TableLimits,
};

/// Hears of every applied command, in order.
pub trait ApplyObserver: Send + Sync + 'static {
    /// `proposal` was applied at `zxid` with `result`, making `changes` in the registry and `effects`
    /// in the task table. Called with the state still locked (`state` is after the entry), so the
    /// observer sees each entry's state exactly; it must not block.
    fn on_applied(
        &self,
        zxid: u64,
        proposal: &Proposal,
        result: &Applied,
        changes: &[Change],
        effects: &Effects,
        state: &ReplicatedState,
    );
    /// The whole state was replaced by a snapshot.
    fn on_reset(&self, state: &ReplicatedState);
}

#[derive(Clone, Serialize, Deserialize)]
struct SmState {
    replicated: ReplicatedState,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// Opens every snapshot of format 2 or later. No format-1 snapshot can start with it: format 1 opens
/// with the registry limits' first varint, and `0xFF 'G'` would be a value no limit takes.
pub const SNAPSHOT_MAGIC: [u8; 6] = [0xFF, b'G', b'K', b'S', b'N', b'P'];

/// The snapshot format this build writes.
pub const SNAPSHOT_FORMAT: u16 = 5;

fn encode_state(state: &SmState) -> io::Result<Vec<u8>> {
    let mut bytes = SNAPSHOT_MAGIC.to_vec();
    bytes.extend_from_slice(&SNAPSHOT_FORMAT.to_le_bytes());
    let bytes = postcard::to_extend(state, bytes).map_err(io_error)?;
    let bytes = postcard::to_extend(&state.replicated.extras(), bytes).map_err(io_error)?;
    let bytes = postcard::to_extend(&state.replicated.extras3(), bytes).map_err(io_error)?;
    let bytes = postcard::to_extend(&state.replicated.extras4(), bytes).map_err(io_error)?;
    postcard::to_extend(&state.replicated.extras5(), bytes).map_err(io_error)
}

/// Reads a snapshot of any format this build knows.
fn decode_state(bytes: &[u8]) -> io::Result<SmState> {
    let Some(rest) = bytes.strip_prefix(SNAPSHOT_MAGIC.as_slice()) else {
        // Format 1.
        let mut state: SmState = postcard::from_bytes(bytes).map_err(io_error)?;
        state.replicated.restore_extras(StateExtras::default(), StateExtras3::default());
        return Ok(state);
    };
    let (version, body) = rest.split_at_checked(2).ok_or_else(|| io_error("snapshot truncated"))?;
    let version = u16::from_le_bytes([version[0], version[1]]);
    if !(2..=SNAPSHOT_FORMAT).contains(&version) {
        return Err(io_error(format!(
            "snapshot format {version} is not one this build reads (it reads 1 to {SNAPSHOT_FORMAT}): written by a newer gridkeeper?"
        )));
    }
    let (mut state, rest): (SmState, _) = postcard::take_from_bytes(body).map_err(io_error)?;
    let (extras, rest): (StateExtras, _) = postcard::take_from_bytes(rest).map_err(io_error)?;
    let (extras3, rest): (StateExtras3, _) =
        if version >= 3 { postcard::take_from_bytes(rest).map_err(io_error)? } else { (StateExtras3::default(), rest) };
    let (extras4, rest): (StateExtras4, _) =
        if version >= 4 { postcard::take_from_bytes(rest).map_err(io_error)? } else { (StateExtras4::default(), rest) };
    let extras5: StateExtras5 =
        if version >= 5 { postcard::from_bytes(rest).map_err(io_error)? } else { StateExtras5::default() };
    state.replicated.restore_extras(extras, extras3);
    state.replicated.restore_extras4(extras4);
    state.replicated.restore_extras5(extras5);
    Ok(state)
}

/// The state machine; openraft drives it through `Arc<StateMachine>`.
pub struct StateMachine {
    state: RwLock<SmState>,
    snapshot: Mutex<Option<(SnapshotMeta, Vec<u8>)>>,
    snapshot_path: PathBuf,
    observer: Arc<dyn ApplyObserver>,
    applied: watch::Sender<u64>,
    /// Holds an entry back while a follower holding a read lease lacks it (see
    /// [`super::follower_lease`]).
    gate: Arc<super::read_gate::ReadGate>,
    /// Build snapshots on the calling task (deterministic simulation) instead of a blocking thread.
    inline_snapshots: bool,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine").finish_non_exhaustive()
    }
}

fn io_error(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

/// Lowest scheduling priority for the calling thread (Linux: nice is per thread). Best effort.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
}

/// Bytes of a snapshot written and synced at a time when writes are paced.
const PACED_CHUNK: usize = 256 << 10;
/// The pause after each paced chunk, in which the log's own fsyncs get the disk.
const PACED_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// Writes `bytes` to `path` through a temporary file, fsync'd and renamed.
///
/// `paced`: written and synced a chunk at a time with a pause after each, so the disk's queue never
/// holds more than one chunk of the snapshot. Written whole and synced once, a 5 MB snapshot held
/// every log fsync on the same disk (the other nodes' too, when they share it) for 25–65 ms. Off in
/// deterministic simulation, where nothing else waits for the disk.
fn write_atomically(path: &Path, bytes: &[u8], paced: bool) -> io::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    if paced {
        for chunk in bytes.chunks(PACED_CHUNK) {
            file.write_all(chunk)?;
            file.sync_data()?;
            std::thread::sleep(PACED_PAUSE);
        }
    } else {
        file.write_all(bytes)?;
    }
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl StateMachine {
    /// Opens the state machine in `dir`, starting from the snapshot there if any.
    ///
    /// # Errors
    /// An I/O error if the snapshot exists but cannot be read.
    pub fn open(
        dir: &Path,
        observer: Arc<dyn ApplyObserver>,
        gate: Arc<super::read_gate::ReadGate>,
        inline_snapshots: bool,
    ) -> io::Result<Arc<StateMachine>> {
        let snapshot_path = dir.join("snapshot.bin");
        let (state, snapshot) = match std::fs::read(&snapshot_path) {
            Ok(bytes) => {
                let state = decode_state(&bytes)?;
                let meta = SnapshotMeta { last_log_id: state.last_applied, last_membership: state.membership.clone() };
                (state, Some((meta, bytes)))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let state = SmState {
                    replicated: ReplicatedState::new(RegistryLimits::default(), TableLimits::default()),
                    last_applied: None,
                    membership: StoredMembership::default(),
                };
                (state, None)
            }
            Err(error) => return Err(error),
        };
        observer.on_reset(&state.replicated);
        let (applied, _) = watch::channel(state.last_applied.map_or(0, |id| id.index));
        Ok(Arc::new(StateMachine {
            state: RwLock::new(state),
            snapshot: Mutex::new(snapshot),
            snapshot_path,
            observer,
            applied,
            gate,
            inline_snapshots,
        }))
    }

    /// Runs `read` on the current registry.
    pub fn read<T>(&self, read: impl FnOnce(&Registry) -> T) -> T {
        read(&self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner()).replicated.registry)
    }

    /// Runs `read` on the whole replicated state (registry and task table).
    pub fn read_state<T>(&self, read: impl FnOnce(&ReplicatedState) -> T) -> T {
        read(&self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner()).replicated)
    }

    /// The index of the last applied entry.
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits until the entry at `index` has been applied here.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait_applied(&self, index: u64) {
        let mut applied = self.applied.subscribe();
        let _ = applied.wait_for(|&applied| applied >= index).await;
    }

    fn snapshot_now(&self) -> io::Result<Snapshot> {
        let stopwatch = crate::clock::Stopwatch::start();
        let state = self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let copied = stopwatch.elapsed();
        let bytes = encode_state(&state)?;
        let encoded = stopwatch.elapsed();
        write_atomically(&self.snapshot_path, &bytes, !self.inline_snapshots)?;
        super::telemetry::snapshot_done(copied, encoded - copied, stopwatch.elapsed() - encoded, bytes.len());
        let meta = SnapshotMeta { last_log_id: state.last_applied, last_membership: state.membership };
        *self.snapshot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot { meta, snapshot: bytes })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for Arc<StateMachine> {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        if self.inline_snapshots {
            return self.snapshot_now();
        }
        let machine = self.clone();
        // Serialising and fsyncing a large tree is blocking work, and background work: on its own
        // thread at the lowest CPU priority, so that applying, committing and serving keep the cores
        // while it encodes (on a 2-core node it otherwise stalls every write for its duration).
        let (done, outcome) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("gk-snapshot".into())
            .spawn(move || {
                lower_thread_priority();
                let _ = done.send(machine.snapshot_now());
            })
            .map_err(io_error)?;
        outcome.await.map_err(io_error)?
    }
}

impl RaftStateMachine<TypeConfig> for Arc<StateMachine> {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let state = self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let zxid = entry.log_id.index;
            self.gate.wait_visible(zxid).await;
            let response = {
                let mut state = self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner());
                state.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => Response::default(),
                    EntryPayload::Normal(proposal) => {
                        let mut effects = Effects::default();
                        let (result, changes) = state.replicated.apply(zxid, &proposal, &mut effects);
                        self.observer.on_applied(zxid, &proposal, &result, &changes, &effects, &state.replicated);
                        Response { result }
                    }
                    EntryPayload::Membership(membership) => {
                        state.membership = StoredMembership::new(Some(entry.log_id), membership);
                        Response::default()
                    }
                }
            };
            self.applied.send_replace(zxid);
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Vec<u8>) -> Result<(), io::Error> {
        let installed = decode_state(&snapshot)?;
        write_atomically(&self.snapshot_path, &snapshot, false)?;
        let index = installed.last_applied.map_or(0, |id| id.index);
        self.observer.on_reset(&installed.replicated);
        *self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = installed;
        *self.snapshot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((meta.clone(), snapshot));
        self.applied.send_replace(index);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let snapshot = self.snapshot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(snapshot.as_ref().map(|(meta, bytes)| Snapshot { meta: meta.clone(), snapshot: bytes.clone() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{SessionId, SessionSecret};
    use crate::state::{ClusterSettings, GridCommand};
    use crate::state::{Command, Proposal};

    fn state() -> SmState {
        SmState {
            replicated: ReplicatedState::new(RegistryLimits::default(), TableLimits::default()),
            last_applied: None,
            membership: StoredMembership::default(),
        }
    }

    fn configure(state: &mut SmState, settings: ClusterSettings) {
        let proposal = Proposal { now_ms: 0, command: Command::App(GridCommand::Configure { settings }) };
        let (result, _) = state.replicated.apply(1, &proposal, &mut Effects::default());
        assert!(result.is_ok(), "{result:?}");
    }

    #[test]
    fn format_2_keeps_settings_and_secrets() {
        let mut original = state();
        let mut settings = ClusterSettings::default();
        settings.registry.data_bytes_max = 4096;
        settings.grid.history_bytes_max = 1 << 20;
        configure(&mut original, settings);
        let bytes = encode_state(&original).expect("encodes");
        assert_eq!(bytes[..SNAPSHOT_MAGIC.len()], SNAPSHOT_MAGIC);
        let decoded = decode_state(&bytes).expect("decodes");
        assert_eq!(decoded.replicated.settings(), Some(settings));
        assert_eq!(decoded.replicated.registry.limits().data_bytes_max, 4096);
        assert_eq!(decoded.replicated.registry, original.replicated.registry);
        assert_eq!(decoded.replicated.extras(), original.replicated.extras());
    }

    #[test]
    fn format_1_bytes_still_load_with_no_settings() {
        let original = state();
        let legacy = postcard::to_stdvec(&original).expect("encodes");
        let decoded = decode_state(&legacy).expect("format 1 decodes");
        assert_eq!(decoded.replicated.settings(), None);
        assert!(decoded.replicated.registry.session_secrets().is_empty());
    }

    #[test]
    fn format_4_keeps_job_zones_and_pauses_and_format_3_loads_without_them() {
        // A job, then its pause (spelt as JSON: this layer knows grid commands only as the state's).
        let mut original = state();
        let job = r#"{"Schedule": {"job": {"name": "j", "cadence": {"interval": {"every_ms": 1000, "anchor_ms": 0}},
            "task": {"kind": "noop", "input": [], "priority": 0, "not_before_ms": 0, "timeout_ms": 1000,
                     "retry": {"attempts_max": 1, "backoff_ms": 100}, "shard_key": null, "strategy": null,
                     "affinity": null}}}}"#;
        for (zxid, json) in [(1, job), (2, r#"{"Pause": {"name": "j"}}"#)] {
            let command: GridCommand = serde_json::from_str(json).expect("a grid command");
            let proposal = Proposal { now_ms: 0, command: Command::App(command) };
            let (result, _) = original.replicated.apply(zxid, &proposal, &mut Effects::default());
            assert!(result.is_ok(), "{result:?}");
        }
        assert_ne!(original.replicated.extras4(), StateExtras4::default(), "the job is paused");
        let decoded = decode_state(&encode_state(&original).expect("encodes")).expect("decodes");
        assert_eq!(decoded.replicated.extras4(), original.replicated.extras4());
        // Format 3, as the previous build wrote it: no job extras, so the job loads unpaused.
        let mut format_3 = SNAPSHOT_MAGIC.to_vec();
        format_3.extend_from_slice(&3u16.to_le_bytes());
        let format_3 = postcard::to_extend(&original, format_3).expect("encodes");
        let format_3 = postcard::to_extend(&original.replicated.extras(), format_3).expect("encodes");
        let format_3 = postcard::to_extend(&original.replicated.extras3(), format_3).expect("encodes");
        let decoded = decode_state(&format_3).expect("format 3 decodes");
        assert_eq!(decoded.replicated.grid.jobs().len(), 1);
        assert_eq!(decoded.replicated.extras4(), StateExtras4::default());
    }

    #[test]
    fn format_5_keeps_actor_records_and_format_4_loads_without_them() {
        // An actor activated on a registered node.
        use crate::registry::{CreateMode, ZPath};
        use crate::state::ActorId;
        let mut original = state();
        let create = |path: &str, data: &[u8]| Command::Create {
            path: ZPath::parse(path).expect("valid"),
            data: data.to_vec(),
            mode: CreateMode::Persistent,
            session: None,
            ttl_ms: None,
        };
        let actor = ActorId::new("counter", "a").expect("valid");
        let commands = [
            create("/grid", b""),
            create("/grid/nodes", b""),
            create("/grid/nodes/1", br#"{"addr": "a"}"#),
            Command::App(GridCommand::ActorActivate { actor, node: crate::ids::NodeId(1), durable: true }),
        ];
        for (zxid, command) in (1..).zip(commands) {
            let (result, _) =
                original.replicated.apply(zxid, &Proposal { now_ms: 0, command }, &mut Effects::default());
            assert!(result.is_ok(), "{result:?}");
        }
        assert_eq!(original.replicated.extras5().actors.len(), 1, "the actor is recorded");
        let decoded = decode_state(&encode_state(&original).expect("encodes")).expect("decodes");
        assert_eq!(decoded.replicated.extras5(), original.replicated.extras5());
        assert_eq!(decoded.replicated.actor_table(), original.replicated.actor_table());
        // Format 4, as the previous build wrote it: no actors.
        let mut format_4 = SNAPSHOT_MAGIC.to_vec();
        format_4.extend_from_slice(&4u16.to_le_bytes());
        let format_4 = postcard::to_extend(&original, format_4).expect("encodes");
        let format_4 = postcard::to_extend(&original.replicated.extras(), format_4).expect("encodes");
        let format_4 = postcard::to_extend(&original.replicated.extras3(), format_4).expect("encodes");
        let format_4 = postcard::to_extend(&original.replicated.extras4(), format_4).expect("encodes");
        let decoded = decode_state(&format_4).expect("format 4 decodes");
        assert_eq!(decoded.replicated.extras5(), StateExtras5::default());
        assert!(decoded.replicated.registry.exists(&ZPath::parse("/grid/nodes/1").expect("valid")).is_some());
    }

    #[test]
    fn a_newer_format_is_refused_with_a_clear_error() {
        let mut bytes = encode_state(&state()).expect("encodes");
        bytes[SNAPSHOT_MAGIC.len()] = 9;
        let error = decode_state(&bytes).err().expect("refused");
        assert!(error.to_string().contains("snapshot format 9"), "{error}");
    }

    #[test]
    fn secrets_survive_a_snapshot() {
        let mut original = state();
        let secret = SessionSecret::from_bytes([7; 16]);
        let session = SessionId(42);
        let command = Command::OpenSessionSecured { session, secret, timeout_ms: 10_000 };
        let (result, _) = original.replicated.apply(1, &Proposal { now_ms: 0, command }, &mut Effects::default());
        assert!(result.is_ok(), "{result:?}");
        let decoded = decode_state(&encode_state(&original).expect("encodes")).expect("decodes");
        assert_eq!(decoded.replicated.registry.session_secrets().get(&session), Some(&secret));
    }

    #[test]
    fn a_paced_write_lands_whole_and_replaces_the_old_file() {
        let dir = std::env::temp_dir().join(format!("gk-paced-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("snapshot.bin");
        std::fs::write(&path, b"older").expect("older file");
        // Two full chunks and a partial one.
        let bytes: Vec<u8> = (0..PACED_CHUNK * 2 + 1234).map(|index| (index % 251) as u8).collect();
        write_atomically(&path, &bytes, true).expect("paced write");
        assert_eq!(std::fs::read(&path).expect("read back"), bytes);
        assert!(!path.with_extension("tmp").exists(), "the temporary file is renamed away");
        write_atomically(&path, b"unpaced", false).expect("unpaced write");
        assert_eq!(std::fs::read(&path).expect("read back"), b"unpaced");
        std::fs::remove_dir_all(&dir).ok();
    }
}
