//! The `gridkeeper` command line: `certs`, `node`, `status`, `members`, `registry`, the grid's
//! `submit`, `tasks`, `drain`, `schedule`, `jobs`, `unschedule`, grid actors' `actor call` and
//! `actors`, `tokens`, `audit`, and `completions` for shells.
//!
//! Parses flags with clap (usage errors, a bad `--since` or an unknown choice among them, exit 2),
//! runs the command, and turns every error into one line on stderr with exit status 1. Every command
//! that prints has `--json`; tables and times for people come from [`output`], typed flag values from
//! [`flags`]. `--admin` and `--certs` fall back to `GRIDKEEPER_ADMIN` and `GRIDKEEPER_CERTS`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

pub mod access;
pub mod actors;
pub mod cluster;
pub mod flags;
pub mod grid;
pub mod logs;
pub mod output;
pub mod registry;

pub use access::Connect;

use crate::credentials::{issue, IssueRequest, Role};
use crate::ids::NodeId;
use crate::node::config::{IdSetting, LogFormat};
use crate::node::{self, NodeSettings};

/// gridkeeper: an actor-based task grid with a replicated coordinator.
#[derive(Debug, Parser)]
#[command(name = "gridkeeper", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a cluster CA, node, admin and operator certificates, the token key, and tokens or client
    /// certificates with a role.
    Certs(CertsArgs),
    /// Run a node.
    Node(Box<NodeArgs>),
    /// Show a node's view of the cluster.
    Status(cluster::StatusArgs),
    /// List the members (id, address, role, alive, lag behind the leader), or add or remove one.
    Members(cluster::MembersArgs),
    /// Read and change the replicated registry.
    Registry(registry::RegistryArgs),
    /// Submit tasks (and optionally wait for them).
    Submit(grid::SubmitArgs),
    /// List tasks, or show one with its attempts.
    Tasks(grid::TasksArgs),
    /// Stop giving a node new work and wait until it runs nothing.
    Drain(grid::DrainArgs),
    /// Create or replace a recurring job (cron or fixed interval).
    Schedule(grid::ScheduleArgs),
    /// List recurring jobs.
    Jobs(grid::JobsArgs),
    /// Delete a recurring job.
    Unschedule(grid::UnscheduleArgs),
    /// Call a grid actor: `actor call --kind K --key K --message JSON`.
    Actor(actors::ActorArgs),
    /// List grid actors: kind, key, hosting node, messages handled.
    Actors(actors::ActorsArgs),
    /// Revoke credentials by name, or list those issued and revoked.
    Tokens(access::TokensArgs),
    /// Read a node's audit log (operator).
    Audit(access::AuditArgs),
    /// Print a task attempt's log lines (kept by the node that ran it), or follow them.
    Logs(logs::LogsArgs),
    /// Print a completion script for a shell: `source <(gridkeeper completions bash)`, or write it
    /// where the shell looks (`~/.local/share/bash-completion/completions/gridkeeper`,
    /// a directory in zsh's `$fpath` as `_gridkeeper`, `~/.config/fish/completions/gridkeeper.fish`).
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
struct CertsArgs {
    /// Directory to write into (created if missing; an existing CA and token key are reused, and no
    /// existing key is overwritten).
    #[arg(long)]
    out: PathBuf,
    /// Node ids to issue mesh and admin certificates for, comma separated.
    #[arg(long, value_delimiter = ',')]
    nodes: Vec<NodeId>,
    /// A DNS name or IP address the nodes' admin certificates must also be valid for (repeatable;
    /// loopback is always included). Without --nodes: every node with an admin certificate in DIR.
    #[arg(long = "san", value_name = "NAME")]
    sans: Vec<String>,
    /// Issue a token named NAME with --role into DIR/token-NAME.
    #[arg(long, value_name = "NAME", requires = "role")]
    token: Option<String>,
    /// Issue a client certificate named NAME with --role into DIR/client-NAME.pem and .key.
    #[arg(long, value_name = "NAME", requires = "role")]
    client: Option<String>,
    /// The role of --token or --client.
    #[arg(long)]
    role: Option<flags::RoleArg>,
    /// Print what was written, kept and moved as one JSON object (`created`, `kept`, `moved`).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct NodeArgs {
    /// TOML file with the same settings; flags win over it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// This node's id, or `auto`: the number ending the host name, plus one (pod `gridkeeper-0` is
    /// node 1).
    #[arg(long)]
    id: Option<IdSetting>,
    /// Every member as ID=HOST:PORT, comma separated, the same on every node. A host is an IPv4
    /// address, a [bracketed] IPv6 address or a DNS name (resolved again on every reconnect).
    #[arg(long)]
    peers: Option<String>,
    /// What the mesh binds, HOST:PORT (default: this node's entry in --peers).
    #[arg(long)]
    listen: Option<String>,
    /// Credentials directory from `gridkeeper certs`.
    #[arg(long)]
    certs: Option<PathBuf>,
    /// Directory for this node's durable state.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Admin HTTP address (default 127.0.0.1:9100+id).
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Heartbeat interval in milliseconds (default 40).
    #[arg(long)]
    heartbeat_interval_ms: Option<u64>,
    /// Silence in milliseconds after which a peer is down (default 200, or 5 heartbeats if longer).
    #[arg(long)]
    peer_silence_max_ms: Option<u64>,
    /// Largest znode data in bytes (default 1 MiB).
    #[arg(long)]
    znode_data_bytes_max: Option<usize>,
    /// Task attempts this node runs at once (default: its cores).
    #[arg(long)]
    slots: Option<u32>,
    /// Share of work under the weighted placement strategy (default 1).
    #[arg(long)]
    weight: Option<u32>,
    /// Attempts queued on this node beyond its slots (default 256 per slot).
    #[arg(long)]
    prefetch: Option<u32>,
    /// Placement strategy when this node leads (default least_loaded).
    #[arg(long)]
    placement: Option<flags::StrategyArg>,
    /// Join a running cluster as a worker (not a Raft voter) through a member's admin address;
    /// no --peers then.
    #[arg(long)]
    join: Option<String>,
    /// With --join: join as a voter (its id added first with `members add`), a learner until it has
    /// caught up; needs --listen.
    #[arg(long)]
    voter: bool,
    /// A host name the admin API answers to, besides IP addresses and localhost (repeatable);
    /// requests naming any other `Host:` get 421.
    #[arg(long = "admin-host", value_name = "NAME")]
    admin_hosts: Vec<String>,
    /// Milliseconds a client has to send a request head to the admin API (default 10000).
    #[arg(long)]
    admin_header_timeout_ms: Option<u64>,
    /// Milliseconds an admin connection may stay open with no request in flight (default 60000).
    #[arg(long)]
    admin_idle_timeout_ms: Option<u64>,
    /// Serve the admin API as plain HTTP instead of HTTPS; refused unless --admin is a loopback address.
    #[arg(long)]
    admin_plaintext: bool,
    /// Serve /metrics to anyone, without a credential (for a Prometheus that cannot present one).
    #[arg(long)]
    metrics_public: bool,
    /// Fail a task whose kind no registered node runs after it waited this many milliseconds (when
    /// this node leads; default: it waits, shown as unplaceable).
    #[arg(long)]
    unplaceable_timeout_ms: Option<u64>,
    /// Release an actor activation idle this many milliseconds (default 300000).
    #[arg(long)]
    actor_idle_ms: Option<u64>,
    /// Actor activations this node holds at once; past it a new one is refused (default 100000).
    #[arg(long)]
    actor_activations_max: Option<usize>,
    /// ZooKeeper client protocol address (default 127.0.0.1:2280+id), or `off`.
    #[arg(long, value_name = "HOST:PORT|off")]
    zk_listen: Option<String>,
    /// Four-letter words the ZooKeeper port answers, comma separated, or `*` (default: ruok, srvr,
    /// stat, mntr, envi, conf, isro; cons and wchs list clients and watches).
    #[arg(long = "zk-4lw", value_name = "WORDS")]
    zk_4lw: Option<String>,
    /// Largest ZooKeeper client frame in bytes (ZooKeeper's jute.maxbuffer plus headers; default
    /// 1,048,575: ZooKeeper's jute.maxbuffer).
    #[arg(long)]
    zk_frame_bytes_max: Option<usize>,
    /// ZooKeeper client connections held at once (default 20000).
    #[arg(long)]
    zk_connections_max: Option<usize>,
    /// Serve createTTL on the ZooKeeper port (ZooKeeper's extendedTypesEnabled; default true). With
    /// false, a TTL create is answered `unimplemented`, as ZooKeeper answers it with the setting off.
    #[arg(long, value_name = "true|false")]
    zk_extended_types: Option<bool>,
    /// ZooKeeper client connections held at once from one IP address (default 1000).
    #[arg(long)]
    zk_connections_per_client_max: Option<usize>,
    /// How the log on stderr is written: text (default; coloured only when stderr is a terminal and
    /// NO_COLOR is unset) or json (one object a line, for log shippers).
    #[arg(long)]
    log_format: Option<LogFormat>,
    /// Budget of this node's task logs, all attempts together: bytes, or with a unit (default
    /// 256MiB; 1MiB to 16GiB). The oldest ended attempts' logs go first.
    #[arg(long, value_name = "SIZE")]
    task_logs_bytes_max: Option<String>,
    /// Ended attempts' logs are deleted this long after the attempt started: digits and a unit, ms,
    /// s, m, h or d (default 7d; 1m to 366d).
    #[arg(long, value_name = "AGE")]
    task_logs_age_max: Option<String>,
}

