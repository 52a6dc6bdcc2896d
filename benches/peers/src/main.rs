//! `peers`: drives gridkeeper, ZooKeeper and etcd with identical closed-loop workloads on one
//! machine, writes one JSON line per measurement, and prints the side-by-side table. gridkeeper is
//! driven twice: through its HTTP client API (`gridkeeper`) and through its ZooKeeper protocol front
//! end with the very client ZooKeeper gets (`gridkeeper-zk`).
//!
//! - `peers bench --system S --workloads W,... [--quick] [--out FILE] [--control SCRIPT] ...` measures
//!   one running cluster; `run.sh` starts and stops each cluster around it, one system at a time.
//! - `peers table [--results FILE]` prints the Markdown table and the goals from a results file
//!   (Ray's lines come from `ray_bench.py`, in the same schema).
//!
//! The harness starts no server and kills only the processes the cluster's control script names.

#![forbid(unsafe_code)]

mod cluster;
mod connection;
mod driver;
mod failover;
mod grid;
mod report;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use cluster::Control;
use connection::{Op, Target};
use driver::Plan;
use report::{Record, Results};

/// Where results go unless `--out` says otherwise (relative to the working directory: run.sh runs
/// from the repository root).
const RESULTS_DEFAULT: &str = "target/peers/results.jsonl";
/// No-op tasks per throughput run: long enough (several seconds at the goal's 50,000/s) that start-up
/// and the last stragglers do not decide the figure.
const TASKS_DEFAULT: usize = 200_000;

/// Side-by-side benchmarks of gridkeeper against ZooKeeper and etcd.
#[derive(Debug, Parser)]
#[command(name = "peers", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure one running cluster and append its results.
    Bench(BenchArgs),
    /// Print the Markdown table and the goals from a results file.
    Table(TableArgs),
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// The system the cluster runs.
    #[arg(long, value_enum)]
    system: System,
    /// Workloads, in the order to run them (failover and task-retry kill a member: put them last).
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    workloads: Vec<Workload>,
    /// 3 s windows instead of 10 s.
    #[arg(long)]
    quick: bool,
    /// Results file (JSON lines, appended).
    #[arg(long, default_value = RESULTS_DEFAULT)]
    out: PathBuf,
    /// Members' client addresses, comma separated, in member-id order (gridkeeper: admin API
    /// addresses; gridkeeper-zk: ZooKeeper listeners, `--zk-listen`). Defaults to the ports of the
    /// cluster scripts.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// The cluster's control script (`leader`, and `pid N` for gridkeeper; gk-cluster.sh for
    /// gridkeeper-zk too): needed by failover and task-retry.
    #[arg(long)]
    control: Option<PathBuf>,
    /// gridkeeper's admin token file (`admin.token` in its credentials directory). Not used by
    /// gridkeeper-zk: its znodes are world-open, so its ZooKeeper sessions need no credential.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Concurrent clients of the steady workloads, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,128")]
    clients: Vec<usize>,
    /// No-op tasks per throughput run.
    #[arg(long, default_value_t = TASKS_DEFAULT)]
    tasks: usize,
}

#[derive(Debug, Args)]
struct TableArgs {
    /// Results file to read.
    #[arg(long, default_value = RESULTS_DEFAULT)]
    results: PathBuf,
}

