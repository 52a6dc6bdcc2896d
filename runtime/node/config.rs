//! Node configuration: flags and an optional TOML file, merged (flags win) and validated once.
//!
//! Parse, don't validate: everything after [`NodeSettings::validate`] takes a [`NodeConfig`] whose
//! values are known to be consistent. Checks that need the file system (certificates, data dir) live
//! in `node/preflight.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::admin::admission::AdminServerConfig;
use crate::grid::Strategy;
use crate::ids::NodeId;
use crate::limits::{ADMIN_HOSTS_MAX, ADMIN_TIMEOUT_MS_MAX, ADMIN_TIMEOUT_MS_MIN, CONFIG_FILE_BYTES_MAX, PEERS_MAX};
use crate::mesh::address::AddrError;
use crate::mesh::{DetectorConfig, PeerAddr};
use crate::registry::RegistryLimits;
use crate::zk::config::{ZkConfig, ZkSettings};

/// Largest znode data a configuration may allow: a value must fit a consensus frame with room to spare.
const ZNODE_DATA_BYTES_CEILING: usize = crate::limits::FRAME_BYTES_MAX / 4;

/// Settings as given, before validation; every field optional so a file and flags can be merged.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// This node's id, or `auto`: the number ending the host name, plus one (`gridkeeper-0` is 1).
    pub id: Option<IdSetting>,
    /// `1=host:port,2=host:port,...`, identical on every node; hosts are IP addresses or DNS names.
    pub peers: Option<String>,
    /// What the mesh binds (`HOST:PORT`, a name resolved at start), instead of this node's `peers`
    /// entry.
    pub listen: Option<String>,
    /// Credentials directory from `gridkeeper certs`.
    pub certs: Option<PathBuf>,
    /// Where this node keeps its durable state.
    pub data_dir: Option<PathBuf>,
    /// Admin HTTP address.
    pub admin: Option<SocketAddr>,
    /// Heartbeat interval.
    pub heartbeat_interval_ms: Option<u64>,
    /// Silence after which a peer is down.
    pub peer_silence_max_ms: Option<u64>,
    /// Largest znode data accepted, in bytes.
    pub znode_data_bytes_max: Option<usize>,
    /// Attempts this node runs at once (default: its cores).
    pub slots: Option<u32>,
    /// Share of work under the weighted placement strategy (default 1).
    pub weight: Option<u32>,
    /// Attempts this node accepts queued beyond its slots (default 256 per slot).
    pub prefetch: Option<u32>,
    /// Cluster placement strategy: least_loaded, round_robin, random, weighted, consistent_hash.
    pub placement: Option<String>,
    /// Join a running cluster as a worker through this member's admin address, `HOST:PORT` (no
    /// `peers` then); a name is resolved at start and the member's certificate checked for it.
    pub join: Option<String>,
    /// With `join`: join as a voter (the id must have been added with `members add`) rather than
    /// as a worker. Needs `listen`.
    pub voter: Option<bool>,
    /// Host names the admin API answers to besides IP addresses and `localhost`.
    pub admin_hosts: Option<Vec<String>>,
    /// Time the admin server gives a client to send a request head.
    pub admin_header_timeout_ms: Option<u64>,
    /// Time an admin connection may stay open with no request in flight.
    pub admin_idle_timeout_ms: Option<u64>,
    /// Serve the admin API as plain HTTP (loopback addresses only).
    pub admin_plaintext: Option<bool>,
    /// Serve `/metrics` to callers without a credential.
    pub metrics_public: Option<bool>,
    /// Fail a task whose kind no registered node runs after it waited this long (when this node leads).
    pub unplaceable_timeout_ms: Option<u64>,
    /// Release an actor activation idle this long (ms).
    pub actor_idle_ms: Option<u64>,
    /// Actor activations this node holds at once.
    pub actor_activations_max: Option<usize>,
    /// ZooKeeper client protocol address (`HOST:PORT`), or `off`.
    pub zk_listen: Option<String>,
    /// Four-letter words the ZooKeeper port answers: comma separated, or `*`.
    pub zk_4lw: Option<String>,
    /// Largest ZooKeeper client frame in bytes.
    pub zk_frame_bytes_max: Option<usize>,
    /// ZooKeeper client connections held at once.
    pub zk_connections_max: Option<usize>,
    /// Whether the ZooKeeper port serves createTTL (ZooKeeper's `extendedTypesEnabled`).
    pub zk_extended_types: Option<bool>,
    /// ZooKeeper client connections held at once from one IP address.
    pub zk_connections_per_client_max: Option<usize>,
    /// Budget of this node's task logs, all attempts together: bytes, or with a unit (`256MiB`).
    pub task_logs_bytes_max: Option<String>,
    /// Ended attempts' logs are deleted this long after the attempt started (`7d`, `12h`, `90m`).
    pub task_logs_age_max: Option<String>,
    /// How the node writes its log on stderr: `text` (default) or `json`.
    pub log_format: Option<LogFormat>,
}

