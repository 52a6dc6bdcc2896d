//! The `/status` document, shared by the server that writes it and the CLI that reads it.

use serde::{Deserialize, Serialize};

/// One member in `/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    /// Node id.
    pub id: u64,
    /// Mesh address.
    pub addr: String,
    /// Whether the reporting node considers it up.
    pub alive: bool,
    /// Milliseconds since the reporting node last heard from it; `null` if never.
    pub last_seen_ms: Option<u64>,
    /// Task attempts assigned to it and not ended (from the task table); `null` if not registered.
    #[serde(default)]
    pub running: Option<u32>,
    /// Attempts it runs at once, as it registered.
    #[serde(default)]
    pub slots: Option<u32>,
    /// `running / slots`.
    #[serde(default)]
    pub load: Option<f64>,
}

/// The whole `/status` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    /// The reporting node.
    pub node: u64,
    /// The coordinator leader this node knows of; `null` while none is known.
    pub leader: Option<u64>,
    /// The Raft term.
    #[serde(default)]
    pub term: Option<u64>,
    /// Index of the last entry known committed.
    #[serde(default)]
    pub commit_index: Option<u64>,
    /// Index of the last entry applied on this node.
    #[serde(default)]
    pub applied_index: Option<u64>,
    /// The state version this node applies (see `registry::STATE_VERSION`): raised through the log
    /// once every voter's build knows the next one.
    #[serde(default)]
    pub state_version: Option<u32>,
    /// Every member, the reporting node first.
    pub members: Vec<MemberView>,
}

impl StatusView {
    /// A fixed-width table for people.
    pub fn to_table(&self) -> String {
        let leader = self.leader.map_or_else(|| "none".to_string(), |leader| leader.to_string());
        let show = |value: Option<u64>| value.map_or_else(|| "-".to_string(), |value| value.to_string());
        let mut out = format!(
            "node {}  leader {}  term {}  commit {}  applied {}  state version {}\n",
            self.node,
            leader,
            show(self.term),
            show(self.commit_index),
            show(self.applied_index),
            show(self.state_version.map(u64::from))
        );
        out.push_str(&format!(
            "{:<6} {:<24} {:<6} {:>12} {:>8} {:>6} {:>6}\n",
            "ID", "ADDRESS", "ALIVE", "LAST SEEN", "RUNNING", "SLOTS", "LOAD"
        ));
        for member in &self.members {
            let seen = member.last_seen_ms.map_or_else(|| "never".to_string(), |ms| format!("{ms} ms ago"));
            let alive = if member.alive { "yes" } else { "no" };
            let count = |value: Option<u32>| value.map_or_else(|| "-".to_string(), |value| value.to_string());
            let load = member.load.map_or_else(|| "-".to_string(), |load| format!("{load:.2}"));
            out.push_str(&format!(
                "{:<6} {:<24} {:<6} {:>12} {:>8} {:>6} {:>6}\n",
                member.id,
                member.addr,
                alive,
                seen,
                count(member.running),
                count(member.slots),
                load
            ));
        }
        out
    }
}

/// A member's part in the cluster, in `/members`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// Votes in the Raft group.
    Voter,
    /// Replicates the log without a vote (catching up before it is promoted).
    Learner,
    /// Runs tasks only, joined through a member's admin API (`node --join`).
    Worker,
}

/// One row of `/members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRow {
    /// Node id.
    pub id: u64,
    /// Mesh address (a worker's: its admin address, as it registered).
    pub addr: String,
    /// Voter, learner or worker.
    pub role: MemberRole,
    /// Up as the reporting node sees it (a worker: registered, its session alive).
    pub alive: bool,
    /// Log entries it trails the leader by, as the leader knows; `null` for workers, or when the
    /// leader knows nothing of it yet (or no leader answered).
    pub lag: Option<u64>,
}

/// The whole `/members` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersView {
    /// The reporting node.
    pub node: u64,
    /// The leader that answered for the lags; `null` if none did.
    pub leader: Option<u64>,
    /// Voters, then learners, then workers, each by id.
    pub members: Vec<MemberRow>,
}

impl MembersView {
    /// A fixed-width table for people.
    pub fn to_table(&self) -> String {
        let leader = self.leader.map_or_else(|| "none".to_string(), |leader| leader.to_string());
        let mut out = format!("node {}  leader {leader}\n", self.node);
        out.push_str(&format!("{:<6} {:<32} {:<8} {:<6} {:>8}\n", "ID", "ADDRESS", "ROLE", "ALIVE", "LAG"));
        for member in &self.members {
            let role = match member.role {
                MemberRole::Voter => "voter",
                MemberRole::Learner => "learner",
                MemberRole::Worker => "worker",
            };
            let lag = member.lag.map_or_else(|| "-".to_string(), |lag| lag.to_string());
            let alive = if member.alive { "yes" } else { "no" };
            out.push_str(&format!("{:<6} {:<32} {:<8} {:<6} {:>8}\n", member.id, member.addr, role, alive, lag));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_json_and_table_have_the_documented_shape() {
        let view = MembersView {
            node: 2,
            leader: Some(1),
            members: vec![
                MemberRow {
                    id: 1,
                    addr: "gk1.example.org:7100".into(),
                    role: MemberRole::Voter,
                    alive: true,
                    lag: Some(0),
                },
                MemberRow { id: 4, addr: "10.0.0.4:9104".into(), role: MemberRole::Worker, alive: true, lag: None },
            ],
        };
        assert_eq!(
            serde_json::to_string(&view).expect("json"),
            r#"{"node":2,"leader":1,"members":[{"id":1,"addr":"gk1.example.org:7100","role":"voter","alive":true,"lag":0},{"id":4,"addr":"10.0.0.4:9104","role":"worker","alive":true,"lag":null}]}"#
        );
        let table = view.to_table();
        assert!(
            table.contains("gk1.example.org:7100") && table.contains("worker") && table.contains("voter"),
            "{table}"
        );
    }

    #[test]
    fn status_json_has_the_documented_shape() {
        let view = StatusView {
            node: 1,
            leader: None,
            term: None,
            commit_index: None,
            applied_index: None,
            state_version: None,
            members: vec![MemberView {
                id: 1,
                addr: "127.0.0.1:7101".into(),
                alive: true,
                last_seen_ms: Some(12),
                running: Some(1),
                slots: Some(2),
                load: Some(0.5),
            }],
        };
        let json = serde_json::to_string(&view).expect("serializes");
        assert_eq!(
            json,
            r#"{"node":1,"leader":null,"term":null,"commit_index":null,"applied_index":null,"state_version":null,"members":[{"id":1,"addr":"127.0.0.1:7101","alive":true,"last_seen_ms":12,"running":1,"slots":2,"load":0.5}]}"#
        );
        let table = view.to_table();
        assert!(table.contains("127.0.0.1:7101") && table.contains("12 ms ago"), "{table}");
    }
}
