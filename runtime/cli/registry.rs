//! `gridkeeper registry ...`: the registry from the command line, over a node's admin API.

use clap::{Args, Subcommand};

use super::flags::ConsistencyArg;
use super::output::rfc3339;
use crate::api::{ApiError, ErrorCode};
use crate::client::ClientError;
use crate::consensus::Consistency;
use crate::registry::{CreateMode, WatchKind};

/// Options shared by every registry command.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    #[command(flatten)]
    node: super::Connect,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    /// Read this node's state without a linearizable barrier (faster, may lag): `--consistency local`.
    #[arg(long, global = true, conflicts_with = "consistency")]
    local: bool,
    /// What a read waits for (default linearizable).
    #[arg(long, global = true)]
    consistency: Option<ConsistencyArg>,
    #[command(subcommand)]
    command: RegistryCommand,
}

#[derive(Debug, Subcommand)]
enum RegistryCommand {
    /// List a node's children.
    Ls { path: String },
    /// Print a node's data (`--json`: path, data and stat).
    Get { path: String },
    /// Print a node's stat.
    Stat { path: String },
    /// Create a node.
    Create {
        path: String,
        #[arg(default_value = "")]
        data: String,
        /// Deleted when the creating session ends (here: about 10 s after this command exits).
        #[arg(long)]
        ephemeral: bool,
        /// Append a 10-digit counter to the name.
        #[arg(long)]
        sequential: bool,
        /// Deleted once its last child goes.
        #[arg(long, conflicts_with_all = ["ephemeral", "sequential"])]
        container: bool,
        /// Time to live for persistent nodes without children.
        #[arg(long, conflicts_with_all = ["ephemeral", "container"])]
        ttl_ms: Option<u64>,
    },
    /// Replace a node's data.
    Set {
        path: String,
        data: String,
        #[arg(long)]
        version: Option<u32>,
    },
    /// Delete a node (`--json`: `{"path": ..., "deleted": true}`).
    Delete {
        path: String,
        #[arg(long)]
        version: Option<u32>,
    },
    /// Print changes to a node as they happen (one event; `--recursive`: all below, until stopped).
    Watch {
        path: String,
        #[arg(long)]
        recursive: bool,
        /// Children instead of data.
        #[arg(long, conflicts_with = "recursive")]
        children: bool,
    },
}

fn mode(ephemeral: bool, sequential: bool, container: bool) -> CreateMode {
    match (ephemeral, sequential, container) {
        (_, _, true) => CreateMode::Container,
        (true, true, _) => CreateMode::EphemeralSequential,
        (true, false, _) => CreateMode::Ephemeral,
        (false, true, _) => CreateMode::PersistentSequential,
        (false, false, _) => CreateMode::Persistent,
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<(), ClientError> {
    println!("{}", serde_json::to_string(value).map_err(|error| ClientError::Transport(error.to_string()))?);
    Ok(())
}

/// Runs a registry command.
///
/// # Errors
/// [`ClientError`]; its message starts with the registry error's name.
pub async fn run(args: RegistryArgs) -> Result<(), ClientError> {
    let client = args.node.client().await?;
    let consistency = match (args.local, args.consistency) {
        (true, _) => Consistency::Local,
        (false, choice) => choice.map_or(Consistency::Linearizable, Consistency::from),
    };
    match args.command {
        RegistryCommand::Ls { path } => {
            let listing = client.children(&path, consistency).await?;
            if args.json {
                print_json(&listing.children)?;
            } else {
                listing.children.iter().for_each(|child| println!("{child}"));
            }
        }
        RegistryCommand::Get { path } => {
            let node = client.get(&path, consistency).await?;
            if args.json {
                print_json(&serde_json::json!({ "path": node.path, "data": node.data, "stat": node.stat }))?;
            } else {
                println!("{}", node.data);
            }
        }
        RegistryCommand::Stat { path } => match client.exists(&path, consistency).await? {
            Some(stat) if args.json => print_json(&stat)?,
            Some(stat) => {
                let value = serde_json::to_value(stat).map_err(|error| ClientError::Transport(error.to_string()))?;
                if let Some(fields) = value.as_object() {
                    fields.iter().for_each(|(key, value)| println!("{}", stat_line(key, value)));
                }
            }
            None => return Err(ClientError::Api(ApiError::new(ErrorCode::NoNode, format!("no node: {path}")))),
        },
        RegistryCommand::Create { path, data, ephemeral, sequential, container, ttl_ms } => {
            let created = match ttl_ms {
                Some(ttl) if !sequential => client.create_with_ttl(&path, &data, ttl).await?,
                _ => {
                    let session = if ephemeral { Some(client.open_session(10_000).await?) } else { None };
                    let created =
                        client.create(&path, &data, mode(ephemeral, sequential, container), session.as_ref()).await?;
                    // The session is left to expire, so the ephemeral node outlives this command briefly.
                    std::mem::forget(session);
                    created
                }
            };
            if args.json {
                print_json(&created)?;
            } else {
                println!("{}", created.path);
            }
        }
        RegistryCommand::Set { path, data, version } => {
            let stat = client.set(&path, &data, version).await?;
            if args.json {
                print_json(&stat)?;
            }
        }
        RegistryCommand::Delete { path, version } => {
            client.delete(&path, version).await?;
            if args.json {
                print_json(&serde_json::json!({ "path": path, "deleted": true }))?;
            }
        }
        RegistryCommand::Watch { path, recursive, children } => {
            let kind = if recursive {
                WatchKind::PersistentRecursive
            } else if children {
                WatchKind::Child
            } else {
                WatchKind::Data
            };
            let mut events = client.watch(&path, kind, None).await?;
            while let Some(event) = events.recv().await {
                if args.json {
                    print_json(&event)?;
                } else {
                    println!("{} {:?}", event.zxid, event.change);
                }
            }
        }
    }
    Ok(())
}

/// One `registry stat` line, `key = value`; the times (`ctime`, `mtime`, Unix milliseconds) followed
/// by their RFC 3339 form.
fn stat_line(key: &str, value: &serde_json::Value) -> String {
    match (key, value.as_u64()) {
        ("ctime" | "mtime", Some(ms)) => format!("{key} = {value} ({})", rfc3339(ms)),
        _ => format!("{key} = {value}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_show_times_in_rfc3339_too() {
        assert_eq!(
            stat_line("ctime", &serde_json::json!(1_796_061_600_250u64)),
            "ctime = 1796061600250 (2026-11-30T18:00:00.250Z)"
        );
        assert_eq!(stat_line("version", &serde_json::json!(3)), "version = 3");
    }
}