/// How a node writes its log on stderr. Read before the rest is validated: the log starts first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Lines for people, coloured only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object a line (timestamp, level, target, message and fields), for log shippers.
    Json,
}

/// A validated node configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// This node.
    pub id: NodeId,
    /// Every member's mesh address, this node included (names resolved on every dial).
    pub peers: BTreeMap<NodeId, PeerAddr>,
    /// Where the mesh binds.
    pub listen: SocketAddr,
    /// Credentials directory.
    pub certs: PathBuf,
    /// Durable state directory.
    pub data_dir: PathBuf,
    /// Admin HTTP address.
    pub admin: SocketAddr,
    /// Failure detector timing.
    pub detector: DetectorConfig,
    /// Registry bounds.
    pub registry: RegistryLimits,
    /// Attempts this node runs at once.
    pub slots: u32,
    /// Share of work under the weighted strategy.
    pub weight: u32,
    /// Attempts queued here beyond the slots.
    pub prefetch: u32,
    /// The placement strategy this node uses when it leads.
    pub placement: Strategy,
    /// A worker joined through this member's admin address (an IP address, or a name resolved at
    /// start), outside the Raft group.
    pub join: Option<PeerAddr>,
    /// With `join`: this node joins the Raft group as a voter (a learner until caught up), not as a
    /// worker; it never initialises a cluster.
    pub voter: bool,
    /// The admin server's timeouts and accepted host names.
    pub admin_server: AdminServerConfig,
    /// The admin API is plain HTTP (only ever on a loopback address); HTTPS otherwise.
    pub admin_plaintext: bool,
    /// `/metrics` needs no credential.
    pub metrics_public: bool,
    /// Fail a task whose kind no registered node runs after it waited this long (when this node leads).
    pub unplaceable_timeout_ms: Option<u64>,
    /// The ZooKeeper front end, unless it is off (always off on a joined worker).
    pub zk: Option<ZkConfig>,
    /// How much task log this node keeps (`<data_dir>/task-logs/`).
    pub task_logs: crate::worker::logs::TaskLogsConfig,
    /// The actor host's idle time and activation bound.
    pub actors: crate::actors::HostConfig,
}

/// Most slots a node may declare: beyond this a node would hold more attempts than it can track.
pub const SLOTS_MAX: u32 = 100_000;

/// Attempts queued on a node per slot by default: enough that short tasks keep every slot busy across
/// the commit round trip that separates one attempt's report from the next assignment. Measured with
/// no-op tasks on 2 cores (`benches/README.md`): 128 per slot left a 3-node cluster at 37,000–40,000
/// tasks/s, 256 gave 44,000–54,000, and 512 less again; work stealing evens out what a longer queue
/// holds back.
pub const PREFETCH_PER_SLOT_DEFAULT: u32 = 256;

/// Slots of a node that does not say: its cores.
pub fn default_slots() -> u32 {
    std::thread::available_parallelism().map_or(1, |cores| cores.get() as u32)
}

/// Parses a placement strategy name.
///
/// # Errors
/// A message listing the accepted names.
pub fn parse_strategy(text: &str) -> Result<Strategy, String> {
    serde_json::from_value(serde_json::Value::String(text.replace('-', "_"))).map_err(|_| {
        format!("unknown strategy {text:?}; use least_loaded, round_robin, random, weighted or consistent_hash")
    })
}

/// Why a configuration was refused. Each message names the setting at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required setting is absent.
    #[error("missing setting: {0}")]
    Missing(&'static str),
    /// A setting's value is malformed or out of range.
    #[error("invalid {setting}: {reason}")]
    Invalid {
        /// The setting.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The configuration file cannot be used.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { setting, reason: reason.into() }
}

/// `--id`: a number, or `auto` for the number ending the host name plus one (a Kubernetes
/// StatefulSet's pod `gridkeeper-0` is node 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSetting {
    /// This id.
    Given(u64),
    /// From the host name.
    FromHostname,
}

impl std::str::FromStr for IdSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<IdSetting, String> {
        match text.trim() {
            "auto" => Ok(IdSetting::FromHostname),
            number => number
                .parse()
                .map(IdSetting::Given)
                .map_err(|_| format!("{text:?} is neither a node id (1 or more) nor `auto`")),
        }
    }
}

impl<'de> Deserialize<'de> for IdSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<IdSetting, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(id) => Ok(IdSetting::Given(id)),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// The node id `auto` takes from a host name: the digits after its last `-` (before any domain),
/// plus one.
///
/// # Errors
/// Why the name ends in no ordinal.
pub fn id_from_host_name(name: &str) -> Result<u64, String> {
    let short = name.trim().split('.').next().unwrap_or_default();
    let ordinal = short
        .rsplit_once('-')
        .map(|(_, ordinal)| ordinal)
        .filter(|ordinal| {
            !ordinal.is_empty() && ordinal.len() <= 9 && ordinal.bytes().all(|byte| byte.is_ascii_digit())
        })
        .ok_or_else(|| {
            format!("`auto` needs a host name ending in -N (as a StatefulSet's pods have), not {short:?}")
        })?;
    Ok(ordinal.parse::<u64>().map_err(|error| error.to_string())? + 1)
}

