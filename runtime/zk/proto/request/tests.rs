use super::super::tests::{acls, body_of, bytes, strings, text, ustring};
use super::super::{add_watch_mode, create_flags, perms, watcher_type, xid};
use super::*;
use proptest::collection::vec;
use proptest::prelude::*;

/// One request of every kind, with an xid each.
fn every_request() -> Vec<Request> {
    let acl = vec![Acl { perms: perms::ALL, scheme: "world".into(), id: "anyone".into() }];
    let create = |op, ttl_ms| Request::Create {
        op,
        path: "/a".into(),
        data: b"x".to_vec(),
        acl: acl.clone(),
        flags: create_flags::PERSISTENT_SEQUENTIAL,
        ttl_ms,
    };
    let names = || vec!["/w".to_string(), "/v".to_string()];
    vec![
        create(op::CREATE, None),
        create(op::CREATE2, None),
        create(op::CREATE_CONTAINER, None),
        create(op::CREATE_TTL, Some(60_000)),
        Request::Delete { path: "/a".into(), version: -1 },
        Request::Exists { path: "/a".into(), watch: true },
        Request::GetData { path: "/a".into(), watch: false },
        Request::SetData { path: "/a".into(), data: vec![1, 2], version: 4 },
        Request::GetAcl { path: "/a".into() },
        Request::SetAcl { path: "/a".into(), acl: acl.clone(), version: 0 },
        Request::GetChildren { path: "/".into(), watch: true },
        Request::GetChildren2 { path: "/".into(), watch: false },
        Request::Sync { path: "/".into() },
        Request::Ping,
        Request::Check { path: "/a".into(), version: 2 },
        Request::Multi(vec![
            MultiOp::Create {
                op: op::CREATE_TTL,
                path: "/t".into(),
                data: vec![],
                acl: acl.clone(),
                flags: 5,
                ttl_ms: Some(1),
            },
            MultiOp::Delete { path: "/a".into(), version: 1 },
            MultiOp::SetData { path: "/b".into(), data: vec![9], version: -1 },
            MultiOp::Check { path: "/c".into(), version: 0 },
        ]),
        Request::Multi(vec![]),
        Request::MultiRead(vec![
            MultiReadOp::GetData { path: "/a".into() },
            MultiReadOp::GetChildren { path: "/".into() },
        ]),
        Request::Reconfig,
        Request::CheckWatches { path: "/a".into(), kind: watcher_type::DATA },
        Request::RemoveWatches { path: "/a".into(), kind: watcher_type::ANY },
        Request::DeleteContainer { path: "/c".into() },
        Request::Auth { kind: 0, scheme: "digest".into(), auth: b"u:p".to_vec() },
        Request::SetWatches { relative_zxid: 7, data: names(), exist: vec![], child: names() },
        Request::SetWatches2 {
            relative_zxid: 8,
            data: names(),
            exist: names(),
            child: vec![],
            persistent: names(),
            persistent_recursive: vec!["/r".into()],
        },
        Request::Sasl,
        Request::GetEphemerals { prefix: "/".into() },
        Request::GetAllChildrenNumber { path: "/".into() },
        Request::AddWatch { path: "/a".into(), mode: add_watch_mode::PERSISTENT_RECURSIVE },
        Request::WhoAmI,
        Request::CloseSession,
    ]
}

