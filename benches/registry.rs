//! Registry benchmark on a 3-node loopback cluster (real QUIC, real Raft, the fsync'd log), clients
//! on the same machine, one outstanding request per client: set of 256-byte values over 1,000 keys,
//! sequential create, linearizable get and local get at 1, 16 and 128 clients; then leader failover
//! under a 16-client write load (kill of the leader; the longest gap without an acknowledged write).
//!
//! The same workloads again through the ZooKeeper protocol (the `zookeeper-client` crate against each
//! node's ZooKeeper port; its plain reads are ZooKeeper's local reads), so the two front ends compare
//! on one cluster, and against a real ZooKeeper in `benches/peers`.
//!
//! Run: `cargo bench --bench registry` (`-- --quick` for short windows, `-- --zk-only` for the
//! ZooKeeper protocol alone, `-- --reads-only` for the HTTP reads alone, to profile them). Prints
//! figures; asserts nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridkeeper::client::Client;
use gridkeeper::consensus::Consistency;
use gridkeeper::ids::NodeId;
use gridkeeper::node::local::{LocalCluster, LocalOptions};
use gridkeeper::registry::CreateMode;

const KEYS: usize = 1_000;
const VALUE_BYTES: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Workload {
    Set,
    Create,
    ReadLinearizable,
    ReadLocal,
}

impl Workload {
    fn label(self) -> &'static str {
        match self {
            Workload::Set => "write (set 256 B)",
            Workload::Create => "create sequential",
            Workload::ReadLinearizable => "read linearizable",
            Workload::ReadLocal => "read local",
        }
    }
}

struct Figures {
    ops: usize,
    errors: usize,
    latencies: Vec<Duration>,
}

async fn one_client(client: Client, workload: Workload, index: usize, stop: Arc<AtomicBool>) -> Figures {
    let value = "v".repeat(VALUE_BYTES);
    let mut figures = Figures { ops: 0, errors: 0, latencies: Vec::with_capacity(1 << 16) };
    let mut key = index * 7919;
    while !stop.load(Ordering::Relaxed) {
        key = (key + 1) % KEYS;
        let path = format!("/bench/k{key:04}");
        let started = Instant::now();
        let ok = match workload {
            Workload::Set => client.set(&path, &value, None).await.is_ok(),
            Workload::Create => {
                client.create("/bench/seq/n-", "x", CreateMode::PersistentSequential, None).await.is_ok()
            }
            Workload::ReadLinearizable => client.get(&path, Consistency::Linearizable).await.is_ok(),
            Workload::ReadLocal => client.get(&path, Consistency::Local).await.is_ok(),
        };
        if ok {
            figures.ops += 1;
            figures.latencies.push(started.elapsed());
        } else {
            figures.errors += 1;
        }
    }
    figures
}

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * fraction) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e6
}

async fn clients(cluster: &LocalCluster, count: usize) -> Vec<Client> {
    let admins: Vec<_> = cluster.admins().values().copied().collect();
    let mut clients = Vec::with_capacity(count);
    for index in 0..count {
        clients.push(
            Client::connect(admins[index % admins.len()], cluster.access().expect("access")).await.expect("client"),
        );
    }
    clients
}

async fn measure(cluster: &LocalCluster, workload: Workload, count: usize, window: Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = clients(cluster, count)
        .await
        .into_iter()
        .enumerate()
        .map(|(index, client)| tokio::spawn(one_client(client, workload, index, stop.clone())))
        .collect();
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ops, mut errors, mut latencies) = (0, 0, Vec::new());
    for task in tasks {
        let figures = task.await.expect("client task");
        ops += figures.ops;
        errors += figures.errors;
        latencies.extend(figures.latencies);
    }
    latencies.sort_unstable();
    println!(
        "{:<20} {:>4} clients: {:>9.0} ops/s  p50 {:>8.0} µs  p99 {:>8.0} µs  errors {}",
        workload.label(),
        count,
        ops as f64 / window.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        errors
    );
}

