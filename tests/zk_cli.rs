//! zkCli, ZooKeeper's own command-line client (Debian's `zookeeper` package, ZooKeeper 3.8), against a
//! 3-node gridkeeper cluster through its ZooKeeper listener: what zkCli prints for creates of every
//! mode, reads, updates, listings with stats, deletes and their errors, session-owned ephemerals, and
//! watches (one-shot and persistent recursive) fired by another client's changes through another node.
//!
//! The expected transcripts are what zkCli prints against real ZooKeeper 3.8. To check a change to
//! them, run the same tests against a real ensemble instead of gridkeeper (each test works under a
//! root znode of its own, so one ensemble serves every run):
//!
//! ```sh
//! GK_ZKCLI_SERVERS=127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183 cargo test --test zk_cli
//! ```
//!
//! zkCli, its JRE and the log4j binding are installed by support::zk_tools on first use.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use support::zk_tools::{self, kill_group, run_bounded, ZK_BIN_DIR, ZK_CLASSPATH};
use support::{leader_of, wait_for, ClusterSpec, NodeProcess, TempDir, WAIT_MAX};

/// Longest one zkCli run may take (a JVM start, a connect, a few requests).
const ZKCLI_TIME_MAX: Duration = Duration::from_secs(60);
/// Session timeout the interactive clients ask for: short, so a killed client's ephemerals go soon.
const SESSION_TIMEOUT_MS: &str = "4000";

/// One cluster at a time: each test starts 3 node processes and JVMs, and two tests at once on a 2-core
/// CI machine starve heartbeats and session pings, which tests nothing but the machine.
static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Where the tests run: a gridkeeper cluster started here, or the ensemble in GK_ZKCLI_SERVERS.
struct Target {
    /// Declared first so they are killed before their data dirs and the lock go.
    nodes: Vec<NodeProcess>,
    /// Every server's ZooKeeper address, in node id order.
    servers: Vec<String>,
    /// A root znode no other test (or run, against a shared ensemble) uses.
    root: String,
    dir: TempDir,
    next_run: std::cell::Cell<u32>,
    spec: Option<ClusterSpec>,
    _exclusive: std::sync::MutexGuard<'static, ()>,
}

