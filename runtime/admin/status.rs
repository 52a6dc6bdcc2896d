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

#[cfg(test)]
mod tests {
    use super::*;

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
