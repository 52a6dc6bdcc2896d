//! `failover` mode: kill -9 of a real worker process, timed from the kill to its running work started
//! on another node (the new attempt's `started_ms` in the task table), over `--trials` kills (default
//! 20); then `--backlog-trials` kills (default 5) of a node holding queued work, checking that its queued
//! work starts no later than work queued after it.
//!
//! Each trial kills a follower (`--victim leader` kills the coordinator leader instead: Raft elects a
//! new one first), then starts it again on its data and waits until every node sees every other up and
//! registered.

use std::time::Duration;

use gridkeeper::api::grid::{SubmitRequest, TaskView};
use gridkeeper::client::Client;
use gridkeeper::grid::task::AttemptState;

use super::process::{percentile, unix_ms, Detection, Flags, ProcessCluster, IDS};
use crate::support::wait_for;

/// Slots per node: a survivor always has a free one for the victim's work in the running trials.
const SLOTS: u32 = 2;
/// Longest a trial waits for work to start (the bench reports a trial that exceeds it).
const START_MAX: Duration = Duration::from_secs(30);

fn sleeps(client: &Client, cluster: &ProcessCluster, ms: u64, count: usize) -> Vec<u64> {
    let request = SubmitRequest {
        task: Some("sleep".into()),
        input: Some(serde_json::json!({ "ms": ms })),
        count: Some(count),
        attempts: Some(5),
        ..SubmitRequest::default()
    };
    cluster.runtime.block_on(client.submit(&request)).expect("submit sleeps")
}

/// When a task's latest attempt started, if it has.
fn started(task: &TaskView) -> Option<u64> {
    task.attempts.last().and_then(|attempt| attempt.started_ms)
}

/// Waits until `check` holds for the views of all `ids` (bounded), returning them.
fn wait_views(
    cluster: &ProcessCluster,
    client: &Client,
    ids: &[u64],
    check: impl Fn(&TaskView) -> bool,
) -> Option<Vec<TaskView>> {
    wait_for(START_MAX, || {
        let views = cluster.views(client, ids);
        (views.len() == ids.len() && views.iter().all(&check)).then_some(views)
    })
}

/// One kill of a node running work (a follower, or the leader with `kill_leader`): (victim, attempts
/// it held, kill → lost recorded, kill → all started elsewhere), in ms.
fn running_trial(
    cluster: &mut ProcessCluster,
    trial: usize,
    kill_leader: bool,
) -> Result<(u64, usize, u64, u64), String> {
    let leader = cluster.wait_ready(&IDS);
    let client = cluster.client(&IDS);
    let ids = sleeps(&client, cluster, 60_000, 3);
    let views = wait_views(cluster, &client, &ids, |task| started(task).is_some()).ok_or("holds did not start")?;
    let candidates: Vec<u64> =
        IDS.into_iter().filter(|&id| if kill_leader { id == leader } else { id != leader }).collect();
    let held = |node: u64| -> Vec<u64> {
        views
            .iter()
            .filter(|task| task.attempts.last().is_some_and(|attempt| attempt.node == node))
            .map(|task| task.id)
            .collect()
    };
    // Alternate between the candidates; take the other one if placement left the first idle.
    let preferred = candidates[trial % candidates.len()];
    let victim = [preferred, candidates[(trial + 1) % candidates.len()]]
        .into_iter()
        .find(|&node| !held(node).is_empty())
        .ok_or("no candidate victim runs a hold")?;
    let on_victim = held(victim);
    let killed_ms = unix_ms();
    cluster.kill(victim);
    let survivors: Vec<u64> = IDS.into_iter().filter(|&id| id != victim).collect();
    let client = cluster.client(&survivors);
    let outcome = wait_views(cluster, &client, &on_victim, |task| {
        task.attempts.last().is_some_and(|attempt| attempt.node != victim && attempt.started_ms.is_some())
    });
    let _ = cluster.runtime.block_on(client.cancel(&ids));
    cluster.restart(victim);
    let views = outcome.ok_or_else(|| format!("node {victim}'s work did not start elsewhere"))?;
    let restarted = views.iter().filter_map(started).max().unwrap_or(killed_ms);
    let lost = views
        .iter()
        .flat_map(|task| &task.attempts)
        .filter(|attempt| attempt.state == AttemptState::Lost)
        .filter_map(|attempt| attempt.ended_ms)
        .max()
        .unwrap_or(restarted);
    Ok((victim, on_victim.len(), lost.saturating_sub(killed_ms), restarted.saturating_sub(killed_ms)))
}

