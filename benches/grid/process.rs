//! Real `gridkeeper node` processes for the `failover` and `soak` modes: a 3-node cluster on 127.0.0.1
//! started from the binary (tests/support), the bench's flags, and what the machine was doing (load
//! average, CPU busy share) while a figure was taken.

use std::time::Duration;

use gridkeeper::api::grid::{TaskView, TasksQuery};
use gridkeeper::client::Client;
use gridkeeper::mesh::DetectorConfig;

use crate::support::{sees_alive, status, wait_for, ClusterSpec, NodeProcess};

/// The bench's command line: words (modes) and `--name value` / `--name=value` flags.
pub struct Flags {
    args: Vec<String>,
}

impl Flags {
    pub fn from_env() -> Flags {
        Flags { args: std::env::args().skip(1).collect() }
    }

    /// Whether `word` was given (a mode such as `failover`, or a bare flag).
    pub fn has(&self, word: &str) -> bool {
        self.args.iter().any(|arg| arg == word)
    }

    /// The value of `--name`, if given.
    pub fn value(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        self.args.iter().enumerate().find_map(|(index, arg)| {
            if arg == name {
                self.args.get(index + 1).cloned()
            } else {
                arg.strip_prefix(&prefix).map(str::to_string)
            }
        })
    }

    /// `--name` parsed, or `default` (a value that does not parse is an error, not a default).
    pub fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.value(name) {
            Some(text) => text.parse().unwrap_or_else(|_| panic!("{name} {text}: not a number")),
            None => default,
        }
    }

    /// The detector settings to run at: `--silence MS[,MS...]` (each with `--heartbeat MS`, or a fifth
    /// of its silence), else the nodes' defaults. `GK_SILENCE` and `GK_HEARTBEAT` stand for the flags.
    pub fn detections(&self) -> Vec<Detection> {
        let silences = self.value("--silence").or_else(|| std::env::var("GK_SILENCE").ok());
        let heartbeat: Option<u64> = self
            .value("--heartbeat")
            .or_else(|| std::env::var("GK_HEARTBEAT").ok())
            .map(|text| text.parse().expect("--heartbeat MS"));
        let Some(silences) = silences else { return vec![Detection::defaults()] };
        silences
            .split(',')
            .map(|text| {
                let silence: u64 = text.trim().parse().expect("--silence MS[,MS...]");
                let heartbeat = heartbeat.unwrap_or((silence / 5).max(10));
                Detection {
                    config: DetectorConfig { heartbeat_interval_ms: heartbeat, peer_silence_max_ms: silence },
                    given: true,
                }
            })
            .collect()
    }
}

/// The heartbeat interval and silence a cluster runs with.
#[derive(Clone, Copy, Debug)]
pub struct Detection {
    pub config: DetectorConfig,
    /// Passed as flags (else the nodes run their defaults, which `config` shows).
    pub given: bool,
}

impl Detection {
    pub fn defaults() -> Detection {
        Detection { config: DetectorConfig::default(), given: false }
    }

    fn node_args(&self) -> Vec<String> {
        if !self.given {
            return Vec::new();
        }
        vec![
            "--heartbeat-interval-ms".into(),
            self.config.heartbeat_interval_ms.to_string(),
            "--peer-silence-max-ms".into(),
            self.config.peer_silence_max_ms.to_string(),
        ]
    }

    pub fn label(&self) -> String {
        let DetectorConfig { heartbeat_interval_ms, peer_silence_max_ms } = self.config;
        let source = if self.given { "flags" } else { "defaults" };
        format!("heartbeat {heartbeat_interval_ms} ms, silence {peer_silence_max_ms} ms ({source})")
    }
}

/// Three `gridkeeper node` processes and a runtime to call them from.
pub struct ProcessCluster {
    pub spec: ClusterSpec,
    nodes: Vec<NodeProcess>,
    args: Vec<String>,
    pub runtime: tokio::runtime::Runtime,
}

