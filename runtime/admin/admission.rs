//! Who may hold the admin server's connections and watch streams, for how long, and under which
//! `Host:` name: the deterministic decisions behind the admin server's bounds.
//!
//! This is core: plain values fed with client addresses and the time (as [`Millis`]); it imports no
//! tokio or hyper and reads no clock. The serving shell (`admin/connection.rs`, `admin/http.rs`)
//! asks it before accepting a connection or a watch, feeds it what a connection does, and closes a
//! connection when its deadline passes.
//!
//! Invariant: every connection and watch stream admitted is released exactly once (the shell holds
//! them in tickets released on drop), so the per-client counts return to zero when clients leave.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::ids::Millis;
use crate::limits::{ADMIN_CONNECTIONS_MAX, ADMIN_CONNECTIONS_PER_CLIENT_MAX, ADMIN_WATCHES_PER_CLIENT_MAX};

/// Default time a client has to send a complete request head, from the connection's start or from
/// its first byte after an idle spell. Ten seconds is far above any honest client on a LAN (which
/// sends its head in one packet) and bounds what a slowloris client holds.
pub const HEADER_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Default time a kept-alive connection may sit with no request in flight before it is closed.
/// A minute lets a client reuse its connection across a pause (session keepalives come every few
/// seconds) while an abandoned socket is given back within one.
pub const IDLE_TIMEOUT_MS_DEFAULT: u64 = 60_000;

/// The admin server's settings that a node's configuration sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminServerConfig {
    /// Time to receive a complete request head.
    pub header_timeout_ms: u64,
    /// Time a connection may stay open with no request in flight, and that a response may wait to be
    /// written to a client that does not read.
    pub idle_timeout_ms: u64,
    /// Host names accepted in `Host:` besides IP literals and `localhost`, lower case.
    pub hosts: Vec<String>,
}

impl Default for AdminServerConfig {
    fn default() -> Self {
        AdminServerConfig {
            header_timeout_ms: HEADER_TIMEOUT_MS_DEFAULT,
            idle_timeout_ms: IDLE_TIMEOUT_MS_DEFAULT,
            hosts: Vec::new(),
        }
    }
}

/// Why the admin server refused or closed something; each is counted in
/// `gridkeeper_admin_refusals_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The server holds [`ADMIN_CONNECTIONS_MAX`] connections.
    #[error("the admin server holds its limit of {ADMIN_CONNECTIONS_MAX} connections")]
    Connections,
    /// The client's address holds [`ADMIN_CONNECTIONS_PER_CLIENT_MAX`] connections.
    #[error("this client address holds its limit of {ADMIN_CONNECTIONS_PER_CLIENT_MAX} connections")]
    PerClient,
    /// No complete request head arrived within the header timeout.
    #[error("no complete request head within the header timeout")]
    HeaderTimeout,
    /// No request was in flight for the idle timeout, or a response could not be written for as long.
    #[error("the connection was idle past the idle timeout")]
    Idle,
    /// The client's address holds [`ADMIN_WATCHES_PER_CLIENT_MAX`] watch streams.
    #[error("this client address holds its limit of {ADMIN_WATCHES_PER_CLIENT_MAX} watch streams")]
    Watches,
    /// The `Host:` header names neither an IP address, `localhost`, nor an `--admin-host` name.
    #[error("the Host header names another server")]
    Host,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Connections => "connections",
            Refusal::PerClient => "per_client",
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::Idle => "idle",
            Refusal::Watches => "watches",
            Refusal::Host => "host",
        }
    }
}

/// What one client address holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Held {
    connections: usize,
    watches: usize,
}

/// Open connections and watch streams, overall and per client address.
#[derive(Debug, Default)]
pub struct Admission {
    connections: usize,
    by_client: BTreeMap<IpAddr, Held>,
}

