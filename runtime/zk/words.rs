//! ZooKeeper's four-letter words on the client port: `ruok`, `srvr`, `stat`, `mntr`, `envi`,
//! `conf`, `cons`, `isro` and `wchs`, each only if the allow list has it (ZooKeeper's
//! `4lw.commands.whitelist`). The text follows ZooKeeper's layout closely enough for its own tools
//! (`zkServer.sh status` reads `Mode:`, kazoo's `server_version` reads `zookeeper.version=` from
//! `envi`).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::service::registry as service;

use super::frame::FourLetterWord;
use super::server::Shared;

/// The ZooKeeper release whose client protocol this front end speaks: clients read it from `envi`
/// and `srvr` to decide which operations they may send (`addWatch`, `whoAmI`, ...).
pub const ZOOKEEPER_VERSION: &str = "3.9.2";

fn version_line() -> String {
    format!("{ZOOKEEPER_VERSION}-gridkeeper-{}, built on unknown", env!("CARGO_PKG_VERSION"))
}

/// The text answering `word` (the connection is closed after it).
pub(super) fn answer(shared: &Shared, word: FourLetterWord) -> String {
    let name = word.as_str();
    if !shared.config.four_letter_words.contains(name) {
        super::server::refused("4lw");
        return format!("{name} is not executed because it is not in the whitelist.\n");
    }
    let summary = service::summary(&shared.coordinator);
    let mode = if summary.leader { "leader" } else { "follower" };
    let (min, avg, max) = shared.stats.latency_ms();
    let (received, sent) = shared.connections.iter().fold((0, 0), |(received, sent), connection| {
        (received + connection.received.load(Ordering::Relaxed), sent + connection.sent.load(Ordering::Relaxed))
    });
    let server = |out: &mut String| {
        let _ = writeln!(out, "Latency min/avg/max: {min:.0}/{avg:.4}/{max:.0}");
        let _ = writeln!(out, "Received: {received}");
        let _ = writeln!(out, "Sent: {sent}");
        let _ = writeln!(out, "Connections: {}", shared.connections.len());
        let _ = writeln!(out, "Outstanding: 0");
        let _ = writeln!(out, "Zxid: {:#x}", summary.zxid);
        let _ = writeln!(out, "Mode: {mode}");
        let _ = writeln!(out, "Node count: {}", summary.znodes);
    };
    let mut out = String::new();
    match word {
        FourLetterWord::Ruok => out.push_str("imok"),
        FourLetterWord::Isro => out.push_str("rw"),
        FourLetterWord::Srvr => {
            let _ = writeln!(out, "Zookeeper version: {}", version_line());
            server(&mut out);
        }
        FourLetterWord::Stat => {
            let _ = writeln!(out, "Zookeeper version: {}", version_line());
            out.push_str("Clients:\n");
            connections(shared, &mut out, false);
            out.push('\n');
            server(&mut out);
        }
        FourLetterWord::Cons => {
            connections(shared, &mut out, true);
            out.push('\n');
        }
        FourLetterWord::Envi => {
            out.push_str("Environment:\n");
            let _ = writeln!(out, "zookeeper.version={}", version_line());
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let _ = writeln!(out, "host.name={}", host.trim());
            let _ = writeln!(out, "os.name={}", std::env::consts::OS);
            let _ = writeln!(out, "os.arch={}", std::env::consts::ARCH);
            let _ = writeln!(out, "gridkeeper.version={}", env!("CARGO_PKG_VERSION"));
            let _ = writeln!(out, "gridkeeper.node={}", shared.coordinator.node());
        }
        FourLetterWord::Conf => {
            let (low, high) = service::session_timeout_bounds(&shared.coordinator);
            let config = &shared.config;
            let _ = writeln!(out, "clientPort={}", config.listen.port());
            let _ = writeln!(out, "clientPortAddress={}", config.listen.ip());
            let _ = writeln!(out, "serverId={}", shared.coordinator.node());
            let _ = writeln!(out, "maxClientCnxns={}", config.connections_per_client_max);
            let _ = writeln!(out, "minSessionTimeout={low}");
            let _ = writeln!(out, "maxSessionTimeout={high}");
            let _ = writeln!(out, "jute.maxbuffer={}", config.frame_bytes_max);
            let words: Vec<&str> = config.four_letter_words.iter().map(String::as_str).collect();
            let _ = writeln!(out, "4lw.commands.whitelist={}", words.join(","));
        }
        FourLetterWord::Mntr => {
            let lines: [(&str, String); 14] = [
                ("zk_version", version_line()),
                ("zk_server_state", mode.to_string()),
                ("zk_avg_latency", format!("{avg:.4}")),
                ("zk_max_latency", format!("{max:.0}")),
                ("zk_min_latency", format!("{min:.0}")),
                ("zk_packets_received", received.to_string()),
                ("zk_packets_sent", sent.to_string()),
                ("zk_num_alive_connections", shared.connections.len().to_string()),
                ("zk_outstanding_requests", "0".to_string()),
                ("zk_znode_count", summary.znodes.to_string()),
                ("zk_watch_count", summary.watches.to_string()),
                ("zk_global_sessions", summary.sessions.to_string()),
                ("zk_approximate_data_size", summary.data_bytes.to_string()),
                ("zk_open_file_descriptor_count", open_files().to_string()),
            ];
            for (key, value) in lines {
                let _ = writeln!(out, "{key}\t{value}");
            }
        }
        FourLetterWord::Wchs => {
            let _ = writeln!(out, "{} connections watching {} paths", summary.watchers, summary.watches);
            let _ = writeln!(out, "Total watches:{}", summary.watches);
        }
        // Not in the allow list's vocabulary (`config.rs` refuses them), so never reached.
        _ => out = format!("{name} is not executed because it is not in the whitelist.\n"),
    }
    out
}

fn connections(shared: &Shared, out: &mut String, detailed: bool) {
    for connection in shared.connections.iter() {
        let (received, sent) = (connection.received.load(Ordering::Relaxed), connection.sent.load(Ordering::Relaxed));
        let _ = write!(out, " /{}[1](queued=0,recved={received},sent={sent}", connection.peer);
        if detailed {
            let session = connection.session.load(Ordering::Relaxed);
            let timeout = connection.timeout_ms.load(Ordering::Relaxed);
            let _ = write!(out, ",sid={session:#x},est={},to={timeout}", connection.opened_ms);
        }
        out.push_str(")\n");
    }
}

/// File descriptors this process holds.
fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}