impl NodeArgs {
    fn settings(self) -> Result<NodeSettings, String> {
        let file = match &self.config {
            Some(path) => NodeSettings::from_file(path).map_err(|error| error.to_string())?,
            None => NodeSettings::default(),
        };
        let flags = NodeSettings {
            id: self.id,
            peers: self.peers,
            listen: self.listen,
            certs: self.certs,
            data_dir: self.data_dir,
            admin: self.admin,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            peer_silence_max_ms: self.peer_silence_max_ms,
            znode_data_bytes_max: self.znode_data_bytes_max,
            slots: self.slots,
            weight: self.weight,
            prefetch: self.prefetch,
            join: self.join,
            voter: self.voter.then_some(true),
            placement: self.placement.map(|strategy| strategy.name().to_string()),
            admin_hosts: (!self.admin_hosts.is_empty()).then_some(self.admin_hosts),
            admin_header_timeout_ms: self.admin_header_timeout_ms,
            admin_idle_timeout_ms: self.admin_idle_timeout_ms,
            admin_plaintext: self.admin_plaintext.then_some(true),
            metrics_public: self.metrics_public.then_some(true),
            unplaceable_timeout_ms: self.unplaceable_timeout_ms,
            actor_idle_ms: self.actor_idle_ms,
            actor_activations_max: self.actor_activations_max,
            zk_listen: self.zk_listen,
            zk_4lw: self.zk_4lw,
            zk_frame_bytes_max: self.zk_frame_bytes_max,
            zk_connections_max: self.zk_connections_max,
            zk_connections_per_client_max: self.zk_connections_per_client_max,
            zk_extended_types: self.zk_extended_types,
            log_format: self.log_format,
            task_logs_bytes_max: self.task_logs_bytes_max,
            task_logs_age_max: self.task_logs_age_max,
        };
        Ok(flags.or(file))
    }
}