impl Admission {
    /// Admits a new connection from `client`, or says why not.
    ///
    /// # Errors
    /// [`Refusal::Connections`] or [`Refusal::PerClient`] past a limit; nothing is counted then.
    pub fn admit_connection(&mut self, client: IpAddr) -> Result<(), Refusal> {
        if self.connections >= ADMIN_CONNECTIONS_MAX {
            return Err(Refusal::Connections);
        }
        let held = self.by_client.entry(client).or_default();
        if held.connections >= ADMIN_CONNECTIONS_PER_CLIENT_MAX {
            return Err(Refusal::PerClient);
        }
        held.connections += 1;
        self.connections += 1;
        Ok(())
    }

    /// A connection admitted for `client` closed.
    pub fn release_connection(&mut self, client: IpAddr) {
        self.connections = self.connections.saturating_sub(1);
        self.update(client, |held| held.connections = held.connections.saturating_sub(1));
    }

    /// Admits a new watch stream from `client`.
    ///
    /// # Errors
    /// [`Refusal::Watches`] past the per-client limit; nothing is counted then.
    pub fn admit_watch(&mut self, client: IpAddr) -> Result<(), Refusal> {
        let held = self.by_client.entry(client).or_default();
        if held.watches >= ADMIN_WATCHES_PER_CLIENT_MAX {
            return Err(Refusal::Watches);
        }
        held.watches += 1;
        Ok(())
    }

    /// A watch stream admitted for `client` ended.
    pub fn release_watch(&mut self, client: IpAddr) {
        self.update(client, |held| held.watches = held.watches.saturating_sub(1));
    }

    /// Connections open.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// Client addresses holding anything (their entries are dropped once they hold nothing).
    pub fn clients(&self) -> usize {
        self.by_client.len()
    }

    fn update(&mut self, client: IpAddr, change: impl FnOnce(&mut Held)) {
        if let Some(held) = self.by_client.get_mut(&client) {
            change(held);
            if *held == Held::default() {
                self.by_client.remove(&client);
            }
        }
    }
}

/// What a connection is doing, as far as its timeouts care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the rest of a request head that started (or for a first byte on a new connection).
    Head { since: Millis },
    /// No request in flight and no byte of the next one yet.
    Idle { since: Millis },
    /// Requests in flight: a handler runs or its response is being written.
    Busy,
}

/// One connection's timeouts: which deadline applies now, given what the connection did.
///
/// A request is in flight from the moment its head is parsed until its response body is finished
/// or dropped, so long polls and watch streams are never idle. A response that cannot be written
/// (the client does not read) for the idle timeout counts as idle.
#[derive(Debug, Clone)]
pub struct Liveness {
    header_timeout_ms: u64,
    idle_timeout_ms: u64,
    phase: Phase,
    in_flight: usize,
    write_blocked_since: Option<Millis>,
    body_wait_since: Option<Millis>,
}

impl Liveness {
    /// A connection accepted at `now`: its first request head is due within the header timeout.
    pub fn new(config: &AdminServerConfig, now: Millis) -> Liveness {
        Liveness {
            header_timeout_ms: config.header_timeout_ms,
            idle_timeout_ms: config.idle_timeout_ms,
            phase: Phase::Head { since: now },
            in_flight: 0,
            write_blocked_since: None,
            body_wait_since: None,
        }
    }

    /// Bytes arrived. Returns whether the deadline changed.
    pub fn on_read(&mut self, now: Millis) -> bool {
        if let Phase::Idle { .. } = self.phase {
            self.phase = Phase::Head { since: now };
            return true;
        }
        false
    }

    /// A request head was parsed and its handler starts.
    pub fn on_request(&mut self) {
        self.in_flight += 1;
        self.phase = Phase::Busy;
    }

    /// A response was finished (or abandoned). Returns whether the deadline changed.
    pub fn on_response_done(&mut self, now: Millis) -> bool {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0 {
            self.phase = Phase::Idle { since: now };
            return true;
        }
        false
    }