async fn prepare(cluster: &LocalCluster) {
    let client = clients(cluster, 1).await.remove(0);
    let value = "v".repeat(VALUE_BYTES);
    for path in ["/bench", "/bench/seq"] {
        let _ = client.create(path, "", CreateMode::Persistent, None).await;
    }
    for key in 0..KEYS {
        let _ = client.create(&format!("/bench/k{key:04}"), &value, CreateMode::Persistent, None).await;
    }
}

/// Kills the leader under a 16-client write load and reports the longest gap between acknowledged
/// writes, and how long the cluster had no leader.
fn failover(cluster: &mut LocalCluster, runtime: &tokio::runtime::Runtime) {
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).expect("leader");
    let survivors: Vec<NodeId> = cluster.admins().keys().copied().filter(|&id| id != leader).collect();
    let admins: Vec<_> = survivors.iter().map(|&id| cluster.admin(id)).collect();
    let access = cluster.access().expect("access");
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let tasks: Vec<_> = (0..16)
        .map(|index| {
            let (admin, access, stop, acks) =
                (admins[index % admins.len()], access.clone(), stop.clone(), acks.clone());
            runtime.spawn(async move {
                let client = Client::connect(admin, access).await.expect("client");
                let value = "v".repeat(VALUE_BYTES);
                let mut key = index * 61;
                while !stop.load(Ordering::Relaxed) {
                    key = (key + 1) % KEYS;
                    if client.set(&format!("/bench/k{key:04}"), &value, None).await.is_ok() {
                        acks.lock().expect("acks").push(Instant::now());
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let killed_at = Instant::now();
    cluster.kill(leader);
    let new_leader = cluster.wait_for_leader(Duration::from_secs(10));
    let elected_after = killed_at.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = runtime.block_on(task);
    }
    let acks = acks.lock().expect("acks");
    let gap = acks.windows(2).map(|pair| pair[1] - pair[0]).max().unwrap_or_default();
    let around_kill =
        acks.windows(2).filter(|pair| pair[1] >= killed_at).map(|pair| pair[1] - pair[0]).next().unwrap_or_default();
    println!(
        "failover (kill leader {leader}, 16 writers): new leader {:?} after {} ms; longest gap without an acknowledged write {} ms (first gap after the kill {} ms); {} writes acknowledged",
        new_leader.map(|id| id.0),
        elected_after.as_millis(),
        gap.as_millis(),
        around_kill.as_millis(),
        acks.len()
    );
}

/// Writes acknowledged per fsync across the cluster (the metrics recorder is process-wide here, so this
/// sums all three nodes' committers).
fn report_group_commit(cluster: &LocalCluster, runtime: &tokio::runtime::Runtime) {
    let admin = *cluster.admins().values().next().expect("a node");
    let Ok(access) = cluster.access() else { return };
    let Ok(body) = runtime.block_on(gridkeeper::admin::client::get(admin, "/metrics", &access)) else { return };
    let text = String::from_utf8_lossy(&body);
    let value = |name: &str| {
        text.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (writes, commits) =
        (value("gridkeeper_raft_commit_batch_writes_sum"), value("gridkeeper_raft_commit_batch_writes_count"));
    let batches = value("gridkeeper_registry_read_index_batch_count");
    let reads = value("gridkeeper_registry_read_index_batch_sum");
    println!(
        "group commit: {writes:.0} log writes in {commits:.0} fsyncs ({:.1} per fsync); read index: {reads:.0} reads in {batches:.0} rounds ({:.1} per round)",
        writes / commits.max(1.0),
        reads / batches.max(1.0)
    );
}

async fn one_zk_client(
    client: zookeeper_client::Client,
    workload: Workload,
    index: usize,
    stop: Arc<AtomicBool>,
) -> Figures {
    let value = vec![b'v'; VALUE_BYTES];
    let sequential = zookeeper_client::CreateMode::PersistentSequential.with_acls(zookeeper_client::Acls::anyone_all());
    let mut figures = Figures { ops: 0, errors: 0, latencies: Vec::with_capacity(1 << 16) };
    let mut key = index * 7919;
    while !stop.load(Ordering::Relaxed) {
        key = (key + 1) % KEYS;
        let path = format!("/bench/k{key:04}");
        let started = Instant::now();
        let ok = match workload {
            Workload::Set => client.set_data(&path, &value, None).await.is_ok(),
            Workload::Create => client.create("/bench/seq/z-", b"x", &sequential).await.is_ok(),
            Workload::ReadLinearizable => client.sync(&path).await.is_ok() && client.get_data(&path).await.is_ok(),
            Workload::ReadLocal => client.get_data(&path).await.is_ok(),
        };
        if ok {
            figures.ops += 1;
            figures.latencies.push(started.elapsed());
        } else {
            figures.errors += 1;
        }
    }
    figures
}

/// As [`measure`], through the ZooKeeper protocol, clients spread over the nodes.
async fn measure_zk(cluster: &LocalCluster, workload: Workload, count: usize, window: Duration) {
    let addrs: Vec<String> =
        cluster.admins().keys().filter_map(|&id| cluster.zk(id)).map(|addr| addr.to_string()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(count);
    for index in 0..count {
        let client = zookeeper_client::Client::connector()
            .with_session_timeout(Duration::from_secs(30))
            .connect(&addrs[index % addrs.len()])
            .await
            .expect("a ZooKeeper client connects");
        tasks.push(tokio::spawn(one_zk_client(client, workload, index, stop.clone())));
    }
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ops, mut errors, mut latencies) = (0, 0, Vec::new());
    for task in tasks {
        let figures = task.await.expect("client task");
        ops += figures.ops;
        errors += figures.errors;
        latencies.extend(figures.latencies);
    }
    latencies.sort_unstable();
    let label = match workload {
        Workload::ReadLinearizable => "zk sync + getData",
        Workload::ReadLocal => "zk getData",
        Workload::Set => "zk setData 256 B",
        Workload::Create => "zk create seq",
    };
    println!(
        "{label:<20} {count:>4} clients: {:>9.0} ops/s  p50 {:>8.0} µs  p99 {:>8.0} µs  errors {errors}",
        ops as f64 / window.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
    );
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let window = if quick { Duration::from_secs(2) } else { Duration::from_secs(5) };
    let dir = std::env::temp_dir().join(format!("gk-bench-registry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = LocalOptions { zookeeper: true, ..LocalOptions::default() };
    let mut cluster = LocalCluster::start_with(3, &dir, options).expect("cluster starts");
    cluster.wait_for_leader(Duration::from_secs(10)).expect("leader");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    println!("== gridkeeper registry benchmark: 3 nodes in-process on loopback, fsync on, window {window:?} ==");
    runtime.block_on(prepare(&cluster));
    let failover_only = std::env::args().any(|arg| arg == "--failover-only");
    let zk_only = std::env::args().any(|arg| arg == "--zk-only");
    let workloads = [Workload::Set, Workload::Create, Workload::ReadLinearizable, Workload::ReadLocal];
    if std::env::args().any(|arg| arg == "--reads-only") {
        for workload in [Workload::ReadLinearizable, Workload::ReadLocal] {
            for count in [1, 16, 128] {
                runtime.block_on(measure(&cluster, workload, count, window));
            }
        }
        return;
    }
    for workload in workloads {
        for count in [1, 16, 128].into_iter().filter(|_| !failover_only && !zk_only) {
            runtime.block_on(measure(&cluster, workload, count, window));
        }
    }
    for workload in workloads {
        for count in [1, 16, 128].into_iter().filter(|_| !failover_only) {
            runtime.block_on(measure_zk(&cluster, workload, count, window));
        }
    }
    report_group_commit(&cluster, &runtime);
    failover(&mut cluster, &runtime);
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