impl Target {
    fn start(name: &str) -> Target {
        zk_tools::ensure_debian_packages().unwrap_or_else(|error| panic!("installing zkCli failed: {error}"));
        let exclusive = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let dir = TempDir::new(&format!("zkcli-{name}"));
        std::fs::write(dir.path().join("log4j.properties"), LOG4J_PROPERTIES).expect("log4j.properties");
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.as_nanos());
        let root = format!("/zkcli-{name}-{}-{nanos}", std::process::id());
        let mut target = Target {
            servers: Vec::new(),
            root,
            dir,
            next_run: 0.into(),
            spec: None,
            nodes: Vec::new(),
            _exclusive: exclusive,
        };
        if let Ok(servers) = std::env::var("GK_ZKCLI_SERVERS") {
            target.servers = servers.split(',').map(str::to_string).collect();
            return target;
        }
        let spec = ClusterSpec::new(&format!("zkcli-{name}"), 3);
        target.servers = spec.ids.iter().map(|&id| spec.zk(id).to_string()).collect();
        target.nodes = spec.ids.iter().map(|&id| spec.start(id)).collect();
        wait_for(WAIT_MAX, || leader_of(&spec, &spec.ids)).expect("a leader is elected");
        for server in &target.servers {
            let answer = wait_for(WAIT_MAX, || (four_letter_word(server, "ruok") == "imok").then_some(()));
            assert!(answer.is_some(), "{server} answers ruok with imok{}", target.node_logs());
        }
        target.spec = Some(spec);
        target
    }

    /// The servers with 1-based node ids `ids`, as a zkCli `-server` list.
    fn hosts(&self, ids: &[usize]) -> String {
        ids.iter().map(|&id| self.servers[id - 1].as_str()).collect::<Vec<_>>().join(",")
    }

    fn path(&self, relative: &str) -> String {
        format!("{}{relative}", self.root)
    }

    /// zkCli against `hosts` with `flags`, reading commands from stdin, logging to its own file.
    fn zkcli(&self, hosts: &str, flags: &[&str]) -> (Command, PathBuf) {
        let run = self.next_run.get() + 1;
        self.next_run.set(run);
        let client_log = self.dir.path().join(format!("zkcli-{run}.client.log"));
        let mut command = Command::new(Path::new(ZK_BIN_DIR).join("zkCli.sh"));
        command.args(["-server", hosts, "-waitforconnection", "-timeout", SESSION_TIMEOUT_MS]).args(flags);
        // zkCli.sh's classpath has no SLF4J binding (the client would log nothing); a second -cp wins
        // over the script's, and the log goes to a file so stdout holds only zkCli's answers.
        command.env(
            "CLIENT_JVMFLAGS",
            format!(
                "-cp {ZK_CLASSPATH} -Dlog4j.configuration=file:{} -Dzkcli.log={} -XX:+UseSerialGC -XX:TieredStopAtLevel=1",
                self.dir.path().join("log4j.properties").display(),
                client_log.display()
            ),
        );
        (command, self.dir.path().join(format!("zkcli-{run}.out")))
    }

    /// Runs `script` (one command a line) through zkCli connected to `ids`; the transcript.
    fn run(&self, ids: &[usize], script: &str) -> Vec<String> {
        let (mut command, out) = self.zkcli(&self.hosts(ids), &[]);
        let input = out.with_extension("in");
        std::fs::write(&input, format!("{script}\nquit\n")).expect("script");
        command.stdin(std::fs::File::open(&input).expect("script"));
        let finished = run_bounded(&mut command, ZKCLI_TIME_MAX, &out).unwrap_or_else(|error| panic!("{error}"));
        assert!(
            finished.success(),
            "zkCli {} exited {:?} (timed out: {}) on:\n{script}\n--- output ---\n{}{}",
            self.hosts(ids),
            finished.code,
            finished.timed_out,
            finished.output,
            self.node_logs()
        );
        transcript(&finished.output)
    }

    /// A zkCli session that stays open while the test feeds it commands one at a time.
    fn session(&self, ids: &[usize]) -> Session {
        let (mut command, out) = self.zkcli(&self.hosts(ids), &[]);
        let file = std::fs::File::create(&out).expect("zkCli output");
        let child = {
            use std::os::unix::process::CommandExt;
            command
                .stdin(Stdio::piped())
                .stdout(file.try_clone().expect("zkCli output"))
                .stderr(file)
                .process_group(0)
                .spawn()
                .expect("spawn zkCli")
        };
        Session { child, out }
    }

    /// Every node's warnings, errors and ZooKeeper front end lines (the last 20 each), then the
    /// warnings and errors of every zkCli run so far: for failure messages.
    fn node_logs(&self) -> String {
        let mut text = String::new();
        for node in &self.nodes {
            let log = strip_ansi(&node.log_text());
            let lines: Vec<&str> =
                log.lines().filter(|line| [" WARN ", " ERROR ", "zk"].iter().any(|key| line.contains(key))).collect();
            text += &format!("\n--- node {} log ({}): warnings, errors, zk lines ---\n", node.id, node.log.display());
            text += &lines[lines.len().saturating_sub(20)..].join("\n");
        }
        for run in 1..=self.next_run.get() {
            let log = self.dir.path().join(format!("zkcli-{run}.client.log"));
            let text_of_run = std::fs::read_to_string(&log).unwrap_or_default();
            let mut lines =
                text_of_run.lines().skip_while(|line| !(line.contains(" WARN ") || line.contains(" ERROR ")));
            let shown: Vec<&str> = lines.by_ref().take(12).collect();
            if !shown.is_empty() {
                text += &format!("\n--- zkCli run {run} client log ({}) from its first warning ---\n", log.display());
                text += &shown.join("\n");
            }
        }
        text
    }
}

/// `text` without terminal colour escapes (the nodes colour their logs).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An escape runs to its final letter, e.g. ESC [ 2 m.
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

const LOG4J_PROPERTIES: &str = "\
log4j.rootLogger=INFO, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=${zkcli.log}
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] - %m%n
";

/// An interactive zkCli; its process group is killed on drop.
struct Session {
    child: Child,
    out: PathBuf,
}

