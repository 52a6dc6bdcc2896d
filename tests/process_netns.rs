//! Real processes, each node in a network namespace of its own (root only; CI runs as root).
//!
//! Three nodes and a client host sit on a private bridge (see `support::netns`): every node has its
//! own address and the name `gk-<id>` from its namespace's hosts file, and `--peers` names the nodes
//! only by those names. No namespace has a default route and the root namespace gets no address, so
//! nothing leaves the lab. Every port is the same fixed number in each namespace.
//!
//! The first test checks that the cluster forms by names; that isolating the leader (its veth
//! detached from the bridge) elects a new leader on the majority side while the old one steps down and
//! serves no stale linearizable read; that the old leader rejoins when healed; that a kill -9'd node
//! restarts and catches up; and that no acknowledged write is lost, on any node.
//!
//! The second and third (a lab of five hosts: nodes 1-3, a spare host `gk-4`, the client) replace a
//! voter killed for good (node 3, a follower; then the leader) by a new node at a new address:
//! `members add --id 4 --addr gk-4:7100`, node 4 started with `--join ADMIN --voter` (no `--peers`),
//! promoted once caught up, then `members remove` of the dead one; its id is refused when added
//! again. A writer creates keys throughout and tasks are submitted before, across (some running on
//! the victim as it dies) and after the change, the last through node 4: every acknowledged key reads
//! back linearizably on node 4 and a survivor, and every accepted task ends succeeded with exactly one
//! succeeded attempt (the attempt list is printed for those that needed more).
//!
//! Every wait is bounded; the figures are printed, and on failure the node logs. The tests run one
//! at a time.

mod support;

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gridkeeper::admin::status::{MemberRole, MembersView};
use gridkeeper::admin::StatusView;
use gridkeeper::api::grid::{AttemptView, TaskView};
use gridkeeper::grid::task::{AttemptState, TaskState};
use support::netns::{host_name, run_bounded, NetLab};
use support::*;

/// Node hosts are 1..=NODES; the client host is the one after.
const NODES: usize = 3;
const CLIENT: usize = NODES + 1;
/// The same in every namespace: each has its own network stack.
const MESH_PORT: u16 = 7100;
const ADMIN_PORT: u16 = 9100;
/// Longest one CLI call may take before it is killed (and counted as failed).
const CLI_MAX: Duration = Duration::from_secs(20);
/// Longest the majority may take to agree on a new leader after the old one is isolated.
const FAILOVER_MAX: Duration = Duration::from_secs(15);
/// Longest the isolated old leader may keep claiming leadership (elections time out in 90-180 ms).
const STEP_DOWN_MAX: Duration = Duration::from_secs(10);
/// Longest a healed or restarted node may take to rejoin and catch up.
const REJOIN_MAX: Duration = Duration::from_secs(30);
/// The znode every write of this test goes under.
const ROOT: &str = "/netns";

/// The lab, the credentials and how to start and reach the nodes.
struct Cluster<'a> {
    net: &'a NetLab,
    dir: &'a TempDir,
    certs: PathBuf,
    peers: String,
    /// The host CLI calls run from (a namespace of its own, no node in it).
    client: usize,
}

impl Cluster<'_> {
    fn admin(&self, node: usize) -> String {
        format!("{}:{ADMIN_PORT}", self.net.addr(node))
    }

    fn log(&self, node: usize) -> PathBuf {
        self.dir.path().join(format!("node-{node}.log"))
    }

    /// Starts founder `id` inside its namespace with `--peers` (a restart appends to the same log).
    fn start(&self, id: usize) -> NodeProcess {
        self.spawn(id, &["--peers".to_string(), self.peers.clone()])
    }

    /// Starts node `id` inside its namespace as a new voter: it asks node `via`'s admin API (by
    /// address) for the members, joins as a learner and is promoted once caught up. No `--peers`.
    fn start_joining_voter(&self, id: usize, via: usize) -> NodeProcess {
        self.spawn(
            id,
            &[
                "--join".to_string(),
                self.admin(via),
                "--voter".to_string(),
                "--listen".to_string(),
                format!("{}:{MESH_PORT}", host_name(id)),
            ],
        )
    }

    fn spawn(&self, id: usize, membership: &[String]) -> NodeProcess {
        let log = self.log(id);
        let file = OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let child = self
            .net
            .command(id, binary())
            .args(["node", "--id", &id.to_string()])
            .args(membership)
            .arg("--certs")
            .arg(&self.certs)
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("data-{id}")))
            .args(["--admin", &self.admin(id)])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("spawn node in its namespace");
        let admin = self.admin(id).parse().expect("admin address");
        NodeProcess::adopt(id as u64, admin, child, log)
    }

    /// Where a CLI call to `node` runs: the client host, or the node's own namespace while it is
    /// cut off from the bridge (the only place it can be reached from then).
    fn route(&self, node: usize) -> usize {
        if self.net.is_detached(node) {
            node
        } else {
            self.client
        }
    }

    /// `gridkeeper <args>` inside host `from`: stdout on exit 0, else the exit and stderr.
    fn cli(&self, from: usize, args: &[&str]) -> Result<String, String> {
        let mut command = self.net.command(from, binary());
        command.args(args).env("GRIDKEEPER_CERTS", &self.certs).env("RUST_LOG", "off");
        let output = run_bounded(&mut command, CLI_MAX)?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!("{}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim()))
        }
    }

    /// `gridkeeper registry --admin NODE <args>`, from wherever `node` can be reached.
    fn registry(&self, node: usize, args: &[&str]) -> Result<String, String> {
        let admin = self.admin(node);
        let mut all = vec!["registry", "--admin", admin.as_str()];
        all.extend_from_slice(args);
        self.cli(self.route(node), &all)
    }

    /// Node `node`'s `/status`, through the CLI.
    fn status(&self, node: usize) -> Option<StatusView> {
        let out = self.cli(self.route(node), &["status", "--json", "--admin", &self.admin(node)]).ok()?;
        serde_json::from_str(&out).ok()
    }

    /// The leader every node in `nodes` names, if they agree, it is one of them, and each sees
    /// exactly `nodes` alive; with its term.
    fn agreed_leader(&self, nodes: &[usize]) -> Option<(usize, u64)> {
        let views: Vec<StatusView> = nodes.iter().map(|&node| self.status(node)).collect::<Option<_>>()?;
        let leader = views.first()?.leader?;
        let term = views.iter().map(|view| view.term.unwrap_or(0)).max()?;
        let agreed = views.iter().all(|view| {
            let alive: BTreeSet<usize> =
                view.members.iter().filter(|member| member.alive).map(|member| member.id as usize).collect();
            view.leader == Some(leader) && alive == nodes.iter().copied().collect()
        });
        let leader = leader as usize;
        (agreed && nodes.contains(&leader)).then_some((leader, term))
    }

    /// The children of [`ROOT`] as `node` reads them (linearizable unless `local`).
    fn children(&self, node: usize, local: bool) -> Result<BTreeSet<String>, String> {
        let mut args = vec!["--json"];
        if local {
            args.push("--local");
        }
        args.extend_from_slice(&["ls", ROOT]);
        let out = self.registry(node, &args)?;
        serde_json::from_str::<Vec<String>>(&out).map(|names| names.into_iter().collect()).map_err(|e| e.to_string())
    }

    /// Creates `ROOT/name` with data `name` through `node`; `Ok` once acknowledged (exit 0).
    fn create(&self, node: usize, name: &str) -> Result<(), String> {
        self.registry(node, &["create", &format!("{ROOT}/{name}"), name]).map(|_| ())
    }
}

