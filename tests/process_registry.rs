//! The replicated registry with real processes: kill -9 of the leader, kill -9 of every node and a
//! full restart, ephemeral registrations of dead nodes, and sessions that only their openers can use.

mod support;

use gridkeeper::client::Client;
use gridkeeper::consensus::Consistency;
use gridkeeper::registry::CreateMode;
use std::collections::BTreeMap;
use support::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

async fn client(spec: &ClusterSpec, id: u64) -> Client {
    Client::connect_with_certs(spec.admin(id), &spec.certs()).await.expect("client connects")
}

/// Every node under `/data`, with its data, as read linearizably through `id`.
async fn dump(spec: &ClusterSpec, id: u64) -> BTreeMap<String, String> {
    let client = client(spec, id).await;
    let mut out = BTreeMap::new();
    for child in client.children("/data", Consistency::Linearizable).await.expect("list").children {
        let node = client.get(&format!("/data/{child}"), Consistency::Linearizable).await.expect("get");
        out.insert(child, node.data);
    }
    out
}

#[test]
fn the_leader_is_killed_and_every_acknowledged_write_survives() {
    let spec = ClusterSpec::new("leaderkill", 3);
    let mut nodes: Vec<_> = spec.ids.iter().map(|&id| spec.start(id)).collect();
    let leader = wait_for(WAIT_MAX, || leader_of(&spec, &[1, 2, 3])).expect("a leader is elected");
    let survivor = spec.ids.iter().copied().find(|&id| id != leader).expect("two others");
    let runtime = runtime();
    let acknowledged = runtime.block_on(async {
        let writer = client(&spec, survivor).await;
        writer.create("/data", "", CreateMode::Persistent, None).await.expect("parent");
        let mut acknowledged = BTreeMap::new();
        for index in 0..50 {
            let key = format!("k{index:03}");
            writer
                .create(&format!("/data/{key}"), &format!("v{index}"), CreateMode::Persistent, None)
                .await
                .expect("write before the kill");
            acknowledged.insert(key, format!("v{index}"));
        }
        acknowledged
    });
    nodes[(leader - 1) as usize].kill();
    let others: Vec<u64> = spec.ids.iter().copied().filter(|&id| id != leader).collect();
    let new_leader = wait_for(WAIT_MAX, || leader_of(&spec, &others)).expect("a new leader is elected");
    assert_ne!(new_leader, leader);
    let acknowledged = runtime.block_on(async {
        let writer = client(&spec, survivor).await;
        let mut acknowledged = acknowledged;
        for index in 50..100 {
            let key = format!("k{index:03}");
            // Writes may fail while the cluster fails over; only acknowledged ones must survive.
            if writer.create(&format!("/data/{key}"), &format!("v{index}"), CreateMode::Persistent, None).await.is_ok()
            {
                acknowledged.insert(key, format!("v{index}"));
            }
        }
        acknowledged
    });
    assert!(acknowledged.len() > 90, "the new leader serves writes: {} acknowledged", acknowledged.len());
    for &reader in &others {
        let stored = runtime.block_on(dump(&spec, reader));
        for (key, value) in &acknowledged {
            assert_eq!(stored.get(key), Some(value), "node {reader} lost acknowledged write {key}");
        }
    }
    // The old leader comes back as a follower with every write.
    nodes[(leader - 1) as usize] = spec.start(leader);
    let caught_up = wait_for(WAIT_MAX, || {
        let stored = runtime.block_on(async {
            let client = Client::connect_with_certs(spec.admin(leader), &spec.certs()).await.ok()?;
            client.sync().await.ok()?;
            Some(client.children("/data", Consistency::Local).await.ok()?.children.len())
        });
        (stored? >= acknowledged.len()).then_some(())
    });
    assert!(caught_up.is_some(), "the restarted node catches up");
}

#[test]
fn every_node_killed_and_restarted_keeps_identical_data() {
    let spec = ClusterSpec::new("fullrestart", 3);
    let mut nodes: Vec<_> = spec.ids.iter().map(|&id| spec.start(id)).collect();
    wait_for(WAIT_MAX, || leader_of(&spec, &[1, 2, 3])).expect("a leader is elected");
    let runtime = runtime();
    let before = runtime.block_on(async {
        let writer = client(&spec, 1).await;
        writer.create("/data", "", CreateMode::Persistent, None).await.expect("parent");
        for index in 0..40 {
            writer
                .create("/data/s-", &format!("v{index}"), CreateMode::PersistentSequential, None)
                .await
                .expect("write");
        }
        writer.set("/data/s-0000000007", "changed", Some(0)).await.expect("set");
        writer.delete("/data/s-0000000009", None).await.expect("delete");
        dump(&spec, 2).await
    });
    assert_eq!(before.len(), 39);
    for node in &mut nodes {
        node.kill();
    }
    let _restarted: Vec<_> = spec.ids.iter().map(|&id| spec.start(id)).collect();
    wait_for(WAIT_MAX, || leader_of(&spec, &[1, 2, 3])).expect("a leader is elected after the restart");
    for id in [1, 2, 3] {
        let after = runtime.block_on(dump(&spec, id));
        assert_eq!(after, before, "node {id} differs after a full restart");
    }
}

