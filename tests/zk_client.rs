//! The ZooKeeper front end with a Rust ZooKeeper client nobody here wrote (the `zookeeper-client`
//! crate), against three real node processes: a session survives kill -9 of the node it is
//! connected to (same session id, its ephemeral kept, a watch set before the kill still fires), and
//! a persistent recursive watch streams every change below its path, in order.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{leader_of, wait_for, ClusterSpec, NodeProcess};
use zookeeper_client as zk;

const WAIT: Duration = Duration::from_secs(30);

fn start(name: &str) -> (ClusterSpec, Vec<NodeProcess>) {
    let spec = ClusterSpec::new(name, 3);
    // `cons` lists each connection's session: the test finds the node its client is connected to.
    let nodes: Vec<NodeProcess> =
        spec.ids.iter().map(|&id| spec.start_with_args(id, &spec.certs(), &["--zk-4lw", "*"])).collect();
    wait_for(WAIT, || leader_of(&spec, &spec.ids)).expect("a leader");
    (spec, nodes)
}

/// A four-letter word's answer from `addr`.
fn word(addr: std::net::SocketAddr, word: &str) -> String {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return String::new() };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.write_all(word.as_bytes());
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

/// The node whose `cons` lists `session`.
fn node_serving(spec: &ClusterSpec, session: i64, among: &[u64]) -> Option<u64> {
    let needle = format!("sid={session:#x}");
    among.iter().copied().find(|&id| word(spec.zk(id), "cons").contains(&needle))
}

fn open() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

async fn connect(hosts: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(hosts)
        .await
        .expect("the client connects")
}

#[test]
fn a_session_survives_kill_9_of_the_node_it_is_connected_to() {
    let (spec, mut nodes) = start("zk-client-failover");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = connect(&spec.zk_hosts()).await;
        let session = client.session_id();
        let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        client.create("/held", b"mine", &ephemeral).await.expect("ephemeral created");
        client.create("/watched", b"0", &open()).await.expect("created");
        let (_, _, watcher) = client.get_and_watch_data("/watched").await.expect("watch set");
        let mut states = client.state_watcher();

        let victim =
            wait_for(WAIT, || node_serving(&spec, session.0, &spec.ids)).expect("some node serves the session");
        nodes[(victim - 1) as usize].kill();
        let alive: Vec<u64> = spec.ids.iter().copied().filter(|&id| id != victim).collect();

        // The client notices, reconnects to a live node with the same session, and goes on.
        let reconnected = tokio::time::timeout(WAIT, async {
            loop {
                match states.changed().await {
                    zk::SessionState::SyncConnected => return Ok(()),
                    zk::SessionState::Disconnected => continue,
                    terminal => return Err(terminal),
                }
            }
        })
        .await
        .expect("the client reconnects in time");
        assert_eq!(reconnected, Ok(()), "the session must not end");
        assert_eq!(client.session_id(), session, "the same session, resumed elsewhere");
        let serving = wait_for(WAIT, || node_serving(&spec, session.0, &alive)).expect("a live node serves it");
        assert_ne!(serving, victim);

        // Another client, on another node, still sees the ephemeral and makes the watch fire.
        let other = connect(&alive.iter().map(|&id| spec.zk(id).to_string()).collect::<Vec<_>>().join(",")).await;
        let (data, stat) = other.get_data("/held").await.expect("the ephemeral is kept");
        assert_eq!((data.as_slice(), stat.ephemeral_owner), (&b"mine"[..], session.0));
        other.set_data("/watched", b"1", None).await.expect("set");
        let event = tokio::time::timeout(WAIT, watcher.changed()).await.expect("the watch fires");
        assert_eq!((event.event_type, event.path.as_str()), (zk::EventType::NodeDataChanged, "/watched"));

        // Closing the session deletes its ephemeral at once: the other client's watch sees it go.
        let (_, deleted) = other.check_and_watch_stat("/held").await.expect("watch set");
        drop(client);
        let event = tokio::time::timeout(WAIT, deleted.changed()).await.expect("the ephemeral goes with its session");
        assert_eq!((event.event_type, event.path.as_str()), (zk::EventType::NodeDeleted, "/held"));
    });
}

