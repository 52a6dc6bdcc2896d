//! Metric handles of the mesh, registered once per peer so the hot path does no label lookups.
//!
//! Names are the contract with SREs' dashboards; they are listed in `runtime/ARCHITECTURE.md`.

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use crate::ids::NodeId;
use crate::wire::TrafficClass;

/// Per-class counters for one peer.
#[derive(Clone)]
pub struct ClassCounters {
    /// Frames written.
    pub frames_sent: Counter,
    /// Bytes written, headers included.
    pub bytes_sent: Counter,
    /// Frames read.
    pub frames_received: Counter,
    /// Bytes read, headers included.
    pub bytes_received: Counter,
    /// Sends refused because the peer's queue was full.
    pub send_rejections: Counter,
}

/// Every handle for one peer.
#[derive(Clone)]
pub struct PeerTelemetry {
    /// Indexed like [`TrafficClass::ALL`].
    pub classes: [ClassCounters; 3],
    /// 1 while the detector considers the peer up.
    pub up: Gauge,
    /// Heartbeat round trips, in seconds.
    pub heartbeat_rtt: Histogram,
    /// Connections established, both directions.
    pub connections: Counter,
}

impl PeerTelemetry {
    /// Registers the handles for `peer` with the installed recorder (no-ops if none is installed).
    pub fn register(peer: NodeId) -> PeerTelemetry {
        let class_counters = |class: TrafficClass| {
            let labels = [("peer", peer.to_string()), ("class", class.label().to_string())];
            ClassCounters {
                frames_sent: counter!("gridkeeper_mesh_frames_sent_total", &labels),
                bytes_sent: counter!("gridkeeper_mesh_bytes_sent_total", &labels),
                frames_received: counter!("gridkeeper_mesh_frames_received_total", &labels),
                bytes_received: counter!("gridkeeper_mesh_bytes_received_total", &labels),
                send_rejections: counter!("gridkeeper_mesh_send_rejections_total", &labels),
            }
        };
        let peer_label = [("peer", peer.to_string())];
        PeerTelemetry {
            classes: TrafficClass::ALL.map(class_counters),
            up: gauge!("gridkeeper_peer_up", &peer_label),
            heartbeat_rtt: histogram!("gridkeeper_mesh_heartbeat_rtt_seconds", &peer_label),
            connections: counter!("gridkeeper_mesh_connections_total", &peer_label),
        }
    }

    /// The counters of `class`.
    pub fn class(&self, class: TrafficClass) -> &ClassCounters {
        &self.classes[class_index(class)]
    }
}

/// Position of `class` in [`TrafficClass::ALL`].
pub fn class_index(class: TrafficClass) -> usize {
    match class {
        TrafficClass::Control => 0,
        TrafficClass::Consensus => 1,
        TrafficClass::Bulk => 2,
    }
}

/// Counts a frame that was refused, by the peer it came from (`unknown` before identification).
pub fn count_frame_error(peer: Option<NodeId>, kind: &'static str) {
    let peer = peer.map_or_else(|| "unknown".to_string(), |peer| peer.to_string());
    counter!("gridkeeper_mesh_frame_errors_total", "peer" => peer, "kind" => kind).increment(1);
}

/// Counts a refused connection by reason.
pub fn count_handshake_refusal(reason: &'static str) {
    counter!("gridkeeper_mesh_handshake_refusals_total", "reason" => reason).increment(1);
}
