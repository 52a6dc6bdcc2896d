//! Frames over quinn streams: the async edge of the wire codec.
//!
//! Invariant: at most one frame body is buffered per stream, and its size was checked against the
//! bound before the buffer grew.

use crate::wire::frame::{FrameBuffer, FRAME_HEADER_BYTES};
use crate::wire::{decode_body, encode_frame, parse_header, FrameError, Message, TrafficClass};

/// Why reading a frame from a stream stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamReadError {
    /// The peer finished the stream cleanly between frames.
    #[error("stream finished")]
    Finished,
    /// The connection or stream broke.
    #[error("stream read failed: {0}")]
    Transport(String),
    /// The bytes were not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl StreamReadError {
    /// Label for the frame-error metric, `None` for transport ends that are no peer's fault.
    pub fn error_kind(&self) -> Option<&'static str> {
        match self {
            StreamReadError::Frame(FrameError::UnknownVersion(_)) => Some("unknown_version"),
            StreamReadError::Frame(FrameError::Oversized { .. }) => Some("oversized"),
            StreamReadError::Frame(FrameError::Malformed(_)) => Some("malformed"),
            StreamReadError::Frame(FrameError::Truncated { .. }) => Some("truncated"),
            StreamReadError::Frame(FrameError::Encode(_)) => Some("encode"),
            StreamReadError::Finished | StreamReadError::Transport(_) => None,
        }
    }
}

/// Reads one frame into `buffer` (reused across calls) and returns the decoded message and the
/// frame's size on the wire.
///
/// # Errors
/// [`StreamReadError`]; a clean finish before a header is [`StreamReadError::Finished`], a finish
/// inside a frame is [`FrameError::Truncated`].
///
/// # Cancel safety
/// Not cancel safe: a cancelled read leaves the stream inside a frame. Readers own their stream and
/// are only ever stopped together with it.
pub async fn read_frame(
    recv: &mut quinn::RecvStream,
    buffer: &mut FrameBuffer,
    body_bytes_max: usize,
) -> Result<(Message, usize), StreamReadError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    match recv.read_exact(&mut header).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Err(StreamReadError::Finished),
        Err(quinn::ReadExactError::FinishedEarly(read)) => {
            return Err(FrameError::Truncated { needed: FRAME_HEADER_BYTES - read }.into())
        }
        Err(quinn::ReadExactError::ReadError(error)) => return Err(StreamReadError::Transport(error.to_string())),
    }
    let body_bytes = parse_header(header, body_bytes_max)?.body_bytes;
    buffer.clear();
    buffer.resize(body_bytes, 0);
    match recv.read_exact(buffer.as_mut_slice()).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(read)) => {
            return Err(FrameError::Truncated { needed: body_bytes - read }.into())
        }
        Err(quinn::ReadExactError::ReadError(error)) => return Err(StreamReadError::Transport(error.to_string())),
    }
    Ok((decode_body(buffer)?, FRAME_HEADER_BYTES + body_bytes))
}

/// Reads the one-byte class tag that opens every mesh stream.
///
/// # Errors
/// [`StreamReadError`] if the stream ends or the tag is unknown.
pub async fn read_class(recv: &mut quinn::RecvStream) -> Result<TrafficClass, StreamReadError> {
    let mut tag = [0u8; 1];
    recv.read_exact(&mut tag).await.map_err(|error| StreamReadError::Transport(error.to_string()))?;
    TrafficClass::from_tag(tag[0])
        .ok_or_else(|| FrameError::Malformed(format!("unknown traffic class tag {}", tag[0])).into())
}

/// Encodes and writes one message; returns the bytes written.
///
/// # Errors
/// [`StreamReadError::Frame`] if it cannot be encoded, [`StreamReadError::Transport`] if the write fails.
pub async fn write_message(
    send: &mut quinn::SendStream,
    message: &Message,
    body_bytes_max: usize,
) -> Result<usize, StreamReadError> {
    let frame = encode_frame(message, body_bytes_max)?;
    send.write_all(&frame).await.map_err(|error| StreamReadError::Transport(error.to_string()))?;
    Ok(frame.len())
}
