//! Bank accounts as grid actors: 100 durable `account` actors keyed by account id, 1,000 each, on a
//! real three-node cluster. Eight callers transfer money between random accounts; in the middle, the
//! node hosting about a third of the accounts is killed, the callers keep transferring, and at the end every
//! balance is read: the total must be exactly what was deposited (the example exits non-zero if not).
//!
//! Run: `cargo run --release --example actors` (about 10 s). `cargo test --example actors` runs the
//! same thing as a test, so CI checks the total too.
//!
//! A transfer is two calls: a withdraw on one account, then a deposit on another. Why that never
//! creates or loses money, even across the kill:
//! - Each call carries an idempotency key derived from the transfer's id (`<id>-w`, `<id>-d`). A
//!   durable actor records `(key, reply)` in the same log entry as the state the call produced, and
//!   answers a repeated key with the recorded reply instead of handling it again. So a call whose
//!   answer was lost (`outcome unknown`: its host died after it was sent, or no answer came in time) is
//!   retried with the same key, and is applied exactly once whichever happened: if the activation
//!   still lives, it knows the key from the moment it handled the call; if its commit made it into
//!   the log, the actor's next activation restores the recorded reply with the state; if not, that
//!   commit can never land later (it carries the old activation's fencing token, which the log refuses
//!   once the actor is activated again), so the retry is handled for the first time.
//! - `unavailable` (no host reachable yet: the dead node's accounts wait for the handoff), like
//!   `overloaded`, took nothing, so it is retried too; any other error (or 20 s of retries) stops the
//!   example with an error.
//! - A refused withdraw (not enough money) is an ordinary reply (`done: false`), not an error, so it is
//!   recorded under its key as well: a retry of it stays refused.
//! - A withdraw that was acknowledged is always followed by its deposit: the caller retries the deposit
//!   until it is acknowledged, and never stops between the two calls (the stop flag is only read
//!   between transfers). Until the deposit lands the money is "in flight"; the final read happens after
//!   every caller finished, so nothing is in flight then. (This driver does not die; a driver that can
//!   would write the transfer down durably first, e.g. as a `transfer` actor, and finish it on restart.)
//! - The recorded replies are the last `ACTOR_RECENT_REPLIES_MAX` (32) keyed calls of each account, so
//!   a retry must come before 32 later keyed calls to the same account commit. Here each of the eight
//!   callers has one call in flight, spread over 100 accounts, and retries within milliseconds (while
//!   an account moves, nobody's call to it commits), so far fewer reach an account meanwhile; an
//!   application that may retry much later needs a bound of its own on that.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gridkeeper::api::actors::ActorsQuery;
use gridkeeper::{
    ActorContext, ActorError, Client, ErrorCode, Grid, GridActor, GridActors, LocalCluster, LocalOptions, NodeId,
};

const ACCOUNTS: u64 = 100;
const OPENING_BALANCE: i64 = 1_000;
const CALLERS: u64 = 8;
/// A transfer moves 1 to this much.
const AMOUNT_MAX: i64 = 300;
/// Transfers run this long before the kill, and this long after it.
const BEFORE_KILL: Duration = Duration::from_millis(1_500);
const AFTER_KILL: Duration = Duration::from_millis(3_000);
/// Longest one call is retried before the example gives up (and fails).
const RETRY_FOR: Duration = Duration::from_secs(20);
/// Longest any other step may take.
const WAIT: Duration = Duration::from_secs(20);

/// What an account is sent.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone)]
#[serde(rename_all = "snake_case")]
enum Op {
    /// Adds `amount` (> 0).
    Deposit { amount: i64 },
    /// Takes `amount` (> 0) if the balance covers it; else refused, nothing changes.
    Withdraw { amount: i64 },
    /// Reads the balance.
    Balance,
}

/// An account's answer.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone)]
struct Receipt {
    /// False only for a refused withdraw.
    done: bool,
    /// The balance after the operation.
    balance: i64,
    /// The node whose activation answered (for a repeated key: the one that answered first).
    node: u64,
}

/// A durable account: its balance is committed through the log after every message, before the
/// caller hears the reply, and survives its node.
struct Account {
    balance: i64,
}

impl GridActor for Account {
    const KIND: &'static str = "account";
    const DURABLE: bool = true;
    type Message = Op;
    type Reply = Receipt;

    fn activate(_key: &str, state: Option<&[u8]>) -> Result<Account, ActorError> {
        let balance = match state {
            None | Some([]) => 0,
            Some(bytes) => i64::from_le_bytes(
                bytes
                    .try_into()
                    .map_err(|_| ActorError::new(format!("an account's state is 8 bytes, not {}", bytes.len())))?,
            ),
        };
        Ok(Account { balance })
    }