/// This machine's host name (Linux: the kernel's; elsewhere `HOSTNAME`).
fn host_name() -> Result<String, String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .ok_or_else(|| "`auto` needs the host name, and none could be read".to_string())
}

/// The socket address to bind for `addr`: an IP address as it is, a name resolved now (an IPv4
/// address if it has one, as peers dialing from an IPv4 endpoint prefer).
fn bind_addr(addr: &PeerAddr) -> Result<SocketAddr, String> {
    if let Some(socket) = addr.socket_addr() {
        return Ok(socket);
    }
    let name = addr.name().unwrap_or_default();
    let found: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(name, addr.port))
        .map_err(|error| format!("{addr} does not resolve here: {error}"))?
        .collect();
    found
        .iter()
        .find(|socket| socket.is_ipv4())
        .or(found.first())
        .copied()
        .ok_or_else(|| format!("{addr} resolves to no address"))
}

/// Parses `1=127.0.0.1:7101,2=127.0.0.1:7102`, refusing duplicate ids or addresses.
///
/// # Errors
/// [`ConfigError::Invalid`] naming the bad entry.
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, PeerAddr>, ConfigError> {
    let mut peers = BTreeMap::new();
    let mut addrs = BTreeSet::new();
    for entry in text.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
        let (id, addr) =
            entry.split_once('=').ok_or_else(|| invalid("peers", format!("entry {entry:?} is not ID=HOST:PORT")))?;
        let id: NodeId = id.parse().map_err(|error: crate::ids::NodeIdError| invalid("peers", error.to_string()))?;
        let addr: PeerAddr = addr.trim().parse().map_err(|error: AddrError| invalid("peers", error.to_string()))?;
        if !addrs.insert(addr.clone()) {
            return Err(invalid("peers", format!("address {addr} is listed twice")));
        }
        if peers.insert(id, addr).is_some() {
            return Err(invalid("peers", format!("node id {id} is listed twice")));
        }
    }
    if peers.is_empty() {
        return Err(invalid("peers", "the list is empty"));
    }
    if peers.len() > PEERS_MAX {
        return Err(invalid("peers", format!("{} members exceed the limit of {PEERS_MAX}", peers.len())));
    }
    Ok(peers)
}

impl NodeSettings {
    /// Reads settings from a TOML file.
    ///
    /// # Errors
    /// [`ConfigError::File`] if the file is unreadable, too large, or not valid TOML for these settings.
    pub fn from_file(path: &Path) -> Result<NodeSettings, ConfigError> {
        let file_error = |reason: String| ConfigError::File { path: path.display().to_string(), reason };
        let text = read_bounded(path, CONFIG_FILE_BYTES_MAX).map_err(file_error)?;
        toml::from_str(&text).map_err(|error| file_error(error.message().to_string()))
    }

    /// These settings with every unset field taken from `fallback` (flags over file).
    pub fn or(self, fallback: NodeSettings) -> NodeSettings {
        NodeSettings {
            id: self.id.or(fallback.id),
            peers: self.peers.or(fallback.peers),
            listen: self.listen.or(fallback.listen),
            certs: self.certs.or(fallback.certs),
            data_dir: self.data_dir.or(fallback.data_dir),
            admin: self.admin.or(fallback.admin),
            heartbeat_interval_ms: self.heartbeat_interval_ms.or(fallback.heartbeat_interval_ms),
            peer_silence_max_ms: self.peer_silence_max_ms.or(fallback.peer_silence_max_ms),
            znode_data_bytes_max: self.znode_data_bytes_max.or(fallback.znode_data_bytes_max),
            slots: self.slots.or(fallback.slots),
            weight: self.weight.or(fallback.weight),
            prefetch: self.prefetch.or(fallback.prefetch),
            placement: self.placement.or(fallback.placement),
            join: self.join.or(fallback.join),
            voter: self.voter.or(fallback.voter),
            admin_hosts: self.admin_hosts.or(fallback.admin_hosts),
            admin_header_timeout_ms: self.admin_header_timeout_ms.or(fallback.admin_header_timeout_ms),
            admin_idle_timeout_ms: self.admin_idle_timeout_ms.or(fallback.admin_idle_timeout_ms),
            admin_plaintext: self.admin_plaintext.or(fallback.admin_plaintext),
            metrics_public: self.metrics_public.or(fallback.metrics_public),
            unplaceable_timeout_ms: self.unplaceable_timeout_ms.or(fallback.unplaceable_timeout_ms),
            actor_idle_ms: self.actor_idle_ms.or(fallback.actor_idle_ms),
            actor_activations_max: self.actor_activations_max.or(fallback.actor_activations_max),
            zk_listen: self.zk_listen.or(fallback.zk_listen),
            zk_4lw: self.zk_4lw.or(fallback.zk_4lw),
            zk_frame_bytes_max: self.zk_frame_bytes_max.or(fallback.zk_frame_bytes_max),
            zk_connections_max: self.zk_connections_max.or(fallback.zk_connections_max),
            zk_connections_per_client_max: self
                .zk_connections_per_client_max
                .or(fallback.zk_connections_per_client_max),
            zk_extended_types: self.zk_extended_types.or(fallback.zk_extended_types),
            task_logs_bytes_max: self.task_logs_bytes_max.or(fallback.task_logs_bytes_max),
            task_logs_age_max: self.task_logs_age_max.or(fallback.task_logs_age_max),
            log_format: self.log_format.or(fallback.log_format),
        }
    }