    /// A write could not proceed (the client's receive window is full). Returns whether the deadline
    /// changed.
    pub fn on_write_blocked(&mut self, now: Millis) -> bool {
        if self.write_blocked_since.is_none() {
            self.write_blocked_since = Some(now);
            return true;
        }
        false
    }

    /// A write went through.
    pub fn on_write_progress(&mut self) {
        self.write_blocked_since = None;
    }

    /// A handler waits for more of a request body (a slow upload). Returns whether the deadline
    /// changed.
    pub fn on_body_wait(&mut self, now: Millis) -> bool {
        if self.body_wait_since.is_none() {
            self.body_wait_since = Some(now);
            return true;
        }
        false
    }

    /// A piece of the request body (or its end) arrived.
    pub fn on_body_progress(&mut self) {
        self.body_wait_since = None;
    }

    /// When this connection must be closed unless something happens first, and why.
    pub fn next_deadline(&self) -> Option<(Millis, Refusal)> {
        let phase = match self.phase {
            Phase::Head { since } => {
                Some((Millis(since.0.saturating_add(self.header_timeout_ms)), Refusal::HeaderTimeout))
            }
            Phase::Idle { since } => Some((Millis(since.0.saturating_add(self.idle_timeout_ms)), Refusal::Idle)),
            Phase::Busy => None,
        };
        // A response nobody reads, or a body nobody sends, holds the connection as idleness would.
        let stalled = [self.write_blocked_since, self.body_wait_since]
            .into_iter()
            .flatten()
            .map(|since| (Millis(since.0.saturating_add(self.idle_timeout_ms)), Refusal::Idle));
        phase.into_iter().chain(stalled).min_by_key(|(at, _)| *at)
    }

    /// Why the connection must close at `now`, if a deadline has passed.
    pub fn expired(&self, now: Millis) -> Option<Refusal> {
        self.next_deadline().filter(|(at, _)| now >= *at).map(|(_, reason)| reason)
    }
}