/// Prints the tail of every node's log if the test is failing.
struct LogsOnFailure(Vec<PathBuf>);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for log in &self.0 {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("===== {} (last 80 of {} lines) =====", log.display(), lines.len());
            for line in &lines[lines.len().saturating_sub(80)..] {
                eprintln!("{line}");
            }
        }
    }
}

/// Sets the flag when dropped (also while unwinding).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `gridkeeper certs` for nodes `1..=nodes`, with admin certificates valid for every node's address
/// and name (the CLI verifies the address it dials; `--admin` takes an address, not a name).
fn issue_certs(net: &NetLab, certs: &std::path::Path, nodes: usize) {
    let mut sans: Vec<String> = Vec::new();
    for node in 1..=nodes {
        sans.extend(["--san".to_string(), net.addr(node).to_string(), "--san".to_string(), host_name(node)]);
    }
    let ids = (1..=nodes).map(|id| id.to_string()).collect::<Vec<_>>().join(",");
    let issued = std::process::Command::new(binary())
        .args(["certs", "--out"])
        .arg(certs)
        .args(["--nodes", &ids])
        .args(&sans)
        .stdin(Stdio::null())
        .output()
        .expect("run certs");
    assert!(issued.status.success(), "certs failed: {}", String::from_utf8_lossy(&issued.stderr));
}

/// The tests of this file run one at a time: their timings are what they print.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn ms(duration: Duration) -> u128 {
    duration.as_millis()
}