#[test]
fn golden_requests() {
    let get_data = encode_request(
        &RequestHeader { xid: 1, op: op::GET_DATA },
        &Request::GetData { path: "/a".into(), watch: true },
    );
    assert_eq!(get_data, [0, 0, 0, 15, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 2, b'/', b'a', 1]);

    let ping = encode_request(&RequestHeader { xid: xid::PING, op: op::PING }, &Request::Ping);
    assert_eq!(ping, [0, 0, 0, 8, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 11]);

    // A multi with one check: header {13, false, -1}, CheckVersionRequest, end {-1, true, -1}.
    let multi = encode_request(
        &RequestHeader { xid: 2, op: op::MULTI },
        &Request::Multi(vec![MultiOp::Check { path: "/a".into(), version: 3 }]),
    );
    let mut golden = [[0, 0, 0, 2], [0, 0, 0, 14], [0, 0, 0, 13]].concat();
    golden.extend_from_slice(&[0, 0xff, 0xff, 0xff, 0xff]);
    golden.extend(ustring("/a"));
    golden.extend_from_slice(&[0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(body_of(&multi), golden);
}

#[test]
fn every_request_round_trips_and_every_prefix_fails() {
    for (index, request) in every_request().into_iter().enumerate() {
        let header = RequestHeader { xid: index as i32, op: request.op() };
        let frame = encode_request(&header, &request);
        let body = body_of(&frame);
        assert_eq!(decode_request(body), Ok((header, request.clone())));
        for cut in 0..body.len() {
            match decode_request(&body[..cut]) {
                Err(DecodeError::Malformed { xid, error: JuteError::Truncated | JuteError::TooLong { .. } }) => {
                    assert_eq!(xid, (cut >= 8).then_some(header.xid), "{request:?} cut at {cut}");
                }
                other => panic!("{request:?} cut at {cut}: {other:?}"),
            }
        }
        // Trailing bytes are ignored.
        let mut longer = body.to_vec();
        longer.extend_from_slice(&[0xde, 0xad]);
        assert_eq!(decode_request(&longer), Ok((header, request)));
    }
}

#[test]
fn unknown_ops_keep_their_header_and_bad_bodies_their_xid() {
    for unknown in [op::NOTIFICATION, op::CREATE_SESSION, op::ERROR, 10, 23, 99, 108, i32::MIN] {
        let body = [9i32.to_be_bytes(), unknown.to_be_bytes()].concat();
        assert_eq!(
            decode_request(&body),
            Err(DecodeError::UnknownOp { header: RequestHeader { xid: 9, op: unknown } })
        );
    }
    let mut bad_utf8 = [[0, 0, 0, 5], [0, 0, 0, 4], [0, 0, 0, 1]].concat();
    bad_utf8.extend_from_slice(&[0xff, 0]);
    assert_eq!(decode_request(&bad_utf8), Err(DecodeError::Malformed { xid: Some(5), error: JuteError::BadUtf8 }));
    assert_eq!(decode_request(&[0, 0]), Err(DecodeError::Malformed { xid: None, error: JuteError::Truncated }));
    // A read op inside a transaction, and a write inside a multiRead, are refused.
    let read_in_multi = [[0, 0, 0, 1], [0, 0, 0, 14], [0, 0, 0, 4]].concat();
    let mut body = read_in_multi.clone();
    body.extend_from_slice(&[0, 0xff, 0xff, 0xff, 0xff]);
    let expected = JuteError::UnexpectedValue { field: "op type in a multi", value: 4 };
    assert_eq!(decode_request(&body), Err(DecodeError::Malformed { xid: Some(1), error: expected }));
    let mut body = [[0, 0, 0, 1], [0, 0, 0, 22], [0, 0, 0, 2]].concat();
    body.extend_from_slice(&[0, 0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(decode_request(&body), Err(DecodeError::Malformed { xid: Some(1), .. })));
}

#[test]
fn huge_counts_fail_fast() {
    // SetWatches announcing 2^31-1 data watches, with 4 bytes behind the count.
    let mut body = [xid::SET_WATCHES.to_be_bytes(), op::SET_WATCHES.to_be_bytes()].concat();
    body.extend_from_slice(&[0; 8]);
    body.extend_from_slice(&i32::MAX.to_be_bytes());
    body.extend_from_slice(&[0; 4]);
    let error = JuteError::TooLong { len: i32::MAX, remaining: 4 };
    assert_eq!(decode_request(&body), Err(DecodeError::Malformed { xid: Some(xid::SET_WATCHES), error }));
    // A create whose ACL count is 2^31-1.
    let mut body = [[0, 0, 0, 1], [0, 0, 0, 1]].concat();
    body.extend(ustring("/a"));
    body.extend_from_slice(&[0, 0, 0, 0]);
    body.extend_from_slice(&i32::MAX.to_be_bytes());
    assert!(matches!(
        decode_request(&body),
        Err(DecodeError::Malformed { error: JuteError::TooLong { len: i32::MAX, remaining: 0 }, .. })
    ));
    // A data buffer announcing 2 GiB.
    let mut body = [[0, 0, 0, 1], [0, 0, 0, 5]].concat();
    body.extend(ustring("/a"));
    body.extend_from_slice(&i32::MAX.to_be_bytes());
    assert!(matches!(decode_request(&body), Err(DecodeError::Malformed { error: JuteError::TooLong { .. }, .. })));
}

fn create_op() -> impl Strategy<Value = i32> {
    prop_oneof![Just(op::CREATE), Just(op::CREATE2), Just(op::CREATE_CONTAINER), Just(op::CREATE_TTL)]
}

fn multi_op() -> impl Strategy<Value = MultiOp> {
    prop_oneof![
        (create_op(), text(), bytes(), acls(), any::<i32>(), any::<i64>()).prop_map(
            |(op, path, data, acl, flags, ttl)| MultiOp::Create {
                op,
                path,
                data,
                acl,
                flags,
                ttl_ms: (op == op::CREATE_TTL).then_some(ttl)
            }
        ),
        (text(), any::<i32>()).prop_map(|(path, version)| MultiOp::Delete { path, version }),
        (text(), bytes(), any::<i32>()).prop_map(|(path, data, version)| MultiOp::SetData { path, data, version }),
        (text(), any::<i32>()).prop_map(|(path, version)| MultiOp::Check { path, version }),
    ]
}

fn multi_read_op() -> impl Strategy<Value = MultiReadOp> {
    prop_oneof![
        text().prop_map(|path| MultiReadOp::GetData { path }),
        text().prop_map(|path| MultiReadOp::GetChildren { path }),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    let path_watch = || (text(), any::<bool>());
    let path_int = || (text(), any::<i32>());
    prop_oneof![
        multi_op().prop_map(|entry| match entry {
            MultiOp::Create { op, path, data, acl, flags, ttl_ms } =>
                Request::Create { op, path, data, acl, flags, ttl_ms },
            MultiOp::Delete { path, version } => Request::Delete { path, version },
            MultiOp::SetData { path, data, version } => Request::SetData { path, data, version },
            MultiOp::Check { path, version } => Request::Check { path, version },
        }),
        path_watch().prop_map(|(path, watch)| Request::Exists { path, watch }),
        path_watch().prop_map(|(path, watch)| Request::GetData { path, watch }),
        path_watch().prop_map(|(path, watch)| Request::GetChildren { path, watch }),
        path_watch().prop_map(|(path, watch)| Request::GetChildren2 { path, watch }),
        text().prop_map(|path| Request::GetAcl { path }),
        (text(), acls(), any::<i32>()).prop_map(|(path, acl, version)| Request::SetAcl { path, acl, version }),
        text().prop_map(|path| Request::Sync { path }),
        vec(multi_op(), 0..4).prop_map(Request::Multi),
        vec(multi_read_op(), 0..4).prop_map(Request::MultiRead),
        path_int().prop_map(|(path, kind)| Request::CheckWatches { path, kind }),
        path_int().prop_map(|(path, kind)| Request::RemoveWatches { path, kind }),
        path_int().prop_map(|(path, mode)| Request::AddWatch { path, mode }),
        text().prop_map(|path| Request::DeleteContainer { path }),
        (any::<i32>(), text(), bytes()).prop_map(|(kind, scheme, auth)| Request::Auth { kind, scheme, auth }),
        (any::<i64>(), strings(), strings(), strings()).prop_map(|(relative_zxid, data, exist, child)| {
            Request::SetWatches { relative_zxid, data, exist, child }
        }),
        (any::<i64>(), strings(), strings(), strings(), strings(), strings()).prop_map(
            |(relative_zxid, data, exist, child, persistent, persistent_recursive)| Request::SetWatches2 {
                relative_zxid,
                data,
                exist,
                child,
                persistent,
                persistent_recursive
            }
        ),
        text().prop_map(|prefix| Request::GetEphemerals { prefix }),
        text().prop_map(|path| Request::GetAllChildrenNumber { path }),
        prop_oneof![
            Just(Request::Ping),
            Just(Request::Reconfig),
            Just(Request::Sasl),
            Just(Request::WhoAmI),
            Just(Request::CloseSession)
        ],
    ]
}

proptest! {
    #[test]
    fn requests_round_trip(xid in any::<i32>(), request in request()) {
        let header = RequestHeader { xid, op: request.op() };
        let frame = encode_request(&header, &request);
        prop_assert_eq!(decode_request(body_of(&frame)), Ok((header, request)));
    }
}
