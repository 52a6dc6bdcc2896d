//! Mesh benchmarks: frame encode/validate cost, round-trip latency and one-way throughput between
//! two real meshes (QUIC + mutual TLS) on loopback, and how long a restarted member takes to reconnect
//! to a node whose mesh port is flooded with half-open handshakes from 127.0.0.2. Prints figures;
//! asserts nothing.
//!
//! Run: `cargo bench --bench mesh` (`-- --quick` runs only the reconnect phase).

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

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    println!("== gridkeeper mesh benchmark ==");
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
}
