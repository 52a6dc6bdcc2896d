//! `gridkeeper status` and `gridkeeper members` (list, add, remove): the cluster as one node sees it,
//! through the same [`crate::client::Client`] (flags, credentials, failover) as every other command.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::access::Connect;
use super::output::{duration, json_line, or_dash, Table};
use crate::admin::status::{MemberRole, MembersView, StatusView};
use crate::client::ClientError;

/// `gridkeeper status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    node: Connect,
    /// Print the JSON document instead of a table.
    #[arg(long)]
    json: bool,
}

/// `gridkeeper members`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MembersArgs {
    #[command(subcommand)]
    command: Option<MembersCommand>,
    // The list's flags, spelled as `access::Connect`'s: a flattened optional `Connect` would count
    // GRIDKEEPER_CERTS from the environment as given and demand --admin before `add` or `remove`.
    /// A node's admin address (any node), `HOST:PORT`.
    #[arg(long, env = "GRIDKEEPER_ADMIN")]
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
        node: Connect,
        /// Print `{"message": ...}` instead of the message.
        #[arg(long)]
        json: bool,
    },
    /// Remove a member for good (a dead voter being replaced, say). Refused, with the reason, if it
    /// would leave no quorum.
    Remove {
        /// The member's id.
        #[arg(long)]
        id: u64,
        #[command(flatten)]
        node: Connect,
        /// Print `{"message": ...}` instead of the message.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `gridkeeper status`: the node's `/status` document, as a table or (`--json`) as it is.
///
/// # Errors
/// [`ClientError`] for unreachable nodes and refused credentials.
pub async fn status(args: StatusArgs) -> Result<(), ClientError> {
    let view: StatusView = args.node.client().await?.get_json("/status").await?;
    if args.json {
        println!("{}", json_line(&view).map_err(ClientError::Transport)?);
    } else {
        print!("{}", status_table(&view));
    }
    Ok(())
}

/// What `members` without a subcommand says when it has no node to ask.
const MISSING_ADMIN: &str = "members: give --admin HOST:PORT or GRIDKEEPER_ADMIN (or a subcommand: add, remove)";

/// Runs `gridkeeper members`: the list (`/members`), or `add` or `remove`. Without `--admin` (or
/// `GRIDKEEPER_ADMIN`) the list is a usage error: exit 2.
///
/// # Errors
/// [`ClientError`].
pub async fn members(args: MembersArgs) -> Result<(), ClientError> {
    let (change, json) = match args.command {
        Some(MembersCommand::Add { id, addr, node, json }) => (node.client().await?.add_member(id, &addr).await?, json),
        Some(MembersCommand::Remove { id, node, json }) => (node.client().await?.remove_member(id).await?, json),
        None => {
            let Some(admin) = args.admin else { super::usage_error("members", MISSING_ADMIN) };
            let node = Connect { admin, certs: args.certs, token_file: args.token_file, plaintext: args.plaintext };
            let view: MembersView = node.client().await?.get_json("/members").await?;
            if args.json {
                println!("{}", json_line(&view).map_err(ClientError::Transport)?);
            } else {
                print!("{}", members_table(&view));
            }
            return Ok(());
        }
    };
    if json {
        println!("{}", json_line(&change).map_err(ClientError::Transport)?);
    } else {
        println!("{}", change.message);
    }
    Ok(())
}

/// `/status` for people: a line on the coordinator, then one row per member.
pub fn status_table(view: &StatusView) -> String {
    let leader = view.leader.map_or_else(|| "none".to_string(), |leader| leader.to_string());
    let mut out = format!(
        "node {}  leader {}  term {}  commit {}  applied {}  state version {}\n",
        view.node,
        leader,
        or_dash(view.term),
        or_dash(view.commit_index),
        or_dash(view.applied_index),
        or_dash(view.state_version)
    );
    let mut table =
        Table::new(["ID", "ADDRESS", "ALIVE", "LAST SEEN", "RUNNING", "SLOTS", "LOAD"]).right([0, 3, 4, 5, 6]);
    for member in &view.members {
        table.row([
            member.id.to_string(),
            member.addr.clone(),
            yes_no(member.alive).into(),
            member.last_seen_ms.map_or_else(|| "never".to_string(), |ms| format!("{} ago", duration(ms))),
            or_dash(member.running),
            or_dash(member.slots),
            member.load.map_or_else(|| "-".to_string(), |load| format!("{load:.2}")),
        ]);
    }
    out.push_str(&table.render());
    out
}

/// `/members` for people: who answered, then one row per member.
pub fn members_table(view: &MembersView) -> String {
    let leader = view.leader.map_or_else(|| "none".to_string(), |leader| leader.to_string());
    let mut out = format!("node {}  leader {leader}\n", view.node);
    let mut table = Table::new(["ID", "ADDRESS", "ROLE", "ALIVE", "LAG"]).right([0, 4]);
    for member in &view.members {
        let role = match member.role {
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
            MemberRole::Worker => "worker",
        };
        table.row([
            member.id.to_string(),
            member.addr.clone(),
            role.into(),
            yes_no(member.alive).into(),
            or_dash(member.lag),
        ]);
    }
    out.push_str(&table.render());
    out
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::status::{MemberRow, MemberView};

    #[test]
    fn the_status_table_keeps_its_first_line_and_aligns_members() {
        let member = |id: u64, addr: &str, alive: bool, seen: Option<u64>| MemberView {
            id,
            addr: addr.into(),
            alive,
            last_seen_ms: seen,
            running: alive.then_some(1),
            slots: alive.then_some(2),
            load: alive.then_some(0.5),
        };
        let view = StatusView {
            node: 1,
            leader: Some(2),
            term: Some(3),
            commit_index: Some(40),
            applied_index: Some(39),
            state_version: None,
            members: vec![
                member(1, "127.0.0.1:7101", true, Some(0)),
                member(2, "gk2.example.org:7100", true, Some(12)),
                member(10, "10.0.0.3:7100", false, Some(95_000)),
                member(11, "10.0.0.4:7100", false, None),
            ],
        };
        assert_eq!(
            status_table(&view),
            "node 1  leader 2  term 3  commit 40  applied 39  state version -\n\
             ID  ADDRESS               ALIVE  LAST SEEN  RUNNING  SLOTS  LOAD\n\
             \x201  127.0.0.1:7101        yes      0ms ago        1      2  0.50\n\
             \x202  gk2.example.org:7100  yes     12ms ago        1      2  0.50\n\
             10  10.0.0.3:7100         no     1m35s ago        -      -     -\n\
             11  10.0.0.4:7100         no         never        -      -     -\n"
        );
    }

    #[test]
    fn the_members_table_names_roles() {
        let view = MembersView {
            node: 2,
            leader: None,
            members: vec![
                MemberRow { id: 1, addr: "gk1:7100".into(), role: MemberRole::Voter, alive: true, lag: Some(0) },
                MemberRow { id: 4, addr: "10.0.0.4:9104".into(), role: MemberRole::Worker, alive: false, lag: None },
            ],
        };
        assert_eq!(
            members_table(&view),
            "node 2  leader none\n\
             ID  ADDRESS        ROLE    ALIVE  LAG\n\
             \x201  gk1:7100       voter   yes      0\n\
             \x204  10.0.0.4:9104  worker  no       -\n"
        );
    }
}
