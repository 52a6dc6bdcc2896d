//! Mesh benchmarks: frame encode/validate cost, round-trip latency and one-way throughput between
//! two real meshes (QUIC + mutual TLS) on loopback, and how long a restarted member takes to reconnect
//! to a node whose mesh port is flooded with half-open handshakes from 127.0.0.2. Prints figures;
//! asserts nothing.
//!
//! Also the ceiling of request/answer calls over three meshes set up as `LocalCluster` sets up its
//! nodes (each on its own 2-thread runtime, bulk payloads handled in the stream's reading task, every
//! request answered at once), with 64 callers on a runtime of their own: what the transport alone
//! allows the actor benchmark's 1,000-actor row on this machine.
//!
//! Run: `cargo bench --bench mesh` (`-- --quick` runs only the reconnect phase; `-- --only ceiling`
//! only the ceiling).

#[path = "../tests/support/flood.rs"]
mod flood;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gridkeeper::credentials::Authority;
use gridkeeper::ids::NodeId;
use gridkeeper::limits::FRAME_BYTES_MAX;
use gridkeeper::mesh::{tls, Mesh, MeshConfig, MeshError, MeshSocket, SendError};
use gridkeeper::wire::frame::{FrameBuffer, FRAME_HEADER_BYTES};
use gridkeeper::wire::{decode_body, encode_frame, Message, Payload, TrafficClass};

const CODEC_ITERATIONS: u32 = 200_000;
const ROUND_TRIPS: usize = 20_000;
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(3);
/// Restarts measured per phase of the reconnect benchmark.
const RECONNECTS: usize = 3;
/// Longest a reconnect is waited for before it is reported as not reached.
const RECONNECT_WAIT: Duration = Duration::from_secs(20);

fn codec_cost(label: &str, message: &Message) {
    let started = Instant::now();
    let mut frame = Vec::new();
    for _ in 0..CODEC_ITERATIONS {
        frame = encode_frame(std::hint::black_box(message), FRAME_BYTES_MAX).expect("fits");
    }
    let encode_ns = started.elapsed().as_nanos() as f64 / f64::from(CODEC_ITERATIONS);
    let mut body = FrameBuffer::new();
    body.extend_from_slice(&frame[FRAME_HEADER_BYTES..]);
    let started = Instant::now();
    for _ in 0..CODEC_ITERATIONS {
        std::hint::black_box(decode_body(std::hint::black_box(&body)).expect("valid"));
    }
    let decode_ns = started.elapsed().as_nanos() as f64 / f64::from(CODEC_ITERATIONS);
    println!(
        "codec {label:<16} frame {:>5} B  encode {encode_ns:>7.0} ns  validate+decode {decode_ns:>7.0} ns",
        frame.len()
    );
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() as f64 * fraction) as usize).min(sorted.len() - 1)]
}

async fn two_meshes() -> (Mesh, Mesh) {
    let authority = Authority::generate().expect("CA");
    let ports: Vec<u16> = (0..2)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port())
        .collect();
    let members: BTreeMap<NodeId, SocketAddr> = [(NodeId(1), ports[0]), (NodeId(2), ports[1])]
        .into_iter()
        .map(|(id, port)| (id, ([127, 0, 0, 1], port).into()))
        .collect();
    let start = |id: NodeId| {
        let credentials = authority.node_credentials(id).expect("creds");
        Mesh::start(MeshConfig::new(id, members.clone()), &credentials, MeshSocket::Udp(members[&id])).expect("mesh")
    };
    let (one, two) = (start(NodeId(1)), start(NodeId(2)));
    let mut events = one.subscribe();
    while !one.is_alive(NodeId(2)) {
        let _ = tokio::time::timeout(Duration::from_secs(5), events.recv()).await.expect("mesh forms within 5 s");
    }
    (one, two)
}