#[test]
fn a_killed_nodes_registration_disappears() {
    let spec = ClusterSpec::new("ephemeral", 3);
    let mut nodes: Vec<_> = spec.ids.iter().map(|&id| spec.start(id)).collect();
    let runtime = runtime();
    let registered = |expected: &[&str]| {
        runtime.block_on(async {
            let client = Client::connect(spec.admin(1), spec.access()).await.ok()?;
            let listing = client.children("/grid/nodes", Consistency::Linearizable).await.ok()?;
            (listing.children == expected).then_some(())
        })
    };
    wait_for(WAIT_MAX, || registered(&["1", "2", "3"])).expect("every node registers itself");
    nodes[2].kill();
    wait_for(WAIT_MAX, || registered(&["1", "2"])).expect("the dead node's ephemeral registration goes");
    nodes[2] = spec.start(3);
    wait_for(WAIT_MAX, || registered(&["1", "2", "3"])).expect("it registers again after restart");
    let data = runtime.block_on(async {
        let client = Client::connect(spec.admin(2), spec.access()).await.expect("client");
        client.get("/grid/nodes/3", Consistency::Linearizable).await.expect("get").data
    });
    let record: gridkeeper::service::registration::NodeRecord = serde_json::from_str(&data).expect("node record JSON");
    assert_eq!(record.addr, format!("127.0.0.1:{}", spec.mesh_ports[2]));
}

#[test]
fn the_lock_passes_on_when_the_holders_node_is_killed() {
    let spec = ClusterSpec::new("lockkill", 3);
    let mut nodes: Vec<_> = spec.ids.iter().map(|&id| spec.start(id)).collect();
    wait_for(WAIT_MAX, || leader_of(&spec, &[1, 2, 3])).expect("a leader is elected");
    let runtime = runtime();
    // The holder talks to node 3 only; when node 3 dies, its keepalives stop reaching the cluster.
    let (holder_session, guard) = runtime.block_on(async {
        let holder = client(&spec, 3).await;
        let session = holder.open_session(1_000).await.expect("session");
        let guard =
            gridkeeper::recipes::lock::acquire(&holder, &session, "/locks/job").await.expect("holder takes the lock");
        (session, guard)
    });
    let waiter = runtime.spawn({
        let admin = spec.admin(1);
        let certs = spec.certs();
        async move {
            let waiter = Client::connect_with_certs(admin, &certs).await.expect("client");
            let session = waiter.open_session(5_000).await.expect("session");
            let guard = gridkeeper::recipes::lock::acquire(&waiter, &session, "/locks/job")
                .await
                .expect("waiter takes the lock");
            (guard.path().to_string(), session)
        }
    });
    // Once the waiter's contender node is queued behind the holder's, the lock must still be held.
    let queued = wait_for(WAIT_MAX, || {
        runtime.block_on(async {
            let observer = Client::connect(spec.admin(2), spec.access()).await.ok()?;
            let listing = observer.children("/locks/job", Consistency::Linearizable).await.ok()?;
            (listing.children.len() == 2).then_some(())
        })
    });
    assert!(queued.is_some(), "the waiter queues");
    assert!(!waiter.is_finished(), "the lock is held");
    nodes[2].kill();
    let (path, _session) = runtime.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(20), waiter).await.expect("handover in time").expect("task")
    });
    assert!(path.ends_with("lock-0000000001"), "the next waiter holds the lock: {path}");
    assert_ne!(path, guard.path());
    drop(holder_session);
}

#[test]
fn a_client_with_every_address_fails_over_when_its_node_dies() {
    let spec = ClusterSpec::new("failover-client", 3);
    let mut nodes: Vec<_> = spec.ids.iter().map(|&id| spec.start(id)).collect();
    wait_for(WAIT_MAX, || leader_of(&spec, &[1, 2, 3])).expect("a leader is elected");
    let runtime = runtime();
    let admins: Vec<_> = spec.ids.iter().map(|&id| spec.admin(id)).collect();
    let token = gridkeeper::credentials::load_admin_token(&spec.certs()).expect("token");
    let client = runtime
        .block_on(Client::connect_any(
            &admins,
            gridkeeper::client::Access::ca_only(&spec.certs()).expect("ca").with_token(token),
        ))
        .expect("connects");
    let first = client.current_node();
    runtime.block_on(client.create("/failover", "before", CreateMode::Persistent, None)).expect("write");
    let victim = spec.ids.iter().position(|&id| spec.admin(id) == first).expect("a member");
    nodes[victim].kill();
    let read = wait_for(WAIT_MAX, || runtime.block_on(client.get("/failover", Consistency::Linearizable)).ok());
    assert_eq!(read.expect("reads fail over to a live node").data, "before");
    assert_ne!(client.current_node(), first, "the client moved to another node");
    let write = wait_for(WAIT_MAX, || runtime.block_on(client.set("/failover", "after", None)).ok());
    assert!(write.is_some(), "writes work through the new node");
}

