//! Who may call which admin route: the deterministic decision behind the edge's 401 and 403.
//!
//! Core: plain values, no I/O. The shell (`admin/auth.rs`) authenticates the caller into a
//! [`Principal`], classes the route with [`route_class`], reads the few request fields a worker's
//! permission depends on into a [`Peek`], and asks [`decide`].
//!
//! Invariant: a route this table does not name needs the operator role, so a route added without a
//! line here is closed, never open.

use crate::credentials::{Principal, Role};
use crate::ids::NodeId;
use crate::state::NODES_PATH;

/// What a route does, as far as permission goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// Probes: `/health`, `/ready`. Need no credential: probes cannot present one.
    Open,
    /// `/metrics`.
    Metrics,
    /// Status, task and actor queries, registry reads, watches, waits, sync.
    Read,
    /// Submit, cancel, schedule, unschedule, a job's pause, resume and trigger, and an actor call.
    Submit,
    /// Everything else: drain, registry writes and sessions, revocations, the audit log.
    Operate,
    /// A joined worker's poll and report.
    Work,
    /// Any authenticated caller: the revocation list (a worker reads it to check tokens itself).
    Authenticated,
}

/// The class of `method path` (the path without its query).
pub fn route_class(method: &str, path: &str) -> RouteClass {
    match (method, path) {
        (_, "/health" | "/ready") => RouteClass::Open,
        // The web console's static files hold no data: the page asks for a token and calls the API.
        (_, "/ui") => RouteClass::Open,
        (_, path) if path.starts_with("/ui/") => RouteClass::Open,
        ("GET", "/grid/summary") => RouteClass::Read,
        (_, "/metrics") => RouteClass::Metrics,
        ("GET", "/auth/revoked") => RouteClass::Authenticated,
        (
            "GET",
            "/status" | "/members" | "/registry/node" | "/registry/stat" | "/registry/children" | "/registry/watch"
            | "/registry/acl" | "/grid/tasks" | "/grid/node" | "/grid/jobs" | "/grid/logs" | "/grid/logs/local",
        )
        | ("GET", "/grid/actors")
        | ("POST", "/grid/wait" | "/registry/sync") => RouteClass::Read,
        (
            "POST",
            "/grid/submit" | "/grid/cancel" | "/grid/schedule" | "/grid/unschedule" | "/grid/jobs/pause"
            | "/grid/jobs/resume" | "/grid/jobs/trigger",
        )
        | ("POST", "/grid/actors/call" | "/grid/actors/tell") => RouteClass::Submit,
        ("POST", "/grid/worker/poll" | "/grid/worker/report" | "/members/join") => RouteClass::Work,
        _ => RouteClass::Operate,
    }
}

/// Whether a call changes something and so goes into the audit log: every POST but the ones that
/// only read or wait (`wait`, `sync`, a worker's poll) and session keepalives (a few a second per
/// session; they change nothing a reader of the log cares about).
pub fn audited(method: &str, path: &str) -> bool {
    method == "POST"
        && !matches!(path, "/grid/wait" | "/registry/sync" | "/grid/worker/poll" | "/registry/session/keepalive")
}

/// The request fields a worker's permission depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peek {
    /// The registry path a call names (`path` in its query or body).
    pub path: Option<String>,
    /// The node a call names (`node` in its body).
    pub node: Option<u64>,
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No credential, or one that does not verify or was revoked: 401.
    Unauthenticated,
    /// A credential whose role does not allow the call: 403, with one line saying why.
    Forbidden(String),
}

/// Whether `principal` may call `method path` (of class `class`, with `peek`).
/// `metrics_public` opens `/metrics` to everyone.
///
/// # Errors
/// [`Denial`] when it may not.
pub fn decide(
    principal: Option<&Principal>,
    method: &str,
    path: &str,
    peek: &Peek,
    metrics_public: bool,
) -> Result<(), Denial> {
    let class = route_class(method, path);
    if class == RouteClass::Open || (class == RouteClass::Metrics && metrics_public) {
        return Ok(());
    }
    let principal = principal.ok_or(Denial::Unauthenticated)?;
    let allowed = match (principal.role, class) {
        (Role::Operator, _) | (_, RouteClass::Authenticated) => true,
        (Role::Reader, RouteClass::Read) => true,
        (Role::Submitter, RouteClass::Read | RouteClass::Submit) => true,
        (Role::Metrics, RouteClass::Metrics) => true,
        (Role::Worker(node), _) => worker_may(node, method, path, peek),
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Denial::Forbidden(format!(
            "{} {} (role {}) may not call {method} {path}",
            principal.name,
            principal.proof_name(),
            principal.role
        )))
    }
}