/// Runs the command line and returns the process exit status: 0, 1 for an error (one line on
/// stderr), 2 for a usage error (clap's message and usage).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gridkeeper: error: {}", one_line(&message));
            ExitCode::FAILURE
        }
    }
}

/// A message on one line: a node's multi-line answer, say, joined with spaces.
fn one_line(message: &str) -> String {
    message.split(['\n', '\r']).map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Exits with status 2 and the usage of `subcommand`, for a flag combination clap cannot check.
fn usage_error(subcommand: &str, message: &str) -> ! {
    let mut cli = Cli::command();
    cli.build();
    let kind = clap::error::ErrorKind::MissingRequiredArgument;
    match cli.find_subcommand_mut(subcommand) {
        Some(command) => command.error(kind, message).exit(),
        None => cli.error(kind, message).exit(),
    }
}

/// Starts the log on stderr (`RUST_LOG` filters it): text with colour only when stderr is a terminal
/// and `NO_COLOR` is unset (a file or the journal gets no escape codes), or one JSON object a line.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft::core::heartbeat=error"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let output = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(colour).boxed(),
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(std::io::stderr).boxed()
        }
    };
    let _ = tracing_subscriber::registry().with(filter).with(output).try_init();
}

/// Runtime for the node's control plane: the mesh, the coordinator, the service layer and the admin
/// server. Task attempts run on the worker's own `gk-work` runtime, so busy user code can never
/// starve heartbeats or consensus.
fn control_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("gk-control")
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))
}