/// A system this binary drives (Ray is driven by `ray_bench.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum System {
    /// A 3-node gridkeeper cluster.
    Gridkeeper,
    /// A 1-node gridkeeper cluster (task throughput against Ray on one node).
    #[value(name = "gridkeeper-1node")]
    Gridkeeper1Node,
    /// A 3-node gridkeeper cluster reached through its ZooKeeper listeners, with the same client and
    /// code path as ZooKeeper (issue 12).
    #[value(name = "gridkeeper-zk")]
    GridkeeperZk,
    /// A 3-member ZooKeeper ensemble.
    Zookeeper,
    /// A 3-member etcd cluster.
    Etcd,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Gridkeeper => "gridkeeper",
            System::Gridkeeper1Node => "gridkeeper-1node",
            System::GridkeeperZk => "gridkeeper-zk",
            System::Zookeeper => "zookeeper",
            System::Etcd => "etcd",
        }
    }

    /// The cluster scripts' client ports, in member-id order (gk-cluster.sh: admin 19200+N,
    /// ZooKeeper 2280+N; zk-cluster.sh: 2180+N).
    fn endpoints_default(self) -> Vec<String> {
        let list: &[&str] = match self {
            System::Gridkeeper => &["127.0.0.1:19201", "127.0.0.1:19202", "127.0.0.1:19203"],
            System::Gridkeeper1Node => &["127.0.0.1:19201"],
            System::GridkeeperZk => &["127.0.0.1:2281", "127.0.0.1:2282", "127.0.0.1:2283"],
            System::Zookeeper => &["127.0.0.1:2181", "127.0.0.1:2182", "127.0.0.1:2183"],
            System::Etcd => &["127.0.0.1:12379", "127.0.0.1:22379", "127.0.0.1:32379"],
        };
        list.iter().map(|endpoint| endpoint.to_string()).collect()
    }

    /// Why `workload` cannot be measured on this system, if it cannot.
    fn refusal(self, workload: Workload) -> Option<&'static str> {
        match (self, workload) {
            // Over ZooKeeper's protocol, gridkeeper's getData is a local read too.
            (System::Zookeeper | System::GridkeeperZk, Workload::Read) => {
                Some("ZooKeeper has no linearizable read: its getData is measured as read-local")
            }
            (System::Zookeeper | System::Etcd, Workload::Tasks | Workload::TaskRetry) => Some("it runs no tasks"),
            (System::GridkeeperZk, Workload::Tasks | Workload::TaskRetry) => {
                Some("ZooKeeper's protocol has no tasks: measure them with --system gridkeeper")
            }
            (System::Gridkeeper1Node, Workload::Failover | Workload::TaskRetry) => {
                Some("one node has no survivor to take over")
            }
            _ => None,
        }
    }
}