    /// Checks and completes the settings.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first problem found.
    pub fn validate(self) -> Result<NodeConfig, ConfigError> {
        let id = match self.id.ok_or(ConfigError::Missing("id"))? {
            IdSetting::Given(id) => id,
            IdSetting::FromHostname => {
                let name = host_name().map_err(|reason| invalid("id", reason))?;
                id_from_host_name(&name).map_err(|reason| invalid("id", reason))?
            }
        };
        let id: NodeId =
            id.to_string().parse().map_err(|error: crate::ids::NodeIdError| invalid("id", error.to_string()))?;
        let listen_given = match &self.listen {
            Some(text) => Some(text.parse::<PeerAddr>().map_err(|error| invalid("listen", error.to_string()))?),
            None => None,
        };
        let join = match &self.join {
            Some(text) => Some(text.parse::<PeerAddr>().map_err(|error| invalid("join", error.to_string()))?),
            None => None,
        };
        let voter = self.voter.unwrap_or(false);
        if voter && join.is_none() {
            return Err(invalid(
                "voter",
                "--voter joins a running cluster: give --join ADMIN (and --listen HOST:PORT)",
            ));
        }
        if voter && listen_given.is_none() {
            return Err(invalid("listen", "a joining voter needs --listen HOST:PORT, the address it binds"));
        }
        let peers = match (&join, &self.peers) {
            (Some(_), Some(_)) => return Err(invalid("join", "a joining worker takes no peer list")),
            // A joined worker has no mesh of its own: only its own (unused) entry.
            (Some(_), None) => {
                BTreeMap::from([(id, listen_given.clone().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)).into()))])
            }
            (None, peers) => parse_peers(peers.as_deref().ok_or(ConfigError::Missing("peers"))?)?,
        };
        let own_addr = peers.get(&id).ok_or_else(|| invalid("id", format!("node {id} is not in the peer list")))?;
        let listen = match &listen_given {
            Some(given) => bind_addr(given).map_err(|reason| invalid("listen", reason))?,
            None => bind_addr(own_addr).map_err(|reason| {
                invalid("peers", format!("node {id}'s own entry: {reason}; give --listen HOST:PORT to bind"))
            })?,
        };
        let admin = match self.admin {
            Some(admin) => admin,
            // Loopback by default: the admin API is for operators on the machine, not the network.
            None => default_admin(id)?,
        };
        if peers.values().any(|addr| addr.socket_addr() == Some(admin)) || admin == listen && admin.port() != 0 {
            return Err(invalid("admin", format!("{admin} is also a mesh address")));
        }
        // A heartbeat given alone brings a silence that fits it (see `DetectorConfig::with_heartbeat`).
        let defaults = self.heartbeat_interval_ms.map_or_else(DetectorConfig::default, DetectorConfig::with_heartbeat);
        let detector = DetectorConfig {
            heartbeat_interval_ms: defaults.heartbeat_interval_ms,
            peer_silence_max_ms: self.peer_silence_max_ms.unwrap_or(defaults.peer_silence_max_ms),
        };
        detector.validate().map_err(|error| invalid(error.setting(), error.to_string()))?;
        let mut registry = RegistryLimits::default();
        if let Some(bytes) = self.znode_data_bytes_max {
            if bytes == 0 || bytes > ZNODE_DATA_BYTES_CEILING {
                return Err(invalid(
                    "znode-data-bytes-max",
                    format!("{bytes} is outside 1..={ZNODE_DATA_BYTES_CEILING}"),
                ));
            }
            registry.data_bytes_max = bytes;
        }
        let slots = self.slots.unwrap_or_else(default_slots);
        if slots == 0 || slots > SLOTS_MAX {
            return Err(invalid("slots", format!("{slots} is outside 1..={SLOTS_MAX}")));
        }
        let weight = self.weight.unwrap_or(1);
        if weight == 0 || weight > 1_000 {
            return Err(invalid("weight", format!("{weight} is outside 1..=1000")));
        }
        let prefetch = self.prefetch.unwrap_or(slots.saturating_mul(PREFETCH_PER_SLOT_DEFAULT).min(SLOTS_MAX));
        if prefetch > SLOTS_MAX {
            return Err(invalid("prefetch", format!("{prefetch} is above {SLOTS_MAX}")));
        }
        let placement = match &self.placement {
            Some(text) => parse_strategy(text).map_err(|error| invalid("placement", error))?,
            None => Strategy::default(),
        };
        let admin_server = self.admin_server()?;
        let admin_plaintext = self.admin_plaintext.unwrap_or(false);
        if admin_plaintext && !admin.ip().is_loopback() {
            return Err(invalid(
                "admin-plaintext",
                format!("plain HTTP is refused on {admin}, which is not a loopback address: serve HTTPS (the default) there"),
            ));
        }
        if self.unplaceable_timeout_ms == Some(0) {
            return Err(invalid("unplaceable-timeout-ms", "0 would fail every task before a node can register"));
        }
        // A joined worker holds no registry: it serves no ZooKeeper clients.
        let zk = if self.join.is_some() && !voter {
            None
        } else {
            ZkSettings {
                listen: self.zk_listen.clone(),
                four_letter_words: self.zk_4lw.clone(),
                frame_bytes_max: self.zk_frame_bytes_max,
                connections_max: self.zk_connections_max,
                connections_per_client_max: self.zk_connections_per_client_max,
                extended_types: self.zk_extended_types,
            }
            .validate(id.0)
            .map_err(|error| invalid(error.setting, error.reason))?
        };
        if let Some(zk) = &zk {
            if zk.listen == admin
                || peers.values().any(|addr| addr.socket_addr() == Some(zk.listen)) && zk.listen.port() != 0
            {
                return Err(invalid("zk-listen", format!("{} is also the admin or a mesh address", zk.listen)));
            }
        }
        let task_logs = self.task_logs()?;
        let actors = self.actors()?;
        Ok(NodeConfig {
            task_logs,
            actors,
            zk,
            admin_plaintext,
            metrics_public: self.metrics_public.unwrap_or(false),
            unplaceable_timeout_ms: self.unplaceable_timeout_ms,
            admin_server,
            join,
            voter,
            slots,
            prefetch,
            weight,
            placement,
            id,
            peers,
            listen,
            certs: self.certs.ok_or(ConfigError::Missing("certs"))?,
            data_dir: self.data_dir.ok_or(ConfigError::Missing("data-dir"))?,
            admin,
            detector,
            registry,
        })
    }
}

