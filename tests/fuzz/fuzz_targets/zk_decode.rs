//! Fuzzes the ZooKeeper codec with an arbitrary byte stream, as a client connection would send it:
//! frames are cut with `next_frame`; the first is a connect request, the rest are requests. Nothing
//! may panic, hang or allocate past what the bytes justify, and everything that decodes must
//! re-encode to a frame that decodes to the same value. Each body is also tried as a reply to a
//! few operations (the client side), with the same round-trip check.
#![no_main]

use gridkeeper::zk::frame::next_frame;
use gridkeeper::zk::proto::{
    decode_reply, decode_request, decode_watcher_event, encode_connect_response, encode_reply, encode_request,
    encode_watcher_event, op, ConnectRequest, ConnectResponse,
};
use libfuzzer_sys::fuzz_target;

/// Small bound so the fuzzer also explores the oversized-length path cheaply.
const FRAME_BYTES_MAX: usize = 64 << 10;

/// Replies are tried against these operations (chosen per frame by its first byte).
const REPLY_OPS: [i32; 16] = [
    op::CREATE,
    op::CREATE2,
    op::DELETE,
    op::EXISTS,
    op::GET_DATA,
    op::GET_ACL,
    op::GET_CHILDREN,
    op::GET_CHILDREN2,
    op::SYNC,
    op::MULTI,
    op::MULTI_READ,
    op::GET_EPHEMERALS,
    op::GET_ALL_CHILDREN_NUMBER,
    op::WHO_AM_I,
    op::PING,
    op::CHECK,
];

/// The body of a frame the codec just built: exactly one whole frame.
fn body_of(frame: &[u8]) -> &[u8] {
    let (used, body) = next_frame(frame, usize::MAX).expect("an encoded frame has a valid header").expect("whole");
    assert_eq!(used, frame.len(), "an encoded frame is exactly one frame");
    body
}

fn check_connect(body: &[u8]) {
    if let Ok(request) = ConnectRequest::decode(body) {
        let again = ConnectRequest::decode(body_of(&request.encode())).expect("a re-encoded connect decodes");
        assert_eq!(again, request);
    }
    if let Ok(response) = ConnectResponse::decode(body) {
        let again = ConnectResponse::decode(body_of(&encode_connect_response(&response))).expect("decodes");
        assert_eq!(again, response);
    }
}

fn check_request(body: &[u8]) {
    if let Ok((header, request)) = decode_request(body) {
        let again = decode_request(body_of(&encode_request(&header, &request))).expect("a re-encoded request decodes");
        assert_eq!(again, (header, request));
    }
}

fn check_reply(body: &[u8]) {
    let kind = REPLY_OPS[usize::from(body.first().copied().unwrap_or(0)) % REPLY_OPS.len()];
    if let Ok((header, response)) = decode_reply(body, kind) {
        let again = decode_reply(body_of(&encode_reply(&header, &response)), kind).expect("a re-encoded reply decodes");
        assert_eq!(again, (header, response));
    }
    if let Ok((header, event)) = decode_watcher_event(body) {
        let frame = encode_watcher_event(header.zxid, event.kind, event.state, &event.path);
        let (again_header, again) = decode_watcher_event(body_of(&frame)).expect("a re-encoded event decodes");
        assert_eq!((again_header.zxid, again), (header.zxid, event));
    }
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut first = true;
    while let Ok(Some((used, body))) = next_frame(rest, FRAME_BYTES_MAX) {
        if first {
            check_connect(body);
            first = false;
        } else {
            check_request(body);
        }
        check_reply(body);
        rest = &rest[used..];
    }
});