#[test]
fn nodes_in_namespaces_form_by_names_fail_over_a_partitioned_leader_and_lose_no_acknowledged_write() {
    let _serial = serial();
    let started = Instant::now();
    let net = NetLab::new("process_netns", NODES + 1);
    let namespaces = net.namespaces();
    let dir = TempDir::new("netns");
    let certs = dir.path().join("certs");
    issue_certs(&net, &certs, NODES);
    let peers = (1..=NODES).map(|id| format!("{id}={}:{MESH_PORT}", host_name(id))).collect::<Vec<_>>().join(",");
    let cluster = Cluster { net: &net, dir: &dir, certs, peers, client: CLIENT };
    println!("netns lab: namespaces {namespaces:?}; peers {}", cluster.peers);

    let all: Vec<usize> = (1..=NODES).collect();
    let mut nodes: Vec<NodeProcess> = all.iter().map(|&id| cluster.start(id)).collect();
    let _logs = LogsOnFailure(all.iter().map(|&id| cluster.log(id)).collect());
    let mut failures: Vec<String> = Vec::new();

    // 1. The cluster forms by names, seen from the client host.
    let t_form = Instant::now();
    let formed = wait_for(WAIT_MAX, || cluster.agreed_leader(&all));
    let (leader, term) = formed.unwrap_or_else(|| {
        panic!(
            "no cluster formed by names within {WAIT_MAX:?}: {:?}",
            all.iter().map(|&n| cluster.status(n)).collect::<Vec<_>>()
        )
    });
    let formed_ms = ms(t_form.elapsed());
    println!("netns: the cluster formed by names in {formed_ms} ms: leader {leader}, term {term}");
    let view = cluster.status(NODES).expect("status");
    for member in &view.members {
        assert_eq!(member.addr, format!("{}:{MESH_PORT}", host_name(member.id as usize)), "members by name: {view:?}");
    }
    let table = cluster.cli(CLIENT, &["status", "--admin", &cluster.admin(1)]).expect("status table");
    println!("{table}");

    // 2. Acknowledged writes, spread over the nodes.
    let acked: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let ack = |name: &str| {
        acked.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(name.to_string());
    };
    cluster.registry(1, &["create", ROOT, "lab"]).expect("create the test's root znode");
    cluster.registry(2, &["create", &format!("{ROOT}/x"), "old"]).expect("create the key the partition overwrites");
    ack("x");
    for index in 0..9 {
        let name = format!("before-{index}");
        let node = index % NODES + 1;
        cluster.create(node, &name).unwrap_or_else(|error| panic!("write {name} through node {node}: {error}"));
        ack(&name);
    }

    // 3. Isolate the leader while a client keeps writing through every node.
    let old_leader = leader;
    let majority: Vec<usize> = all.iter().copied().filter(|&id| id != old_leader).collect();
    let stop = AtomicBool::new(false);
    let tried = AtomicU64::new(0);
    let (failover, stepped_down, read_on_old, rejoin) = std::thread::scope(|scope| {
        // A panic below must stop the writer, or the scope would wait for it forever.
        let _stop_writer = StopOnDrop(&stop);
        let writer = scope.spawn(|| {
            let mut seq = 0usize;
            let mut refused = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let node = seq % NODES + 1;
                let name = format!("w-{seq:05}");
                match cluster.create(node, &name) {
                    Ok(()) => ack(&name),
                    Err(error) => refused.push(format!("{name} via node {node}: {error}")),
                }
                tried.fetch_add(1, Ordering::Relaxed);
                seq += 1;
                std::thread::sleep(Duration::from_millis(30));
            }
            refused
        });
        // Let the writer get going against the whole cluster first.
        wait_for(WAIT_MAX, || (tried.load(Ordering::Relaxed) >= 3).then_some(()));

        let t_cut = Instant::now();
        net.detach(old_leader);
        println!("netns: detached node {old_leader} (the leader, term {term}) from the bridge");
        let elected =
            wait_for(FAILOVER_MAX, || cluster.agreed_leader(&majority).filter(|&(_, new_term)| new_term > term));
        let failover = t_cut.elapsed();
        let (new_leader, new_term) = elected.unwrap_or_else(|| {
            panic!(
                "the majority {majority:?} elected no new leader within {FAILOVER_MAX:?}: {:?}",
                majority.iter().map(|&n| cluster.status(n)).collect::<Vec<_>>()
            )
        });
        println!("netns: failover: node {new_leader} leads term {new_term}, {} ms after the cut", ms(failover));

        // The old leader must stop claiming leadership.
        let stepped_down = wait_for(STEP_DOWN_MAX, || {
            cluster.status(old_leader).filter(|view| view.leader != Some(old_leader as u64)).map(|_| t_cut.elapsed())
        });
        match stepped_down {
            Some(after) => println!("netns: old leader {old_leader} stepped down {} ms after the cut", ms(after)),
            None => {
                let view = cluster.status(old_leader);
                println!(
                    "netns: old leader {old_leader} still claims leadership {} ms after the cut",
                    ms(t_cut.elapsed())
                );
                failures.push(format!(
                    "the isolated old leader {old_leader} still reports itself leader {} ms after the cut \
                     (bound {STEP_DOWN_MAX:?}); its /status: {view:?}",
                    ms(t_cut.elapsed())
                ));
            }
        }

        // A write on the majority side, then a linearizable read of it on the old leader: an error
        // or the new value, never the old one (nor `no node`).
        let t_set = Instant::now();
        let set = wait_for(WAIT_MAX, || cluster.registry(new_leader, &["set", &format!("{ROOT}/x"), "new"]).ok());
        assert!(set.is_some(), "the majority never acknowledged a write within {WAIT_MAX:?}");
        println!("netns: the majority acknowledged set {ROOT}/x=new in {} ms", ms(t_set.elapsed()));
        let t_read = Instant::now();
        let read_on_old = cluster.registry(old_leader, &["get", &format!("{ROOT}/x")]);
        let read_ms = ms(t_read.elapsed());
        match &read_on_old {
            Ok(value) if value.trim() == "new" => {
                println!("netns: linearizable read on the old leader: \"new\" after {read_ms} ms")
            }
            Ok(value) => failures.push(format!(
                "STALE READ: the isolated old leader {old_leader} answered a linearizable get {ROOT}/x with \
                 {value:?} after the majority acknowledged \"new\""
            )),
            Err(error) if error.contains("no node") || error.contains("bad version") => failures.push(format!(
                "STALE READ: the isolated old leader answered a linearizable get {ROOT}/x from old state: {error}"
            )),
            Err(error) => println!("netns: linearizable read on the old leader refused after {read_ms} ms: {error}"),
        }
        let local = cluster.registry(old_leader, &["--local", "get", &format!("{ROOT}/x")]);
        println!("netns: (a --local read on the old leader, allowed to lag: {local:?})");

        // 4. Heal: the old leader rejoins and sees the majority's write.
        let t_heal = Instant::now();
        net.attach(old_leader);
        let rejoined = wait_for(REJOIN_MAX, || {
            cluster.agreed_leader(&all)?;
            let value = cluster.registry(old_leader, &["get", &format!("{ROOT}/x")]).ok()?;
            (value.trim() == "new").then_some(())
        });
        let rejoin = t_heal.elapsed();
        assert!(
            rejoined.is_some(),
            "old leader {old_leader} never rejoined within {REJOIN_MAX:?}: {:?}",
            all.iter().map(|&n| cluster.status(n)).collect::<Vec<_>>()
        );
        println!("netns: node {old_leader} rejoined and read the majority's write {} ms after healing", ms(rejoin));
        // A few more writes against the healed cluster, then stop the writer.
        let resumed = tried.load(Ordering::Relaxed);
        wait_for(WAIT_MAX, || (tried.load(Ordering::Relaxed) >= resumed + 6).then_some(()));
        stop.store(true, Ordering::Relaxed);
        let refused = writer.join().expect("writer thread");
        println!(
            "netns: the writer tried {} writes during the partition and heal, {} refused (not acknowledged)",
            tried.load(Ordering::Relaxed),
            refused.len()
        );
        for line in refused.iter().take(5) {
            println!("netns:   refused: {line}");
        }
        (failover, stepped_down, read_on_old, rejoin)
    });

    // Every acknowledged write so far, on the healed old leader.
    let snapshot = acked.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    let on_old = cluster.children(old_leader, false).expect("ls on the healed old leader");
    let missing: Vec<&String> = snapshot.difference(&on_old).collect();
    assert!(missing.is_empty(), "acknowledged writes missing on healed node {old_leader}: {missing:?}");

    // 5. kill -9 a follower, write while it is down, restart it: time until it has caught up.
    let (leader_now, _) = wait_for(WAIT_MAX, || cluster.agreed_leader(&all)).expect("a leader after healing");
    let victim = all.iter().copied().find(|&id| id != leader_now).expect("a follower");
    let survivors: Vec<usize> = all.iter().copied().filter(|&id| id != victim).collect();
    nodes[victim - 1].kill();
    let t_kill = Instant::now();
    let noticed = wait_for(WAIT_MAX, || cluster.agreed_leader(&survivors).map(|_| t_kill.elapsed()));
    let noticed =
        noticed.unwrap_or_else(|| panic!("survivors {survivors:?} never agreed after node {victim} was killed"));
    println!("netns: node {victim} killed (-9); survivors saw it down in {} ms", ms(noticed));
    for index in 0..5 {
        let name = format!("while-down-{index}");
        let node = survivors[index % survivors.len()];
        let done = wait_for(WAIT_MAX, || cluster.create(node, &name).ok());
        assert!(done.is_some(), "write {name} through node {node} while {victim} is down never acknowledged");
        ack(&name);
    }
    let expected = acked.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    let t_restart = Instant::now();
    nodes[victim - 1] = cluster.start(victim);
    let caught_up = wait_for(REJOIN_MAX, || {
        cluster.agreed_leader(&all)?;
        let local = cluster.children(victim, true).ok()?;
        expected.is_subset(&local).then_some(())
    });
    let restart = t_restart.elapsed();
    assert!(
        caught_up.is_some(),
        "restarted node {victim} never caught up within {REJOIN_MAX:?}: status {:?}, local children {:?}",
        cluster.status(victim),
        cluster.children(victim, true)
    );
    println!(
        "netns: node {victim} restarted and caught up (local state holds every acknowledged write) in {} ms",
        ms(restart)
    );

    // 6. Every acknowledged write, on every node: linearizable, and in each node's own state.
    let expected = acked.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    for &node in &all {
        let linearizable = cluster.children(node, false).unwrap_or_else(|error| panic!("ls on node {node}: {error}"));
        let missing: Vec<&String> = expected.difference(&linearizable).collect();
        assert!(missing.is_empty(), "node {node} lost acknowledged writes: {missing:?}");
        let local = wait_for(WAIT_MAX, || cluster.children(node, true).ok().filter(|names| expected.is_subset(names)));
        assert!(local.is_some(), "node {node}'s own state never held every acknowledged write");
        let value = cluster.registry(node, &["get", &format!("{ROOT}/x")]).expect("get x");
        assert_eq!(value.trim(), "new", "node {node} reads {ROOT}/x");
    }
    println!("netns: all {} acknowledged writes are present on nodes {all:?}", expected.len());

    println!(
        "netns figures: formed {formed_ms} ms; failover {} ms; old leader step-down {}; read on the isolated old \
         leader: {}; rejoin after heal {} ms; restart to caught-up {} ms; total {} ms",
        ms(failover),
        stepped_down
            .map_or_else(|| format!("none within {} ms", ms(STEP_DOWN_MAX)), |after| format!("{} ms", ms(after))),
        match &read_on_old {
            Ok(value) => format!("value {:?}", value.trim()),
            Err(error) => format!("refused ({})", error.lines().next().unwrap_or_default()),
        },
        ms(rejoin),
        ms(restart),
        ms(started.elapsed())
    );

    // 7. Tear down and check nothing is left: no process, namespace or /etc/netns entry.
    drop(nodes);
    drop(cluster);
    drop(net);
    assert_torn_down(&namespaces);
    assert!(failures.is_empty(), "{} failure(s):\n{}", failures.len(), failures.join("\n"));
}