    async fn handle(&mut self, op: Op, ctx: &ActorContext) -> Result<Receipt, ActorError> {
        let done = match op {
            Op::Deposit { amount } | Op::Withdraw { amount } if amount <= 0 => {
                return Err(ActorError::new(format!("an amount must be positive, not {amount}")));
            }
            Op::Deposit { amount } => {
                self.balance =
                    self.balance.checked_add(amount).ok_or_else(|| ActorError::new("the balance overflows"))?;
                true
            }
            Op::Withdraw { amount } if amount > self.balance => false,
            Op::Withdraw { amount } => {
                self.balance -= amount;
                true
            }
            Op::Balance => true,
        };
        Ok(Receipt { done, balance: self.balance, node: ctx.node.0 })
    }

    fn snapshot(&self) -> Result<Vec<u8>, ActorError> {
        Ok(self.balance.to_le_bytes().to_vec())
    }
}

fn account(index: u64) -> String {
    format!("acct-{index:03}")
}

/// What the callers did.
#[derive(Default)]
struct Stats {
    transfers: AtomicU64,
    refused: AtomicU64,
    retries: AtomicU64,
    outcome_unknown: AtomicU64,
}

/// Calls `account` with `op` until it is acknowledged, every attempt with the same idempotency key
/// (`None` only for reads, which change nothing).
async fn call_until_acknowledged(
    grid: &Grid,
    account: &str,
    op: Op,
    key: Option<&str>,
    stats: &Stats,
) -> Result<Receipt> {
    let mut actor = grid.actor::<Account>(account);
    if let Some(key) = key {
        actor = actor.with_idempotency_key(key);
    }
    let deadline = Instant::now() + RETRY_FOR;
    loop {
        let error = match actor.call(op.clone()).await {
            Ok(receipt) => return Ok(receipt),
            Err(error) => error,
        };
        let code = error.code();
        let retry = matches!(
            code,
            ErrorCode::OutcomeUnknown | ErrorCode::Unavailable | ErrorCode::Misdirected | ErrorCode::Overloaded
        );
        if !retry || Instant::now() >= deadline {
            bail!("{op:?} on {account} (key {key:?}) failed: {error}");
        }
        stats.retries.fetch_add(1, Ordering::Relaxed);
        if code == ErrorCode::OutcomeUnknown {
            stats.outcome_unknown.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One transfer: the withdraw, then (only if it was done) the deposit, each retried until acknowledged.
async fn transfer(grid: &Grid, id: &str, from: &str, to: &str, amount: i64, stats: &Stats) -> Result<()> {
    let withdrawn =
        call_until_acknowledged(grid, from, Op::Withdraw { amount }, Some(&format!("{id}-w")), stats).await?;
    if !withdrawn.done {
        stats.refused.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    call_until_acknowledged(grid, to, Op::Deposit { amount }, Some(&format!("{id}-d")), stats).await?;
    stats.transfers.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Transfers between random accounts until `stop`, checked only between transfers.
async fn caller(grid: Grid, caller: u64, stop: Arc<AtomicBool>, stats: Arc<Stats>) -> Result<()> {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let from = rand::random_range(0..ACCOUNTS);
        let to = (from + rand::random_range(1..ACCOUNTS)) % ACCOUNTS;
        let amount = rand::random_range(1..=AMOUNT_MAX);
        transfer(&grid, &format!("t{caller}-{n}"), &account(from), &account(to), amount, &stats).await?;
        n += 1;
    }
    Ok(())
}

/// How many accounts each node hosts, from the ownership records (through an admin API).
async fn hosts(client: &Client) -> Result<BTreeMap<Option<NodeId>, usize>> {
    let listing = client.actors(&ActorsQuery { kind: Some(Account::KIND.to_string()) }).await?;
    let mut hosts = BTreeMap::new();
    for view in listing.actors {
        *hosts.entry(view.node).or_default() += 1;
    }
    Ok(hosts)
}

fn show(hosts: &BTreeMap<Option<NodeId>, usize>) -> String {
    let parts: Vec<String> = hosts
        .iter()
        .map(|(node, count)| match node {
            Some(node) => format!("node {node}: {count}"),
            None => format!("inactive: {count}"),
        })
        .collect();
    parts.join(", ")
}

fn run() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("gridkeeper-actors-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let outcome = run_in(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

fn run_in(dir: &std::path::Path) -> Result<()> {
    let options = LocalOptions {
        slots: 1,
        actors: gridkeeper::actors::builtin::kinds().with::<Account>(),
        ..LocalOptions::default()
    };
    println!("starting 3 nodes (QUIC mesh, Raft coordinator, actor hosts) under {}", dir.display());
    let mut cluster = LocalCluster::start_with(3, dir, options)?;
    let leader = cluster.wait_for_leader(WAIT).context("no leader elected")?;
    // The victim is not the leader (killing the leader works too; it only adds an election).
    let victim = [NodeId(3), NodeId(2)].into_iter().find(|node| *node != leader).expect("two candidates");
    let survivors: Vec<NodeId> = [NodeId(1), NodeId(2), NodeId(3)].into_iter().filter(|node| *node != victim).collect();
    // The callers call through the survivors' actor services (over the mesh, straight to each
    // account's host); the listing goes through a survivor's admin API.
    let grids: Vec<Grid> = survivors
        .iter()
        .map(|node| cluster.view(*node).and_then(|view| view.coordinator()).map(Grid::local).context("a running node"))
        .collect::<Result<_>>()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let client = runtime.block_on(Client::connect(cluster.admin(survivors[0]), cluster.access()?))?;
    let stats = Arc::new(Stats::default());

    // Open the accounts: a keyed deposit each, so a retried opening cannot deposit twice.
    runtime.block_on(async {
        let mut opening = tokio::task::JoinSet::new();
        for index in 0..ACCOUNTS {
            let (grid, stats) = (grids[index as usize % grids.len()].clone(), stats.clone());
            opening.spawn(async move {
                let deposit = Op::Deposit { amount: OPENING_BALANCE };
                call_until_acknowledged(&grid, &account(index), deposit, Some(&format!("open-{index}")), &stats).await
            });
        }
        while let Some(opened) = opening.join_next().await {
            opened??;
        }
        anyhow::Ok(())
    })?;
    let expected = OPENING_BALANCE * ACCOUNTS as i64;
    println!("opened {ACCOUNTS} accounts with {OPENING_BALANCE} each: {expected} in total");
    println!("accounts per host: {}", show(&runtime.block_on(hosts(&client))?));

    // Transfer from several callers; kill the victim in the middle; keep transferring.
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..CALLERS)
        .map(|index| {
            let grid = grids[index as usize % grids.len()].clone();
            runtime.spawn(caller(grid, index, stop.clone(), stats.clone()))
        })
        .collect();
    std::thread::sleep(BEFORE_KILL);
    let hosted_by_victim: Vec<String> = runtime.block_on(async {
        let listing = client.actors(&ActorsQuery { kind: Some(Account::KIND.to_string()) }).await?;
        anyhow::Ok(listing.actors.into_iter().filter(|view| view.node == Some(victim)).map(|view| view.key).collect())
    })?;
    let before = stats.transfers.load(Ordering::Relaxed);
    println!("{before} transfers done; killing node {victim}, which hosts {} accounts", hosted_by_victim.len());
    cluster.kill(victim);
    let killed = Instant::now();
    // One of the victim's accounts, read until it answers again from a survivor.
    if let Some(moved) = hosted_by_victim.first() {
        let receipt = runtime.block_on(call_until_acknowledged(&grids[0], moved, Op::Balance, None, &stats))?;
        println!(
            "{moved} answered again from node {} {} ms after the kill (balance {})",
            receipt.node,
            killed.elapsed().as_millis(),
            receipt.balance
        );
    }
    std::thread::sleep(AFTER_KILL.saturating_sub(killed.elapsed()));
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        for caller in callers {
            tokio::time::timeout(RETRY_FOR * 2, caller).await.context("a caller did not finish in time")???;
        }
        anyhow::Ok(())
    })?;
    let transfers = stats.transfers.load(Ordering::Relaxed);
    println!(
        "{transfers} transfers ({} after the kill), {} withdraws refused for want of money, {} calls retried \
         ({} of them after `outcome unknown`)",
        transfers - before,
        stats.refused.load(Ordering::Relaxed),
        stats.retries.load(Ordering::Relaxed),
        stats.outcome_unknown.load(Ordering::Relaxed),
    );

    // Read every balance.
    let mut total = 0i64;
    let mut negative = 0;
    runtime.block_on(async {
        for index in 0..ACCOUNTS {
            let receipt = call_until_acknowledged(&grids[0], &account(index), Op::Balance, None, &stats).await?;
            total += receipt.balance;
            negative += usize::from(receipt.balance < 0);
        }
        anyhow::Ok(())
    })?;
    let now_hosted = runtime.block_on(hosts(&client))?;
    println!("accounts per host now: {}", show(&now_hosted));
    println!("total of all balances: {total} (deposited: {expected})");
    if now_hosted.contains_key(&Some(victim)) {
        bail!("an account is still hosted by the killed node {victim}");
    }
    if total != expected || negative > 0 {
        bail!("money was created or lost: the total is {total}, not {expected} ({negative} negative balances)");
    }
    println!("the total is preserved exactly");
    drop(runtime);
    drop(cluster);
    Ok(())
}

fn main() -> Result<()> {
    run()
}

#[cfg(test)]
mod tests {
    /// CI runs the example (`cargo test`): the total must be preserved across the kill.
    #[test]
    fn transfers_preserve_the_total_across_a_node_kill() {
        super::run().expect("the example succeeds");
    }
}
