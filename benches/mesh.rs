//! Mesh benchmarks: frame encode/validate cost, and round-trip latency and one-way throughput
//! between two real meshes (QUIC + mutual TLS) on loopback. Prints figures; asserts nothing.
//!
//! Run: `cargo bench --bench mesh`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gridkeeper::credentials::Authority;
use gridkeeper::ids::NodeId;
use gridkeeper::limits::FRAME_BYTES_MAX;
use gridkeeper::mesh::{Mesh, MeshConfig, MeshSocket, SendError};
use gridkeeper::wire::frame::{FrameBuffer, FRAME_HEADER_BYTES};
use gridkeeper::wire::{decode_body, encode_frame, Message, Payload, TrafficClass};

const CODEC_ITERATIONS: u32 = 200_000;
const ROUND_TRIPS: usize = 20_000;
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(3);

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

fn main() {
    println!("== gridkeeper mesh benchmark ==");
    codec_cost("ping", &Message::Ping { seq: 1, sent_us: 2 });
    codec_cost("payload 256 B", &Message::Payload(Payload { topic: 1, body: vec![3; 256] }));
    codec_cost("payload 4 KiB", &Message::Payload(Payload { topic: 1, body: vec![3; 4096] }));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (one, two) = two_meshes().await;
        round_trips(&one, &two).await;
        throughput(&one, &two, 256).await;
        one.shutdown().await;
        two.shutdown().await;
    });
}
