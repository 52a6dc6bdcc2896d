//! `soak` mode: a 3-node cluster of real processes kept busy with `spin` tasks for `--minutes` (default
//! 10), counting every sign of a live node taken for dead. Nobody is killed, so each one is false:
//! - `peer down` in a node's log (the mesh detector's `PeerEvent::Down`);
//! - new mesh connections (`gridkeeper_mesh_connections_total`: a down closes the link, a redial counts);
//! - term changes (`gridkeeper_raft_term`: an election, a follower that took the leader for dead), and
//!   leaderships begun (`gridkeeper_raft_leader_changes_total`), which also counts a leader resuming in
//!   its own term after it stepped down for want of a quorum's acknowledgement within its lease (counted
//!   apart as `lease step-downs` from the leader's log: a slow round, not a node taken for dead);
//! - session expiries (`gridkeeper_registry_sessions_expired_total`: only node sessions exist here) and
//!   registrations lost (a node's `registering again`).
//!
//! The load: `spin` tasks of `--spin-ms` (default 100) submitted open loop at the rate that keeps
//! `--cpu` (default 0.8) of the machine's cores spinning, on `--slots` (default 2) slots per node.
//! `--silence MS[,MS...]` runs one soak per threshold, one after the other, for the curve.

use std::time::{Duration, Instant};

use gridkeeper::api::grid::SubmitRequest;

use super::process::{busy_percent, cpu_ticks, load_average, Detection, Flags, ProcessCluster, IDS};
use crate::support::{admin_get, metric_sum, status, wait_for};

/// How often the soak submits its next batch of spins.
const SUBMIT_EVERY: Duration = Duration::from_millis(100);
/// How often it prints where it stands.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Signs of false downs, summed over the nodes (a counter each node keeps alike takes the largest).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Signs {
    peer_downs: u64,
    registrations_lost: u64,
    lease_stepdowns: u64,
    connections: f64,
    elections: f64,
    term: f64,
    expiries: f64,
}

impl Signs {
    fn read(cluster: &ProcessCluster) -> Signs {
        let mut signs = Signs::default();
        for id in IDS {
            let log = cluster.log_text(id);
            signs.peer_downs += log.matches("peer down").count() as u64;
            signs.registrations_lost += log.matches("registering again").count() as u64;
            signs.lease_stepdowns += log.matches("no quorum acknowledged this leader").count() as u64;
            let metrics = admin_get(cluster.spec.admin(id), "/metrics").unwrap_or_default();
            signs.connections += metric_sum(&metrics, "gridkeeper_mesh_connections_total");
            signs.elections += metric_sum(&metrics, "gridkeeper_raft_leader_changes_total");
            signs.term = signs.term.max(metric_sum(&metrics, "gridkeeper_raft_term"));
            signs.expiries = signs.expiries.max(metric_sum(&metrics, "gridkeeper_registry_sessions_expired_total"));
        }
        signs
    }

    fn since(self, base: Signs) -> Signs {
        Signs {
            peer_downs: self.peer_downs - base.peer_downs.min(self.peer_downs),
            registrations_lost: self.registrations_lost - base.registrations_lost.min(self.registrations_lost),
            lease_stepdowns: self.lease_stepdowns - base.lease_stepdowns.min(self.lease_stepdowns),
            connections: self.connections - base.connections,
            elections: self.elections - base.elections,
            term: self.term - base.term,
            expiries: self.expiries - base.expiries,
        }
    }

    /// Live nodes taken for dead: by the mesh, by the registry (a session expired) or by Raft (a term
    /// began).
    fn false_downs(self) -> u64 {
        self.peer_downs + self.expiries.max(0.0) as u64 + self.term.max(0.0) as u64
    }

    fn describe(self) -> String {
        format!(
            "peer downs {}, reconnections {}, term +{}, session expiries {}, registrations lost {}, leaderships begun {} (lease step-downs {})",
            self.peer_downs,
            self.connections,
            self.term,
            self.expiries,
            self.registrations_lost,
            self.elections,
            self.lease_stepdowns
        )
    }
}

/// One soak's outcome, for the curve.
struct Soak {
    detection: Detection,
    minutes: f64,
    signs: Signs,
    load_mean: f64,
    load_max: f64,
    busy: f64,
}