/// The znode every write of the membership test goes under.
const FLOW: &str = "/flow";
/// Longest a new voter may take from its start to its promotion, and a removal to settle.
const MEMBERSHIP_MAX: Duration = Duration::from_secs(30);
/// Longest a batch of tasks may take to end.
const TASKS_MAX: Duration = Duration::from_secs(30);
/// How long each in-flight `sleep` task of the membership test runs: long enough that some are
/// running on node 3 when it is killed.
const IN_FLIGHT_MS: u64 = 1500;

impl Cluster<'_> {
    /// `members --json` through `via`.
    fn members(&self, via: usize) -> Result<MembersView, String> {
        let out = self.cli(self.route(via), &["members", "--json", "--admin", &self.admin(via)])?;
        serde_json::from_str(&out).map_err(|error| format!("members --json: {error}: {out}"))
    }

    /// The voters `via` reports, by id.
    fn voters(&self, via: usize) -> Option<Vec<u64>> {
        let view = self.members(via).ok()?;
        Some(view.members.iter().filter(|row| row.role == MemberRole::Voter).map(|row| row.id).collect())
    }

    /// `gridkeeper members <args> --admin VIA`.
    fn members_change(&self, via: usize, args: &[&str]) -> Result<String, String> {
        let admin = self.admin(via);
        let mut all = vec!["members"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--admin", admin.as_str()]);
        self.cli(self.route(via), &all)
    }

    /// [`Self::members_change`], again while the answer is one a client retries (no leader now, an
    /// outcome unknown, another change in flight: adding an id already added at the same address and
    /// removing one already removed change nothing), for at most [`MEMBERSHIP_MAX`]. Each retried
    /// answer is printed.
    fn members_change_retrying(&self, via: usize, args: &[&str]) -> Result<String, String> {
        let deadline = Instant::now() + MEMBERSHIP_MAX;
        loop {
            match self.members_change(via, args) {
                Err(error)
                    if Instant::now() < deadline
                        && ["unavailable", "outcome unknown", "in progress", "ran past"]
                            .iter()
                            .any(|transient| error.contains(transient)) =>
                {
                    println!("netns membership: members {} through node {via}: {error}; retrying", args.join(" "));
                    std::thread::sleep(Duration::from_millis(100));
                }
                answer => return answer,
            }
        }
    }

    /// `gridkeeper submit --json` of `count` tasks of `kind` through `via` (with `--wait` if `wait`).
    fn submit(
        &self,
        via: usize,
        kind: &str,
        input: Option<&str>,
        count: usize,
        wait: bool,
    ) -> Result<serde_json::Value, String> {
        let admin = self.admin(via);
        let count = count.to_string();
        let mut args = vec!["submit", "--admin", admin.as_str(), "--task", kind, "--count", count.as_str(), "--json"];
        if let Some(input) = input {
            args.extend_from_slice(&["--input", input]);
        }
        if wait {
            args.push("--wait");
        }
        let out = self.cli(self.route(via), &args)?;
        serde_json::from_str(&out).map_err(|error| format!("submit --json: {error}: {out}"))
    }

    /// `gridkeeper tasks --id ID --json` through `via`.
    fn task(&self, via: usize, id: u64) -> Result<TaskView, String> {
        let out =
            self.cli(self.route(via), &["tasks", "--admin", &self.admin(via), "--id", &id.to_string(), "--json"])?;
        serde_json::from_str(&out).map_err(|error| format!("tasks --id {id} --json: {error}: {out}"))
    }

    /// Every task `via` lists (each state; pages followed).
    fn all_task_ids(&self, via: usize) -> Result<Vec<u64>, String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let admin = self.admin(via);
            let mut args = vec!["tasks", "--admin", admin.as_str(), "--json", "--limit", "100"];
            if let Some(cursor) = &cursor {
                args.extend_from_slice(&["--cursor", cursor.as_str()]);
            }
            let out = self.cli(self.route(via), &args)?;
            let page: serde_json::Value =
                serde_json::from_str(&out).map_err(|error| format!("tasks --json: {error}"))?;
            let tasks = page["tasks"].as_array().ok_or_else(|| format!("tasks --json has no tasks: {out}"))?;
            ids.extend(tasks.iter().filter_map(|task| task["id"].as_u64()));
            match page["next"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => match page["next"].as_u64() {
                    Some(next) => cursor = Some(next.to_string()),
                    None => return Ok(ids),
                },
            }
        }
        Err("tasks: more than 100 pages".to_string())
    }
}