/// A worker's calls: its own poll and report, its session, and its own registration
/// (`/grid/nodes/<id>`, and creating `/grid` and `/grid/nodes` should they be missing).
fn worker_may(node: NodeId, method: &str, path: &str, peek: &Peek) -> bool {
    let own = format!("{NODES_PATH}/{node}");
    let named = peek.path.as_deref();
    match (method, path) {
        // A joining voter asks for the members with its own certificate, for itself only.
        ("POST", "/grid/worker/poll" | "/members/join") => peek.node == Some(node.0),
        // Each report's attempt is checked against the node it was assigned to by the route.
        ("POST", "/grid/worker/report") => true,
        // A node serving `GET /grid/logs` fetches the lines another node keeps with its own
        // certificate (a node's key reads everything its coordinator holds anyway).
        ("GET", "/grid/logs/local") => true,
        ("POST", "/registry/session/open" | "/registry/session/keepalive" | "/registry/session/close") => true,
        ("POST", "/registry/create") => {
            named.is_some_and(|named| named == own || named == "/grid" || named == NODES_PATH)
        }
        ("POST", "/registry/set" | "/registry/delete") | ("GET", "/registry/node" | "/registry/stat") => {
            named == Some(own.as_str())
        }
        _ => false,
    }
}

impl Principal {
    /// What kind of credential it is, for messages: `token`, `certificate` or `admin token`.
    pub fn proof_name(&self) -> &'static str {
        match self.proof {
            crate::credentials::Proof::Token => "token",
            crate::credentials::Proof::Certificate => "certificate",
            crate::credentials::Proof::AdminToken => "admin token",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Proof;

    fn principal(role: Role) -> Principal {
        Principal { name: "p".into(), role, proof: Proof::Token }
    }

    const ROUTES: [(&str, &str, RouteClass); 35] = [
        ("POST", "/members/add", RouteClass::Operate),
        ("POST", "/members/remove", RouteClass::Operate),
        ("POST", "/members/join", RouteClass::Work),
        ("GET", "/health", RouteClass::Open),
        ("GET", "/ready", RouteClass::Open),
        ("GET", "/metrics", RouteClass::Metrics),
        ("GET", "/status", RouteClass::Read),
        ("GET", "/members", RouteClass::Read),
        ("GET", "/registry/node", RouteClass::Read),
        ("GET", "/registry/watch", RouteClass::Read),
        ("POST", "/registry/sync", RouteClass::Read),
        ("GET", "/grid/tasks", RouteClass::Read),
        ("POST", "/grid/wait", RouteClass::Read),
        ("GET", "/grid/jobs", RouteClass::Read),
        ("POST", "/grid/submit", RouteClass::Submit),
        ("POST", "/grid/cancel", RouteClass::Submit),
        ("POST", "/grid/schedule", RouteClass::Submit),
        ("POST", "/grid/unschedule", RouteClass::Submit),
        ("POST", "/grid/jobs/pause", RouteClass::Submit),
        ("POST", "/grid/jobs/resume", RouteClass::Submit),
        ("POST", "/grid/jobs/trigger", RouteClass::Submit),
        ("POST", "/grid/actors/call", RouteClass::Submit),
        ("POST", "/grid/actors/tell", RouteClass::Submit),
        ("GET", "/grid/actors", RouteClass::Read),
        ("GET", "/grid/actors/call", RouteClass::Operate),
        ("POST", "/grid/drain", RouteClass::Operate),
        ("POST", "/registry/create", RouteClass::Operate),
        ("POST", "/registry/multi", RouteClass::Operate),
        ("POST", "/registry/session/open", RouteClass::Operate),
        ("POST", "/auth/revoke", RouteClass::Operate),
        ("GET", "/audit", RouteClass::Operate),
        ("GET", "/auth/revoked", RouteClass::Authenticated),
        ("POST", "/grid/worker/poll", RouteClass::Work),
        ("POST", "/grid/worker/report", RouteClass::Work),
        ("GET", "/no/such/route", RouteClass::Operate),
    ];

    #[test]
    fn routes_are_classed_and_unknown_ones_need_the_operator() {
        for (method, path, class) in ROUTES {
            assert_eq!(route_class(method, path), class, "{method} {path}");
        }
        assert_eq!(route_class("POST", "/status"), RouteClass::Operate, "a method a route does not serve");
    }

    #[test]
    fn each_role_against_each_class() {
        use RouteClass::*;
        let allowed = |role: Role, class: RouteClass| match role {
            Role::Operator => true,
            Role::Reader => matches!(class, Open | Read | Authenticated),
            Role::Submitter => matches!(class, Open | Read | Submit | Authenticated),
            Role::Metrics => matches!(class, Open | Metrics | Authenticated),
            Role::Worker(_) => unreachable!(),
        };
        for role in Role::ISSUABLE {
            for (method, path, class) in ROUTES {
                let verdict = decide(Some(&principal(role)), method, path, &Peek::default(), false);
                assert_eq!(verdict.is_ok(), allowed(role, class), "{role} {method} {path}");
                if let Err(denial) = verdict {
                    assert!(matches!(denial, Denial::Forbidden(_)));
                }
            }
        }
        for (method, path, class) in ROUTES {
            let verdict = decide(None, method, path, &Peek::default(), false);
            assert_eq!(verdict.is_ok(), class == Open, "anonymous {method} {path}");
            if class != Open {
                assert_eq!(verdict, Err(Denial::Unauthenticated));
            }
        }
        assert!(decide(None, "GET", "/metrics", &Peek::default(), true).is_ok(), "--metrics-public");
        assert!(decide(Some(&principal(Role::Reader)), "GET", "/metrics", &Peek::default(), true).is_ok());
    }

    #[test]
    fn the_console_files_are_open_and_its_summary_is_a_read() {
        for path in ["/ui", "/ui/", "/ui/app.js", "/ui/no/such/file"] {
            assert_eq!(route_class("GET", path), RouteClass::Open, "{path}");
            assert!(decide(None, "GET", path, &Peek::default(), false).is_ok(), "{path}");
        }
        for path in ["/uix", "/ui.js", "/grid/ui/"] {
            assert_eq!(route_class("GET", path), RouteClass::Operate, "{path}");
        }
        assert_eq!(route_class("GET", "/grid/summary"), RouteClass::Read);
        assert_eq!(decide(None, "GET", "/grid/summary", &Peek::default(), false), Err(Denial::Unauthenticated));
        assert!(decide(Some(&principal(Role::Reader)), "GET", "/grid/summary", &Peek::default(), false).is_ok());
        assert!(decide(Some(&principal(Role::Metrics)), "GET", "/grid/summary", &Peek::default(), false).is_err());
    }

    #[test]
    fn a_worker_acts_only_for_its_own_node() {
        let worker = principal(Role::Worker(NodeId(4)));
        let peek = |path: Option<&str>, node: Option<u64>| Peek { path: path.map(String::from), node };
        let may = |method, path, peek: Peek| decide(Some(&worker), method, path, &peek, false).is_ok();
        assert!(may("POST", "/grid/worker/poll", peek(None, Some(4))));
        assert!(!may("POST", "/grid/worker/poll", peek(None, Some(5))));
        assert!(!may("POST", "/grid/worker/poll", peek(None, None)));
        assert!(may("POST", "/grid/worker/report", peek(None, None)));
        assert!(may("POST", "/registry/session/open", peek(None, None)));
        for path in ["/grid", "/grid/nodes", "/grid/nodes/4"] {
            assert!(may("POST", "/registry/create", peek(Some(path), None)), "{path}");
        }
        assert!(may("POST", "/registry/delete", peek(Some("/grid/nodes/4"), None)));
        assert!(may("GET", "/registry/stat", peek(Some("/grid/nodes/4"), None)));
        for path in ["/grid/nodes/5", "/grid/nodes/40", "/grid/nodes/4/x", "/app", "/gridkeeper/revoked/ci"] {
            assert!(!may("POST", "/registry/create", peek(Some(path), None)), "{path}");
            assert!(!may("POST", "/registry/delete", peek(Some(path), None)), "{path}");
        }
        assert!(!may("POST", "/registry/delete", peek(Some("/grid/nodes"), None)));
        assert!(!may("POST", "/registry/multi", peek(None, None)));
        assert!(!may("POST", "/grid/submit", peek(None, None)));
        assert!(!may("GET", "/status", peek(None, None)));
        assert!(!may("GET", "/metrics", peek(None, None)));
        assert!(may("GET", "/auth/revoked", peek(None, None)));
    }

    #[test]
    fn task_logs_are_read_by_readers_and_fetched_between_nodes_by_any_node() {
        assert_eq!(route_class("GET", "/grid/logs"), RouteClass::Read);
        assert_eq!(route_class("GET", "/grid/logs/local"), RouteClass::Read);
        let may = |role, path| decide(Some(&principal(role)), "GET", path, &Peek::default(), false).is_ok();
        for role in [Role::Reader, Role::Submitter, Role::Operator] {
            assert!(may(role, "/grid/logs") && may(role, "/grid/logs/local"), "{role}");
        }
        assert!(!may(Role::Metrics, "/grid/logs"));
        // A node's certificate (worker of its own node) fetches what another node keeps, and nothing
        // else of the log routes.
        assert!(may(Role::Worker(NodeId(2)), "/grid/logs/local"));
        assert!(!may(Role::Worker(NodeId(2)), "/grid/logs"));
        let worker = principal(Role::Worker(NodeId(2)));
        assert!(decide(Some(&worker), "POST", "/grid/logs/local", &Peek::default(), false).is_err());
        assert!(!audited("GET", "/grid/logs/local"));
    }

    #[test]
    fn only_changes_are_audited() {
        assert!(
            audited("POST", "/grid/submit") && audited("POST", "/registry/create") && audited("POST", "/auth/revoke")
        );
        assert!(audited("POST", "/grid/worker/report") && audited("POST", "/no/such/route"));
        assert!(audited("POST", "/grid/actors/call") && !audited("GET", "/grid/actors"));
        assert!(audited("POST", "/grid/actors/tell"));
        for (method, path) in
            [("GET", "/status"), ("POST", "/grid/wait"), ("POST", "/registry/sync"), ("POST", "/grid/worker/poll")]
        {
            assert!(!audited(method, path), "{method} {path}");
        }
    }
}
