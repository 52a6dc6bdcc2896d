//! The `gridkeeper` command line: `certs`, `node`, `status`, `registry`, and the grid's `submit`,
//! `tasks`, `drain`, `schedule`, `jobs`, `unschedule`.
//!
//! Parses flags with clap (usage errors exit 2), runs the command, and turns every error into one
//! line on stderr with exit status 1.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub mod access;
pub mod grid;
pub mod registry;

pub use access::Connect;

use crate::admin::StatusView;
use crate::credentials::{issue, IssueRequest, Role};
use crate::ids::NodeId;
use crate::node::config::IdSetting;
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
    Status(StatusArgs),
    /// List the members (id, address, role, alive, lag behind the leader), or add or remove one.
    Members(MembersArgs),
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
    /// Revoke credentials by name, or list those issued and revoked.
    Tokens(access::TokensArgs),
    /// Read a node's audit log (operator).
    Audit(access::AuditArgs),
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
    /// The role of --token or --client: reader, submitter, operator or metrics.
    #[arg(long)]
    role: Option<String>,
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
    /// Heartbeat interval in milliseconds (default 100).
    #[arg(long)]
    heartbeat_interval_ms: Option<u64>,
    /// Silence in milliseconds after which a peer is down (default 500).
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
    /// Attempts queued on this node beyond its slots (default 128 per slot).
    #[arg(long)]
    prefetch: Option<u32>,
    /// Placement strategy when this node leads: least_loaded (default), round_robin, random, weighted,
    /// consistent_hash.
    #[arg(long)]
    placement: Option<String>,
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
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct MembersArgs {
    #[command(subcommand)]
    command: Option<MembersCommand>,
    // The list's flags, spelled as `access::Connect`'s: a flattened optional `Connect` would count
    // GRIDKEEPER_CERTS from the environment as given and demand --admin before `add` or `remove`.
    /// A node's admin address (any node).
    #[arg(long)]
    admin: Option<crate::mesh::PeerAddr>,
    /// Credentials directory: its ca.pem verifies the node, and its operator certificate is the
    /// default credential.
    #[arg(long, env = "GRIDKEEPER_CERTS")]
    certs: Option<PathBuf>,
    /// Act with this token (from `certs --token`) instead of the operator certificate.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Speak plain HTTP, to a node started with --admin-plaintext.
    #[arg(long)]
    plaintext: bool,
    /// Print the JSON document instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum MembersCommand {
    /// Register a new voter. Start it with `node --id ID --join ADMIN --voter --listen HOST:PORT`: it
    /// joins as a learner and becomes a voter once caught up. Ids are never reused.
    Add {
        /// The new member's id.
        #[arg(long)]
        id: u64,
        /// Its mesh address as the other members dial it, `HOST:PORT` (an IP address or a DNS name).
        #[arg(long)]
        addr: String,
        #[command(flatten)]
        node: access::Connect,
    },
    /// Remove a member for good (a dead voter being replaced, say). Refused, with the reason, if it
    /// would leave no quorum.
    Remove {
        /// The member's id.
        #[arg(long)]
        id: u64,
        #[command(flatten)]
        node: access::Connect,
    },
}

async fn change_members(command: MembersCommand) -> Result<(), crate::client::ClientError> {
    let change = match command {
        MembersCommand::Add { id, addr, node } => node.client().await?.add_member(id, &addr).await?,
        MembersCommand::Remove { id, node } => node.client().await?.remove_member(id).await?,
    };
    println!("{}", change.message);
    Ok(())
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    node: Connect,
    /// Print the JSON document instead of a table.
    #[arg(long)]
    json: bool,
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
            placement: self.placement,
            admin_hosts: (!self.admin_hosts.is_empty()).then_some(self.admin_hosts),
            admin_header_timeout_ms: self.admin_header_timeout_ms,
            admin_idle_timeout_ms: self.admin_idle_timeout_ms,
            admin_plaintext: self.admin_plaintext.then_some(true),
            metrics_public: self.metrics_public.then_some(true),
            unplaceable_timeout_ms: self.unplaceable_timeout_ms,
            zk_listen: self.zk_listen,
            zk_4lw: self.zk_4lw,
            zk_frame_bytes_max: self.zk_frame_bytes_max,
            zk_connections_max: self.zk_connections_max,
            zk_connections_per_client_max: self.zk_connections_per_client_max,
            zk_extended_types: self.zk_extended_types,
        };
        Ok(flags.or(file))
    }
}

/// Runs the command line and returns the process exit status.
pub fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gridkeeper: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft::core::heartbeat=error"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
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
    match cli.command {
        Command::Certs(args) => {
            let role = args.role.as_deref().map(Role::parse_issuable).transpose()?;
            let request = IssueRequest {
                nodes: args.nodes,
                sans: args.sans,
                tokens: args.token.into_iter().zip(role).collect(),
                clients: args.client.into_iter().zip(role).collect(),
                now_ms: crate::clock::unix_millis(),
            };
            let report = issue(&args.out, &request).map_err(|error| error.to_string())?;
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
            let config = args.settings()?.validate().map_err(|error| error.to_string())?;
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
        Command::Tokens(args) => control_runtime()?.block_on(access::tokens(args)).map_err(|error| error.to_string()),
        Command::Audit(args) => control_runtime()?.block_on(access::audit(args)).map_err(|error| error.to_string()),
        Command::Members(MembersArgs { command: None, admin: Some(admin), certs, token_file, plaintext, json }) => {
            let node = access::Connect { admin, certs, token_file, plaintext };
            show(&StatusArgs { node, json }, "/members", crate::admin::status::MembersView::to_table)
        }
        Command::Members(MembersArgs { command: Some(command), .. }) => {
            control_runtime()?.block_on(change_members(command)).map_err(|error| error.to_string())
        }
        Command::Members(MembersArgs { command: None, admin: None, .. }) => {
            Err("members: give --admin ADDR (or a subcommand: add, remove)".into())
        }
        Command::Status(args) => show(&args, "/status", StatusView::to_table),
    }
}

/// Prints the JSON document at `route` of a node (`--json`) or its table.
fn show<T: serde::de::DeserializeOwned + serde::Serialize>(
    args: &StatusArgs,
    route: &str,
    table: fn(&T) -> String,
) -> Result<(), String> {
    let runtime = control_runtime()?;
    let body = runtime.block_on(async {
        let (admin, access) = args.node.resolve().await.map_err(|error| error.to_string())?;
        crate::admin::client::get(admin, route, &access).await.map_err(|error| error.to_string())
    })?;
    let view: T = serde_json::from_slice(&body).map_err(|error| format!("bad {route} document: {error}"))?;
    if args.json {
        println!("{}", serde_json::to_string(&view).map_err(|error| error.to_string())?);
    } else {
        print!("{}", table(&view));
    }
    Ok(())
}
