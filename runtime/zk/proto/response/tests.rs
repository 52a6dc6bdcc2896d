use super::super::tests::{acls, body_of, bytes, strings, text, ustring};
use super::super::{event_type, keeper_state, perms};
use super::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn sample_stat() -> Stat {
    Stat {
        czxid: 1,
        mzxid: 2,
        ctime: 3,
        mtime: 4,
        version: 5,
        cversion: 6,
        aversion: 7,
        ephemeral_owner: 8,
        data_length: 9,
        num_children: 10,
        pzxid: 11,
    }
}

/// One reply of every shape, each with the op it answers.
fn every_response() -> Vec<(i32, Response)> {
    let stat = sample_stat();
    let acl = vec![Acl { perms: perms::READ, scheme: "digest".into(), id: "u:h".into() }];
    vec![
        (op::DELETE, Response::Empty),
        (op::CREATE, Response::Create { path: "/a0000000001".into() }),
        (op::CREATE2, Response::Create2 { path: "/a".into(), stat }),
        (op::EXISTS, Response::Stat(stat)),
        (op::GET_DATA, Response::GetData { data: b"hi".to_vec(), stat }),
        (op::GET_ACL, Response::GetAcl { acl, stat }),
        (op::GET_CHILDREN, Response::GetChildren { children: vec!["a".into(), "b".into()] }),
        (op::GET_CHILDREN2, Response::GetChildren2 { children: vec!["a".into()], stat }),
        (op::SYNC, Response::Sync { path: "/".into() }),
        (
            op::MULTI,
            Response::Multi(vec![
                MultiResult::Create { path: "/a".into() },
                MultiResult::Create2 { path: "/b".into(), stat },
                MultiResult::Delete,
                MultiResult::SetData { stat },
                MultiResult::Check,
            ]),
        ),
        (op::MULTI, Response::Multi(MultiResult::failed(3, 1, code::NO_NODE))),
        (
            op::MULTI_READ,
            Response::MultiRead(vec![
                MultiReadResult::GetData { data: vec![1], stat },
                MultiReadResult::GetChildren { children: vec!["c".into()] },
                MultiReadResult::Error { err: code::NO_NODE },
            ]),
        ),
        (op::GET_EPHEMERALS, Response::GetEphemerals { paths: vec!["/e".into()] }),
        (op::GET_ALL_CHILDREN_NUMBER, Response::GetAllChildrenNumber { count: 42 }),
        (op::WHO_AM_I, Response::WhoAmI { clients: vec![("ip".into(), "127.0.0.1".into())] }),
    ]
}

#[test]
fn golden_replies() {
    let event = encode_watcher_event(5, event_type::NODE_DATA_CHANGED, keeper_state::SYNC_CONNECTED, "/a");
    let mut golden = vec![0, 0, 0, 30, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0];
    golden.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 3]);
    golden.extend(ustring("/a"));
    assert_eq!(event, golden);
    let expected = WatcherEvent { kind: 3, state: 3, path: "/a".into() };
    assert_eq!(
        decode_watcher_event(body_of(&event)),
        Ok((ReplyHeader { xid: xid::NOTIFICATION, zxid: 5, err: 0 }, expected))
    );

    // A failed transaction of two ops, the second failing with noNode: header err 0, every
    // result an ErrorResponse, the first with OK.
    let header = ReplyHeader { xid: 7, zxid: 9, err: code::OK };
    let reply = encode_reply(&header, &Response::Multi(MultiResult::failed(2, 1, code::NO_NODE)));
    let mut golden = [[0, 0, 0, 7], [0, 0, 0, 0], [0, 0, 0, 9], [0, 0, 0, 0]].concat();
    golden.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    golden.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 0x9b, 0xff, 0xff, 0xff, 0x9b]);
    golden.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(body_of(&reply), golden);
}

#[test]
fn an_error_reply_is_the_header_alone_except_for_multi() {
    let header = ReplyHeader { xid: 3, zxid: 1, err: code::NO_NODE };
    let reply = encode_reply(&header, &Response::Stat(sample_stat()));
    assert_eq!(body_of(&reply).len(), 16);
    assert_eq!(decode_reply(body_of(&reply), op::EXISTS), Ok((header, Response::Empty)));
    let multi = Response::Multi(vec![MultiResult::Error { err: code::NO_NODE }]);
    let reply = encode_reply(&header, &multi);
    assert_eq!(decode_reply(body_of(&reply), op::MULTI), Ok((header, multi)));
    // A multi refused as a whole (no results) reads as empty.
    let reply = encode_reply(&header, &Response::Empty);
    assert_eq!(decode_reply(body_of(&reply), op::MULTI), Ok((header, Response::Empty)));
}