#[test]
fn a_persistent_recursive_watch_streams_every_change_below_its_path_in_order() {
    let (spec, _nodes) = start("zk-client-recursive");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let watching = connect(&spec.zk(1).to_string()).await;
        let writing = connect(&spec.zk(2).to_string()).await;
        writing.create("/app", b"", &open()).await.expect("created");
        let mut watcher = watching.watch("/app", zk::AddWatchMode::PersistentRecursive).await.expect("watching");
        let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        let mut expected = Vec::new();
        for round in 0..20 {
            let dir = format!("/app/d{round}");
            writing.create(&dir, b"", &open()).await.expect("create");
            expected.push((zk::EventType::NodeCreated, dir.clone()));
            let leaf = format!("{dir}/leaf");
            writing.create(&leaf, b"a", &ephemeral).await.expect("create");
            expected.push((zk::EventType::NodeCreated, leaf.clone()));
            writing.set_data(&leaf, b"b", None).await.expect("set");
            expected.push((zk::EventType::NodeDataChanged, leaf.clone()));
            writing.delete(&leaf, None).await.expect("delete");
            expected.push((zk::EventType::NodeDeleted, leaf));
        }
        writing.set_data("/app", b"top", None).await.expect("set");
        expected.push((zk::EventType::NodeDataChanged, "/app".to_string()));
        // A change outside the watched path is not streamed.
        writing.create("/elsewhere", b"", &open()).await.expect("create");
        writing.set_data("/app", b"last", None).await.expect("set");
        expected.push((zk::EventType::NodeDataChanged, "/app".to_string()));

        let mut seen = Vec::new();
        while seen.len() < expected.len() {
            let event = tokio::time::timeout(WAIT, watcher.changed()).await.expect("every change arrives");
            seen.push((event.event_type, event.path.clone()));
        }
        assert_eq!(seen, expected);
    });
}

/// The cluster's own subtree (`/gridkeeper`: revocations) is changed through the ZooKeeper port only by
/// a connection that proved an operator credential with `addauth digest NAME:TOKEN`; an anonymous
/// client, or one with a token of another role, gets `NoAuth` and cannot undo a revocation.
#[test]
fn only_an_operator_token_may_change_the_reserved_subtree() {
    let spec = ClusterSpec::new("zk-reserved", 1);
    let certs = spec.certs();
    for (name, role) in [("zkops", "operator"), ("zkread", "reader")] {
        let output = std::process::Command::new(support::binary())
            .args(["certs", "--out"])
            .arg(&certs)
            .args(["--token", name, "--role", role])
            .output()
            .expect("certs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let _node = spec.start(1);
    wait_for(WAIT, || leader_of(&spec, &[1])).expect("the node leads");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let admin = runtime.block_on(gridkeeper::client::Client::connect(spec.admin(1), spec.access())).expect("client");
    runtime.block_on(admin.revoke("leaked")).expect("revoked through the admin API");
    let token =
        |name: &str| std::fs::read_to_string(certs.join(format!("token-{name}"))).expect("token").trim().to_string();
    runtime.block_on(async {
        let anonymous = connect(&spec.zk_hosts()).await;
        let revoked = "/gridkeeper/revoked/leaked";
        assert!(anonymous.check_stat(revoked).await.expect("readable").is_some(), "anyone may read it");
        assert_eq!(anonymous.delete(revoked, None).await, Err(zk::Error::NoAuth), "an anonymous client cannot undo it");
        assert_eq!(anonymous.set_data(revoked, b"x", None).await.map(|_| ()), Err(zk::Error::NoAuth));
        let created = anonymous.create("/gridkeeper/revoked/other", b"", &open()).await.map(|_| ());
        assert_eq!(created, Err(zk::Error::NoAuth));
        let reader = connect(&spec.zk_hosts()).await;
        reader.auth("digest", format!("zkread:{}", token("zkread")).as_bytes()).await.expect("addauth");
        assert_eq!(reader.delete(revoked, None).await, Err(zk::Error::NoAuth), "a reader's token is no operator's");
        let forged = connect(&spec.zk_hosts()).await;
        forged.auth("digest", format!("zkread:{}", token("zkops")).as_bytes()).await.expect("addauth");
        assert_eq!(forged.delete(revoked, None).await, Err(zk::Error::NoAuth), "the token must carry the user's name");
        let operator = connect(&spec.zk_hosts()).await;
        operator.auth("digest", format!("zkops:{}", token("zkops")).as_bytes()).await.expect("addauth");
        operator.create("/gridkeeper/revoked/by-zk", b"", &open()).await.expect("the operator may create");
        operator.delete("/gridkeeper/revoked/by-zk", None).await.expect("and delete");
        // Outside the reserved subtree nothing changes for anyone.
        anonymous.create("/free", b"", &open()).await.expect("anyone creates elsewhere");
    });
}
