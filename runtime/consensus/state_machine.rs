//! The replicated state machine: applies committed entries to the [`Registry`], reports each
//! result and change to an observer (watches, session clocks, metrics), and keeps snapshots on disk.
//!
//! Invariant: entries are applied in log order, each exactly once per incarnation; the registry's
//! zxid is the entry's log index.
//! Invariant: a snapshot on disk is complete (written to a temporary file, fsync'd, renamed).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use futures_util::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::types::{LogId, Response, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use crate::grid::{GridEffects, ReplicatedState, TableLimits};
use crate::registry::{Applied, Change, Proposal, Registry, RegistryLimits};

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
        effects: &GridEffects,
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

/// The state machine; openraft drives it through `Arc<StateMachine>`.
pub struct StateMachine {
    state: RwLock<SmState>,
    snapshot: Mutex<Option<(SnapshotMeta, Vec<u8>)>>,
    snapshot_path: PathBuf,
    observer: Arc<dyn ApplyObserver>,
    applied: watch::Sender<u64>,
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

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
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
        limits: RegistryLimits,
        grid_limits: TableLimits,
        observer: Arc<dyn ApplyObserver>,
        inline_snapshots: bool,
    ) -> io::Result<Arc<StateMachine>> {
        let snapshot_path = dir.join("snapshot.bin");
        let (state, snapshot) = match std::fs::read(&snapshot_path) {
            Ok(bytes) => {
                let state: SmState = postcard::from_bytes(&bytes).map_err(io_error)?;
                let meta = SnapshotMeta { last_log_id: state.last_applied, last_membership: state.membership.clone() };
                (state, Some((meta, bytes)))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let state = SmState {
                    replicated: ReplicatedState::new(limits, grid_limits),
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
        let state = self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let bytes = postcard::to_stdvec(&state).map_err(io_error)?;
        write_atomically(&self.snapshot_path, &bytes)?;
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
        // Serialising and fsyncing a large tree is blocking work.
        tokio::task::spawn_blocking(move || machine.snapshot_now()).await.map_err(io_error)?
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
            let response = {
                let mut state = self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner());
                state.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => Response::default(),
                    EntryPayload::Normal(proposal) => {
                        let mut effects = GridEffects::default();
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
        let installed: SmState = postcard::from_bytes(&snapshot).map_err(io_error)?;
        write_atomically(&self.snapshot_path, &snapshot)?;
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
