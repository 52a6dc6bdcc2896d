//! Live membership changes with real processes: a voter killed for good is replaced by a new node
//! through `members add` and `members remove`, with writes and tasks flowing throughout; removed ids
//! are never reused; a removal that would leave no quorum is refused; a node not added cannot join.

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{binary, leader_of, wait_for, ClusterSpec, NodeProcess, WAIT_MAX};

fn cli(spec: &ClusterSpec, args: &[&str]) -> std::process::Output {
    Command::new(binary()).env("GRIDKEEPER_CERTS", spec.certs()).args(args).output().expect("run the CLI")
}

/// `members --json` through node `via`: `(id, role, alive)` per row.
fn members(spec: &ClusterSpec, via: u64) -> Option<Vec<(u64, String, bool)>> {
    let output = cli(spec, &["members", "--admin", &spec.admin(via).to_string(), "--json"]);
    let view: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    view["members"]
        .as_array()?
        .iter()
        .map(|row| Some((row["id"].as_u64()?, row["role"].as_str()?.to_string(), row["alive"].as_bool()?)))
        .collect()
}

fn voters(spec: &ClusterSpec, via: u64) -> Option<Vec<u64>> {
    let rows = members(spec, via)?;
    Some(rows.into_iter().filter(|(_, role, _)| role == "voter").map(|(id, _, _)| id).collect())
}

/// Writes keys through whichever of `via` answers, until stopped; returns the acknowledged keys.
fn start_writer(
    spec: Arc<ClusterSpec>,
    via: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            let nodes = via.lock().expect("via").clone();
            let node = nodes[(n as usize) % nodes.len()];
            let key = format!("/flow/k{n}");
            let output = cli(&spec, &["registry", "--admin", &spec.admin(node).to_string(), "create", &key, "v"]);
            if output.status.success() {
                acknowledged.push(key);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        acknowledged
    })
}

