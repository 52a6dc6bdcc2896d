//! The coordinator's and the disk's metric names, in one place: raft progress and leadership,
//! registry writes and reads by operation, fsync time. Shell only: the coordinator and the
//! committer thread call these with what they measured; nothing here decides anything.
//!
//! Names are the contract with dashboards and alerts (`deploy/grafana`, `deploy/prometheus`); they
//! are listed in `runtime/ARCHITECTURE.md`. Every label value is from a closed set (the command
//! enum, the consistency enum), so no caller can grow the number of series.

use crate::registry::Command;
use crate::state::Command as StateCommand;

use super::coordinator::ConsensusStatus;

/// Registers the counters a dashboard rates at zero, so a fresh node exports them before the first
/// event and `rate()`/`increase()` see the first one.
pub fn register() {
    metrics::counter!("gridkeeper_raft_leader_changes_total").increment(0);
    metrics::counter!("gridkeeper_registry_sessions_expired_total").increment(0);
    metrics::gauge!("gridkeeper_raft_is_leader").set(0.0);
}

/// The operation a write carries, as the `op` label of `gridkeeper_registry_writes_total`: the
/// command's variant (the wrapped one for `As`), with the older and newer spellings of one operation
/// (`Create`, `CreateOwned`, `CreateChild`, `CreateNode`) under one name. Grid commands are `grid`.
pub fn write_label(command: &StateCommand) -> &'static str {
    match command {
        Command::Create { .. }
        | Command::CreateOwned { .. }
        | Command::CreateChild { .. }
        | Command::CreateNode { .. } => "create",
        Command::Set { .. } => "set",
        Command::Delete { .. } => "delete",
        Command::Multi { .. } | Command::MultiOwned { .. } => "multi",
        Command::OpenSession { .. } | Command::OpenSessionSecured { .. } => "open_session",
        Command::CloseSession { .. } | Command::CloseSessionSecured { .. } => "close_session",
        Command::ExpireSessions { .. } => "expire_sessions",
        Command::ExpireTtl { .. } => "expire_ttl",
        Command::Noop => "sync",
        Command::App(_) => "grid",
        Command::Upgrade { .. } => "upgrade",
        Command::SetAcl { .. } => "set_acl",
        Command::As { command, .. } => write_label(command),
    }
}

/// Counts a write this node took in `gridkeeper_registry_writes_total{op}` and records its time
/// from proposal to applied answer in `gridkeeper_registry_proposal_seconds`.
pub fn write_done(op: &'static str, seconds: f64) {
    metrics::counter!("gridkeeper_registry_writes_total", "op" => op).increment(1);
    metrics::histogram!("gridkeeper_registry_proposal_seconds").record(seconds);
}

/// Counts a read this node served in `gridkeeper_registry_reads_total{consistency}`.
pub fn read_done(linearizable: bool) {
    let consistency = if linearizable { "linearizable" } else { "local" };
    metrics::counter!("gridkeeper_registry_reads_total", "consistency" => consistency).increment(1);
}

/// Counts a term this node began leading in `gridkeeper_raft_leader_changes_total`.
pub fn leadership_won() {
    metrics::counter!("gridkeeper_raft_leader_changes_total").increment(1);
}

/// The periodic gauges of every node (leader or not): raft progress, whether this node leads, and
/// the registry's size as this node has applied it.
pub fn record_status(status: &ConsensusStatus, znodes: usize, sessions: usize, watches: usize) {
    metrics::gauge!("gridkeeper_raft_term").set(status.term as f64);
    metrics::gauge!("gridkeeper_raft_commit_index").set(status.commit_index as f64);
    metrics::gauge!("gridkeeper_raft_applied_index").set(status.applied_index as f64);
    metrics::gauge!("gridkeeper_raft_is_leader").set(if status.is_leader { 1.0 } else { 0.0 });
    metrics::gauge!("gridkeeper_registry_znodes").set(znodes as f64);
    metrics::gauge!("gridkeeper_registry_sessions").set(sessions as f64);
    metrics::gauge!("gridkeeper_registry_watches").set(watches as f64);
}

/// Records one frame of the group committer (its log writes and the fsync that ends
/// it) in `gridkeeper_raft_fsync_seconds`, and the writes it carried in
/// `gridkeeper_raft_commit_batch_writes`.
pub fn commit_done(writes: usize, seconds: f64) {
    metrics::histogram!("gridkeeper_raft_commit_batch_writes").record(writes as f64);
    metrics::histogram!("gridkeeper_raft_fsync_seconds").record(seconds);
}

/// Records one snapshot build in `gridkeeper_raft_snapshot_seconds{stage}`: `copy` (the state copied
/// under its lock: applying waits that long), `encode` and `write` (with the fsync), and its size in
/// `gridkeeper_raft_snapshot_bytes`.
pub fn snapshot_done(copy: std::time::Duration, encode: std::time::Duration, write: std::time::Duration, bytes: usize) {
    for (stage, took) in [("copy", copy), ("encode", encode), ("write", write)] {
        metrics::histogram!("gridkeeper_raft_snapshot_seconds", "stage" => stage).record(took.as_secs_f64());
    }
    metrics::gauge!("gridkeeper_raft_snapshot_bytes").set(bytes as f64);
    tracing::debug!(
        copy_us = copy.as_micros() as u64,
        encode_us = encode.as_micros() as u64,
        write_us = write.as_micros() as u64,
        bytes,
        "snapshot built"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::ZPath;

    #[test]
    fn a_wrapped_command_is_labelled_by_what_it_wraps() {
        let path = ZPath::parse("/a").expect("path");
        let set: StateCommand = Command::Set { path, data: Vec::new(), version: None };
        assert_eq!(write_label(&set), "set");
        let wrapped: StateCommand = Command::As { caller: crate::registry::Caller::default(), command: Box::new(set) };
        assert_eq!(write_label(&wrapped), "set");
        assert_eq!(write_label(&Command::Noop), "sync");
    }
}
