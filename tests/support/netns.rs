//! A private network of Linux network namespaces for real-process tests (root only).
//!
//! [`NetLab::new`] builds, for one test:
//! - a bridge namespace `gklab-<pid>-<n>-br` holding a bridge `br0`;
//! - per host `i` (1-based) a namespace `gklab-<pid>-<n>-<i>` whose `eth0` is one end of a veth pair;
//!   the other end, `h<i>`, sits in the bridge namespace, attached to `br0`. Both ends are created
//!   directly in their namespaces, so no link ever exists in the root namespace;
//! - an address `10.A.B.<i>/24` on each `eth0`, in a /24 that no address or route of the root
//!   namespace overlaps. The root namespace gets no address and no link; no namespace has a default
//!   route (only the on-link /24), so no packet leaves the lab;
//! - `lo` up everywhere, and `/etc/netns/<ns>/hosts` naming every host (`gk-<i>`) plus `localhost`:
//!   `ip netns exec` bind-mounts it over `/etc/hosts`, so processes in the lab resolve the names.
//!
//! [`NetLab::command`] runs a program inside a host's namespace (`ip netns exec`), [`NetLab::detach`]
//! isolates a host (its bridge-side veth leaves the bridge) and [`NetLab::attach`] heals it.
//!
//! Dropping the lab (also while a test panics, and when construction fails half way) kills every
//! process left in its namespaces, deletes the namespaces (which deletes their links) and removes the
//! `/etc/netns` directories. A run killed before its drop leaves names with a dead pid: the next
//! [`NetLab::new`] sweeps those. Not root, or no `ip` even after installing iproute2: a panic saying
//! so, never a skip. Every `ip` command is checked: a failure panics with its stderr.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Every lab namespace's name starts with this, then `<pid>-<counter>-`.
const PREFIX: &str = "gklab-";
/// The bridge inside the bridge namespace.
const BRIDGE: &str = "br0";
/// A host's end of its veth pair, inside its namespace.
const HOST_IF: &str = "eth0";
/// Where `ip netns exec` looks for per-namespace files.
const ETC_NETNS: &str = "/etc/netns";
/// Longest one `ip` command may take.
const IP_TIME_MAX: Duration = Duration::from_secs(30);

/// Labs of this process are built one at a time (the sweep and the subnet choice look at the whole
/// machine).
static BUILDING: Mutex<()> = Mutex::new(());
static NEXT_LAB: AtomicU64 = AtomicU64::new(0);

/// A host's name in the lab's hosts files: `gk-<i>`.
pub fn host_name(i: usize) -> String {
    format!("gk-{i}")
}

/// One lab: a bridge namespace and `hosts` host namespaces. See the module docs.
pub struct NetLab {
    tag: String,
    bridge_ns: String,
    host_ns: Vec<String>,
    subnet: [u8; 3],
    /// Hosts whose bridge-side veth is detached now.
    detached: Mutex<BTreeSet<usize>>,
}

impl NetLab {
    /// Builds a lab of `hosts` hosts named `gk-1..gk-<hosts>`. `tag` only labels messages.
    ///
    /// # Panics
    /// If not root, if `ip` is missing and cannot be installed, or if any `ip` command fails (what
    /// was built is removed first).
    pub fn new(tag: &str, hosts: usize) -> NetLab {
        assert!((1..=250).contains(&hosts), "a lab holds 1 to 250 hosts, not {hosts}");
        require_root_and_ip();
        let _building = BUILDING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sweep_stale();
        let base = format!("{PREFIX}{}-{}-", std::process::id(), NEXT_LAB.fetch_add(1, Ordering::Relaxed));
        let lab = NetLab {
            tag: tag.to_string(),
            bridge_ns: format!("{base}br"),
            host_ns: (1..=hosts).map(|i| format!("{base}{i}")).collect(),
            subnet: choose_subnet(),
            detached: Mutex::new(BTreeSet::new()),
        };
        // A panic from here on drops `lab`, which removes whatever was made.
        lab.build();
        lab
    }