impl NodeSettings {
    /// The actor host's settings, checked.
    fn actors(&self) -> Result<crate::actors::HostConfig, ConfigError> {
        use crate::actors::host::{ACTOR_ACTIVATIONS_MAX_CEILING, ACTOR_IDLE_MS_RANGE};
        let defaults = crate::actors::HostConfig::default();
        let idle_ms = self.actor_idle_ms.unwrap_or(defaults.idle_ms);
        if !ACTOR_IDLE_MS_RANGE.contains(&idle_ms) {
            let (low, high) = (ACTOR_IDLE_MS_RANGE.start(), ACTOR_IDLE_MS_RANGE.end());
            return Err(invalid("actor-idle-ms", format!("{idle_ms} is outside {low}..={high}")));
        }
        let activations_max = self.actor_activations_max.unwrap_or(defaults.activations_max);
        if !(1..=ACTOR_ACTIVATIONS_MAX_CEILING).contains(&activations_max) {
            return Err(invalid(
                "actor-activations-max",
                format!("{activations_max} is outside 1..={ACTOR_ACTIVATIONS_MAX_CEILING}"),
            ));
        }
        Ok(crate::actors::HostConfig { idle_ms, activations_max, ..defaults })
    }

    /// The task logs' budget and age, checked (see `worker/logs_book.rs` for the units).
    fn task_logs(&self) -> Result<crate::worker::logs::TaskLogsConfig, ConfigError> {
        use crate::worker::logs::TaskLogsConfig;
        let defaults = TaskLogsConfig::default();
        let bytes_max = match &self.task_logs_bytes_max {
            Some(text) => TaskLogsConfig::parse_bytes(text).map_err(|reason| invalid("task-logs-bytes-max", reason))?,
            None => defaults.bytes_max,
        };
        let age_max_ms = match &self.task_logs_age_max {
            Some(text) => TaskLogsConfig::parse_age_ms(text).map_err(|reason| invalid("task-logs-age-max", reason))?,
            None => defaults.age_max_ms,
        };
        Ok(TaskLogsConfig { bytes_max, age_max_ms })
    }