async fn round_trips(one: &Mesh, two: &Mesh) {
    let mut at_two = two.take_inbound(TrafficClass::Consensus).expect("inbound");
    let echo = two.clone();
    let echo_task = tokio::spawn(async move {
        while let Some(inbound) = at_two.recv().await {
            let _ = echo.send(inbound.from, TrafficClass::Consensus, &Message::Payload(inbound.payload));
        }
    });
    let mut at_one = one.take_inbound(TrafficClass::Consensus).expect("inbound");
    let payload = Message::Payload(Payload { topic: 1, body: vec![7; 64] });
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let sent = Instant::now();
        one.send(NodeId(2), TrafficClass::Consensus, &payload).expect("queue has room");
        at_one.recv().await.expect("echo");
        samples.push(sent.elapsed());
    }
    echo_task.abort();
    samples.sort_unstable();
    println!(
        "mesh round trip (64 B payload, {ROUND_TRIPS} sequential): p50 {:>6.1} µs  p99 {:>6.1} µs  max {:>7.1} µs",
        percentile(&samples, 0.50).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        samples.last().expect("samples").as_secs_f64() * 1e6,
    );
}

async fn throughput(one: &Mesh, two: &Mesh, body_bytes: usize) {
    let mut at_two = two.take_inbound(TrafficClass::Bulk).expect("inbound");
    let counter = tokio::spawn(async move {
        let mut received = 0u64;
        let deadline = tokio::time::Instant::now() + THROUGHPUT_WINDOW;
        while let Ok(Some(_)) = tokio::time::timeout_at(deadline, at_two.recv()).await {
            received += 1;
        }
        received
    });
    let payload = Message::Payload(Payload { topic: 2, body: vec![1; body_bytes] });
    let started = Instant::now();
    let (mut sent, mut rejected) = (0u64, 0u64);
    while started.elapsed() < THROUGHPUT_WINDOW {
        match one.send(NodeId(2), TrafficClass::Bulk, &payload) {
            Ok(()) => sent += 1,
            Err(SendError::Overloaded { .. }) => {
                rejected += 1;
                tokio::task::yield_now().await;
            }
            Err(error) => panic!("send failed: {error}"),
        }
    }
    let received = counter.await.expect("counter");
    let seconds = THROUGHPUT_WINDOW.as_secs_f64();
    println!(
        "mesh one-way throughput ({body_bytes} B payload): {:>9.0} msg/s  {:>7.1} MB/s  (sent {sent}, received {received}, queue-full rejections {rejected})",
        received as f64 / seconds,
        received as f64 * body_bytes as f64 / seconds / 1e6,
    );
}

/// Restarts node 1 `RECONNECTS` times and returns how long each took until node 2 saw it up, with or
/// without a flood of half-open handshakes at node 2's mesh port from 127.0.0.2.
async fn reconnect_delays(flooded: bool) -> Vec<Option<Duration>> {
    let authority = Authority::generate().expect("CA");
    let members: BTreeMap<NodeId, SocketAddr> = [1, 2]
        .into_iter()
        .map(|id| {
            let port = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
            (NodeId(id), SocketAddr::from(([127, 0, 0, 1], port)))
        })
        .collect();
    let start = |id: u64, incarnation: u64| {
        let credentials = authority.node_credentials(NodeId(id)).expect("creds");
        let mut config = MeshConfig::new(NodeId(id), members.clone());
        config.incarnation = incarnation;
        Mesh::start(config, &credentials, MeshSocket::Udp(members[&NodeId(id)]))
    };
    // A restarted member rebinds its old port once quinn's driver of the previous endpoint let it go.
    let start = |id: u64, incarnation: u64| async move {
        for _ in 0..200 {
            match start(id, incarnation) {
                Err(MeshError::Bind { .. }) => tokio::time::sleep(Duration::from_millis(10)).await,
                started => return started.expect("mesh"),
            }
        }
        panic!("node {id} could not bind its port again")
    };
    let two = start(2, 1).await;
    let flood = flooded.then(|| {
        let stranger = Authority::generate().expect("CA").node_credentials(NodeId(1)).expect("creds");
        let config = flood::FloodConfig {
            source: [127, 0, 0, 2].into(),
            target: members[&NodeId(2)],
            server_name: "node-2.gridkeeper".into(),
            burst: 5,
            tick: Duration::from_millis(5),
            connections_max: 100_000,
            duration_max: Duration::from_secs(120),
            linger: Duration::from_secs(3),
        };
        flood::Flood::start(config, tls::client_config(&stranger).expect("client")).expect("flood binds 127.0.0.2")
    });
    if let Some(flood) = &flood {
        flood.wait_started(1_500).await;
    }
    let mut delays = Vec::new();
    for incarnation in 1..=RECONNECTS as u64 {
        let mut events = two.subscribe();
        let started = Instant::now();
        let one = start(1, incarnation).await;
        let reached = tokio::time::timeout(RECONNECT_WAIT, async {
            while !two.is_alive(NodeId(1)) {
                let _ = events.recv().await;
            }
        })
        .await;
        delays.push(reached.ok().map(|()| started.elapsed()));
        one.shutdown().await;
        drop(one);
        while two.is_alive(NodeId(1)) {
            let _ = tokio::time::timeout(Duration::from_secs(2), events.recv()).await;
        }
    }
    let handshakes = match flood {
        Some(flood) => flood.stop().await,
        None => 0,
    };
    two.shutdown().await;
    if flooded {
        println!("  (flood: {handshakes} half-open handshakes from 127.0.0.2, about 1,000 a second)");
    }
    delays
}