    fn build(&self) {
        std::fs::create_dir_all(ETC_NETNS).unwrap_or_else(|error| panic!("create {ETC_NETNS}: {error}"));
        ip(&["netns", "add", &self.bridge_ns]);
        ip(&["-n", &self.bridge_ns, "link", "set", "lo", "up"]);
        ip(&["-n", &self.bridge_ns, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0"]);
        ip(&["-n", &self.bridge_ns, "link", "set", BRIDGE, "up"]);
        let hosts_file = self.hosts_file();
        for i in 1..=self.hosts() {
            let ns = self.ns(i).to_string();
            ip(&["netns", "add", &ns]);
            let dir = Path::new(ETC_NETNS).join(&ns);
            std::fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("create {}: {error}", dir.display()));
            std::fs::write(dir.join("hosts"), &hosts_file)
                .unwrap_or_else(|error| panic!("write {}/hosts: {error}", dir.display()));
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            let bridge_end = bridge_port(i);
            ip(&[
                "-n",
                &self.bridge_ns,
                "link",
                "add",
                &bridge_end,
                "type",
                "veth",
                "peer",
                "name",
                HOST_IF,
                "netns",
                &ns,
            ]);
            ip(&["-n", &self.bridge_ns, "link", "set", &bridge_end, "master", BRIDGE]);
            ip(&["-n", &self.bridge_ns, "link", "set", &bridge_end, "up"]);
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", self.addr(i)), "dev", HOST_IF]);
            ip(&["-n", &ns, "link", "set", HOST_IF, "up"]);
        }
        self.check_confined();
    }

    /// No namespace of the lab has a default route, and the root namespace has no address in the
    /// lab's range.
    fn check_confined(&self) {
        for ns in std::iter::once(&self.bridge_ns).chain(&self.host_ns) {
            for family in ["-4", "-6"] {
                let routes = ip(&["-n", ns, family, "route", "show", "default"]);
                assert!(routes.trim().is_empty(), "{}: namespace {ns} has a default route: {routes}", self.tag);
            }
        }
        let root = ip(&["-4", "-o", "addr", "show"]);
        let range = format!("inet {}.", self.subnet.map(|byte| byte.to_string()).join("."));
        assert!(!root.contains(&range), "{}: the root namespace has an address in the lab's range: {root}", self.tag);
    }

    /// The hosts file every host namespace gets.
    fn hosts_file(&self) -> String {
        let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for i in 1..=self.hosts() {
            text.push_str(&format!("{} {}\n", self.addr(i), host_name(i)));
        }
        text
    }

    /// How many hosts.
    pub fn hosts(&self) -> usize {
        self.host_ns.len()
    }

    /// Host `i`'s namespace name.
    pub fn ns(&self, i: usize) -> &str {
        assert!((1..=self.hosts()).contains(&i), "no host {i} in a lab of {}", self.hosts());
        &self.host_ns[i - 1]
    }

    /// Host `i`'s address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, u8::try_from(i).expect("host index"))
    }

    /// `program args...` to be run inside host `i`'s namespace (`ip netns exec NS program`). The
    /// program replaces `ip` (same pid), so killing the child kills the program.
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.ns(i)]).arg(program).stdin(Stdio::null());
        command
    }

    /// Isolates host `i`: its bridge-side veth leaves the bridge (both ends stay up; frames to and
    /// from it go nowhere).
    pub fn detach(&self, i: usize) {
        ip(&["-n", &self.bridge_ns, "link", "set", &bridge_port(i), "nomaster"]);
        self.detached.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(i);
    }

    /// Heals host `i`: its bridge-side veth joins the bridge again.
    pub fn attach(&self, i: usize) {
        ip(&["-n", &self.bridge_ns, "link", "set", &bridge_port(i), "master", BRIDGE]);
        self.detached.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&i);
    }

    /// Whether host `i` is detached now.
    pub fn is_detached(&self, i: usize) -> bool {
        self.detached.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(&i)
    }

    /// Every namespace name of this lab (the bridge's first).
    pub fn namespaces(&self) -> Vec<String> {
        std::iter::once(self.bridge_ns.clone()).chain(self.host_ns.iter().cloned()).collect()
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        // Never panic here (a panicking test is already unwinding): report and go on.
        for ns in self.namespaces() {
            if let Err(error) = remove_namespace(&ns) {
                eprintln!("netns lab {}: cleaning up {ns}: {error}", self.tag);
            }
        }
        // The directory itself, if no other lab (or anything else) uses it now.
        let _ = std::fs::remove_dir(ETC_NETNS);
    }
}

/// The bridge-side end of host `i`'s veth pair, inside the bridge namespace.
fn bridge_port(i: usize) -> String {
    format!("h{i}")
}

/// Runs `ip args...`; its stdout. Panics with the command and its stderr if it fails or hangs.
pub fn ip(args: &[&str]) -> String {
    let mut command = Command::new("ip");
    command.args(args);
    let output =
        run_bounded(&mut command, IP_TIME_MAX).unwrap_or_else(|error| panic!("ip {}: {error}", args.join(" ")));
    assert!(
        output.status.success(),
        "ip {} failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `command` with stdout and stderr captured for at most `limit`; past it the child gets
/// SIGKILL and the answer is an error naming the bound.
pub fn run_bounded(command: &mut Command, limit: Duration) -> Result<Output, String> {
    use std::io::Read;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("spawn {:?}: {error}", command.get_program()))?;
    let mut stdout = child.stdout.take().expect("stdout piped");
    let mut stderr = child.stderr.take().expect("stderr piped");
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => break None,
            Err(error) => return Err(format!("wait: {error}")),
        }
    };
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        let _ = (out.join(), err.join());
        return Err(format!("{:?} ran past {limit:?} and was killed", command.get_program()));
    };
    Ok(Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() })
}

