//! The cluster's control script (`zk-cluster.sh`, `etcd-cluster.sh`, `gk-cluster.sh`): who leads,
//! which process a member is, and the kill -9 the failure workloads need.
//!
//! The harness never starts or stops a cluster itself (`run.sh` does, with the same scripts), so it
//! can only kill a process the script says belongs to the cluster. Every call is async: a blocking
//! call here would stall the simulated clients sharing the runtime, and show up as a false gap.

use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};
use tokio::process::Command;

/// A cluster's control script.
#[derive(Clone, Debug)]
pub struct Control {
    script: PathBuf,
}

/// A member and its process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// The member's id in its cluster (1-based).
    pub id: u64,
    /// Its process.
    pub pid: u32,
}

impl Control {
    /// The script at `script`.
    pub fn new(script: PathBuf) -> Control {
        Control { script }
    }

    async fn run(&self, args: &[&str]) -> Result<String> {
        let output = Command::new(&self.script)
            .args(args)
            .output()
            .await
            .with_context(|| format!("run {}", self.script.display()))?;
        if !output.status.success() {
            bail!(
                "{} {} failed ({}): {}",
                self.script.display(),
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// The current leader (`<script> leader` prints `<member> <pid>`).
    ///
    /// # Errors
    /// When the script fails (no leader) or prints something else.
    pub async fn leader(&self) -> Result<Member> {
        let line = self.run(&["leader"]).await?;
        parse_member(&line)
            .with_context(|| format!("{} leader printed {line:?}, not \"<member> <pid>\"", self.script.display()))
    }

    /// The process of member `id` (`<script> pid <id>`; gk-cluster.sh only).
    ///
    /// # Errors
    /// When the script fails or prints something other than a PID.
    pub async fn pid(&self, id: u64) -> Result<u32> {
        let line = self.run(&["pid", &id.to_string()]).await?;
        line.parse().with_context(|| format!("{} pid {id} printed {line:?}", self.script.display()))
    }
}

fn parse_member(line: &str) -> Option<Member> {
    let mut words = line.split_whitespace();
    let member = Member { id: words.next()?.parse().ok()?, pid: words.next()?.parse().ok()? };
    words.next().is_none().then_some(member)
}

/// Sends SIGKILL to `pid`: the process gets no chance to say goodbye to its peers or clients.
///
/// # Errors
/// When `kill` fails (the process is gone or not ours to signal).
pub async fn kill_hard(pid: u32) -> Result<()> {
    let status = Command::new("kill").args(["-9", &pid.to_string()]).status().await.context("run kill")?;
    ensure!(status.success(), "kill -9 {pid} failed ({status})");
    Ok(())
}
