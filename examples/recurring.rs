//! Recurring jobs: one every 500 ms, one on a cron schedule (every 2 s, with a seconds field), on a
//! local three-node cluster. Halfway, the leader (which fires the jobs) is killed; the new leader picks
//! up from the replicated job table, and each due time still fires at most once.
//!
//! Run: `cargo run --release --example recurring`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use gridkeeper::api::grid::ScheduleRequest;
use gridkeeper::{AttemptInfo, Client, LocalCluster, LocalOptions, Task, TaskError};

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone)]
struct Beat {
    job: String,
}

/// Notes when each run happened and where.
#[derive(Clone, Default)]
struct Heartbeat {
    runs: Arc<Mutex<Vec<(String, u64, Instant)>>>,
}

impl Task for Heartbeat {
    const NAME: &'static str = "heartbeat";
    type Input = Beat;
    type Output = Beat;

    async fn run(&self, beat: Beat, attempt: AttemptInfo) -> Result<Beat, TaskError> {
        self.runs.lock().expect("runs").push((beat.job.clone(), attempt.node.0, Instant::now()));
        Ok(beat)
    }
}

fn main() -> Result<()> {
    let heartbeat = Heartbeat::default();
    let dir = std::env::temp_dir().join(format!("gridkeeper-recurring-{}", std::process::id()));
    let options =
        LocalOptions { kinds: gridkeeper::node::builtin::kinds().with(heartbeat.clone()), ..LocalOptions::default() };
    let mut cluster = LocalCluster::start_with(3, &dir, options)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).context("no leader")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let admins: Vec<SocketAddr> = cluster.admins().values().copied().collect();
    let client = runtime.block_on(Client::connect_any(&admins, cluster.access()?))?;

    let started = Instant::now();
    for (name, cron, every_ms) in [("fast", None, Some(500)), ("cron", Some("*/2 * * * * *".to_string()), None)] {
        let request = ScheduleRequest {
            name: name.into(),
            task: Some("heartbeat".into()),
            input: Some(serde_json::json!({ "job": name })),
            cron,
            every_ms,
            ..ScheduleRequest::default()
        };
        runtime.block_on(client.schedule(&request))?;
    }
    println!("scheduled `fast` (every 500 ms) and `cron` (*/2 * * * * *); leader is node {leader}");
    std::thread::sleep(Duration::from_secs(3));
    println!("killing the leader, node {leader}");
    cluster.kill(leader);
    let new_leader = cluster.wait_for_leader(Duration::from_secs(10)).context("no new leader")?;
    println!("node {new_leader} leads now");
    std::thread::sleep(Duration::from_secs(4));

    for job in runtime.block_on(client.jobs())? {
        println!("{:<5} {:<24} runs {:>3}  skipped {}", job.name, job.cadence, job.runs, job.skipped);
    }
    let runs = heartbeat.runs.lock().expect("runs").clone();
    for name in ["fast", "cron"] {
        let times: Vec<String> = runs
            .iter()
            .filter(|(job, _, _)| job == name)
            .map(|(_, node, at)| format!("{:.1}s@{node}", at.duration_since(started).as_secs_f64()))
            .collect();
        println!("{name}: {}", times.join(" "));
    }
    runtime.block_on(client.unschedule("fast"))?;
    runtime.block_on(client.unschedule("cron"))?;
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
