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

/// The state version every node of `spec` among `ids` reports, if all report the same one.
fn state_version(spec: &ClusterSpec, ids: &[u64]) -> Option<u32> {
    let versions: std::collections::BTreeSet<Option<u32>> =
        ids.iter().map(|&id| support::status(spec.admin(id)).and_then(|status| status.state_version)).collect();
    match versions.into_iter().collect::<Vec<_>>().as_slice() {
        [Some(version)] => Some(*version),
        _ => None,
    }
}

fn issue_token(certs: &std::path::Path, name: &str, role: &str) -> String {
    let output = std::process::Command::new(support::binary())
        .args(["certs", "--out"])
        .arg(certs)
        .args(["--token", name, "--role", role])
        .output()
        .expect("certs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    std::fs::read_to_string(certs.join(format!("token-{name}"))).expect("token").trim().to_string()
}

/// ZooKeeper's digest identity, computed here independently of the server: name:base64(sha1(name:password)).
fn digest_id(name: &str, password: &str) -> String {
    use base64::Engine as _;
    let hash = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, format!("{name}:{password}").as_bytes());
    format!("{name}:{}", base64::engine::general_purpose::STANDARD.encode(hash.as_ref()))
}

#[test]
fn acls_guard_znodes_on_the_zookeeper_port_and_the_https_api_alike() {
    let spec = ClusterSpec::new("zk-acls", 1);
    let certs = spec.certs();
    let reader_token = issue_token(&certs, "zkread", "reader");
    let _node = spec.start(1);
    wait_for(WAIT, || leader_of(&spec, &[1])).expect("the node leads");
    wait_for(WAIT, || (state_version(&spec, &[1]) == Some(gridkeeper::registry::STATE_VERSION)).then_some(()))
        .expect("this build's state version");
    let reader = gridkeeper::client::Access::ca_only(&certs).expect("ca").with_token(&reader_token);
    let operator = spec.access();
    let http_get = |access: &gridkeeper::client::Access, path: &str| {
        support::http(access, spec.admin(1), "GET", path, "").expect("an answer")
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let alice_all = zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("digest", &digest_id("alice", "secret")));
        let reader_read = zk::Acl::new(zk::Permission::READ, zk::AuthId::new("gridkeeper", "zkread"));
        let anonymous = connect(&spec.zk_hosts()).await;
        let secret_acl = [alice_all.clone()];
        let options = zk::CreateMode::Persistent.with_acls(zk::Acls::new(&secret_acl));
        anonymous.create("/secret", b"s3cret", &options).await.expect("create with alice's ACL");
        assert_eq!(anonymous.get_data("/secret").await.map(|_| ()), Err(zk::Error::NoAuth));
        assert!(anonymous.check_stat("/secret").await.expect("exists needs no permission").is_some());
        let shared_acl = [alice_all.clone(), reader_read.clone()];
        let options = zk::CreateMode::Persistent.with_acls(zk::Acls::new(&shared_acl));
        anonymous.create("/shared", b"for readers", &options).await.expect("create shared");
        assert_eq!(anonymous.get_data("/shared").await.map(|_| ()), Err(zk::Error::NoAuth));

        let alice = connect(&spec.zk_hosts()).await;
        alice.auth("digest", b"alice:secret").await.expect("addauth");
        assert_eq!(alice.get_data("/secret").await.expect("alice reads").0, b"s3cret");
        let (acl, stat) = alice.get_acl("/secret").await.expect("getACL");
        assert_eq!((acl, stat.aversion), (vec![alice_all.clone()], 0));
        let opened = [alice_all.clone(), zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone())];
        let stat = alice.set_acl("/secret", &zk::Acls::new(&opened), Some(0)).await.expect("setACL");
        assert_eq!(stat.aversion, 1);
        assert_eq!(alice.set_acl("/secret", &zk::Acls::new(&secret_acl), Some(0)).await, Err(zk::Error::BadVersion));
        assert_eq!(anonymous.get_data("/secret").await.expect("now world-readable").0, b"s3cret");
        assert_eq!(anonymous.set_data("/secret", b"x", None).await.map(|_| ()), Err(zk::Error::NoAuth));
        assert_eq!(
            alice.set_acl("/secret", &zk::Acls::new(&[]), None).await.map(|_| ()),
            Err(zk::Error::InvalidAcl),
            "an empty ACL"
        );

        // A gridkeeper token is the identity gridkeeper:NAME on the ZooKeeper port too.
        let with_token = connect(&spec.zk_hosts()).await;
        with_token.auth("digest", format!("zkread:{reader_token}").as_bytes()).await.expect("addauth");
        assert_eq!(with_token.get_data("/shared").await.expect("the reader's identity reads").0, b"for readers");

        // The grid's registrations are world-readable only.
        let (acl, _) = anonymous.get_acl("/grid/nodes/1").await.expect("registration ACL");
        assert_eq!(acl, vec![zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone())]);
        assert_eq!(anonymous.delete("/grid/nodes/1", None).await, Err(zk::Error::NoAuth));
        assert_eq!(anonymous.set_data("/grid/nodes/1", b"{}", None).await.map(|_| ()), Err(zk::Error::NoAuth));
        assert!(anonymous.check_stat("/grid/nodes/1").await.expect("exists").is_some(), "still registered");
        let (children, _) = anonymous.get_children("/zookeeper").await.expect("/zookeeper");
        assert_eq!(children, vec!["config".to_string(), "quota".to_string()]);
    });
    // Over HTTPS, a reader credential NAME is gridkeeper:NAME; the operator is the super user.
    runtime.block_on(async {
        let alice = connect(&spec.zk_hosts()).await;
        alice.auth("digest", b"alice:secret").await.expect("addauth");
        let only_alice = [zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("digest", &digest_id("alice", "secret")))];
        alice.set_acl("/secret", &zk::Acls::new(&only_alice), None).await.expect("back to alice only");
    });
    let (status, body) = http_get(&reader, "/registry/node?path=/secret");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("\"no auth\""), "{body}");
    let (status, body) = http_get(&reader, "/registry/node?path=/shared");
    assert_eq!((status, body.contains("for readers")), (200, true), "{body}");
    let (status, body) = http_get(&operator, "/registry/node?path=/secret");
    assert_eq!((status, body.contains("s3cret")), (200, true), "{body}");
    let (status, body) = http_get(&reader, "/registry/acl?path=/shared");
    assert_eq!(status, 200, "{body}");
    let acl: gridkeeper::api::registry::AclBody = serde_json::from_str(&body).expect("an ACL body");
    assert!(acl.acl.iter().any(|entry| entry.scheme == "gridkeeper" && entry.id == "zkread"), "{body}");
    let (status, body) = http_get(&reader, "/registry/acl?path=/secret");
    assert_eq!(status, 403, "{body}");
    let set = r#"{"path": "/secret", "acl": [{"perms": 1, "scheme": "world", "id": "anyone"}], "version": 2}"#;
    let (status, body) = support::http(&operator, spec.admin(1), "POST", "/registry/acl", set).expect("answer");
    assert_eq!(status, 200, "{body}");
    let (status, _) = http_get(&reader, "/registry/node?path=/secret");
    assert_eq!(status, 200, "the operator opened it to everyone");
}

