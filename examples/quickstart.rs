//! The main job: a local three-node cluster doing real work over the QUIC mesh, with a node killed
//! halfway.
//!
//! Node 1 hands out work items (checksum a 4 KiB block) to nodes 2 and 3 over mutual-TLS QUIC. Halfway
//! through, node 3 is killed without a word (its runtime is torn down, like kill -9). Node 1's failure
//! detector notices the silence, and the items node 3 held are handed to node 2. At the end every item
//! must have exactly one accepted result.
//!
//! Run: `cargo run --release --example quickstart`. (The task grid will replace this hand-rolled
//! dispatch with task actors; the mesh, detector and failover path shown here are the real ones.)

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gridkeeper::credentials::Authority;
use gridkeeper::ids::NodeId;
use gridkeeper::mesh::{Mesh, MeshConfig, MeshSocket, PeerEvent};
use gridkeeper::wire::{Message, Payload, TrafficClass};

const ITEMS: u64 = 3_000;
const BLOCK_BYTES: usize = 4096;
const TOPIC_WORK: u32 = 1;
const TOPIC_RESULT: u32 = 2;
/// Items in flight per worker: enough to keep both busy, few enough to show what a failure costs.
const IN_FLIGHT_PER_WORKER: usize = 64;

const DRIVER: NodeId = NodeId(1);
const WORKERS: [NodeId; 2] = [NodeId(2), NodeId(3)];

fn checksum(block: &[u8]) -> u64 {
    block.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3))
}

fn block_for(item: u64) -> Vec<u8> {
    (0..BLOCK_BYTES).map(|index| (item as usize).wrapping_mul(31).wrapping_add(index) as u8).collect()
}

fn start_node(
    id: NodeId,
    members: &BTreeMap<NodeId, SocketAddr>,
    authority: &Authority,
) -> Result<(tokio::runtime::Runtime, Mesh)> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let credentials = authority.node_credentials(id)?;
    let mesh = runtime.block_on(async {
        Mesh::start(MeshConfig::new(id, members.clone()), &credentials, MeshSocket::Udp(members[&id]))
    })?;
    Ok((runtime, mesh))
}

/// A worker: checksums every block it receives and sends the result back.
fn serve(runtime: &tokio::runtime::Runtime, mesh: Mesh) -> Result<()> {
    let mut work = mesh.take_inbound(TrafficClass::Bulk).context("inbound taken twice")?;
    runtime.spawn(async move {
        while let Some(inbound) = work.recv().await {
            let (Some(item), Some(block)) = (inbound.payload.body.get(..8), inbound.payload.body.get(8..)) else {
                continue;
            };
            let mut body = item.to_vec();
            body.extend_from_slice(&checksum(block).to_le_bytes());
            let result = Message::Payload(Payload { topic: TOPIC_RESULT, body });
            while mesh.send(inbound.from, TrafficClass::Bulk, &result).is_err() {
                tokio::task::yield_now().await;
            }
        }
    });
    Ok(())
}

fn progress(done: u64, note: &str) {
    let width = 40;
    let filled = (done * width / ITEMS) as usize;
    print!("\r[{}{}] {done:>5}/{ITEMS} {note:<40}", "#".repeat(filled), ".".repeat(width as usize - filled));
    let _ = std::io::stdout().flush();
}

struct Ledger {
    pending: Vec<u64>,
    in_flight: BTreeMap<NodeId, BTreeSet<u64>>,
    done: BTreeMap<u64, NodeId>,
    duplicates: u64,
    wrong: u64,
    reassigned: u64,
}