fn soak_once(flags: &Flags, detection: Detection, minutes: f64) -> Soak {
    let spin_ms: u64 = flags.number("--spin-ms", 100);
    let cpu: f64 = flags.number("--cpu", 0.8);
    let slots: u32 = flags.number("--slots", 2);
    let cores = std::thread::available_parallelism().map_or(2, |cores| cores.get()) as f64;
    let rate = cpu * cores * 1_000.0 / spin_ms as f64;
    println!(
        "soak {minutes} min, {}: 3 node processes x {slots} slots; spin {spin_ms} ms at {rate:.1}/s ({:.1} spinning on average = {:.0}% of {cores} cores)",
        detection.label(),
        rate * spin_ms as f64 / 1_000.0,
        cpu * 100.0
    );
    let cluster = ProcessCluster::start("grid-soak", detection, slots);
    let leader = cluster.wait_ready(&IDS);
    let client = cluster.client(&IDS);
    // The gauges are refreshed every half second: start counting once they show the term in force.
    let base = wait_for(Duration::from_secs(10), || {
        let term = status(cluster.spec.admin(leader))?.term? as f64;
        let signs = Signs::read(&cluster);
        (signs.term == term).then_some(signs)
    })
    .unwrap_or_else(|| Signs::read(&cluster));
    let cpu_start = cpu_ticks();
    let started = Instant::now();
    let length = Duration::from_secs_f64(minutes * 60.0);
    let (mut owed, mut submitted, mut refused) = (0.0, 0usize, 0usize);
    let (mut load_sum, mut load_samples, mut load_max) = (0.0, 0usize, 0.0f64);
    let mut next_report = REPORT_EVERY;
    while started.elapsed() < length {
        owed += rate * SUBMIT_EVERY.as_secs_f64();
        let count = owed.floor() as usize;
        if count > 0 {
            owed -= count as f64;
            let request = SubmitRequest {
                task: Some("spin".into()),
                input: Some(serde_json::json!({ "ms": spin_ms })),
                count: Some(count),
                ..SubmitRequest::default()
            };
            match cluster.runtime.block_on(client.submit(&request)) {
                Ok(ids) => submitted += ids.len(),
                Err(_) => refused += count,
            }
        }
        let load = load_average()[0];
        load_sum += load;
        load_samples += 1;
        load_max = load_max.max(load);
        if started.elapsed() >= next_report {
            next_report += REPORT_EVERY;
            let so_far = Signs::read(&cluster).since(base);
            println!(
                "  {:>4.1} min: {}; load {load:.2}, CPU busy {:.0}%",
                started.elapsed().as_secs_f64() / 60.0,
                so_far.describe(),
                busy_percent(cpu_start, cpu_ticks())
            );
        }
        std::thread::sleep(SUBMIT_EVERY.saturating_sub(Duration::from_millis(1)));
    }
    let busy = busy_percent(cpu_start, cpu_ticks());
    let signs = Signs::read(&cluster).since(base);
    let load_mean = load_sum / load_samples.max(1) as f64;
    println!("  submitted {submitted} spins ({refused} refused)");
    println!(
        "soak result, {}: {minutes} min, false downs {} ({}); load average mean {load_mean:.2} max {load_max:.2}, CPU busy {busy:.0}%",
        detection.label(),
        signs.false_downs(),
        signs.describe()
    );
    Soak { detection, minutes, signs, load_mean, load_max, busy }
}

pub fn run(flags: &Flags) {
    let minutes: f64 = flags.number("--minutes", 10.0);
    let soaks: Vec<Soak> =
        flags.detections().into_iter().map(|detection| soak_once(flags, detection, minutes)).collect();
    println!("curve: silence threshold against false downs");
    for soak in &soaks {
        let config = soak.detection.config;
        println!(
            "  silence {:>4} ms, heartbeat {:>3} ms, {:>4} min: false downs {:>3} (reconnections {}, terms +{}, expiries {}; lease step-downs {}); load mean {:.2} max {:.2}, CPU {:.0}%",
            config.peer_silence_max_ms,
            config.heartbeat_interval_ms,
            soak.minutes,
            soak.signs.false_downs(),
            soak.signs.connections,
            soak.signs.term,
            soak.signs.expiries,
            soak.signs.lease_stepdowns,
            soak.load_mean,
            soak.load_max,
            soak.busy
        );
    }
}