async fn reconnects() {
    for flooded in [false, true] {
        let delays = reconnect_delays(flooded).await;
        let shown: Vec<String> = delays
            .iter()
            .map(|delay| {
                delay.map_or_else(
                    || format!("not within {RECONNECT_WAIT:?}"),
                    |d| format!("{:.0} ms", d.as_secs_f64() * 1e3),
                )
            })
            .collect();
        let label = if flooded { "under a half-open handshake flood" } else { "no flood" };
        println!("member reconnect delay ({label}): {}", shown.join(", "));
    }
}

const CEILING_CALLERS: usize = 64;
const CEILING_WARM_UP: Duration = Duration::from_secs(1);
const CEILING_WINDOW: Duration = Duration::from_secs(5);
const TOPIC_REQUEST: u32 = 10;
const TOPIC_ANSWER: u32 = 11;

type Waiting = std::sync::Mutex<BTreeMap<u64, tokio::sync::oneshot::Sender<()>>>;

/// One node of the ceiling: its runtime, its mesh, the requests it awaits answers to, and its handler
/// (kept: the mesh holds it weakly).
struct CeilingNode {
    runtime: tokio::runtime::Runtime,
    mesh: Mesh,
    waiting: std::sync::Arc<Waiting>,
    _handler: gridkeeper::mesh::InboundHandler,
}

fn ceiling_nodes() -> Vec<CeilingNode> {
    let authority = Authority::generate().expect("CA");
    let members: BTreeMap<NodeId, SocketAddr> = (1..=3)
        .map(|id| {
            let port = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
            (NodeId(id), SocketAddr::from(([127, 0, 0, 1], port)))
        })
        .collect();
    members
        .keys()
        .map(|&id| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name(format!("ceiling-node-{id}"))
                .enable_all()
                .build()
                .expect("runtime");
            let credentials = authority.node_credentials(id).expect("creds");
            let mut config = MeshConfig::new(id, members.clone());
            config.bulk_inline = true;
            let mesh = runtime
                .block_on(async { Mesh::start(config, &credentials, MeshSocket::Udp(members[&id])).expect("mesh") });
            let waiting: std::sync::Arc<Waiting> = std::sync::Arc::default();
            let (answering, answered) = (mesh.clone(), waiting.clone());
            // Answers a request at once with its id; completes the caller of an answer.
            let handler: gridkeeper::mesh::InboundHandler = std::sync::Arc::new(move |inbound| {
                let payload = inbound.payload;
                if payload.topic == TOPIC_REQUEST {
                    let answer = Payload { topic: TOPIC_ANSWER, body: payload.body };
                    let _ = answering.send(inbound.from, TrafficClass::Bulk, &Message::Payload(answer));
                } else if let Ok(id) = <[u8; 8]>::try_from(&payload.body[..8.min(payload.body.len())]) {
                    let waiter = answered.lock().expect("waiting").remove(&u64::from_le_bytes(id));
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(());
                    }
                }
            });
            mesh.handle_bulk(&handler).expect("bulk handler");
            CeilingNode { runtime, mesh, waiting, _handler: handler }
        })
        .collect()
}