/// Whether a request naming `host` (the `Host:` header, or the authority of an absolute URI) may be
/// served: an IP literal (v4, or v6 in brackets, any port), `localhost`, or one of `allowed`
/// (lower case). A request naming no host (HTTP/1.0) is served. Refusing other names stops a web
/// page from reaching the admin API through DNS rebinding.
pub fn host_allowed(host: Option<&str>, allowed: &[String]) -> bool {
    let Some(host) = host else { return true };
    let host = host.trim();
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else { return false };
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(is_port);
        return port_ok && inside.parse::<std::net::Ipv6Addr>().is_ok();
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    !name.is_empty() && (name == "localhost" || allowed.contains(&name))
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|byte| byte.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn connections_are_bounded_per_client_and_overall_and_released() {
        let mut admission = Admission::default();
        for _ in 0..ADMIN_CONNECTIONS_PER_CLIENT_MAX {
            admission.admit_connection(ip("127.0.0.1")).expect("under the limit");
        }
        assert_eq!(admission.admit_connection(ip("127.0.0.1")), Err(Refusal::PerClient));
        admission.admit_connection(ip("127.0.0.2")).expect("another client is served");
        let mut next = 0u32;
        while admission.connections() < ADMIN_CONNECTIONS_MAX {
            next += 1;
            admission.admit_connection(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + next))).expect("room");
        }
        assert_eq!(admission.admit_connection(ip("10.200.0.1")), Err(Refusal::Connections));
        admission.release_connection(ip("127.0.0.1"));
        admission.admit_connection(ip("127.0.0.1")).expect("a released slot is reused");
        for _ in 0..ADMIN_CONNECTIONS_PER_CLIENT_MAX {
            admission.release_connection(ip("127.0.0.1"));
        }
        admission.release_connection(ip("127.0.0.2"));
        for index in 1..=next {
            admission.release_connection(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + index)));
        }
        assert_eq!((admission.connections(), admission.clients()), (0, 0));
    }

    #[test]
    fn watch_streams_are_bounded_per_client() {
        let mut admission = Admission::default();
        for _ in 0..ADMIN_WATCHES_PER_CLIENT_MAX {
            admission.admit_watch(ip("::1")).expect("under the limit");
        }
        assert_eq!(admission.admit_watch(ip("::1")), Err(Refusal::Watches));
        admission.admit_watch(ip("127.0.0.1")).expect("another client");
        admission.release_watch(ip("::1"));
        admission.admit_watch(ip("::1")).expect("released");
        assert_eq!(admission.clients(), 2);
    }

    fn config() -> AdminServerConfig {
        AdminServerConfig { header_timeout_ms: 100, idle_timeout_ms: 1_000, hosts: Vec::new() }
    }

    #[test]
    fn a_new_connection_owes_its_head_within_the_header_timeout() {
        let liveness = Liveness::new(&config(), Millis(5));
        assert_eq!(liveness.next_deadline(), Some((Millis(105), Refusal::HeaderTimeout)));
        assert_eq!(liveness.expired(Millis(104)), None);
        assert_eq!(liveness.expired(Millis(105)), Some(Refusal::HeaderTimeout));
    }

    #[test]
    fn requests_in_flight_have_no_deadline_and_idleness_starts_when_the_last_ends() {
        let mut liveness = Liveness::new(&config(), Millis(0));
        liveness.on_request();
        liveness.on_request();
        assert_eq!(liveness.next_deadline(), None, "a long poll or a watch stream is never idle");
        assert!(!liveness.on_response_done(Millis(50)));
        assert_eq!(liveness.next_deadline(), None);
        assert!(liveness.on_response_done(Millis(60)));
        assert_eq!(liveness.next_deadline(), Some((Millis(1_060), Refusal::Idle)));
        assert!(liveness.on_read(Millis(500)), "the next head has begun");
        assert!(!liveness.on_read(Millis(550)));
        assert_eq!(liveness.next_deadline(), Some((Millis(600), Refusal::HeaderTimeout)));
    }

    #[test]
    fn a_response_the_client_does_not_read_times_out_as_idle() {
        let mut liveness = Liveness::new(&config(), Millis(0));
        liveness.on_request();
        assert!(liveness.on_write_blocked(Millis(10)));
        assert!(!liveness.on_write_blocked(Millis(20)));
        assert_eq!(liveness.next_deadline(), Some((Millis(1_010), Refusal::Idle)));
        liveness.on_write_progress();
        assert_eq!(liveness.next_deadline(), None);
        assert!(liveness.on_body_wait(Millis(30)));
        assert_eq!(liveness.next_deadline(), Some((Millis(1_030), Refusal::Idle)), "a stalled upload");
        liveness.on_body_progress();
        assert_eq!(liveness.next_deadline(), None);
    }

    #[test]
    fn hosts_are_ip_literals_localhost_or_configured_names() {
        let allowed = vec!["admin.example".to_string()];
        let cases = [
            (None, true),
            (Some("127.0.0.1"), true),
            (Some("127.0.0.1:9101"), true),
            (Some("[::1]:9101"), true),
            (Some("[::1]"), true),
            (Some("::1"), true),
            (Some("localhost"), true),
            (Some("LocalHost:80"), true),
            (Some("localhost."), true),
            (Some("admin.example:9101"), true),
            (Some("ADMIN.example"), true),
            (Some("evil.example"), false),
            (Some("evil.example:9101"), false),
            (Some("localhost.evil.example"), false),
            (Some("127.0.0.1.evil.example"), false),
            (Some("[::1"), false),
            (Some("[::1]x"), false),
            (Some("[evil]:80"), false),
            (Some("localhost:port"), false),
            (Some(""), false),
            (Some(":80"), false),
        ];
        for (host, expected) in cases {
            assert_eq!(host_allowed(host, &allowed), expected, "{host:?}");
        }
    }
}