/// The ids of a `submit --json` answer.
fn submitted_ids(answer: &serde_json::Value) -> Vec<u64> {
    answer["ids"].as_array().map(|ids| ids.iter().filter_map(serde_json::Value::as_u64).collect()).unwrap_or_default()
}

/// An attempt's state as the API names it (`lost`, `succeeded`, ...).
fn attempt_state(attempt: &AttemptView) -> String {
    serde_json::to_value(attempt.state)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{:?}", attempt.state))
}

/// `lost@3,succeeded@4` for a task's attempts.
fn attempt_pattern(task: &TaskView) -> String {
    task.attempts
        .iter()
        .map(|attempt| format!("{}@{}", attempt_state(attempt), attempt.node))
        .collect::<Vec<_>>()
        .join(",")
}

/// One writer of the membership test: creates `FLOW/w-N` through the nodes in `via`, in turn.
#[derive(Default)]
struct Flow {
    via: Mutex<Vec<usize>>,
    /// Acknowledged keys, with when they were acknowledged.
    acked: Mutex<Vec<(String, Instant)>>,
    refused: Mutex<Vec<String>>,
    tried: AtomicU64,
    stop: AtomicBool,
}

impl Flow {
    fn run(&self, cluster: &Cluster<'_>) {
        let mut seq = 0usize;
        while !self.stop.load(Ordering::Relaxed) {
            let via = self.via.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
            let node = via[seq % via.len()];
            let name = format!("w-{seq:05}");
            match cluster.registry(node, &["create", &format!("{FLOW}/{name}"), &name]) {
                Ok(_) => {
                    self.acked.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((name, Instant::now()))
                }
                Err(error) => self
                    .refused
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(format!("{name} via node {node}: {error}")),
            }
            self.tried.fetch_add(1, Ordering::Relaxed);
            seq += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn tried(&self) -> u64 {
        self.tried.load(Ordering::Relaxed)
    }
}

/// Which voter the membership test kills for good.
#[derive(Clone, Copy, Debug)]
enum Victim {
    /// This node (a follower: node 1, the lowest id, initialises the cluster and leads it first).
    Node(usize),
    /// Whichever node leads when the kill comes.
    Leader,
}

#[test]
fn a_voter_killed_for_good_is_replaced_by_a_new_node_at_a_new_address_while_writes_and_tasks_flow() {
    replace_a_dead_voter(Victim::Node(NODES));
}

#[test]
fn a_leader_killed_for_good_is_replaced_by_a_new_node_at_a_new_address_while_writes_and_tasks_flow() {
    replace_a_dead_voter(Victim::Leader);
}

/// Kills a voter (`which`) for good and replaces it by node 4 at `gk-4`: `members add`, node 4 joins
/// as a voter, `members remove` of the dead one; writes and tasks flow throughout. See the module
/// docs.
fn replace_a_dead_voter(which: Victim) {
    let _serial = serial();
    let started = Instant::now();
    // Hosts 1-3: the founders; 4: the replacement; 5: the client.
    let (new_node, client) = (NODES + 1, NODES + 2);
    let net = NetLab::new("process_netns_membership", client);
    let namespaces = net.namespaces();
    let dir = TempDir::new("netns-membership");
    let certs = dir.path().join("certs");
    issue_certs(&net, &certs, new_node);
    let peers = (1..=NODES).map(|id| format!("{id}={}:{MESH_PORT}", host_name(id))).collect::<Vec<_>>().join(",");
    let cluster = Cluster { net: &net, dir: &dir, certs, peers, client };
    println!("netns membership lab: namespaces {namespaces:?}; peers {}", cluster.peers);

    let founders: Vec<usize> = (1..=NODES).collect();
    let mut nodes: Vec<NodeProcess> = founders.iter().map(|&id| cluster.start(id)).collect();
    let _logs = LogsOnFailure((1..=new_node).map(|id| cluster.log(id)).collect());

    let formed = wait_for(WAIT_MAX, || cluster.agreed_leader(&founders));
    let (leader, term) = formed.unwrap_or_else(|| {
        panic!(
            "no cluster formed by names within {WAIT_MAX:?}: {:?}",
            founders.iter().map(|&n| cluster.status(n)).collect::<Vec<_>>()
        )
    });
    println!("netns membership: formed in {} ms: leader {leader}, term {term}", ms(started.elapsed()));
    // The voter killed for good, and the two that carry on.
    let victim = match which {
        Victim::Node(id) => id,
        Victim::Leader => leader,
    };
    let survivors: Vec<usize> = founders.iter().copied().filter(|&id| id != victim).collect();
    let (first, second) = (survivors[0], survivors[1]);
    println!("netns membership: node {victim} will be killed for good ({which:?}); nodes {survivors:?} carry on");
    cluster.registry(first, &["create", FLOW, "flow"]).expect("create the test's root znode");

    let flow = Flow { via: Mutex::new(founders.clone()), ..Flow::default() };
    let mut batches: Vec<(&str, Vec<u64>)> = Vec::new();
    let (killed_at, promoted, settled, on_victim) = std::thread::scope(|scope| {
        let _stop_writer = StopOnDrop(&flow.stop);
        let writer = scope.spawn(|| flow.run(&cluster));
        wait_for(WAIT_MAX, || (flow.tried() >= 3).then_some(()));

        // Tasks before the change: all succeed.
        let before =
            cluster.submit(first, "echo", None, 20, true).unwrap_or_else(|error| panic!("submit before: {error}"));
        assert_eq!(before["states"], serde_json::json!({ "succeeded": 20 }), "tasks before the change: {before}");
        batches.push(("echo before", submitted_ids(&before)));

        // Tasks in flight across the kill: submitted, not awaited; some run on node 3 when it dies.
        let input = format!("{{\"ms\":{IN_FLIGHT_MS}}}");
        let in_flight = cluster
            .submit(second, "sleep", Some(&input), 12, false)
            .unwrap_or_else(|error| panic!("submit in flight: {error}"));
        let in_flight_ids = submitted_ids(&in_flight);
        assert_eq!(in_flight_ids.len(), 12, "in-flight submission: {in_flight}");
        let on_victim = wait_for(Duration::from_secs(10), || {
            let admin = cluster.admin(first);
            let victim = victim.to_string();
            let args = ["tasks", "--admin", admin.as_str(), "--node", victim.as_str(), "--state", "running", "--json"];
            let out = cluster.cli(client, &args).ok()?;
            let page: serde_json::Value = serde_json::from_str(&out).ok()?;
            let running: Vec<u64> = page["tasks"].as_array()?.iter().filter_map(|task| task["id"].as_u64()).collect();
            (!running.is_empty()).then_some(running)
        });
        match &on_victim {
            Some(ids) => println!("netns membership: tasks {ids:?} are running on node {victim} as it is killed"),
            None => println!("netns membership: no in-flight task was seen running on node {victim} (placement)"),
        }
        batches.push(("sleep in flight", in_flight_ids.clone()));

        // Node 3 dies for good (the leader or not: whichever it is now).
        let leader_at_kill = cluster.status(first).and_then(|view| view.leader);
        println!("netns membership: the leader before the kill is {leader_at_kill:?}");
        if matches!(which, Victim::Leader) {
            assert_eq!(leader_at_kill, Some(victim as u64), "the leader changed before the kill");
        }
        flow.via.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).retain(|&node| node != victim);
        nodes[victim - 1].kill();
        let killed_at = Instant::now();
        println!("netns membership: node {victim} killed (-9) for good");

        // Node 4, at its own address in its own namespace, takes its place.
        let new_addr = format!("{}:{MESH_PORT}", host_name(new_node));
        let added =
            cluster.members_change_retrying(first, &["add", "--id", &new_node.to_string(), "--addr", &new_addr]);
        let added = added.unwrap_or_else(|error| panic!("members add --id {new_node} --addr {new_addr}: {error}"));
        println!(
            "netns membership: members add answered {:?} {} ms after the kill",
            added.trim(),
            ms(killed_at.elapsed())
        );
        let t_join = Instant::now();
        nodes.push(cluster.start_joining_voter(new_node, first));
        let mut learner_seen = None;
        let promoted = wait_for(MEMBERSHIP_MAX, || {
            let view = cluster.members(first).ok()?;
            let row = view.members.iter().find(|row| row.id == new_node as u64)?;
            if learner_seen.is_none() && row.role == MemberRole::Learner {
                learner_seen = Some(t_join.elapsed());
            }
            (row.role == MemberRole::Voter).then(|| t_join.elapsed())
        });
        let promoted = promoted.unwrap_or_else(|| {
            panic!("node {new_node} was not promoted to voter within {MEMBERSHIP_MAX:?}: {:?}", cluster.members(first))
        });
        println!(
            "netns membership: node {new_node} started, joined ({}) and was promoted to voter {} ms after its start \
             ({} ms after the kill)",
            learner_seen.map_or_else(|| "not seen as a learner".to_string(), |at| format!("learner at {} ms", ms(at))),
            ms(promoted),
            ms(killed_at.elapsed())
        );
        let view = cluster.members(new_node).expect("members through the new node");
        println!("netns membership: members through node {new_node}: {view:?}");
        let row = view.members.iter().find(|row| row.id == new_node as u64).expect("the new node's row");
        assert_eq!(row.addr, new_addr, "the new node's address: {view:?}");

        // Node 3 is removed; the voters settle on 1, 2, 4 as every one of them sees it.
        let t_remove = Instant::now();
        let removed = cluster.members_change_retrying(new_node, &["remove", "--id", &victim.to_string()]);
        let removed = removed.unwrap_or_else(|error| panic!("members remove --id {victim}: {error}"));
        println!("netns membership: members remove answered {:?}", removed.trim());
        let mut remaining = vec![first as u64, second as u64, new_node as u64];
        remaining.sort_unstable();
        let settled = wait_for(MEMBERSHIP_MAX, || {
            remaining
                .iter()
                .all(|&via| cluster.voters(via as usize).is_some_and(|voters| voters == remaining))
                .then(|| t_remove.elapsed())
        });
        let settled = settled.unwrap_or_else(|| {
            panic!(
                "the voters did not settle on {remaining:?} within {MEMBERSHIP_MAX:?}: {:?}",
                remaining.iter().map(|&via| cluster.members(via as usize)).collect::<Vec<_>>()
            )
        });
        println!(
            "netns membership: voters are exactly {remaining:?} on each of them {} ms after the removal",
            ms(settled)
        );
        // Gone as a voter at once; gone as a registered node once its session ends. A leader killed
        // for good is declared down (0.2 s) before a new leader is elected, so no leader expires its
        // session then: it ends at its timeout, counted from the new leader's election.
        let gone = wait_for(MEMBERSHIP_MAX, || {
            cluster.members(second).ok().filter(|view| view.members.iter().all(|row| row.id != victim as u64))
        });
        assert!(gone.is_some(), "node {victim} still listed: {:?}", cluster.members(second));
        flow.via.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(new_node);

        // The removed id is never reused.
        let reused = cluster.members_change(
            second,
            &["add", "--id", &victim.to_string(), "--addr", &format!("{}:{MESH_PORT}", host_name(victim))],
        );
        match reused {
            Ok(out) => panic!("members add --id {victim} (a removed id) succeeded: {out}"),
            Err(error) => {
                assert!(error.contains("never reused"), "members add of a removed id: {error}");
                println!("netns membership: members add --id {victim} again refused: {error}");
            }
        }

        // Tasks through the new node: all succeed.
        let after = cluster
            .submit(new_node, "echo", None, 20, true)
            .unwrap_or_else(|error| panic!("submit via node {new_node}: {error}"));
        assert_eq!(after["states"], serde_json::json!({ "succeeded": 20 }), "tasks through node {new_node}: {after}");
        batches.push(("echo via the new node", submitted_ids(&after)));

        // A few more writes through the new membership, then stop the writer.
        let resumed = flow.tried();
        wait_for(WAIT_MAX, || (flow.tried() >= resumed + 6).then_some(()));
        flow.stop.store(true, Ordering::Relaxed);
        writer.join().expect("writer thread");
        (killed_at, promoted, settled, on_victim)
    });

    // The writer's figures: tried, refused, and the longest wait between acknowledgements after the kill.
    let acked = flow.acked.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    let refused = flow.refused.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    let mut longest_gap = Duration::ZERO;
    let mut previous = killed_at;
    for &(_, at) in acked.iter().filter(|(_, at)| *at >= killed_at) {
        longest_gap = longest_gap.max(at - previous);
        previous = at;
    }
    println!(
        "netns membership: the writer tried {} creates, {} acknowledged, {} refused; longest wait for an \
         acknowledgement after the kill {} ms",
        flow.tried(),
        acked.len(),
        refused.len(),
        ms(longest_gap)
    );
    for line in refused.iter().take(5) {
        println!("netns membership:   refused: {line}");
    }
    assert!(acked.len() > 10, "too few writes were acknowledged: {}", acked.len());

    // Every acknowledged write, read linearizably (one `registry get` each) on the new node and node 1.
    let t_reads = Instant::now();
    let lost: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for reader in 0..8 {
            let (acked, lost, cluster) = (&acked, &lost, &cluster);
            scope.spawn(move || {
                for (name, _) in acked.iter().skip(reader).step_by(8) {
                    for node in [new_node, first] {
                        let read = cluster.registry(node, &["get", &format!("{FLOW}/{name}")]);
                        if read.as_deref().map(str::trim) != Ok(name.as_str()) {
                            lost.lock()
                                .unwrap_or_else(|poisoned| poisoned.into_inner())
                                .push(format!("{name} on node {node}: {read:?}"));
                        }
                    }
                }
            });
        }
    });
    let lost = lost.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    assert!(lost.is_empty(), "{} acknowledged writes are not readable: {:?}", lost.len(), &lost[..lost.len().min(20)]);
    println!(
        "netns membership: all {} acknowledged writes read back linearizably on nodes {new_node} and {first} in {} ms",
        acked.len(),
        ms(t_reads.elapsed())
    );

    // Every accepted task ends exactly once: succeeded, with exactly one succeeded attempt; and the
    // cluster holds no task nobody submitted (none was duplicated).
    let t_tasks = Instant::now();
    let mut patterns: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    let mut wrong = Vec::new();
    let readers = [first, second, new_node];
    let mut submitted: BTreeSet<u64> = BTreeSet::new();
    for (batch, ids) in &batches {
        for (index, &id) in ids.iter().enumerate() {
            assert!(submitted.insert(id), "task id {id} was handed out twice");
            let via = readers[index % readers.len()];
            let ended = wait_for(TASKS_MAX, || cluster.task(via, id).ok().filter(|task| task.state.is_terminal()));
            let Some(task) = ended else {
                wrong
                    .push(format!("{batch} task {id}: not terminal within {TASKS_MAX:?}: {:?}", cluster.task(via, id)));
                continue;
            };
            let succeeded = task.attempts.iter().filter(|attempt| attempt.state == AttemptState::Succeeded).count();
            let pattern = attempt_pattern(&task);
            if task.state != TaskState::Succeeded || succeeded != 1 {
                wrong.push(format!("{batch} task {id}: state {:?}, attempts {pattern}", task.state));
            }
            let states = task.attempts.iter().map(attempt_state).collect::<Vec<_>>().join(",");
            *patterns.entry(format!("{batch}: {states}")).or_default() += 1;
            if task.attempts.len() > 1 {
                println!("netns membership: {batch} task {id} attempts: {pattern}");
            }
        }
    }
    let listed: BTreeSet<u64> = cluster.all_task_ids(new_node).expect("tasks listing").into_iter().collect();
    if listed != submitted {
        wrong.push(format!(
            "the task listing differs from what was submitted: extra {:?}, missing {:?}",
            listed.difference(&submitted).collect::<Vec<_>>(),
            submitted.difference(&listed).collect::<Vec<_>>()
        ));
    }
    println!(
        "netns membership: {} tasks checked in {} ms; attempt patterns: {patterns:?}",
        submitted.len(),
        ms(t_tasks.elapsed())
    );
    assert!(wrong.is_empty(), "{} task(s) did not end exactly once:\n{}", wrong.len(), wrong.join("\n"));

    println!(
        "netns membership figures ({which:?}, node {victim} killed): promotion {} ms after node {new_node} started; voters settled {} ms after the \
         removal; in-flight tasks on node {victim} at the kill: {}; longest write gap after the kill {} ms; total {} ms",
        ms(promoted),
        ms(settled),
        on_victim.map_or(0, |ids| ids.len()),
        ms(longest_gap),
        ms(started.elapsed())
    );

    drop(nodes);
    drop(cluster);
    drop(net);
    assert_torn_down(&namespaces);
}

/// Checks that no namespace of a dropped lab, nor its `/etc/netns` entry, is left.
fn assert_torn_down(namespaces: &[String]) {
    let listed = support::netns::ip(&["netns", "list"]);
    for ns in namespaces {
        assert!(!listed.lines().any(|line| line.split_whitespace().next() == Some(ns)), "{ns} left behind: {listed}");
        assert!(!std::path::Path::new("/etc/netns").join(ns).exists(), "/etc/netns/{ns} left behind");
    }
}
