//! The frame codec: a version byte, a bounded length prefix, and a validated rkyv archive.
//!
//! Invariant: no byte of a body is interpreted before `rkyv::access` has validated the whole archive,
//! and no buffer is allocated for a length above the caller's bound.

use rkyv::rancor;
use rkyv::util::AlignedVec;

use super::message::{ArchivedMessage, Message};

/// The only frame layout this build reads and writes.
pub const FRAME_VERSION: u8 = 1;

/// Bytes before the body: the version and the little-endian `u32` body length.
pub const FRAME_HEADER_BYTES: usize = 5;

/// Alignment of receive buffers; rkyv archives need their root aligned.
pub const FRAME_ALIGN: usize = 16;

/// A receive buffer suitable for [`decode_body`].
pub type FrameBuffer = AlignedVec<FRAME_ALIGN>;

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The version byte names a layout this build does not know.
    #[error("unknown frame version {0} (this build speaks {FRAME_VERSION})")]
    UnknownVersion(u8),
    /// The announced body is larger than the bound.
    #[error("frame body of {bytes} bytes exceeds the limit of {max}")]
    Oversized {
        /// Announced length.
        bytes: usize,
        /// The bound in force.
        max: usize,
    },
    /// The input ends before the frame does.
    #[error("frame truncated: {needed} more bytes needed")]
    Truncated {
        /// How many more bytes would complete the frame.
        needed: usize,
    },
    /// The body is not a valid archive of a [`Message`].
    #[error("malformed frame body: {0}")]
    Malformed(String),
    /// A message could not be encoded (it would exceed the bound, or serialization failed).
    #[error("cannot encode frame: {0}")]
    Encode(String),
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Length of the body that follows.
    pub body_bytes: usize,
}

/// Parses a header, refusing unknown versions and bodies over `body_bytes_max`.
///
/// # Errors
/// [`FrameError::UnknownVersion`] or [`FrameError::Oversized`].
pub fn parse_header(header: [u8; FRAME_HEADER_BYTES], body_bytes_max: usize) -> Result<FrameHeader, FrameError> {
    if header[0] != FRAME_VERSION {
        return Err(FrameError::UnknownVersion(header[0]));
    }
    let body_bytes = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if body_bytes > body_bytes_max {
        return Err(FrameError::Oversized { bytes: body_bytes, max: body_bytes_max });
    }
    Ok(FrameHeader { body_bytes })
}

/// What a message's archive adds to a payload's bytes, at most for the messages the mesh sends (the
/// first guess of an encoding buffer's size, not a bound).
const FRAME_ENVELOPE_BYTES_GUESS: usize = 64;