pub const IDS: [u64; 3] = [1, 2, 3];
/// Longest the bench waits for a cluster to come up or a node to come back.
const READY_MAX: Duration = Duration::from_secs(60);

impl ProcessCluster {
    /// Starts nodes 1 to 3 with `slots` each and `detection`.
    pub fn start(name: &str, detection: Detection, slots: u32) -> ProcessCluster {
        let spec = ClusterSpec::new(name, IDS.len() as u64);
        let mut args = vec!["--slots".to_string(), slots.to_string()];
        args.extend(detection.node_args());
        let nodes = IDS.iter().map(|&id| Self::spawn(&spec, &args, id)).collect();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        ProcessCluster { spec, nodes, args, runtime }
    }

    fn spawn(spec: &ClusterSpec, args: &[String], id: u64) -> NodeProcess {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        spec.start_with_args(id, &spec.certs(), &args)
    }

    /// kill -9 of node `id`.
    pub fn kill(&mut self, id: u64) {
        self.nodes[(id - 1) as usize].kill();
    }

    /// Starts node `id` again on its data.
    pub fn restart(&mut self, id: u64) {
        self.nodes[(id - 1) as usize] = Self::spawn(&self.spec, &self.args, id);
    }

    /// Waits until every node in `alive` sees exactly `alive` up, agrees on a leader among them, and
    /// the leader has every one registered as a worker. Returns the leader.
    pub fn wait_ready(&self, alive: &[u64]) -> u64 {
        wait_for(READY_MAX, || {
            let view = status(self.spec.admin(alive[0]))?;
            let leader = view.leader.filter(|leader| alive.contains(leader))?;
            let leader_view = status(self.spec.admin(leader))?;
            let workers = leader_view.members.iter().filter(|member| member.slots.is_some()).count();
            let all_see = alive.iter().all(|&id| sees_alive(self.spec.admin(id), alive));
            (workers == alive.len() && all_see).then_some(leader)
        })
        .expect("a leader, every node up and registered")
    }

    /// A client over the admin APIs of `ids`.
    pub fn client(&self, ids: &[u64]) -> Client {
        let admins: Vec<_> = ids.iter().map(|&id| self.spec.admin(id)).collect();
        self.runtime.block_on(Client::connect_any(&admins, self.spec.access())).expect("client")
    }

    /// The current view of each of `ids` (a task the node does not answer for is left out).
    pub fn views(&self, client: &Client, ids: &[u64]) -> Vec<TaskView> {
        ids.iter()
            .filter_map(|&id| {
                let query = TasksQuery { id: Some(id), ..TasksQuery::default() };
                self.runtime.block_on(client.tasks(&query)).ok()?.into_iter().next()
            })
            .collect()
    }

    /// The text of node `id`'s log.
    pub fn log_text(&self, id: u64) -> String {
        self.nodes[(id - 1) as usize].log_text()
    }
}

/// Unix time in ms, as the task table stamps attempts.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64)
}

/// The 1-, 5- and 15-minute load averages.
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut fields = text.split_whitespace().map(|field| field.parse().unwrap_or(0.0));
    [fields.next().unwrap_or(0.0), fields.next().unwrap_or(0.0), fields.next().unwrap_or(0.0)]
}

/// The machine's CPU time so far: (busy, total) in ticks, from `/proc/stat`.
pub fn cpu_ticks() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|line| line.starts_with("cpu ")) else { return (0, 0) };
    let fields: Vec<u64> = line.split_whitespace().skip(1).filter_map(|field| field.parse().ok()).collect();
    let total: u64 = fields.iter().take(8).sum();
    // idle and iowait are the 4th and 5th fields.
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The busy share of the machine's CPUs between two [`cpu_ticks`] readings, in percent.
pub fn busy_percent(from: (u64, u64), to: (u64, u64)) -> f64 {
    let total = to.1.saturating_sub(from.1);
    if total == 0 {
        return 0.0;
    }
    100.0 * to.0.saturating_sub(from.0) as f64 / total as f64
}

pub fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}
