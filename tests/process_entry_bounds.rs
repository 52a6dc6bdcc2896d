//! Finding 1 of the hostile-input review, with real processes: no request can put an entry into the
//! log that the cluster cannot replicate. Oversized writes are refused with an error naming the limit,
//! at the leader and at a follower; writes under the limit that together exceed a frame still commit
//! (replication batches are cut by bytes); the cluster commits afterwards and after a full restart;
//! `/ready` tells a node that cannot make progress from one that does. The nodes serve plain HTTP
//! (`--admin-plaintext`, loopback): what is under test is the log, not the edge.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use support::*;

const WAIT_MAX: Duration = Duration::from_secs(30);

/// POSTs a JSON body with the cluster's token; returns the status and the body.
fn post(admin: SocketAddr, token: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(admin).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {admin}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    // The server may answer (and close) before reading a body it refuses: a failed write is fine.
    let _ = stream.write_all(body.as_bytes());
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// `/ready`'s status and body.
fn ready(admin: SocketAddr) -> (u16, String) {
    let mut stream = TcpStream::connect(admin).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let request = format!("GET /ready HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, text.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

fn start(spec: &ClusterSpec, id: u64) -> NodeProcess {
    spec.start_with_args(id, &spec.certs(), &["--admin-plaintext"])
}

fn token(spec: &ClusterSpec) -> String {
    std::fs::read_to_string(spec.certs().join("admin.token")).expect("token").trim().to_string()
}

fn create(admin: SocketAddr, token: &str, path: &str, data: &str) -> (u16, String) {
    post(admin, token, "/registry/create", &format!(r#"{{"path":"{path}","data":"{data}"}}"#))
}

#[test]
fn oversized_writes_are_refused_and_the_cluster_keeps_committing_through_a_full_restart() {
    let spec = ClusterSpec::new("entrybounds", 3);
    let token = token(&spec);
    let mut nodes: Vec<NodeProcess> = (1..=3).map(|id| start(&spec, id)).collect();
    let leader = wait_for(WAIT_MAX, || leader_of(&spec, &[1, 2, 3])).expect("a leader is elected");
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");

    // An echo of a 1 MB value, 20 times: one entry of about 20 MB, more than a frame. Refused where it
    // is sent, leader or follower, with 413 and a message naming the limit, before anything is
    // materialized; and the same request at the CLI's maximum count as well.
    let input = format!(r#"{{"value":"{}"}}"#, "y".repeat(1_000_000));
    for target in [leader, follower] {
        for count in [20, 100_000] {
            let body = format!(r#"{{"task":"echo","input":{input},"count":{count}}}"#);
            let (status, answer) = post(spec.admin(target), &token, "/grid/submit", &body);
            assert_eq!(status, 413, "node {target}, count {count}: {answer}");
            assert!(answer.contains("_MAX"), "node {target}: the refusal names no limit: {answer}");
        }
    }

    // 24 values of 900 KB sent at once through every node: each entry is legal, and together they are
    // more than a frame, so replication must cut its batches by bytes.
    let handles: Vec<_> = (0..24)
        .map(|index| {
            let (admin, token) = (spec.admin(1 + index % 3), token.clone());
            std::thread::spawn(move || {
                // 21 MB through loopback QUIC on a loaded 2-core machine can hold a follower's
                // heartbeats past the failure detector's bound: its forwarded write then ends
                // "outcome unknown" (503), which clients retry. Each write must land within a few
                // tries (a retry of one that was applied meets "node exists").
                let (path, data) = (format!("/bulk{index}"), "z".repeat(900_000));
                let mut answer = create(admin, &token, &path, &data);
                for _ in 0..3 {
                    if answer.0 != 503 {
                        break;
                    }
                    answer = match create(admin, &token, &path, &data) {
                        (409, body) if body.contains("node exists") => (200, body),
                        other => other,
                    };
                }
                answer
            })
        })
        .collect();
    for handle in handles {
        let (status, body) = handle.join().expect("writer");
        assert_eq!(status, 200, "{}", &body[..body.len().min(300)]);
    }
    assert_eq!(create(spec.admin(follower), &token, "/after", "ok").0, 200);
    for id in 1..=3 {
        let ok = wait_for(WAIT_MAX, || (ready(spec.admin(id)).0 == 200).then_some(()));
        assert!(ok.is_some(), "node {id} not ready: {:?}", ready(spec.admin(id)));
    }

    // kill -9 of all three; node 1 alone knows no leader and says so on /ready.
    for node in &mut nodes {
        node.kill();
    }
    let mut first = start(&spec, 1);
    wait_for(WAIT_MAX, || status(spec.admin(1))).expect("node 1 answers");
    let (code, body) = wait_for(WAIT_MAX, || Some(ready(spec.admin(1))).filter(|(code, _)| *code == 503))
        .unwrap_or_else(|| ready(spec.admin(1)));
    assert_eq!(code, 503, "{body}");
    // Which reason depends on whether it led before the kill (a stalled commit) or not (no leader).
    assert!(body.contains(r#""ready":false"#) && (body.contains("no leader") || body.contains("stuck")), "{body}");
    let mut rest: Vec<NodeProcess> = (2..=3).map(|id| start(&spec, id)).collect();
    let leader = wait_for(WAIT_MAX, || leader_of(&spec, &[1, 2, 3])).expect("a leader after the restart");
    let committed =
        wait_for(WAIT_MAX, || (create(spec.admin(leader), &token, "/restarted", "ok").0 == 200).then_some(()));
    assert!(committed.is_some(), "the cluster does not commit after a full restart");
    for id in 1..=3 {
        let body = admin_get(spec.admin(id), "/registry/node?path=/bulk23").unwrap_or_default();
        assert!(body.contains("zzzz"), "node {id} lost /bulk23");
        let ok = wait_for(WAIT_MAX, || (ready(spec.admin(id)).0 == 200).then_some(()));
        assert!(ok.is_some(), "node {id} not ready after the restart");
    }
    first.kill();
    for node in &mut rest {
        node.kill();
    }
}