/// Encodes `message` as one whole frame (header and body).
///
/// # Errors
/// [`FrameError::Encode`] if the body would exceed `body_bytes_max`.
pub fn encode_frame(message: &Message, body_bytes_max: usize) -> Result<Vec<u8>, FrameError> {
    // Room for a payload's bytes and the archive around them up front, not grown by doubling.
    let room = match message {
        Message::Payload(payload) => payload.body.len() + FRAME_ENVELOPE_BYTES_GUESS,
        _ => FRAME_ENVELOPE_BYTES_GUESS,
    };
    let body =
        rkyv::api::high::to_bytes_in::<_, rancor::Error>(message, rkyv::util::AlignedVec::<16>::with_capacity(room))
            .map_err(|error| FrameError::Encode(error.to_string()))?;
    if body.len() > body_bytes_max {
        return Err(FrameError::Encode(format!("body of {} bytes exceeds the limit of {body_bytes_max}", body.len())));
    }
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    frame.push(FRAME_VERSION);
    // The cast cannot truncate: body.len() <= body_bytes_max, and callers' bounds fit in u32
    // (`limits::FRAME_BYTES_MAX` asserts so at compile time).
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Validates an aligned body and deserializes the message it holds.
///
/// # Errors
/// [`FrameError::Malformed`] if the bytes are not a valid archive.
pub fn decode_body(body: &FrameBuffer) -> Result<Message, FrameError> {
    let archived = rkyv::access::<ArchivedMessage, rancor::Error>(body.as_slice())
        .map_err(|error| FrameError::Malformed(error.to_string()))?;
    rkyv::deserialize::<Message, rancor::Error>(archived).map_err(|error| FrameError::Malformed(error.to_string()))
}

/// Decodes the first frame in `bytes`, returning the message and how many bytes it used.
///
/// This is the codec over a byte slice, for tests, fuzzing and tools; the mesh reads streams with
/// [`parse_header`] and [`decode_body`] directly so that it never buffers more than one frame.
///
/// # Errors
/// Any [`FrameError`]; [`FrameError::Truncated`] when more input is needed.
pub fn decode_frame(bytes: &[u8], body_bytes_max: usize) -> Result<(Message, usize), FrameError> {
    let Some(header) = bytes.first_chunk::<FRAME_HEADER_BYTES>() else {
        return Err(FrameError::Truncated { needed: FRAME_HEADER_BYTES - bytes.len() });
    };
    let FrameHeader { body_bytes } = parse_header(*header, body_bytes_max)?;
    let rest = &bytes[FRAME_HEADER_BYTES..];
    if rest.len() < body_bytes {
        return Err(FrameError::Truncated { needed: body_bytes - rest.len() });
    }
    let mut body = FrameBuffer::with_capacity(body_bytes);
    body.extend_from_slice(&rest[..body_bytes]);
    let message = decode_body(&body)?;
    Ok((message, FRAME_HEADER_BYTES + body_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::{Hello, Payload};
    use proptest::prelude::*;

    const MAX: usize = 1 << 20;

    fn samples() -> Vec<Message> {
        vec![
            Message::Hello(Hello { node: 3, incarnation: 99, protocol: 1 }),
            Message::Ping { seq: 1, sent_us: 1234 },
            Message::Pong { seq: u64::MAX, sent_us: 0 },
            Message::Payload(Payload { topic: 7, body: vec![] }),
            Message::Payload(Payload { topic: 7, body: (0..=255).collect() }),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for message in samples() {
            let frame = encode_frame(&message, MAX).expect("sample fits");
            let (decoded, used) = decode_frame(&frame, MAX).expect("own frame decodes");
            assert_eq!(decoded, message);
            assert_eq!(used, frame.len());
        }
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut frame = encode_frame(&samples()[1], MAX).expect("fits");
        frame[0] = 9;
        assert_eq!(decode_frame(&frame, MAX), Err(FrameError::UnknownVersion(9)));
    }

    #[test]
    fn oversized_length_is_refused_before_reading_the_body() {
        let header = [FRAME_VERSION, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(decode_frame(&header, MAX), Err(FrameError::Oversized { bytes: u32::MAX as usize, max: MAX }));
    }

    #[test]
    fn encoding_over_the_bound_is_an_error() {
        let big = Message::Payload(Payload { topic: 1, body: vec![0; 2048] });
        assert!(matches!(encode_frame(&big, 1024), Err(FrameError::Encode(_))));
    }

    #[test]
    fn garbage_body_is_malformed_not_a_panic() {
        let mut frame = vec![FRAME_VERSION, 8, 0, 0, 0];
        frame.extend_from_slice(&[0xff; 8]);
        assert!(matches!(decode_frame(&frame, MAX), Err(FrameError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_frame(&bytes, MAX);
        }

        #[test]
        fn random_bodies_behind_a_valid_header_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut frame = vec![FRAME_VERSION];
            frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
            frame.extend_from_slice(&body);
            let _ = decode_frame(&frame, MAX);
        }

        #[test]
        fn every_truncation_is_refused(index in 0usize..5, cut in 0usize..64) {
            let frame = encode_frame(&samples()[index], MAX).expect("fits");
            let cut = cut % frame.len();
            let truncated = matches!(decode_frame(&frame[..cut], MAX), Err(FrameError::Truncated { .. }));
            prop_assert!(truncated, "a frame cut at {} of {} bytes must be truncated", cut, frame.len());
        }

        #[test]
        fn payloads_round_trip(topic in any::<u32>(), body in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let message = Message::Payload(Payload { topic, body });
            let frame = encode_frame(&message, MAX).expect("fits");
            prop_assert_eq!(decode_frame(&frame, MAX).expect("decodes").0, message);
        }

        #[test]
        fn flipped_bytes_never_panic(index in 0usize..5, position in any::<usize>(), value in any::<u8>()) {
            let mut frame = encode_frame(&samples()[index], MAX).expect("fits");
            let position = position % frame.len();
            frame[position] = value;
            let _ = decode_frame(&frame, MAX);
        }
    }
}