/// A workload of the issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Set 256-byte values over 1,000 existing keys.
    Write,
    /// Create sequential nodes (etcd: a transaction creating a fresh key that must not exist).
    Create,
    /// Linearizable get.
    Read,
    /// Get served locally by the contacted member (ZooKeeper's getData, etcd's serializable get).
    ReadLocal,
    /// Kill -9 of the leader under 16 writers; the longest gap without an acknowledged write.
    Failover,
    /// End-to-end throughput of no-op tasks.
    Tasks,
    /// Kill -9 of the node running a retriable task; the time until the retry starts.
    TaskRetry,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Write => "write",
            Workload::Create => "create",
            Workload::Read => "read",
            Workload::ReadLocal => "read-local",
            Workload::Failover => "failover",
            Workload::Tasks => "tasks",
            Workload::TaskRetry => "task-retry",
        }
    }

    /// The request of a steady registry workload.
    fn op(self) -> Option<Op> {
        match self {
            Workload::Write => Some(Op::Write),
            Workload::Create => Some(Op::Create),
            Workload::Read => Some(Op::Read),
            Workload::ReadLocal => Some(Op::ReadLocal),
            Workload::Failover | Workload::Tasks | Workload::TaskRetry => None,
        }
    }

    /// Whether it needs the 1,000 fixture keys.
    fn uses_keys(self) -> bool {
        self.op().is_some() || self == Workload::Failover
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Bench(args) => bench(args).await,
        Command::Table(args) => print_table(&args.results),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("peers: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_table(results: &Path) -> Result<()> {
    let records = report::read(results)?;
    print!("{}", report::table(&records));
    print!("{}", report::goals(&records));
    Ok(())
}

/// Where the system's members are, from the flags.
fn target(args: &BenchArgs) -> Result<Target> {
    let endpoints = if args.endpoints.is_empty() { args.system.endpoints_default() } else { args.endpoints.clone() };
    Ok(match args.system {
        System::Gridkeeper | System::Gridkeeper1Node => {
            let admins = endpoints
                .iter()
                .map(|endpoint| endpoint.parse().with_context(|| format!("{endpoint:?} is not an IP:PORT address")))
                .collect::<Result<Vec<SocketAddr>>>()?;
            let file = args.token_file.as_ref().context("gridkeeper needs --token-file (its admin.token)")?;
            let token = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
            // The admin API is HTTPS: the CA beside the token file verifies the nodes.
            let certs = file.parent().context("--token-file names no directory")?;
            let access = gridkeeper::client::Access::ca_only(certs)
                .with_context(|| format!("the cluster CA in {}", certs.display()))?
                .with_token(token.trim());
            Target::Gridkeeper { admins, access }
        }
        // gridkeeper's ZooKeeper listeners get exactly what a ZooKeeper ensemble gets.
        System::Zookeeper | System::GridkeeperZk => Target::ZooKeeper { servers: endpoints },
        System::Etcd => Target::Etcd { endpoints },
    })
}

async fn bench(args: BenchArgs) -> Result<()> {
    for &workload in &args.workloads {
        if let Some(why) = args.system.refusal(workload) {
            bail!("{} cannot run {}: {why}", args.system.name(), workload.name());
        }
    }
    let plan = Plan::new(args.quick);
    let target = target(&args)?;
    let control = args.control.clone().map(Control::new);
    let mut results = Results::open(&args.out)?;
    if args.workloads.iter().any(|workload| workload.uses_keys()) {
        connection::prepare(&target).await.context("create the 1,000 fixture keys")?;
    }
    for &workload in &args.workloads {
        match workload.op() {
            // Each record is written as soon as it exists, so a failure later keeps it.
            Some(op) => {
                for &clients in &args.clients {
                    let first = first_member(control.as_ref(), &target).await;
                    let mut tally = driver::steady(&target, op, clients, first, &plan)
                        .await
                        .with_context(|| format!("{} with {clients} clients", workload.name()))?;
                    let system = args.system.name();
                    results.append(&Record::of_tally(system, workload.name(), clients, &mut tally, plan.window))?;
                }
            }
            None => results.append(&once(&args, &target, control.as_ref(), workload, &plan).await?)?,
        }
    }
    Ok(())
}

/// The member simulated client 0 talks to: the one after the leader. Clients then stand in the same
/// relation to the leader in every system, whichever member leads: a single client talks to a
/// follower, and the leader never has more clients than a follower. Without a control script, or
/// without a leader, the first member.
///
/// The control script numbers members from 1 (zk-cluster.sh: client port 2180+N; gk-cluster.sh:
/// node N, admin 19200+N and ZooKeeper 2280+N), and the endpoints are listed in that order, so the
/// leader's endpoint is index `N - 1` for gridkeeper-zk as for the others.
async fn first_member(control: Option<&Control>, target: &Target) -> usize {
    let Some(control) = control else { return 0 };
    let members = target.members();
    match control.leader().await {
        // Member ids are 1-based: the leader's index is `id - 1`, the next member's `id`.
        Ok(leader) if (1..=members as u64).contains(&leader.id) => leader.id as usize % members,
        Ok(leader) => {
            eprintln!(
                "peers: the leader is member {}, but {members} endpoints are listed (in member-id order); clients \
                 start on the first member",
                leader.id
            );
            0
        }
        Err(error) => {
            eprintln!("peers: no leader known ({error:#}); clients start on the first member");
            0
        }
    }
}

/// A workload measured once: failover, tasks or task-retry.
async fn once(
    args: &BenchArgs,
    target: &Target,
    control: Option<&Control>,
    workload: Workload,
    plan: &Plan,
) -> Result<Record> {
    let system = args.system.name();
    let need_control = || control.with_context(|| format!("{} needs --control (the cluster script)", workload.name()));
    match workload {
        Workload::Failover => {
            let mut run = failover::failover(target, need_control()?, plan).await?;
            let clients = failover::FAILOVER_CLIENTS;
            let mut record = Record::of_tally(system, "failover", clients, &mut run.tally, run.elapsed);
            record.gap_ms = Some(run.gap.as_secs_f64() * 1e3);
            Ok(record)
        }
        Workload::Tasks => {
            let Target::Gridkeeper { admins, access } = target else { bail!("{system} runs no tasks") };
            let run = grid::throughput(admins, access, args.tasks).await?;
            Ok(Record {
                system: system.into(),
                workload: "tasks".into(),
                clients: 1,
                ops_per_s: Some(run.tasks as f64 / run.elapsed.as_secs_f64()),
                p50_us: None,
                p99_us: None,
                errors: run.failed as u64,
                gap_ms: None,
                bytes: None,
            })
        }
        Workload::TaskRetry => {
            let Target::Gridkeeper { admins, access } = target else { bail!("{system} runs no tasks") };
            let after = grid::retry_after_kill(admins, access, need_control()?).await?;
            Ok(Record {
                system: system.into(),
                workload: "task-retry".into(),
                clients: 1,
                ops_per_s: None,
                p50_us: None,
                p99_us: None,
                errors: 0,
                gap_ms: Some(after.as_secs_f64() * 1e3),
                bytes: None,
            })
        }
        Workload::Write | Workload::Create | Workload::Read | Workload::ReadLocal => {
            unreachable!("steady workloads are measured per client count")
        }
    }
}