#[test]
fn failed_multi_results_follow_zookeeper() {
    let err = |err| MultiResult::Error { err };
    assert_eq!(
        MultiResult::failed(4, 1, code::BAD_VERSION),
        [err(code::OK), err(code::BAD_VERSION), err(code::RUNTIME_INCONSISTENCY), err(code::RUNTIME_INCONSISTENCY)]
    );
}

#[test]
fn every_reply_round_trips_and_every_prefix_fails() {
    for (index, (kind, response)) in every_response().into_iter().enumerate() {
        let header = ReplyHeader { xid: index as i32, zxid: 77, err: code::OK };
        let frame = encode_reply(&header, &response);
        let body = body_of(&frame);
        assert_eq!(decode_reply(body, kind), Ok((header, response.clone())));
        for cut in 0..body.len() {
            assert!(decode_reply(&body[..cut], kind).is_err(), "{response:?} cut at {cut}");
        }
    }
}

fn stat() -> impl Strategy<Value = Stat> {
    (any::<[i64; 6]>(), any::<[i32; 5]>()).prop_map(|(l, i)| Stat {
        czxid: l[0],
        mzxid: l[1],
        ctime: l[2],
        mtime: l[3],
        version: i[0],
        cversion: i[1],
        aversion: i[2],
        ephemeral_owner: l[4],
        data_length: i[3],
        num_children: i[4],
        pzxid: l[5],
    })
}

fn multi_result() -> impl Strategy<Value = MultiResult> {
    prop_oneof![
        text().prop_map(|path| MultiResult::Create { path }),
        (text(), stat()).prop_map(|(path, stat)| MultiResult::Create2 { path, stat }),
        Just(MultiResult::Delete),
        stat().prop_map(|stat| MultiResult::SetData { stat }),
        Just(MultiResult::Check),
        any::<i32>().prop_map(|err| MultiResult::Error { err }),
    ]
}

fn multi_read_result() -> impl Strategy<Value = MultiReadResult> {
    prop_oneof![
        (bytes(), stat()).prop_map(|(data, stat)| MultiReadResult::GetData { data, stat }),
        strings().prop_map(|children| MultiReadResult::GetChildren { children }),
        any::<i32>().prop_map(|err| MultiReadResult::Error { err }),
    ]
}

/// A reply with the op it answers.
fn response() -> impl Strategy<Value = (i32, Response)> {
    prop_oneof![
        Just((op::DELETE, Response::Empty)),
        text().prop_map(|path| (op::CREATE, Response::Create { path })),
        (text(), stat()).prop_map(|(path, stat)| (op::CREATE_TTL, Response::Create2 { path, stat })),
        stat().prop_map(|stat| (op::SET_DATA, Response::Stat(stat))),
        (bytes(), stat()).prop_map(|(data, stat)| (op::GET_DATA, Response::GetData { data, stat })),
        (acls(), stat()).prop_map(|(acl, stat)| (op::GET_ACL, Response::GetAcl { acl, stat })),
        strings().prop_map(|children| (op::GET_CHILDREN, Response::GetChildren { children })),
        (strings(), stat()).prop_map(|(children, stat)| (op::GET_CHILDREN2, Response::GetChildren2 { children, stat })),
        text().prop_map(|path| (op::SYNC, Response::Sync { path })),
        vec(multi_result(), 0..4).prop_map(|results| (op::MULTI, Response::Multi(results))),
        vec(multi_read_result(), 0..4).prop_map(|results| (op::MULTI_READ, Response::MultiRead(results))),
        strings().prop_map(|paths| (op::GET_EPHEMERALS, Response::GetEphemerals { paths })),
        any::<i32>().prop_map(|count| (op::GET_ALL_CHILDREN_NUMBER, Response::GetAllChildrenNumber { count })),
        vec((text(), text()), 0..3).prop_map(|clients| (op::WHO_AM_I, Response::WhoAmI { clients })),
    ]
}

proptest! {
    #[test]
    fn replies_round_trip(xid in any::<i32>(), zxid in any::<i64>(), err in any::<i32>(), (kind, response) in response()) {
        let header = ReplyHeader { xid, zxid, err: code::OK };
        let frame = encode_reply(&header, &response);
        prop_assert_eq!(decode_reply(body_of(&frame), kind), Ok((header, response.clone())));
        // With an error, only multi results survive.
        let header = ReplyHeader { err, ..header };
        let frame = encode_reply(&header, &response);
        let survives = err == code::OK || body_survives_error(&response);
        let expected = if survives { response } else { Response::Empty };
        prop_assert_eq!(decode_reply(body_of(&frame), kind), Ok((header, expected)));
    }
}
