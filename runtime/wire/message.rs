//! Messages nodes exchange over the mesh, as rkyv-archived types.
//!
//! These types are the protocol: changing a field changes the bytes, so a change bumps
//! [`super::frame::FRAME_VERSION`]. Ids are bare integers here because the wire has no newtypes;
//! conversion to [`crate::ids::NodeId`] happens at the mesh edge.

// The archived twins rkyv derives carry no docs of their own; the types here document them.
#![allow(missing_docs)]

use rkyv::{Archive, Deserialize, Serialize};

/// Protocol revision a node speaks inside version-1 frames; a `Hello` with another revision is refused.
pub const PROTOCOL_REVISION: u32 = 1;

/// One message on a mesh stream.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// First frame on a dialer's control stream: who the dialer claims to be.
    Hello(Hello),
    /// A heartbeat; the receiver answers with a `Pong` carrying the same fields.
    Ping {
        /// Sequence number, per connection.
        seq: u64,
        /// Sender's clock when sent, in microseconds, echoed back to measure the round trip.
        sent_us: u64,
    },
    /// The answer to a `Ping`.
    Pong {
        /// The `Ping`'s sequence number.
        seq: u64,
        /// The `Ping`'s `sent_us`, unchanged.
        sent_us: u64,
    },
    /// Application bytes for a higher layer (consensus, task traffic), routed by topic.
    Payload(Payload),
}

/// A dialer's claim of identity, checked against its certificate.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The node id the dialer claims.
    pub node: u64,
    /// Distinguishes restarts of the same node id: a new process picks a new incarnation.
    pub incarnation: u64,
    /// [`PROTOCOL_REVISION`] of the dialer.
    pub protocol: u32,
}

/// Bytes for a higher layer.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// Which layer the bytes belong to.
    pub topic: u32,
    /// The layer's own encoding.
    pub body: Vec<u8>,
}

/// Traffic classes, each on its own long-lived QUIC stream so that bulk traffic can never delay
/// heartbeats or consensus: streams have independent flow control and send priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrafficClass {
    /// Heartbeats and membership. Highest priority.
    Control,
    /// Raft messages.
    Consensus,
    /// Task dispatch, results and other bulk traffic. Lowest priority.
    Bulk,
}

impl TrafficClass {
    /// Every class, in priority order.
    pub const ALL: [TrafficClass; 3] = [TrafficClass::Control, TrafficClass::Consensus, TrafficClass::Bulk];

    /// The byte that opens a stream of this class.
    pub fn tag(self) -> u8 {
        match self {
            TrafficClass::Control => 1,
            TrafficClass::Consensus => 2,
            TrafficClass::Bulk => 3,
        }
    }

    /// The class a stream's opening byte names, if any.
    pub fn from_tag(tag: u8) -> Option<TrafficClass> {
        TrafficClass::ALL.into_iter().find(|class| class.tag() == tag)
    }

    /// QUIC send priority: higher is sent first.
    pub fn send_priority(self) -> i32 {
        match self {
            TrafficClass::Control => 100,
            TrafficClass::Consensus => 50,
            TrafficClass::Bulk => 0,
        }
    }

    /// Label used in metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            TrafficClass::Control => "control",
            TrafficClass::Consensus => "consensus",
            TrafficClass::Bulk => "bulk",
        }
    }
}