#[test]
fn a_voter_of_an_older_build_holds_the_state_version_until_it_is_upgraded() {
    let spec = ClusterSpec::new("zk-mixed", 3);
    let certs = spec.certs();
    let older = [("GRIDKEEPER_STATE_VERSION_MAX", "1")];
    let mut nodes: Vec<NodeProcess> =
        spec.ids.iter().map(|&id| spec.start_with_env(id, &certs, &[], if id == 3 { &older } else { &[] })).collect();
    wait_for(WAIT, || leader_of(&spec, &spec.ids)).expect("a leader");
    let registered = |spec: &ClusterSpec| {
        support::admin_get(spec.admin(1), "/registry/children?path=/grid/nodes&consistency=local")
            .filter(|body| ["\"1\"", "\"2\"", "\"3\""].iter().all(|id| body.contains(id)))
    };
    wait_for(WAIT, || registered(&spec)).expect("every node registers");
    // Well past the leader's checks (every second): the version stays at 1.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(state_version(&spec, &spec.ids), Some(1), "one voter's build knows only version 1");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = connect(&spec.zk_hosts()).await;
        let read_only = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_read());
        assert_eq!(
            client.create("/ro", b"", &read_only).await.map(|_| ()),
            Err(zk::Error::Unimplemented),
            "no ACL is stored that an older voter could not apply"
        );
        assert!(client.check_stat("/zookeeper").await.expect("exists").is_none());
        client.create("/seq", b"", &open()).await.expect("create");
        let sequential = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
        for _ in 0..3 {
            client.create("/seq/n-", b"", &sequential).await.expect("sequential");
        }
        client.delete("/seq/n-0000000001", None).await.expect("delete");
        let (_, sequence) = client.create("/seq/n-", b"", &sequential).await.expect("sequential");
        assert_eq!(sequence.to_string(), "0000000004", "version 1 numbering (by cversion)");
    });
    // Entries the older voter could not decode are refused, not proposed: a zoned job, a pause.
    let operator = spec.access();
    let post = |path: &str, body: &str| support::http(&operator, spec.admin(1), "POST", path, body).expect("answer");
    let (status, body) = post("/grid/schedule", r#"{"name": "j", "task": "noop", "cron": "0 3 ? * *"}"#);
    assert_eq!(status, 200, "a UTC job goes as older builds write it (`?` stored as `*`): {body}");
    let (status, body) =
        post("/grid/schedule", r#"{"name": "z", "task": "noop", "cron": "0 3 * * *", "tz": "Europe/Berlin"}"#);
    assert_eq!(status, 501, "{body}");
    assert!(body.contains("unimplemented") && body.contains("upgrade every voter"), "{body}");
    let (status, body) = post("/grid/jobs/pause", r#"{"name": "j"}"#);
    assert_eq!(status, 501, "{body}");
    // The older voter is replaced by this build: the leader raises the version through the log.
    nodes[2].terminate();
    nodes[2] = spec.start(3);
    let latest = gridkeeper::registry::STATE_VERSION;
    wait_for(WAIT, || (state_version(&spec, &spec.ids) == Some(latest)).then_some(())).expect("latest everywhere");
    let (status, body) =
        support::http(&operator, spec.admin(1), "POST", "/grid/jobs/pause", r#"{"name": "j"}"#).expect("an answer");
    assert_eq!(status, 200, "the upgraded cluster pauses jobs: {body}");
    runtime.block_on(async {
        let client = connect(&spec.zk_hosts()).await;
        let read_only = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_read());
        client.create("/ro", b"", &read_only).await.expect("ACLs now");
        assert_eq!(client.set_data("/ro", b"x", None).await.map(|_| ()), Err(zk::Error::NoAuth));
        assert!(client.check_stat("/zookeeper/quota").await.expect("exists").is_some());
        let sequential = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
        client.delete("/seq/n-0000000002", None).await.expect("delete");
        let (_, sequence) = client.create("/seq/n-", b"", &sequential).await.expect("sequential");
        // The upgrade carried the numbering over (numbers only grow); from there a delete does not
        // move it, as in ZooKeeper.
        assert_eq!(sequence.to_string(), "0000000005", "version 2 numbering (by creates)");
    });
    // Every replica applied the same log: the same tree on each node, read locally.
    for path in ["/seq", "/ro", "/zookeeper"] {
        let bodies: std::collections::BTreeSet<String> = spec
            .ids
            .iter()
            .map(|&id| {
                wait_for(WAIT, || {
                    support::admin_get(spec.admin(id), &format!("/registry/children?path={path}&consistency=local"))
                })
                .expect("a listing")
            })
            .collect();
        assert_eq!(bodies.len(), 1, "{path}: {bodies:?}");
    }
}