/// Root, and an `ip` from iproute2 (installed through apt-get if missing), or a panic saying which
/// is missing.
fn require_root_and_ip() {
    // SAFETY: geteuid(2) has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the network-namespace test needs root (it creates namespaces, veth pairs and a bridge, and writes \
         {ETC_NETNS}); it runs as uid {euid}. CI runs it as root; run it as root (e.g. sudo -E cargo test --test \
         process_netns)"
    );
    let has_ip = || Command::new("ip").arg("-V").output().is_ok_and(|output| output.status.success());
    if !has_ip() {
        if let Err(error) = super::zk_tools::ensure_apt("iproute2.installed", &["iproute2"]) {
            panic!("`ip` (iproute2) is missing and installing it failed: {error}");
        }
        assert!(has_ip(), "iproute2 is installed but `ip -V` still fails (is /usr/sbin or /sbin on PATH?)");
    }
    let netns_ok = Command::new("ip").args(["netns", "list"]).output().is_ok_and(|output| output.status.success());
    assert!(netns_ok, "`ip netns list` fails: this kernel or container does not offer network namespaces");
}

/// `gklab-<pid>-...` → pid.
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes the namespaces and `/etc/netns` directories that earlier runs, killed before their drop,
/// left behind (their pid is gone).
fn sweep_stale() {
    let mut stale: BTreeSet<String> = BTreeSet::new();
    let listed = ip(&["netns", "list"]);
    for line in listed.lines() {
        // `NAME` or `NAME (id: N)`.
        if let Some(name) = line.split_whitespace().next() {
            if owner_pid(name).is_some_and(|pid| !alive(pid)) {
                stale.insert(name.to_string());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(ETC_NETNS) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owner_pid(&name).is_some_and(|pid| !alive(pid)) {
                stale.insert(name);
            }
        }
    }
    for name in stale {
        eprintln!("netns lab: removing {name}, left by an earlier run that did not finish");
        if let Err(error) = remove_namespace(&name) {
            panic!("cannot remove the leftover namespace {name}: {error}");
        }
    }
}

/// Kills every process in namespace `ns`, deletes it (with its links) and its `/etc/netns` dir.
/// Missing pieces are fine.
fn remove_namespace(ns: &str) -> Result<(), String> {
    let exists = Path::new("/var/run/netns").join(ns).exists() || Path::new("/run/netns").join(ns).exists();
    let mut problems = Vec::new();
    if exists {
        // Kill until none is left: a dying parent may have started a child a moment ago.
        for _ in 0..50 {
            let Ok(output) = run_bounded(Command::new("ip").args(["netns", "pids", ns]), IP_TIME_MAX) else { break };
            let pids: Vec<i32> =
                String::from_utf8_lossy(&output.stdout).split_whitespace().filter_map(|pid| pid.parse().ok()).collect();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: kill(2) on a pid; no memory is involved.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        match run_bounded(Command::new("ip").args(["netns", "del", ns]), IP_TIME_MAX) {
            Ok(output) if output.status.success() => {}
            Ok(output) => {
                problems.push(format!("ip netns del {ns}: {}", String::from_utf8_lossy(&output.stderr).trim()))
            }
            Err(error) => problems.push(format!("ip netns del {ns}: {error}")),
        }
    }
    let dir: PathBuf = Path::new(ETC_NETNS).join(ns);
    if dir.exists() {
        if let Err(error) = std::fs::remove_dir_all(&dir) {
            problems.push(format!("remove {}: {error}", dir.display()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// `a.b.c.d/len` → (network as u32, len).
fn parse_prefix(text: &str) -> Option<(u32, u32)> {
    let (addr, len) = match text.split_once('/') {
        Some((addr, len)) => (addr, len.parse().ok()?),
        None => (text, 32),
    };
    let addr: Ipv4Addr = addr.parse().ok()?;
    (len <= 32).then_some((u32::from(addr), len))
}

fn overlaps((a, a_len): (u32, u32), (b, b_len): (u32, u32)) -> bool {
    let len = a_len.min(b_len);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    a & mask == b & mask
}

/// A /24 in 10.200.0.0-10.249.255.0 derived from the pid (so labs of different runs differ), moved
/// on past any that an address or route of the root namespace overlaps (other than a default
/// route). The lab never routes to the root namespace, so this only keeps the range unambiguous.
fn choose_subnet() -> [u8; 3] {
    let mut taken: Vec<(u32, u32)> = Vec::new();
    for listing in [ip(&["-4", "-o", "addr", "show"]), ip(&["-4", "route", "show", "table", "all"])] {
        for word in listing.split_whitespace() {
            if word.contains('.') {
                if let Some(prefix) = parse_prefix(word) {
                    if prefix.1 > 0 {
                        taken.push(prefix);
                    }
                }
            }
        }
    }
    let start = std::process::id() as usize * 7 + NEXT_LAB.load(Ordering::Relaxed) as usize;
    for step in 0..(50 * 250) {
        let slot = (start + step) % (50 * 250);
        let candidate = [10, 200 + (slot / 250) as u8, (slot % 250) as u8];
        let network = (u32::from(Ipv4Addr::new(candidate[0], candidate[1], candidate[2], 0)), 24);
        if !taken.iter().any(|&prefix| overlaps(prefix, network)) {
            return candidate;
        }
    }
    panic!("every /24 in 10.200.0.0-10.249.255.0 overlaps an address or route of the root namespace: {taken:?}");
}
