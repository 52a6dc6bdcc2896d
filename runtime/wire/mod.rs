//! The wire format between nodes: message types and the frame codec.
//!
//! Owns the bytes on the wire and nothing else: no sockets, no streams. Every frame is
//! `[version: u8][body length: u32 LE][rkyv archive]`; the length is checked against a bound before
//! anything is allocated, and the archive is validated before a single field is read.

pub mod frame;
pub mod message;

pub use frame::{decode_body, decode_frame, encode_frame, parse_header, FrameError, FrameHeader};
pub use message::{Hello, Message, Payload, TrafficClass};
