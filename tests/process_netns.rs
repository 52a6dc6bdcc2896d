//! Real processes, each node in a network namespace of its own (root only; CI runs as root).
//!
//! Three nodes and a client host sit on a private bridge (see `support::netns`): every node has its
//! own address and the name `gk-<id>` from its namespace's hosts file, and `--peers` names the nodes
//! only by those names. No namespace has a default route and the root namespace gets no address, so
//! nothing leaves the lab. Every port is the same fixed number in each namespace.
//!
//! The test checks that the cluster forms by names; that isolating the leader (its veth detached
//! from the bridge) elects a new leader on the majority side while the old one steps down and serves
//! no stale linearizable read; that the old leader rejoins when healed; that a kill -9'd node restarts
//! and catches up; and that no acknowledged write is lost, on any node. Every wait is bounded; the
//! failover, step-down, rejoin and restart times are printed. On failure the node logs are printed.

mod support;

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gridkeeper::admin::StatusView;
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
}

impl Cluster<'_> {
    fn admin(&self, node: usize) -> String {
        format!("{}:{ADMIN_PORT}", self.net.addr(node))
    }

    fn log(&self, node: usize) -> PathBuf {
        self.dir.path().join(format!("node-{node}.log"))
    }

    /// Starts node `id` inside its namespace (a restart appends to the same log).
    fn start(&self, id: usize) -> NodeProcess {
        let log = self.log(id);
        let file = OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let child = self
            .net
            .command(id, binary())
            .args(["node", "--id", &id.to_string(), "--peers", &self.peers, "--certs"])
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
            CLIENT
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

fn ms(duration: Duration) -> u128 {
    duration.as_millis()
}

#[test]
fn nodes_in_namespaces_form_by_names_fail_over_a_partitioned_leader_and_lose_no_acknowledged_write() {
    let started = Instant::now();
    let net = NetLab::new("process_netns", NODES + 1);
    let namespaces = net.namespaces();
    let dir = TempDir::new("netns");
    let certs = dir.path().join("certs");
    // Admin certificates valid for every node's address and name (the CLI verifies the address it
    // dials; `--admin` takes an address, not a name).
    let mut sans: Vec<String> = Vec::new();
    for node in 1..=NODES {
        sans.extend(["--san".to_string(), net.addr(node).to_string(), "--san".to_string(), host_name(node)]);
    }
    let issued = std::process::Command::new(binary())
        .args(["certs", "--out"])
        .arg(&certs)
        .args(["--nodes", "1,2,3"])
        .args(&sans)
        .stdin(Stdio::null())
        .output()
        .expect("run certs");
    assert!(issued.status.success(), "certs failed: {}", String::from_utf8_lossy(&issued.stderr));
    let peers = (1..=NODES).map(|id| format!("{id}={}:{MESH_PORT}", host_name(id))).collect::<Vec<_>>().join(",");
    let cluster = Cluster { net: &net, dir: &dir, certs, peers };
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
    let listed = support::netns::ip(&["netns", "list"]);
    for ns in &namespaces {
        assert!(!listed.lines().any(|line| line.split_whitespace().next() == Some(ns)), "{ns} left behind: {listed}");
        assert!(!std::path::Path::new("/etc/netns").join(ns).exists(), "/etc/netns/{ns} left behind");
    }
    assert!(failures.is_empty(), "{} failure(s):\n{}", failures.len(), failures.join("\n"));
}