impl Session {
    fn stdin(&mut self) -> &mut ChildStdin {
        self.child.stdin.as_mut().expect("stdin is open until quit")
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin(), "{command}").expect("zkCli reads its stdin");
        self.stdin().flush().expect("flush");
    }

    fn transcript(&self) -> Vec<String> {
        transcript(&std::fs::read_to_string(&self.out).unwrap_or_default())
    }

    /// Waits until the transcript holds the line `line`.
    fn wait_line(&self, line: &str, target: &Target) {
        let seen = wait_for(WAIT_MAX, || self.transcript().iter().any(|seen| seen == line).then_some(()));
        assert!(
            seen.is_some(),
            "zkCli never printed `{line}`; it printed:\n{}{}",
            self.transcript().join("\n"),
            target.node_logs()
        );
    }

    /// `quit`, then waits for the JVM to exit; the transcript.
    fn quit(mut self) -> Vec<String> {
        self.send("quit");
        drop(self.child.stdin.take());
        let exited = wait_for(ZKCLI_TIME_MAX, || self.child.try_wait().ok().flatten());
        assert!(exited.is_some_and(|status| status.success()), "zkCli exits cleanly on quit: {exited:?}");
        self.transcript()
    }

    /// kill -9 of the JVM, as a crashed client: its session is left to expire.
    fn crash(mut self) {
        kill_group(self.child.id());
        let _ = self.child.wait();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            kill_group(self.child.id());
            let _ = self.child.wait();
        }
    }
}

/// What zkCli printed in answer to its commands: without the banner and the connect and close events,
/// blank lines and `WATCHER::` headers.
fn transcript(output: &str) -> Vec<String> {
    let connected = "WatchedEvent state:SyncConnected type:None path:null";
    let mut lines: Vec<String> = output
        .lines()
        .skip_while(|line| *line != connected)
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .filter(|line| !matches!(*line, "WATCHER::" | "Welcome to ZooKeeper!" | "JLine support is disabled"))
        .filter(|line| !line.starts_with("SLF4J:"))
        .map(str::to_string)
        .collect();
    if lines.last().is_some_and(|line| line == "WatchedEvent state:Closed type:None path:null") {
        lines.pop();
    }
    lines
}

