//! Fixtures the codec's tests share, and the tests of the constants and of the whole codec.

use super::*;
use crate::zk::frame::next_frame;
use proptest::collection::vec;
use proptest::prelude::*;

/// The body of a whole frame, checking that the frame is exactly one.
pub(super) fn body_of(frame: &[u8]) -> &[u8] {
    let (used, body) = next_frame(frame, usize::MAX).expect("a valid header").expect("a whole frame");
    assert_eq!(used, frame.len(), "exactly one frame");
    body
}

pub(super) fn ustring(text: &str) -> Vec<u8> {
    let mut bytes = (text.len() as i32).to_be_bytes().to_vec();
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

pub(super) fn text() -> impl Strategy<Value = String> {
    ".{0,6}"
}

pub(super) fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..8)
}

pub(super) fn strings() -> impl Strategy<Value = Vec<String>> {
    vec(text(), 0..4)
}

pub(super) fn acls() -> impl Strategy<Value = Vec<Acl>> {
    vec((any::<i32>(), text(), text()).prop_map(|(perms, scheme, id)| Acl { perms, scheme, id }), 0..3)
}

#[test]
fn create_flags_map_to_registry_modes() {
    use crate::registry::CreateMode;
    assert_eq!(create_flags::mode(create_flags::EPHEMERAL_SEQUENTIAL), Some(CreateMode::EphemeralSequential));
    assert_eq!(
        create_flags::mode(create_flags::PERSISTENT_SEQUENTIAL_WITH_TTL),
        Some(CreateMode::PersistentSequential)
    );
    assert_eq!(create_flags::mode(create_flags::CONTAINER), Some(CreateMode::Container));
    assert_eq!(create_flags::mode(7), None);
    assert!(create_flags::has_ttl(5) && create_flags::has_ttl(6) && !create_flags::has_ttl(0));
    assert_eq!(code::name(code::NO_NODE), Some("NONODE"));
    assert_eq!(code::name(-9), None);
}

proptest! {
    #[test]
    fn arbitrary_bodies_never_panic(body in vec(any::<u8>(), 0..96), kind in -12i32..110) {
        // Start from a valid header half the time so the record decoders get exercised.
        let mut framed_body = [1i32.to_be_bytes(), kind.to_be_bytes()].concat();
        framed_body.extend_from_slice(&body);
        if let Ok((header, request)) = decode_request(&framed_body) {
            let again = encode_request(&header, &request);
            prop_assert_eq!(decode_request(body_of(&again)), Ok((header, request)));
        }
        let _ = decode_request(&body);
        let _ = ConnectRequest::decode(&body);
        let _ = ConnectResponse::decode(&body);
        let _ = decode_reply(&body, kind);
        let _ = decode_watcher_event(&body);
    }
}