fn submit_and_wait(spec: &ClusterSpec, via: u64, count: u32) -> serde_json::Value {
    let output = cli(
        spec,
        &[
            "submit",
            "--admin",
            &spec.admin(via).to_string(),
            "--task",
            "echo",
            "--count",
            &count.to_string(),
            "--wait",
            "--json",
        ],
    );
    assert!(output.status.success(), "submit --wait: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("submit --json")
}

fn logs(nodes: &[&NodeProcess]) -> String {
    nodes.iter().map(|node| format!("--- node {} ---\n{}", node.id, node.log_text())).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_dead_voter_is_replaced_with_members_add_and_remove_while_writes_and_tasks_flow() {
    let mut spec = ClusterSpec::new("membership", 5);
    spec.founders = vec![1, 2, 3];
    let spec = Arc::new(spec);
    let n1 = spec.start(1);
    let n2 = spec.start(2);
    let mut n3 = spec.start(3);
    assert!(wait_for(WAIT_MAX, || leader_of(&spec, &[1, 2, 3])).is_some(), "no leader: {}", logs(&[&n1, &n2, &n3]));

    let parent = cli(&spec, &["registry", "--admin", &spec.admin(1).to_string(), "create", "/flow", ""]);
    assert!(parent.status.success(), "create /flow: {}", String::from_utf8_lossy(&parent.stderr));
    let via = Arc::new(Mutex::new(vec![1, 2]));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writer(spec.clone(), via.clone(), stop.clone());
    let before = submit_and_wait(&spec, 1, 20);

    // A node nobody added cannot join as a voter.
    let mut stranger = spec.start_joining_voter(5, 1);
    let exited = wait_for(WAIT_MAX, || stranger.try_exit());
    assert!(exited.is_some_and(|status| !status.success()), "an unadded node must exit: {}", stranger.log_text());
    assert!(stranger.log_text().contains("was not added"), "{}", stranger.log_text());

    // Node 3 dies for good; node 4, at a new address, takes its place.
    n3.kill();
    let added = cli(
        &spec,
        &["members", "add", "--id", "4", "--addr", &spec.mesh_addr(4), "--admin", &spec.admin(2).to_string()],
    );
    assert!(added.status.success(), "members add: {}", String::from_utf8_lossy(&added.stderr));
    let started = Instant::now();
    let mut n4 = spec.start_joining_voter(4, 2);
    let promoted = wait_for(WAIT_MAX, || voters(&spec, 1).filter(|voters| voters.contains(&4)));
    assert!(promoted.is_some(), "node 4 never became a voter: {:?}\n{}", members(&spec, 1), logs(&[&n1, &n2, &n4]));
    eprintln!("node 4 joined and was promoted in {} ms", started.elapsed().as_millis());

    let removed = cli(&spec, &["members", "remove", "--id", "3", "--admin", &spec.admin(4).to_string()]);
    assert!(removed.status.success(), "members remove: {}", String::from_utf8_lossy(&removed.stderr));
    let settled = wait_for(WAIT_MAX, || voters(&spec, 2).filter(|voters| voters == &[1, 2, 4]));
    assert!(settled.is_some(), "voters are not 1, 2, 4: {:?}", members(&spec, 2));
    via.lock().expect("via").push(4);

    // A removed id is never reused.
    let reused = cli(
        &spec,
        &["members", "add", "--id", "3", "--addr", &spec.mesh_addr(3), "--admin", &spec.admin(1).to_string()],
    );
    assert!(!reused.status.success(), "a removed id was added again");
    assert!(
        String::from_utf8_lossy(&reused.stderr).contains("never reused"),
        "{}",
        String::from_utf8_lossy(&reused.stderr)
    );

    // With node 4 down, removing node 2 would leave {1, 4} with one live voter: refused.
    n4.kill();
    let noticed = wait_for(WAIT_MAX, || members(&spec, 1).filter(|rows| rows.iter().any(|row| row.0 == 4 && !row.2)));
    assert!(noticed.is_some(), "node 4 never showed down: {:?}", members(&spec, 1));
    let refused = wait_for(WAIT_MAX, || {
        let output = cli(&spec, &["members", "remove", "--id", "2", "--admin", &spec.admin(1).to_string()]);
        let text = String::from_utf8_lossy(&output.stderr).into_owned();
        (!output.status.success() && text.contains("no quorum")).then_some(text)
    });
    assert!(refused.is_some(), "the removal of node 2 was not refused for want of a quorum");

    // Node 4 restarts from its own state (no join round) and the three serve again.
    let n4 = spec.start_joining_voter(4, 1);
    let back = wait_for(WAIT_MAX, || {
        members(&spec, 4).filter(|rows| rows.iter().filter(|row| row.1 == "voter" && row.2).count() == 3)
    });
    assert!(back.is_some(), "node 4 did not come back: {:?}\n{}", members(&spec, 4), logs(&[&n1, &n2, &n4]));
    let after = submit_and_wait(&spec, 4, 20);

    stop.store(true, Ordering::SeqCst);
    let acknowledged = writer.join().expect("writer");
    assert!(acknowledged.len() > 10, "too few writes went through: {}", acknowledged.len());
    for summary in [before, after] {
        assert_eq!(summary["states"]["succeeded"], 20, "every task ends succeeded exactly once: {summary}");
    }
    // Every acknowledged write is on the new voter, read linearizably.
    for key in &acknowledged {
        let read = cli(&spec, &["registry", "--admin", &spec.admin(4).to_string(), "get", key]);
        assert!(read.status.success(), "acknowledged {key} is lost: {}", String::from_utf8_lossy(&read.stderr));
    }

    // A live voter removed stops by itself once it learns it is out.
    let mut n2 = n2;
    let removed = cli(&spec, &["members", "remove", "--id", "2", "--admin", &spec.admin(1).to_string()]);
    assert!(removed.status.success(), "members remove 2: {}", String::from_utf8_lossy(&removed.stderr));
    let exited = wait_for(WAIT_MAX, || n2.try_exit());
    assert!(exited.is_some(), "a removed node kept running: {}", n2.log_text());
    assert!(n2.log_text().contains("removed from the cluster"), "{}", n2.log_text());
    let two = wait_for(WAIT_MAX, || voters(&spec, 4).filter(|voters| voters == &[1, 4]));
    assert!(two.is_some(), "voters are not 1, 4: {:?}", members(&spec, 4));
    let written = cli(&spec, &["registry", "--admin", &spec.admin(4).to_string(), "create", "/after-two", "v"]);
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    drop((n1, n4));
}