/// Whether `line` matches `pattern`, where each `*` stands for any run of characters.
fn matches_pattern(pattern: &str, line: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = line.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    for (index, part) in parts.iter().enumerate() {
        if index + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// Asserts the transcript line by line against `expected` patterns.
fn assert_transcript(actual: &[String], expected: &[String], target: &Target) {
    let mismatch =
        (0..actual.len().max(expected.len())).find(|&index| match (expected.get(index), actual.get(index)) {
            (Some(pattern), Some(line)) => !matches_pattern(pattern, line),
            _ => true,
        });
    if let Some(index) = mismatch {
        let show = |lines: &[String]| {
            lines.iter().enumerate().map(|(at, line)| format!("{at:3} {line}")).collect::<Vec<_>>().join("\n")
        };
        panic!(
            "zkCli's transcript differs at line {index}: expected {:?}, got {:?}\n--- expected ---\n{}\n--- got ---\n{}{}",
            expected.get(index),
            actual.get(index),
            show(expected),
            show(actual),
            target.node_logs()
        );
    }
}

/// The eleven `key = value` lines zkCli prints for a Stat, as a pattern.
fn stat_pattern() -> Vec<String> {
    [
        "cZxid",
        "ctime",
        "mZxid",
        "mtime",
        "pZxid",
        "cversion",
        "dataVersion",
        "aclVersion",
        "ephemeralOwner",
        "dataLength",
        "numChildren",
    ]
    .iter()
    .map(|key| format!("{key} = *"))
    .collect()
}

/// The Stat printed at `lines[from..from + 11]`, by key.
fn stat_at(lines: &[String], from: usize) -> BTreeMap<String, String> {
    lines[from..from + 11]
        .iter()
        .filter_map(|line| line.split_once(" = "))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn hex(stat: &BTreeMap<String, String>, key: &str) -> u64 {
    let value = &stat[key];
    u64::from_str_radix(value.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("{key} = {value} is not hex"))
}

fn number(stat: &BTreeMap<String, String>, key: &str) -> u64 {
    stat[key].parse().unwrap_or_else(|_| panic!("{key} = {} is not a number", stat[key]))
}

/// A list zkCli printed as `[a, b]`, as a set.
fn list_set(line: &str) -> BTreeSet<String> {
    let inner = line.trim_start_matches('[').trim_end_matches(']');
    inner.split(", ").filter(|item| !item.is_empty()).map(str::to_string).collect()
}

/// Sends a four-letter word to `server`; the answer (empty if none).
fn four_letter_word(server: &str, word: &str) -> String {
    use std::io::Read;
    let Ok(mut stream) = std::net::TcpStream::connect(server) else { return String::new() };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(word.as_bytes()).is_err() {
        return String::new();
    }
    let mut answer = String::new();
    let _ = stream.take(1 << 16).read_to_string(&mut answer);
    answer
}

#[test]
fn zkcli_creates_reads_updates_lists_and_deletes() {
    let target = Target::start("crud");
    let r = |relative: &str| target.path(relative);
    let script = [
        format!("create {}", r("")),
        format!("create {} data-a", r("/a")),
        format!("create -e {} e1", r("/eph")),
        format!("create -s {} s1", r("/seq-")),
        format!("create -s {} s2", r("/seq-")),
        format!("create -e -s {} x", r("/es-")),
        format!("get {}", r("/a")),
        format!("set {} data-b", r("/a")),
        format!("get -s {}", r("/a")),
        format!("ls {}", r("")),
        format!("ls -s {}", r("")),
        format!("stat {}", r("/a")),
        format!("stat {}", r("/eph")),
        format!("getEphemerals {}", r("")),
        format!("getAllChildrenNumber {}", r("")),
        "whoami".to_string(),
        format!("create {} again", r("/a")),
        format!("set {} v -v 7", r("/a")),
        format!("delete -v 7 {}", r("/a")),
        format!("delete {}", r("/a")),
        format!("get {}", r("/a")),
        format!("create {}", r("/d/x")),
        format!("create {}", r("/d")),
        format!("create {}", r("/d/x")),
        format!("delete {}", r("/d")),
        format!("deleteall {}", r("/d")),
        format!("ls {}", r("")),
    ];
    // Node 1 and node 2 only: zkCli picks one of them at random.
    let lines = target.run(&[1, 2], &script.join("\n"));
    // A sequential name carries the parent's child-creation count (its cversion) before the create.
    let mut expected: Vec<String> = vec![
        format!("Created {}", r("")),
        format!("Created {}", r("/a")),
        format!("Created {}", r("/eph")),
        format!("Created {}", r("/seq-0000000002")),
        format!("Created {}", r("/seq-0000000003")),
        format!("Created {}", r("/es-0000000004")),
        "data-a".into(),
        "data-b".into(),
    ];
    let get_stat_at = expected.len();
    expected.extend(stat_pattern());
    let children = "[a, eph, es-0000000004, seq-0000000002, seq-0000000003]".to_string();
    expected.push(children.clone());
    expected.push(children);
    let parent_stat_at = expected.len();
    expected.extend(stat_pattern());
    let a_stat_at = expected.len();
    expected.extend(stat_pattern());
    let eph_stat_at = expected.len();
    expected.extend(stat_pattern());
    let ephemerals_at = expected.len();
    expected.extend([
        "[*]".to_string(),
        "5".into(),
        "Auth scheme: User".into(),
        "ip: 127.0.0.1".into(),
        format!("Node already exists: {}", r("/a")),
        format!("version No is not valid : {}", r("/a")),
        format!("version No is not valid : {}", r("/a")),
        format!("Node does not exist: {}", r("/a")),
        format!("Node does not exist: {}", r("/d/x")),
        format!("Created {}", r("/d")),
        format!("Created {}", r("/d/x")),
        format!("Node not empty: {}", r("/d")),
        "[eph, es-0000000004, seq-0000000002, seq-0000000003]".into(),
    ]);
    assert_transcript(&lines, &expected, &target);

    let a = stat_at(&lines, a_stat_at);
    assert_eq!(stat_at(&lines, get_stat_at), a, "get -s and stat print the same Stat");
    assert_eq!((number(&a, "dataVersion"), number(&a, "dataLength")), (1, 6), "one set of 6 bytes: {a:?}");
    assert_eq!((number(&a, "cversion"), number(&a, "numChildren"), number(&a, "aclVersion")), (0, 0, 0));
    assert_eq!(hex(&a, "ephemeralOwner"), 0, "a persistent znode has no owner");
    assert!(hex(&a, "mZxid") > hex(&a, "cZxid"), "the set came after the create: {a:?}");
    assert_eq!(hex(&a, "pZxid"), hex(&a, "cZxid"), "no child ever changed: {a:?}");

    let parent = stat_at(&lines, parent_stat_at);
    assert_eq!(
        (number(&parent, "numChildren"), number(&parent, "cversion")),
        (5, 5),
        "five children created: {parent:?}"
    );
    assert!(hex(&parent, "pZxid") > hex(&a, "cZxid"), "the last child came after /a: {parent:?}");
    assert!(hex(&parent, "cZxid") < hex(&a, "cZxid"));

    let eph = stat_at(&lines, eph_stat_at);
    assert_ne!(hex(&eph, "ephemeralOwner"), 0, "an ephemeral znode names its session: {eph:?}");
    assert_eq!(number(&eph, "dataLength"), 2);
    let ephemerals = list_set(&lines[ephemerals_at]);
    let expected_ephemerals: BTreeSet<String> = [r("/eph"), r("/es-0000000004")].into_iter().collect();
    assert_eq!(ephemerals, expected_ephemerals, "getEphemerals lists this session's ephemerals");

    // The session is gone (zkCli quit): so are its ephemerals, seen through node 3.
    let after = target.run(&[3], &format!("ls {}\ngetEphemerals {}", r(""), r("")));
    assert_eq!(after, vec!["[seq-0000000002, seq-0000000003]".to_string(), "[]".into()]);
}

fn event(kind: &str, path: &str) -> String {
    format!("WatchedEvent state:SyncConnected type:{kind} path:{path}")
}

#[test]
fn zkcli_one_shot_watches_fire_once_on_another_clients_changes() {
    let target = Target::start("watch-once");
    let r = |relative: &str| target.path(relative);
    let mut watcher = target.session(&[1]);
    watcher.send(&format!("create {}", r("")));
    watcher.send(&format!("create {}", r("/kids")));
    watcher.send(&format!("create {} armed", r("/armed")));
    watcher.send(&format!("get -w {}", r("/armed")));
    watcher.send(&format!("stat -w {}", r("/later")));
    watcher.send(&format!("ls -w {}", r("/kids")));
    watcher.wait_line("[]", &target);
    // Another client, through another node; events come in the order of the changes.
    let changes = [
        format!("set {} fired", r("/armed")),
        format!("create {} now", r("/later")),
        format!("create {}", r("/kids/k1")),
    ];
    target.run(&[3], &changes.join("\n"));
    watcher.wait_line(&event("NodeChildrenChanged", &r("/kids")), &target);
    // The watches are used up: these changes reach nobody. ZooKeeper delivers a watch event before the
    // data it announces, so once the watcher reads the new data no event can still be on its way.
    let again = [
        format!("set {} again", r("/armed")),
        format!("set {} again", r("/later")),
        format!("create {}", r("/kids/k2")),
    ];
    target.run(&[2], &again.join("\n"));
    watcher.send(&format!("sync {}", r("")));
    watcher.send(&format!("get {}", r("/later")));
    watcher.wait_line("again", &target);
    let lines = watcher.quit();
    let expected = vec![
        format!("Created {}", r("")),
        format!("Created {}", r("/kids")),
        format!("Created {}", r("/armed")),
        "armed".into(),
        format!("Node does not exist: {}", r("/later")),
        "[]".into(),
        event("NodeDataChanged", &r("/armed")),
        event("NodeCreated", &r("/later")),
        event("NodeChildrenChanged", &r("/kids")),
        "Sync is OK".into(),
        "again".into(),
    ];
    assert_transcript(&lines, &expected, &target);
}

#[test]
fn zkcli_persistent_recursive_watch_sees_every_change_below_it() {
    let target = Target::start("watch-recursive");
    let r = |relative: &str| target.path(relative);
    let mut watcher = target.session(&[1]);
    watcher.send(&format!("create {}", r("")));
    watcher.send(&format!("create {}", r("/w")));
    watcher.send(&format!("addWatch -m PERSISTENT_RECURSIVE {}", r("/w")));
    watcher.send(&format!("create {} armed", r("/armed")));
    watcher.wait_line(&format!("Created {}", r("/armed")), &target);
    let changes = [
        format!("create {} 1", r("/w/x")),
        format!("create {} 2", r("/w/x/y")),
        format!("set {} 3", r("/w/x")),
        format!("create {} elsewhere", r("/outside")),
        format!("deleteall {}", r("/w/x")),
        format!("set {} last", r("/w")),
    ];
    target.run(&[3], &changes.join("\n"));
    watcher.wait_line(&event("NodeDataChanged", &r("/w")), &target);
    // Nothing outside the watched subtree, and no child events (a recursive watch has none): after a
    // read of the last change, no event can still be on its way.
    watcher.send(&format!("get {}", r("/w")));
    watcher.wait_line("last", &target);
    let lines = watcher.quit();
    let expected = vec![
        format!("Created {}", r("")),
        format!("Created {}", r("/w")),
        format!("Created {}", r("/armed")),
        event("NodeCreated", &r("/w/x")),
        event("NodeCreated", &r("/w/x/y")),
        event("NodeDataChanged", &r("/w/x")),
        event("NodeDeleted", &r("/w/x/y")),
        event("NodeDeleted", &r("/w/x")),
        event("NodeDataChanged", &r("/w")),
        "last".into(),
    ];
    assert_transcript(&lines, &expected, &target);
}

#[test]
fn zkcli_ephemerals_go_with_their_session_closed_or_expired() {
    let target = Target::start("ephemeral");
    let r = |relative: &str| target.path(relative);
    target.run(&[3], &format!("create {}", r("")));

    // Closed: the ephemerals go with the close.
    let mut owner = target.session(&[1]);
    owner.send(&format!("create -e {} one", r("/e1")));
    owner.send(&format!("create -e {} two", r("/e2")));
    owner.wait_line(&format!("Created {}", r("/e2")), &target);
    let seen = target.run(&[3], &format!("ls {}", r("")));
    assert_eq!(seen, vec!["[e1, e2]".to_string()], "another client on another node sees both");
    owner.quit();
    let seen = target.run(&[3], &format!("ls {}", r("")));
    assert_eq!(seen, vec!["[]".to_string()], "the owner quit: its ephemerals are gone");

    // Crashed: the ephemeral stays until the session expires, then goes.
    let mut crashed = target.session(&[2]);
    crashed.send(&format!("create -e {} three", r("/e3")));
    crashed.wait_line(&format!("Created {}", r("/e3")), &target);
    crashed.crash();
    let seen = target.run(&[1], &format!("ls {}", r("")));
    assert_eq!(seen, vec!["[e3]".to_string()], "a crashed client's session outlives it until it expires");
    let expired = wait_for(WAIT_MAX, || (target.run(&[1], &format!("ls {}", r(""))) == ["[]"]).then_some(()));
    assert!(expired.is_some(), "the crashed client's ephemeral goes when its {SESSION_TIMEOUT_MS} ms session expires");
}

#[test]
fn transcript_patterns_match() {
    assert!(matches_pattern("cZxid = *", "cZxid = 0x100000008"));
    assert!(matches_pattern("[*]", "[/a/b, /a/c]"));
    assert!(matches_pattern("a*c*e", "abcde"));
    assert!(!matches_pattern("a*c*e", "abcd"));
    assert!(!matches_pattern("Created /a", "Created /ab"));
    assert_eq!(
        transcript("Connecting to x\n\nWATCHER::\n\nWatchedEvent state:SyncConnected type:None path:null\nWelcome to ZooKeeper!\nCreated /a\n\nWATCHER::\n\nWatchedEvent state:Closed type:None path:null\n"),
        vec!["Created /a".to_string()]
    );
}
