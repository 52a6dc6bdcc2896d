//! openraft's network over the mesh: each RPC is a [`super::rpc`] call on the consensus stream,
//! bounded by openraft's soft TTL (openraft does not time-bound replication calls itself).
//!
//! AppendEntries batches are cut by bytes as well as by count: a batch that would encode to more than
//! [`APPEND_BATCH_BYTES_MAX`] sends its longest prefix under the bound (always at least one entry) and
//! reports openraft's partial success, so the rest follows in the next call.
//!
//! Follower read leases ([`super::follower_lease`]) live partly here: every answered AppendEntries
//! tells the node's [`ReadGate`] how far that follower's log matches the leader's, and the commit
//! index each AppendEntries carries is cut down to what every lease holder has.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, OptionalSend, RaftNetworkV2};

use super::read_gate::ReadGate;
use super::rpc::{decode, encode, RpcClient, RpcError, RpcKind};
use super::types::{Entry, LogId, Snapshot, SnapshotMeta, TypeConfig, Vote};
use crate::ids::NodeId;
use crate::limits::APPEND_BATCH_BYTES_MAX;

/// Snapshots get longer than ordinary calls: they carry the whole tree.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30);

/// Floor of an AppendEntries deadline. openraft's soft TTL (3/4 of a heartbeat) is right for
/// heartbeats, but a follower answers a replication batch only after its fsync; under load a
/// deadline that short would declare healthy followers unreachable and back off for 200 ms.
const APPEND_TIMEOUT_MIN: Duration = Duration::from_millis(1_000);

/// Creates a connection per peer; connections are lazy (the mesh is always connected or redialing).
#[derive(Clone, Debug)]
pub struct MeshNetwork {
    rpc: RpcClient,
    gate: Arc<ReadGate>,
}

impl MeshNetwork {
    /// A network over `rpc`, feeding and obeying the node's read `gate`.
    pub fn new(rpc: RpcClient, gate: Arc<ReadGate>) -> MeshNetwork {
        MeshNetwork { rpc, gate }
    }
}

/// A peer as openraft sees it.
#[derive(Debug)]
pub struct PeerConnection {
    target: NodeId,
    rpc: RpcClient,
    gate: Arc<ReadGate>,
}

impl RaftNetworkFactory<TypeConfig> for MeshNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> PeerConnection {
        PeerConnection { target: NodeId(target), rpc: self.rpc.clone(), gate: self.gate.clone() }
    }
}

fn rpc_error(error: RpcError) -> RPCError<TypeConfig> {
    match error {
        RpcError::Unreachable { .. } | RpcError::Timeout { .. } | RpcError::Lost { .. } | RpcError::Overloaded => {
            RPCError::Unreachable(Unreachable::from_string(error))
        }
        RpcError::Remote { .. } | RpcError::Codec(_) => RPCError::Network(NetworkError::from_string(error)),
    }
}

impl PeerConnection {
    async fn call<Req: serde::Serialize, Resp: for<'de> serde::Deserialize<'de>>(
        &self,
        kind: RpcKind,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcError> {
        let reply = self.rpc.call(self.target, kind, encode(request)?, timeout).await?;
        decode(&reply)
    }
}

impl RaftNetworkV2<TypeConfig> for PeerConnection {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let timeout = option.soft_ttl().max(APPEND_TIMEOUT_MIN);
        let mut request = request;
        let cut = cut_by_bytes(&mut request.entries, APPEND_BATCH_BYTES_MAX);
        request.leader_commit = self.gate.cut_commit(request.leader_commit);
        let term = request.vote.is_committed().then(|| request.vote.leader_id().term);
        let last = request.entries.last().map(|entry| entry.log_id).or(request.prev_log_id);
        let response: AppendEntriesResponse<TypeConfig> =
            self.call(RpcKind::AppendEntries, &request, timeout).await.map_err(rpc_error)?;
        let matched = match &response {
            AppendEntriesResponse::Success => last,
            AppendEntriesResponse::PartialSuccess(matched) => *matched,
            _ => None,
        };
        if let (Some(term), Some(matched)) = (term, matched) {
            self.gate.acked(term, self.target.0, matched);
        }
        Ok(match (cut, response) {
            (Some(last_sent), AppendEntriesResponse::Success) => AppendEntriesResponse::PartialSuccess(Some(last_sent)),
            (_, response) => response,
        })
    }

    async fn vote(
        &mut self,
        request: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RpcKind::Vote, &request, option.soft_ttl()).await.map_err(rpc_error)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let request = SnapshotRequest { vote, meta: snapshot.meta, bytes: snapshot.snapshot };
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = self.call(RpcKind::Snapshot, &request, SNAPSHOT_TIMEOUT) => result.map_err(|error| rpc_error(error).into()),
        }
    }
}

/// A whole snapshot on the wire.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SnapshotRequest {
    /// The leader's vote.
    pub vote: Vote,
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// The serialized state.
    pub bytes: Vec<u8>,
}

/// Keeps the longest prefix of `entries` that encodes to at most `bytes_max` (at least one entry).
/// Returns the log id of the last entry kept when anything was cut.
pub fn cut_by_bytes(entries: &mut Vec<Entry>, bytes_max: usize) -> Option<LogId> {
    let mut total = 0usize;
    let mut keep = entries.len();
    for (position, entry) in entries.iter().enumerate() {
        // An entry that cannot be measured cannot be encoded either; the call will fail on it.
        total = total.saturating_add(postcard::experimental::serialized_size(entry).unwrap_or(usize::MAX));
        if total > bytes_max {
            keep = position.max(1);
            break;
        }
    }
    if keep == entries.len() {
        return None;
    }
    entries.truncate(keep);
    entries.last().map(|entry| entry.log_id)
}

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;

    use super::*;
    use crate::state::{Command, Proposal};

    fn entry(index: u64, data_bytes: usize) -> Entry {
        let path = crate::registry::ZPath::parse("/x").expect("valid");
        let command = Command::Set { path, data: vec![7; data_bytes], version: None };
        let payload = EntryPayload::Normal(Proposal { now_ms: 0, command });
        Entry { log_id: openraft::testing::log_id::<TypeConfig>(1, 1, index), payload }
    }

    #[test]
    fn small_batches_are_sent_whole() {
        let mut entries: Vec<Entry> = (1..=10).map(|index| entry(index, 100)).collect();
        assert_eq!(cut_by_bytes(&mut entries, 1 << 20), None);
        assert_eq!(entries.len(), 10);
    }

    #[test]
    fn a_batch_over_the_bound_keeps_the_prefix_under_it() {
        let mut entries: Vec<Entry> = (1..=10).map(|index| entry(index, 1_000)).collect();
        let last = cut_by_bytes(&mut entries, 3_500).expect("cut");
        assert_eq!(entries.len(), 3);
        assert_eq!(last.index, 3);
    }

    #[test]
    fn one_entry_larger_than_the_bound_still_goes_alone() {
        let mut entries: Vec<Entry> = vec![entry(1, 10_000), entry(2, 10)];
        let last = cut_by_bytes(&mut entries, 1_000).expect("cut");
        assert_eq!((entries.len(), last.index), (1, 1));
    }
}
