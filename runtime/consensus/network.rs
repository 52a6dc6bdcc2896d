//! openraft's network over the mesh: each RPC is a [`super::rpc`] call on the consensus stream,
//! bounded by openraft's soft TTL (openraft does not time-bound replication calls itself).

use std::future::Future;
use std::time::Duration;

use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, OptionalSend, RaftNetworkV2};

use super::rpc::{decode, encode, RpcClient, RpcError, RpcKind};
use super::types::{Snapshot, SnapshotMeta, TypeConfig, Vote};
use crate::ids::NodeId;

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
}

impl MeshNetwork {
    /// A network over `rpc`.
    pub fn new(rpc: RpcClient) -> MeshNetwork {
        MeshNetwork { rpc }
    }
}

/// A peer as openraft sees it.
#[derive(Debug)]
pub struct PeerConnection {
    target: NodeId,
    rpc: RpcClient,
}

impl RaftNetworkFactory<TypeConfig> for MeshNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> PeerConnection {
        PeerConnection { target: NodeId(target), rpc: self.rpc.clone() }
    }
}

fn rpc_error(error: RpcError) -> RPCError<TypeConfig> {
    match error {
        RpcError::Unreachable { .. } | RpcError::Timeout { .. } | RpcError::Overloaded => {
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
        self.call(RpcKind::AppendEntries, &request, timeout).await.map_err(rpc_error)
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