/// One kill of a node holding queued work behind full slots: (victim, its queued tasks, tasks queued
/// after them that started before the last of them, last victim-queued start − first later start).
fn backlog_trial(cluster: &mut ProcessCluster, trial: usize) -> Result<(u64, usize, usize, i64), String> {
    let leader = cluster.wait_ready(&IDS);
    let client = cluster.client(&IDS);
    // Every slot busy for 3 s, then two waves queued behind them, the first before the second. The
    // fillers outlast the kill and its detection (0.2 s), so the question is the order in which the
    // survivors start the waves once the death is known, not whether a slot freed before anyone knew.
    let fillers = sleeps(&client, cluster, 3_000, IDS.len() * SLOTS as usize);
    wait_views(cluster, &client, &fillers, |task| started(task).is_some()).ok_or("fillers did not start")?;
    let first = sleeps(&client, cluster, 200, 12);
    let assigned = |task: &TaskView| !task.attempts.is_empty();
    let first_views = wait_views(cluster, &client, &first, assigned).ok_or("first wave not assigned")?;
    let later = sleeps(&client, cluster, 200, 12);
    wait_views(cluster, &client, &later, assigned).ok_or("later wave not assigned")?;
    let followers: Vec<u64> = IDS.into_iter().filter(|&id| id != leader).collect();
    let queued_on = |node: u64| -> Vec<u64> {
        first_views
            .iter()
            .filter(|task| {
                task.attempts.last().is_some_and(|attempt| attempt.node == node && attempt.started_ms.is_none())
            })
            .map(|task| task.id)
            .collect()
    };
    let preferred = followers[trial % followers.len()];
    let victim = [preferred, followers[(trial + 1) % followers.len()]]
        .into_iter()
        .find(|&node| !queued_on(node).is_empty())
        .ok_or("no follower holds queued work")?;
    let queued = queued_on(victim);
    cluster.kill(victim);
    let survivors: Vec<u64> = IDS.into_iter().filter(|&id| id != victim).collect();
    let client = cluster.client(&survivors);
    let queued_views = wait_views(cluster, &client, &queued, |task| started(task).is_some());
    let later_views = wait_views(cluster, &client, &later, |task| started(task).is_some());
    let everything: Vec<u64> = fillers.iter().chain(&first).chain(&later).copied().collect();
    let _ = cluster.runtime.block_on(client.cancel(&everything));
    cluster.restart(victim);
    let (Some(queued_views), Some(later_views)) = (queued_views, later_views) else {
        return Err("queued work did not start".into());
    };
    let last_queued = queued_views.iter().filter_map(started).max().unwrap_or(0);
    let later_starts: Vec<u64> = later_views
        .iter()
        .filter_map(|task| task.attempts.iter().filter_map(|attempt| attempt.started_ms).min())
        .collect();
    let first_later = later_starts.iter().copied().min().unwrap_or(u64::MAX);
    let overtaken = later_starts.iter().filter(|&&start| start < last_queued).count();
    Ok((victim, queued.len(), overtaken, last_queued as i64 - first_later as i64))
}

pub fn run(flags: &Flags) {
    let detection = flags.detections().first().copied().unwrap_or_else(Detection::defaults);
    let trials: usize = flags.number("--trials", 20);
    let backlog_trials: usize = flags.number("--backlog-trials", 5);
    // `--victim leader`: kill the coordinator leader instead (Raft elects first; the new leader then
    // expires the dead node's session when its timeout runs out).
    let kill_leader = flags.value("--victim").is_some_and(|victim| victim == "leader");
    let victims = if kill_leader { "the leader" } else { "a follower" };
    println!("failover: 3 node processes x {SLOTS} slots on loopback, fsync on, {}", detection.label());
    println!("each trial kills {victims}");
    println!("load average before: {:?}", super::process::load_average());
    let mut cluster = ProcessCluster::start("grid-failover", detection, SLOTS);
    let mut times = Vec::new();
    for trial in 0..trials {
        match running_trial(&mut cluster, trial, kill_leader) {
            Ok((victim, held, lost_ms, restarted_ms)) => {
                println!(
                    "  trial {:2}: kill -9 node {victim} running {held}: lost recorded {lost_ms} ms, started elsewhere {restarted_ms} ms (load {:.2})",
                    trial + 1,
                    super::process::load_average()[0]
                );
                times.push(restarted_ms);
            }
            Err(why) => println!("  trial {:2}: {why}", trial + 1),
        }
    }
    times.sort_unstable();
    println!(
        "failover, kill -9 of a worker to its running work started elsewhere ({} of {trials} trials): p50 {} ms, worst {} ms",
        times.len(),
        percentile(&times, 0.5),
        times.last().copied().unwrap_or(0)
    );
    let mut kept = 0;
    for trial in 0..backlog_trials {
        match backlog_trial(&mut cluster, trial) {
            Ok((victim, queued, overtaken, gap)) => {
                if overtaken == 0 {
                    kept += 1;
                }
                println!(
                    "  backlog {}: kill -9 node {victim} holding {queued} queued: {overtaken} of 12 later tasks started before its last one (last queued − first later start {gap} ms)",
                    trial + 1
                );
            }
            Err(why) => println!("  backlog {}: {why}", trial + 1),
        }
    }
    println!(
        "failover with a backlog: the killed node's queued work started no later than work queued after it in {kept} of {backlog_trials} trials"
    );
    println!("load average after: {:?}", super::process::load_average());
}