    /// The admin server's settings, checked: timeouts within bounds, host names well formed.
    fn admin_server(&self) -> Result<AdminServerConfig, ConfigError> {
        let defaults = AdminServerConfig::default();
        let timeout = |setting: &'static str, value: Option<u64>, default: u64| {
            let value = value.unwrap_or(default);
            if (ADMIN_TIMEOUT_MS_MIN..=ADMIN_TIMEOUT_MS_MAX).contains(&value) {
                Ok(value)
            } else {
                Err(invalid(setting, format!("{value} is outside {ADMIN_TIMEOUT_MS_MIN}..={ADMIN_TIMEOUT_MS_MAX}")))
            }
        };
        let hosts = self.admin_hosts.clone().unwrap_or_default();
        if hosts.len() > ADMIN_HOSTS_MAX {
            return Err(invalid("admin-host", format!("{} names exceed the limit of {ADMIN_HOSTS_MAX}", hosts.len())));
        }
        let hosts = hosts.iter().map(|host| admin_host(host)).collect::<Result<Vec<_>, _>>()?;
        Ok(AdminServerConfig {
            header_timeout_ms: timeout(
                "admin-header-timeout-ms",
                self.admin_header_timeout_ms,
                defaults.header_timeout_ms,
            )?,
            idle_timeout_ms: timeout("admin-idle-timeout-ms", self.admin_idle_timeout_ms, defaults.idle_timeout_ms)?,
            hosts,
        })
    }
}

/// A DNS name for `--admin-host`, lower case and without a trailing dot.
fn admin_host(text: &str) -> Result<String, ConfigError> {
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    let well_formed = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        });
    if well_formed {
        Ok(name)
    } else {
        Err(invalid("admin-host", format!("{text:?} is not a host name")))
    }
}