fn main() -> Result<()> {
    println!("gridkeeper quickstart: 3 nodes on 127.0.0.1, mutual-TLS QUIC mesh, {ITEMS} work items\n");
    let authority = Authority::generate()?;
    let mut members = BTreeMap::new();
    for id in [DRIVER, WORKERS[0], WORKERS[1]] {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
        members.insert(id, SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let (driver_runtime, driver) = start_node(DRIVER, &members, &authority)?;
    let mut worker_runtimes = BTreeMap::new();
    for id in WORKERS {
        let (runtime, mesh) = start_node(id, &members, &authority)?;
        serve(&runtime, mesh)?;
        worker_runtimes.insert(id, runtime);
    }
    for (id, addr) in &members {
        println!("  node {id} listening on {addr}");
    }
    driver_runtime.block_on(drive(&driver, &mut worker_runtimes))?;
    driver_runtime.block_on(driver.shutdown());
    Ok(())
}

async fn drive(driver: &Mesh, workers: &mut BTreeMap<NodeId, tokio::runtime::Runtime>) -> Result<()> {
    let mut events = driver.subscribe();
    let formed = Instant::now();
    while !WORKERS.iter().all(|&worker| driver.is_alive(worker)) {
        if formed.elapsed() > Duration::from_secs(10) {
            bail!("the mesh did not form within 10 s");
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), events.recv()).await;
    }
    println!("  mesh formed in {} ms\n", formed.elapsed().as_millis());
    let mut results = driver.take_inbound(TrafficClass::Bulk).context("inbound")?;
    let mut ledger = Ledger {
        pending: (0..ITEMS).rev().collect(),
        in_flight: WORKERS.iter().map(|&worker| (worker, BTreeSet::new())).collect(),
        done: BTreeMap::new(),
        duplicates: 0,
        wrong: 0,
        reassigned: 0,
    };
    let started = Instant::now();
    let (mut killed_at, mut detected_after) = (None, None);
    while (ledger.done.len() as u64) < ITEMS {
        dispatch(driver, &mut ledger);
        if killed_at.is_none() && ledger.done.len() as u64 >= ITEMS / 2 {
            if let Some(runtime) = workers.remove(&WORKERS[1]) {
                runtime.shutdown_background();
                killed_at = Some(Instant::now());
                progress(ledger.done.len() as u64, "node 3 killed");
            }
        }
        tokio::select! {
            Some(inbound) = results.recv() => record(&mut ledger, inbound.from, &inbound.payload.body),
            Ok(event) = events.recv() => {
                if let PeerEvent::Down(peer) = event {
                    if let Some(at) = killed_at { detected_after.get_or_insert(at.elapsed()); }
                    let orphaned = ledger.in_flight.insert(peer, BTreeSet::new()).unwrap_or_default();
                    ledger.reassigned += orphaned.len() as u64;
                    ledger.pending.extend(orphaned.iter().rev());
                    ledger.in_flight.remove(&peer);
                    progress(ledger.done.len() as u64, &format!("node {peer} down: {} items re-queued", orphaned.len()));
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(5)) => bail!("no progress for 5 s"),
        }
    }
    progress(ITEMS, "done");
    report(&ledger, started.elapsed(), detected_after);
    Ok(())
}

fn dispatch(driver: &Mesh, ledger: &mut Ledger) {
    for (&worker, held) in ledger.in_flight.iter_mut() {
        while held.len() < IN_FLIGHT_PER_WORKER {
            let Some(item) = ledger.pending.pop() else { return };
            let mut body = item.to_le_bytes().to_vec();
            body.extend_from_slice(&block_for(item));
            let work = Message::Payload(Payload { topic: TOPIC_WORK, body });
            if driver.send(worker, TrafficClass::Bulk, &work).is_err() {
                ledger.pending.push(item);
                break;
            }
            held.insert(item);
        }
    }
}

fn record(ledger: &mut Ledger, from: NodeId, body: &[u8]) {
    let (Some(item), Some(sum)) = (body.get(..8), body.get(8..16)) else { return };
    let item = u64::from_le_bytes(item.try_into().expect("8 bytes"));
    let sum = u64::from_le_bytes(sum.try_into().expect("8 bytes"));
    // Only the worker currently holding an item may complete it: a late answer from a worker the
    // detector gave up on is a duplicate, and is discarded.
    let held = ledger.in_flight.get_mut(&from).is_some_and(|held| held.remove(&item));
    if !held || ledger.done.contains_key(&item) {
        ledger.duplicates += 1;
        return;
    }
    if sum != checksum(&block_for(item)) {
        ledger.wrong += 1;
        ledger.pending.push(item);
        return;
    }
    ledger.done.insert(item, from);
    if ledger.done.len().is_multiple_of(100) {
        progress(ledger.done.len() as u64, "");
    }
}

fn report(ledger: &Ledger, elapsed: Duration, detected_after: Option<Duration>) {
    println!("\n\nwhere items ran:");
    for worker in WORKERS {
        let count = ledger.done.values().filter(|&&node| node == worker).count();
        println!("  node {worker}: {count} items");
    }
    println!("re-queued after node 3 died: {} items, all completed on node 2", ledger.reassigned);
    match detected_after {
        Some(after) => println!("kill to detection (failure detector, 500 ms silence): {} ms", after.as_millis()),
        None => println!("node 3 was never reported down"),
    }
    println!("wrong checksums: {}, discarded late duplicates: {}", ledger.wrong, ledger.duplicates);
    let exactly_once = ledger.done.len() as u64 == ITEMS && (0..ITEMS).all(|item| ledger.done.contains_key(&item));
    println!(
        "{} items in {:.2} s; every item completed exactly once: {}",
        ITEMS,
        elapsed.as_secs_f64(),
        if exactly_once { "yes" } else { "NO" }
    );
}
