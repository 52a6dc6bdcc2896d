//! Hostile ZooKeeper clients, from 127.0.0.2, against a real node: garbage, truncated frames,
//! oversized lengths, handshakes never finished, 10,000 idle connections, and more connections than
//! one address may hold. The node stays healthy and a client from 127.0.0.1 is served throughout;
//! every refusal is counted by reason.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{admin_get, leader_of, metric_sum, wait_for, ClusterSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use zookeeper_client as zk;

const WAIT: Duration = Duration::from_secs(60);
const IDLE_CONNECTIONS: usize = 10_000;
const PER_CLIENT_MAX: usize = 12_000;
/// The per-address bound the node is restarted with for the flood: small, so that the flood is over
/// long before the first of its connections could reach its handshake time (on a slow machine,
/// 12,000 of them took long enough that time-outs freed places for the ones past the bound).
const FLOOD_PER_CLIENT_MAX: usize = 50;

async fn from_hostile(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from(([127, 0, 0, 2], 0)))?;
    socket.connect(addr).await
}

/// Sends `bytes` from 127.0.0.2 and reads until the node closes the connection; answers what came.
async fn send_and_read(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = from_hostile(addr).await.expect("connect");
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await.expect("the node closes it");
    answer
}

fn refusals(metrics: &str, reason: &str) -> f64 {
    metric_sum(metrics, &format!("gridkeeper_zk_refusals_total{{reason=\"{reason}\"}}"))
}

/// Whether the ZooKeeper port answers `ruok` with `imok` (from 127.0.0.1).
async fn answers_ruok(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else { return false };
    if stream.write_all(b"ruok").await.is_err() {
        return false;
    }
    let mut answer = String::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer)).await;
    matches!(read, Ok(Ok(_))) && answer == "imok"
}

/// A well-behaved client's round trip: create, read back, delete.
async fn served(hosts: &str, name: &str) {
    let client = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(hosts)
        .await
        .expect("a well-behaved client connects");
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let path = format!("/{name}");
    client.create(&path, b"ok", &open).await.expect("create");
    assert_eq!(client.get_data(&path).await.expect("get").0, b"ok");
    client.delete(&path, None).await.expect("delete");
}

#[test]
fn hostile_clients_are_refused_and_others_are_served() {
    let limit = rlimit::increase_nofile_limit(u64::MAX).expect("the open-file limit is readable");
    assert!(
        limit >= IDLE_CONNECTIONS as u64 + 1_000,
        "this test holds {IDLE_CONNECTIONS} connections and needs an open-file limit above {}; the hard limit is {limit}",
        IDLE_CONNECTIONS + 1_000
    );
    let spec = ClusterSpec::new("zk-hostile", 1);
    let per_client = PER_CLIENT_MAX.to_string();
    let mut node = spec.start_with_args(1, &spec.certs(), &["--zk-connections-per-client-max", &per_client]);
    wait_for(WAIT, || leader_of(&spec, &spec.ids)).expect("a leader");
    let zk_addr = spec.zk(1);
    let hosts = zk_addr.to_string();
    let metrics = || admin_get(spec.admin(1), "/metrics").unwrap_or_default();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        served(&hosts, "before").await;

        // Garbage that is neither a four-letter word nor a sane length.
        let answer = send_and_read(zk_addr, b"\xff\xff\xff\xffgarbage").await;
        assert!(answer.is_empty(), "a negative length gets no answer");
        // An oversized length: refused as soon as the header is in, before any body arrives.
        let answer = send_and_read(zk_addr, &(64u32 << 20).to_be_bytes()).await;
        assert!(answer.is_empty(), "an oversized frame gets no answer");
        // A frame that is no connect request.
        let mut junk = 12u32.to_be_bytes().to_vec();
        junk.extend_from_slice(&[7; 12]);
        assert!(send_and_read(zk_addr, &junk).await.is_empty(), "a bad handshake gets no answer");
        // A truncated frame, then the end of the stream.
        let mut truncated = 44u32.to_be_bytes().to_vec();
        truncated.extend_from_slice(&[0; 10]);
        assert!(send_and_read(zk_addr, &truncated).await.is_empty());
        // Garbage after a good handshake: answered or closed, and the node carries on.
        let mut connect = gridkeeper::zk::proto::ConnectRequest { timeout_ms: 10_000, ..Default::default() }.encode();
        connect.extend_from_slice(&16u32.to_be_bytes());
        connect.extend_from_slice(&[0xee; 16]);
        let answer = send_and_read(zk_addr, &connect).await;
        assert!(!answer.is_empty(), "the handshake is answered before the garbage");
    });

    // 10,000 connections that never finish a handshake, held at once.
    let idle = runtime.block_on(async {
        let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
        for _ in 0..IDLE_CONNECTIONS {
            idle.push(from_hostile(zk_addr).await.expect("an idle connection"));
        }
        idle
    });
    // Each is accepted and held until its handshake time runs out (a busy machine may see the
    // first time out before the last is accepted, so the count of accepted ones is what is checked).
    let held = wait_for(WAIT, || {
        let accepted = metric_sum(&metrics(), "gridkeeper_zk_connections_accepted_total ");
        (accepted >= IDLE_CONNECTIONS as f64).then_some(accepted)
    });
    let text = metrics();
    let zk_lines: Vec<&str> = text.lines().filter(|line| line.contains("gridkeeper_zk")).collect();
    assert!(held.is_some(), "the node accepts every idle connection: {zk_lines:#?}");
    // Meanwhile a well-behaved client, and a four-letter word, are served.
    runtime.block_on(async {
        served(&hosts, "during").await;
        let mut ruok = TcpStream::connect(zk_addr).await.expect("connect");
        ruok.write_all(b"ruok").await.expect("send");
        let mut answer = String::new();
        ruok.read_to_string(&mut answer).await.expect("read");
        assert_eq!(answer, "imok");
    });
    // The idle connections are closed when their handshake time runs out.
    let closed =
        wait_for(WAIT, || (refusals(&metrics(), "handshake_timeout") >= IDLE_CONNECTIONS as f64).then_some(()));
    assert!(closed.is_some(), "every idle handshake is held until its time runs out, then closed");
    drop(idle);

    let text = metrics();
    for reason in ["frame", "handshake"] {
        assert!(refusals(&text, reason) >= 1.0, "refusals for {reason} are counted:\n{text}");
    }

    // One address past its bound: the rest are closed at once and counted. The node restarts on its
    // data with a small bound for this.
    node.kill();
    let flood_max = FLOOD_PER_CLIENT_MAX.to_string();
    let _node = spec.start_with_args(1, &spec.certs(), &["--zk-connections-per-client-max", &flood_max]);
    wait_for(WAIT, || leader_of(&spec, &spec.ids)).expect("a leader after the restart");
    wait_for(WAIT, || runtime.block_on(answers_ruok(zk_addr)).then_some(())).expect("the ZooKeeper port is up again");
    let held = runtime.block_on(async {
        let mut held = Vec::new();
        for _ in 0..FLOOD_PER_CLIENT_MAX + 100 {
            held.push(from_hostile(zk_addr).await.expect("connect"));
        }
        held
    });
    let counted = wait_for(WAIT, || (refusals(&metrics(), "per_client") >= 100.0).then_some(()));
    assert!(counted.is_some(), "connections past the per-address bound are refused and counted");
    runtime.block_on(served(&hosts, "after"));
    drop(held);

    assert!(admin_get(spec.admin(1), "/health").is_some(), "the node is healthy");
}