/// POSTs `body` as JSON to a node's admin API with `access`; returns the status and the body.
fn post(admin: std::net::SocketAddr, access: &gridkeeper::client::Access, path: &str, body: &str) -> (u16, String) {
    support::http(access, admin, "POST", path, body).unwrap_or_default()
}

/// Finding 4 of the hostile-input review: a session belongs to its opener. Without its secret, even a
/// caller holding the admin token can neither keep a session alive (another client's, or a node's own
/// `/grid/nodes` registration), nor close it, nor create ephemerals under it, at the leader or at a
/// follower; the owner still can, and no read shows the secret.
#[test]
fn only_a_sessions_opener_can_keep_it_alive_or_use_it() {
    let spec = ClusterSpec::new("session-owner", 3);
    let _nodes: Vec<_> = spec.ids.iter().map(|&id| spec.start(id)).collect();
    let leader = wait_for(WAIT_MAX, || leader_of(&spec, &[1, 2, 3])).expect("a leader is elected");
    let follower = spec.ids.iter().copied().find(|&id| id != leader).expect("two others");
    // The legacy admin token, an operator credential, over HTTPS.
    let token = gridkeeper::client::Access::ca_only(&spec.certs())
        .expect("ca")
        .with_token(gridkeeper::credentials::load_admin_token(&spec.certs()).expect("token"));
    let runtime = runtime();
    let owner = runtime.block_on(client(&spec, follower));
    let session = runtime.block_on(owner.open_session(5_000)).expect("session");
    runtime.block_on(owner.create("/owned", "", CreateMode::Ephemeral, Some(&session))).expect("ephemeral");
    let id = session.id();
    assert!(id < 1 << 53, "ids stay exact in JavaScript: {id}");
    let secret = session.secret().to_hex();
    let wrong = if secret.starts_with('0') { "1".repeat(32) } else { "0".repeat(32) };
    let registration = wait_for(WAIT_MAX, || {
        let stat = runtime.block_on(owner.exists(&format!("/grid/nodes/{leader}"), Consistency::Linearizable)).ok()?;
        stat.map(|stat| stat.ephemeral_owner)
    })
    .expect("the leader is registered");
    for admin in [spec.admin(leader), spec.admin(follower)] {
        for target in [id, registration] {
            for credential in [String::new(), format!(r#","secret":"{wrong}""#)] {
                let body = format!(r#"{{"session":{target}{credential}}}"#);
                for call in ["/registry/session/keepalive", "/registry/session/close"] {
                    let (status, answer) = post(admin, &token, call, &body);
                    assert_eq!(status, 403, "{call} {body} without the secret is refused: {answer}");
                    assert!(answer.contains(r#""error":"no auth""#), "{answer}");
                }
                let create = format!(r#"{{"path":"/stolen","mode":"ephemeral","session":{target}{credential}}}"#);
                let (status, answer) = post(admin, &token, "/registry/create", &create);
                assert_eq!(status, 403, "an ephemeral under another's session is refused: {answer}");
            }
        }
    }
    // The owner's session and the registration survived every attempt.
    let stat = runtime.block_on(owner.exists("/owned", Consistency::Linearizable)).expect("stat");
    assert_eq!(stat.map(|stat| stat.ephemeral_owner), Some(id));
    assert!(!admin_get(spec.admin(leader), "/registry/stat?path=/owned").expect("stat").contains(&secret));
    // The opener, with its secret, keeps it alive and closes it, through any node.
    let with_secret = format!(r#"{{"session":{id},"secret":"{secret}"}}"#);
    let (status, answer) = post(spec.admin(leader), &token, "/registry/session/keepalive", &with_secret);
    assert_eq!((status, answer.contains(r#""alive":true"#)), (200, true), "{answer}");
    assert!(!answer.contains(&secret), "only the open answers with the secret");
    let (opened_status, opened) = post(spec.admin(leader), &token, "/registry/session/open", r#"{"timeout_ms":5000}"#);
    assert_eq!(opened_status, 200, "{opened}");
    let opened: serde_json::Value = serde_json::from_str(&opened).expect("JSON");
    assert_eq!(opened["secret"].as_str().map(str::len), Some(32), "the open returns the secret: {opened}");
    runtime.block_on(session.close()).expect("the owner closes its session");
    let gone = runtime.block_on(owner.exists("/owned", Consistency::Linearizable)).expect("stat");
    assert!(gone.is_none(), "closing deleted the ephemeral");
}