/// Reads a regular file of at most `bytes_max` bytes as UTF-8.
///
/// The reported length is not trusted (`/dev/zero` reports 0): at most `bytes_max + 1` bytes are
/// read. Anything but a regular file is refused before it is read, and the file is opened
/// non-blocking, so a FIFO (or one swapped in after the check) cannot hang the node.
fn read_bounded(path: &Path, bytes_max: u64) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let regular = |metadata: std::fs::Metadata| {
        let kind = metadata.file_type();
        if kind.is_file() {
            Ok(())
        } else if kind.is_dir() {
            Err("is a directory, not a regular file".to_string())
        } else {
            Err("is not a regular file (a FIFO, socket or device?)".to_string())
        }
    };
    regular(std::fs::metadata(path).map_err(|error| error.to_string())?)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|error| error.to_string())?;
    regular(file.metadata().map_err(|error| error.to_string())?)?;
    let mut bytes = Vec::new();
    file.take(bytes_max.saturating_add(1)).read_to_end(&mut bytes).map_err(|error| error.to_string())?;
    if bytes.len() as u64 > bytes_max {
        return Err(format!("larger than the limit of {bytes_max} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string())
}

fn default_admin(id: NodeId) -> Result<SocketAddr, ConfigError> {
    let port = 9100u64
        .checked_add(id.0)
        .and_then(|port| u16::try_from(port).ok())
        .ok_or_else(|| invalid("admin", format!("no default port for node {id}; give --admin")))?;
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> NodeSettings {
        NodeSettings {
            id: Some(IdSetting::Given(1)),
            peers: Some("1=127.0.0.1:7101, 2=127.0.0.1:7102,3=127.0.0.1:7103".into()),
            certs: Some("certs".into()),
            data_dir: Some("d1".into()),
            ..NodeSettings::default()
        }
    }

    #[test]
    fn a_joining_worker_takes_no_peer_list_and_grid_settings_are_checked() {
        let joining = NodeSettings { peers: None, join: Some("127.0.0.1:9101".into()), ..settings() };
        let config = joining.clone().validate().expect("a worker joins without peers");
        assert_eq!((config.join.map(|addr| addr.to_string()), config.peers.len()), (joining.join.clone(), 1));
        let named = NodeSettings { join: Some("gk1.example.org:9101".into()), ..joining.clone() };
        assert_eq!(
            named.validate().expect("a name").join.and_then(|addr| addr.name().map(String::from)).as_deref(),
            Some("gk1.example.org")
        );
        let bad = NodeSettings { join: Some("gk1".into()), ..joining.clone() };
        assert!(matches!(bad.validate(), Err(ConfigError::Invalid { setting: "join", .. })));
        let both = NodeSettings { join: joining.join, ..settings() };
        assert!(matches!(both.validate(), Err(ConfigError::Invalid { setting: "join", .. })));
        assert!(NodeSettings { slots: Some(0), ..settings() }.validate().is_err());
        assert!(NodeSettings { placement: Some("sideways".into()), ..settings() }.validate().is_err());
        let config = NodeSettings { placement: Some("consistent-hash".into()), slots: Some(4), ..settings() }
            .validate()
            .expect("valid");
        assert_eq!((config.placement, config.slots, config.prefetch), (Strategy::ConsistentHash, 4, 4 * 256));
    }

    #[test]
    fn a_complete_configuration_validates_with_defaults() {
        let config = settings().validate().expect("valid");
        assert_eq!(config.id, NodeId(1));
        assert_eq!(config.peers.len(), 3);
        assert_eq!(config.listen, "127.0.0.1:7101".parse::<SocketAddr>().expect("addr"));
        assert_eq!(config.admin, "127.0.0.1:9101".parse::<SocketAddr>().expect("addr"));
        assert_eq!(config.detector, DetectorConfig::default());
        // A heartbeat given alone, as the earlier defaults had it, brings their silence back.
        let slower = NodeSettings { heartbeat_interval_ms: Some(100), ..settings() }.validate().expect("valid");
        assert_eq!(slower.detector, DetectorConfig { heartbeat_interval_ms: 100, peer_silence_max_ms: 500 });
        assert_eq!(config.admin_server, AdminServerConfig::default());
        assert_eq!(config.task_logs, crate::worker::logs::TaskLogsConfig::default());
        let logs = NodeSettings {
            task_logs_bytes_max: Some("64MiB".into()),
            task_logs_age_max: Some("2d".into()),
            ..settings()
        };
        let logs = logs.validate().expect("valid").task_logs;
        assert_eq!((logs.bytes_max, logs.age_max_ms), (64 << 20, 2 * 86_400_000));
        let named = NodeSettings { admin_hosts: Some(vec!["Admin.Example.".into()]), ..settings() };
        assert_eq!(named.validate().expect("valid").admin_server.hosts, ["admin.example"]);
    }

    #[test]
    fn bad_configurations_name_their_problem() {
        let cases: Vec<(NodeSettings, &str)> = vec![
            (NodeSettings { id: Some(IdSetting::Given(4)), ..settings() }, "node 4 is not in the peer list"),
            (NodeSettings { id: None, ..settings() }, "missing setting: id"),
            (NodeSettings { id: Some(IdSetting::Given(0)), ..settings() }, "invalid id"),
            (NodeSettings { peers: Some("1=127.0.0.1:1,1=127.0.0.1:2".into()), ..settings() }, "listed twice"),
            (
                NodeSettings { peers: Some("1=127.0.0.1:1,2=127.0.0.1:1".into()), ..settings() },
                "address 127.0.0.1:1 is listed twice",
            ),
            (NodeSettings { peers: Some("1=nowhere".into()), ..settings() }, "is not HOST:PORT"),
            (NodeSettings { peers: Some("1".into()), ..settings() }, "not ID=HOST:PORT"),
            (NodeSettings { peers: Some("".into()), ..settings() }, "empty"),
            (NodeSettings { certs: None, ..settings() }, "missing setting: certs"),
            (
                NodeSettings { admin: Some("127.0.0.1:7102".parse().expect("addr")), ..settings() },
                "also a mesh address",
            ),
            (NodeSettings { heartbeat_interval_ms: Some(1), ..settings() }, "heartbeat"),
            (
                NodeSettings { heartbeat_interval_ms: Some(6_148_914_691_236_517_206), ..settings() },
                "invalid heartbeat-interval-ms: heartbeat interval 6148914691236517206 ms is above the maximum",
            ),
            (NodeSettings { peer_silence_max_ms: Some(u64::MAX), ..settings() }, "invalid peer-silence-max-ms"),
            (NodeSettings { peer_silence_max_ms: Some(80), ..settings() }, "at least 3 heartbeat intervals"),
            (
                NodeSettings { heartbeat_interval_ms: Some(100), peer_silence_max_ms: Some(200), ..settings() },
                "at least 3 heartbeat intervals",
            ),
            (NodeSettings { znode_data_bytes_max: Some(0), ..settings() }, "znode-data-bytes-max"),
            (NodeSettings { admin_header_timeout_ms: Some(0), ..settings() }, "admin-header-timeout-ms"),
            (NodeSettings { admin_idle_timeout_ms: Some(u64::MAX), ..settings() }, "admin-idle-timeout-ms"),
            (NodeSettings { admin_hosts: Some(vec!["bad host".into()]), ..settings() }, "admin-host"),
            (NodeSettings { admin_hosts: Some(vec!["".into()]), ..settings() }, "admin-host"),
            (NodeSettings { task_logs_bytes_max: Some("1KiB".into()), ..settings() }, "invalid task-logs-bytes-max"),
            (NodeSettings { task_logs_age_max: Some("7".into()), ..settings() }, "invalid task-logs-age-max"),
        ];
        for (settings, expected) in cases {
            let error = settings.clone().validate().expect_err("must be refused").to_string();
            assert!(error.contains(expected), "{settings:?}: {error:?} lacks {expected:?}");
        }
    }

    #[test]
    fn peers_may_be_names_and_ids_may_come_from_the_host_name() {
        let named = NodeSettings {
            peers: Some("1=localhost:7101,2=gk2.example.invalid:7102,3=[::1]:7103".into()),
            ..settings()
        };
        let config = named.clone().validate().expect("names are peers");
        assert_eq!(config.peers[&NodeId(2)].to_string(), "gk2.example.invalid:7102");
        assert_eq!(config.listen.port(), 7101, "its own name is resolved to bind");
        // A name that does not resolve here cannot be bound without --listen.
        let unresolvable = NodeSettings { id: Some(IdSetting::Given(2)), ..named.clone() };
        let error = unresolvable.clone().validate().expect_err("cannot bind").to_string();
        assert!(error.contains("give --listen"), "{error}");
        let listening = NodeSettings { listen: Some("0.0.0.0:7102".into()), ..unresolvable };
        assert_eq!(listening.validate().expect("binds what --listen says").listen.port(), 7102);
        let duplicate = NodeSettings { peers: Some("1=localhost:1,2=LOCALHOST.:1".into()), ..settings() };
        assert!(duplicate.validate().expect_err("listed twice").to_string().contains("listed twice"));
        let malformed = NodeSettings { peers: Some("1=gk..one:1".into()), ..settings() };
        assert!(malformed.validate().expect_err("bad name").to_string().contains("empty label"));

        assert_eq!(id_from_host_name("gridkeeper-0"), Ok(1));
        assert_eq!(id_from_host_name("gridkeeper-2.gridkeeper-peers.default.svc"), Ok(3));
        assert!(id_from_host_name("gridkeeper").is_err());
        assert!(id_from_host_name("gridkeeper-").is_err());
        assert!(id_from_host_name("gk-99999999999999999999").is_err());
        assert_eq!("auto".parse::<IdSetting>(), Ok(IdSetting::FromHostname));
        assert_eq!("7".parse::<IdSetting>(), Ok(IdSetting::Given(7)));
        assert!("seven".parse::<IdSetting>().is_err());
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = NodeSettings {
            id: Some(IdSetting::Given(2)),
            admin: Some("127.0.0.1:9999".parse().expect("addr")),
            ..settings()
        };
        let flags = NodeSettings { id: Some(IdSetting::Given(3)), ..NodeSettings::default() };
        let merged = flags.or(file).validate().expect("valid");
        assert_eq!(merged.id, NodeId(3));
        assert_eq!(merged.admin.port(), 9999);
    }

    #[test]
    fn config_files_parse_and_unknown_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("gk-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "id = 2\npeers = \"1=127.0.0.1:7101,2=127.0.0.1:7102\"\ncerts = \"c\"\ndata_dir = \"d\"\n",
        )
        .expect("write");
        assert_eq!(NodeSettings::from_file(&good).expect("parses").id, Some(IdSetting::Given(2)));
        let json = dir.join("json.toml");
        std::fs::write(&json, "log_format = \"json\"\n").expect("write");
        assert_eq!(NodeSettings::from_file(&json).expect("parses").log_format, Some(LogFormat::Json));
        std::fs::write(&json, "log_format = \"xml\"\n").expect("write");
        assert!(NodeSettings::from_file(&json).is_err(), "an unknown log format");
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "id = 2\ncolour = \"blue\"\n").expect("write");
        let error = NodeSettings::from_file(&bad).expect_err("unknown key").to_string();
        assert!(error.contains("colour"), "{error}");
        assert!(NodeSettings::from_file(&dir.join("missing.toml")).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_default_admin_port_never_wraps() {
        assert!(default_admin(NodeId(u64::MAX)).is_err());
        assert!(default_admin(NodeId(65_535 - 9_100 + 1)).is_err());
        assert_eq!(default_admin(NodeId(7)).expect("port").port(), 9107);
    }

    #[test]
    fn config_files_are_read_bounded_and_must_be_regular() {
        let dir = std::env::temp_dir().join(format!("gk-config-bounded-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        // A device reports length 0 and never ends: refused before a byte is read.
        let error = NodeSettings::from_file(Path::new("/dev/zero")).expect_err("a device").to_string();
        assert!(error.contains("/dev/zero") && error.contains("not a regular file"), "{error}");
        let error = NodeSettings::from_file(&dir).expect_err("a directory").to_string();
        assert!(error.contains("directory"), "{error}");
        // A FIFO with no writer would block an open(2) for reading forever.
        let fifo = dir.join("fifo.toml");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
        assert!(made.success(), "mkfifo");
        let error = NodeSettings::from_file(&fifo).expect_err("a FIFO").to_string();
        assert!(error.contains("not a regular file"), "{error}");
        // A regular file past the bound is refused, whatever it holds.
        let large = dir.join("large.toml");
        std::fs::write(&large, vec![b'#'; CONFIG_FILE_BYTES_MAX as usize + 1]).expect("write");
        let error = NodeSettings::from_file(&large).expect_err("too large").to_string();
        assert!(error.contains("larger than the limit"), "{error}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