fn run(cli: Cli) -> Result<(), String> {
    // A node starts its log once it has read its settings (the format may be in its file).
    if !matches!(cli.command, Command::Node(_)) {
        init_logging(LogFormat::Text);
    }
    match cli.command {
        Command::Certs(args) => {
            let role = args.role.map(Role::from);
            let request = IssueRequest {
                nodes: args.nodes,
                sans: args.sans,
                tokens: args.token.into_iter().zip(role).collect(),
                clients: args.client.into_iter().zip(role).collect(),
                now_ms: crate::clock::unix_millis(),
            };
            let report = issue(&args.out, &request).map_err(|error| error.to_string())?;
            if args.json {
                let moved: Vec<_> =
                    report.moved.iter().map(|(from, to)| serde_json::json!({ "from": from, "to": to })).collect();
                let value = serde_json::json!({ "created": report.created, "kept": report.kept, "moved": moved });
                println!("{}", output::json_line(&value)?);
                return Ok(());
            }
            for (from, to) in &report.moved {
                println!("moved {} to {}: the CA key stays with the operator", from.display(), to.display());
            }
            for path in &report.created {
                println!("wrote {}", path.display());
            }
            for path in &report.kept {
                println!("kept  {}", path.display());
            }
            println!(
                "give node N only ca.pem, token.pub, node-N.pem/.key and admin-N.pem/.key (and admin.token to a \
                 member, to accept it); keep private/ (the CA and token keys), operator.*, token-* and client-* \
                 with the operator and the clients they are for"
            );
            Ok(())
        }
        Command::Node(args) => {
            let settings = args.settings()?;
            init_logging(settings.log_format.unwrap_or_default());
            let config = settings.validate().map_err(|error| error.to_string())?;
            control_runtime()?
                .block_on(node::run(config, crate::worker::builtin::kinds()))
                .map_err(|error| error.to_string())
        }
        Command::Registry(args) => control_runtime()?.block_on(registry::run(args)).map_err(|error| error.to_string()),
        Command::Submit(args) => control_runtime()?.block_on(grid::submit(args)).map_err(|error| error.to_string()),
        Command::Tasks(args) => control_runtime()?.block_on(grid::tasks(args)).map_err(|error| error.to_string()),
        Command::Drain(args) => control_runtime()?.block_on(grid::drain(args)).map_err(|error| error.to_string()),
        Command::Schedule(args) => control_runtime()?.block_on(grid::schedule(args)).map_err(|error| error.to_string()),
        Command::Jobs(args) => control_runtime()?.block_on(grid::jobs(args)).map_err(|error| error.to_string()),
        Command::Unschedule(args) => {
            control_runtime()?.block_on(grid::unschedule(args)).map_err(|error| error.to_string())
        }
        Command::Actor(args) => control_runtime()?.block_on(actors::actor(args)).map_err(|error| error.to_string()),
        Command::Actors(args) => control_runtime()?.block_on(actors::actors(args)).map_err(|error| error.to_string()),
        Command::Tokens(args) => control_runtime()?.block_on(access::tokens(args)).map_err(|error| error.to_string()),
        Command::Audit(args) => control_runtime()?.block_on(access::audit(args)).map_err(|error| error.to_string()),
        Command::Logs(args) => control_runtime()?.block_on(logs::logs(args)).map_err(|error| error.to_string()),
        Command::Members(args) => {
            control_runtime()?.block_on(cluster::members(args)).map_err(|error| error.to_string())
        }
        Command::Status(args) => control_runtime()?.block_on(cluster::status(args)).map_err(|error| error.to_string()),
        Command::Completions(args) => {
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "gridkeeper", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout().lock(), &script) {
                // `gridkeeper completions bash | head` is not an error.
                Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("stdout: {error}")),
                _ => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        // clap's own checks: every `conflicts_with` names a flag, no flag is defined twice, ...
        Cli::command().debug_assert();
    }

    #[test]
    fn errors_print_on_one_line() {
        assert_eq!(one_line("bad answer:\n  first\r\n\nsecond "), "bad answer: first second");
    }
}