/// Closed-loop request/answer calls from 64 callers (on a runtime of their own, spread over the three
/// nodes), each to one of the two other nodes in turn; prints calls/s and latency.
fn ceiling() {
    let nodes = std::sync::Arc::new(ceiling_nodes());
    let callers = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    callers.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !nodes.iter().all(|node| {
            nodes.iter().all(|peer| peer.mesh.node() == node.mesh.node() || node.mesh.is_alive(peer.mesh.node()))
        }) {
            assert!(Instant::now() < deadline, "the ceiling's mesh forms within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let next_id = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1));
    let started = Instant::now();
    let measure_from = started + CEILING_WARM_UP;
    let end = measure_from + CEILING_WINDOW;
    let tasks: Vec<_> = (0..CEILING_CALLERS)
        .map(|caller| {
            let (nodes, next_id) = (nodes.clone(), next_id.clone());
            callers.spawn(async move {
                let home = &nodes[caller % 3];
                let mut samples = Vec::new();
                let mut turn = caller;
                loop {
                    let now = Instant::now();
                    if now >= end {
                        return samples;
                    }
                    turn += 1;
                    let peer = nodes[(caller % 3 + 1 + turn % 2) % 3].mesh.node();
                    let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let (sender, receiver) = tokio::sync::oneshot::channel();
                    home.waiting.lock().expect("waiting").insert(id, sender);
                    let mut body = id.to_le_bytes().to_vec();
                    body.extend_from_slice(&[0; 56]);
                    let request = Message::Payload(Payload { topic: TOPIC_REQUEST, body });
                    if home.mesh.send(peer, TrafficClass::Bulk, &request).is_err() {
                        home.waiting.lock().expect("waiting").remove(&id);
                        tokio::task::yield_now().await;
                        continue;
                    }
                    tokio::time::timeout(Duration::from_secs(5), receiver)
                        .await
                        .expect("an answer within 5 s")
                        .expect("answered");
                    if now >= measure_from {
                        samples.push(now.elapsed());
                    }
                }
            })
        })
        .collect();
    let mut samples: Vec<Duration> = Vec::new();
    for task in tasks {
        samples.extend(callers.block_on(task).expect("caller"));
    }
    samples.sort_unstable();
    println!(
        "mesh request/answer ceiling (3 nodes of 2 threads, {CEILING_CALLERS} callers, 64 B, every call remote): {:>8.0} calls/s  p50 {:>5.0} µs  p99 {:>6.0} µs",
        samples.len() as f64 / CEILING_WINDOW.as_secs_f64(),
        percentile(&samples, 0.50).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
    );
    drop(callers);
    if let Ok(nodes) = std::sync::Arc::try_unwrap(nodes) {
        for node in nodes {
            let CeilingNode { runtime, mesh, .. } = node;
            runtime.block_on(mesh.shutdown());
        }
    }
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let only = std::env::args().skip_while(|arg| arg != "--only").nth(1);
    println!("== gridkeeper mesh benchmark ==");
    if only.as_deref() == Some("ceiling") {
        ceiling();
        return;
    }
    if !quick {
        codec_cost("ping", &Message::Ping { seq: 1, sent_us: 2 });
        codec_cost("payload 256 B", &Message::Payload(Payload { topic: 1, body: vec![3; 256] }));
        codec_cost("payload 4 KiB", &Message::Payload(Payload { topic: 1, body: vec![3; 4096] }));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        if !quick {
            let (one, two) = two_meshes().await;
            round_trips(&one, &two).await;
            throughput(&one, &two, 256).await;
            one.shutdown().await;
            two.shutdown().await;
        }
        reconnects().await;
    });
    if !quick {
        ceiling();
    }
}
