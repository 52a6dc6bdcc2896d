//! The authenticated HTTPS edge, with real `gridkeeper` processes: every role against every route
//! class, tokens and client certificates, revocation honoured by every node and across a restart,
//! plain HTTP refused, a joined worker that holds only its own certificate, and the audit log.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use gridkeeper::client::Access;
use support::{admin_get_with, binary, issue_certs, leader_of, wait_for, ClusterSpec, NodeProcess, WAIT_MAX};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}
/// `METHOD path` with `body` through `access`: the HTTP status, or `None` if no exchange happened.
fn call(access: &Access, admin: SocketAddr, method: &str, path: &str, body: &str) -> Option<u16> {
    support::http(access, admin, method, path, body).map(|(status, _)| status)
}

/// Runs the CLI and returns (success, stdout, stderr).
fn cli(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(binary()).args(args).output().expect("run gridkeeper");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn issue(certs: &Path, args: &[&str]) {
    let mut all = vec!["certs", "--out", certs.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    let (ok, _, stderr) = cli(&all);
    assert!(ok, "certs {args:?}: {stderr}");
}

fn token_access(certs: &Path, name: &str) -> Access {
    let token = std::fs::read_to_string(certs.join(format!("token-{name}"))).expect("token file");
    Access::ca_only(certs).expect("ca").with_token(token.trim())
}

fn client_access(certs: &Path, name: &str) -> Access {
    let (cert, key) = (certs.join(format!("client-{name}.pem")), certs.join(format!("client-{name}.key")));
    Access::with_certificate(certs, &cert, &key).expect("client certificate")
}

/// One representative route of each class, with a body it accepts.
const ROUTES: [(&str, &str, &str, &str); 7] = [
    ("open", "GET", "/health", ""),
    ("metrics", "GET", "/metrics", ""),
    ("read", "GET", "/status", ""),
    ("submit", "POST", "/grid/submit", r#"{"task": "noop", "count": 1}"#),
    ("operate", "POST", "/registry/create", r#"{"path": "/role-check", "data": ""}"#),
    ("operate", "POST", "/grid/drain", r#"{"node": 1, "draining": false}"#),
    ("work", "POST", "/grid/worker/poll", r#"{"node": 1, "session": 0, "after_token": 0, "wait_ms": 0}"#),
];

/// Whether `role` may call routes of `class`.
fn allowed(role: &str, class: &str) -> bool {
    match role {
        "operator" => true,
        "reader" => matches!(class, "open" | "read"),
        "submitter" => matches!(class, "open" | "read" | "submit"),
        "metrics" => matches!(class, "open" | "metrics"),
        // A node certificate for node 1: its own poll only.
        "worker" => matches!(class, "open" | "work"),
        "anonymous" => class == "open",
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn every_role_against_every_route_class_over_https() {
    let spec = ClusterSpec::new("auth-roles", 1);
    let certs = spec.certs();
    for role in ["reader", "submitter", "operator", "metrics"] {
        issue(&certs, &["--token", &format!("t-{role}"), "--role", role]);
        issue(&certs, &["--client", &format!("c-{role}"), "--role", role]);
    }
    let _node = spec.start(1);
    wait_for(WAIT_MAX, || leader_of(&spec, &[1])).expect("the node leads");
    let admin = spec.admin(1);
    let mut credentials: Vec<(String, &str, Access)> = Vec::new();
    for role in ["reader", "submitter", "operator", "metrics"] {
        credentials.push((format!("token t-{role}"), role, token_access(&certs, &format!("t-{role}"))));
        credentials.push((format!("certificate c-{role}"), role, client_access(&certs, &format!("c-{role}"))));
    }
    credentials.push(("operator certificate".into(), "operator", spec.access()));
    credentials.push((
        "node 1's certificate".into(),
        "worker",
        Access::node(&certs, gridkeeper::ids::NodeId(1)).expect("node"),
    ));
    credentials.push(("no credential".into(), "anonymous", Access::ca_only(&certs).expect("ca")));
    let legacy = std::fs::read_to_string(certs.join("admin.token")).expect("admin token");
    credentials.push((
        "legacy admin token".into(),
        "operator",
        Access::ca_only(&certs).expect("ca").with_token(legacy.trim()),
    ));
    for (who, role, access) in &credentials {
        for (class, method, path, body) in ROUTES {
            let status = call(access, admin, method, path, body)
                .unwrap_or_else(|| panic!("{who}: {method} {path} got no answer"));
            let expected_ok = allowed(role, class);
            if expected_ok {
                assert!(status < 400 || status == 409, "{who} ({role}) {method} {path}: {status}");
            } else {
                let expected = if *role == "anonymous" { 401 } else { 403 };
                assert_eq!(status, expected, "{who} ({role}) {method} {path}");
            }
        }
    }
    // A token that does not verify, a forged one and garbage are 401, as no credential is.
    let (signed, _) = gridkeeper::credentials::TokenSigner::generate().expect("another key");
    let foreign = signed
        .issue(&gridkeeper::credentials::token::TokenClaims {
            name: "mallory".into(),
            role: gridkeeper::credentials::Role::Operator,
            iat_ms: 0,
        })
        .expect("token");
    for bad in [foreign.as_str(), "gk1.e30.AAAA", "not a token"] {
        let access = Access::ca_only(&certs).expect("ca").with_token(bad);
        assert_eq!(call(&access, admin, "GET", "/status", ""), Some(401), "{bad}");
    }
    // A client certificate from another cluster's CA fails the handshake; so does a client that
    // does not know this cluster's CA, and one speaking plain HTTP gets no answer.
    let other = spec.dir.path().join("other-certs");
    issue_certs(&other, "1");
    assert_eq!(call(&Access::from_certs(&other).expect("other"), admin, "GET", "/status", ""), None);
    assert_eq!(call(&Access::plaintext(), admin, "GET", "/status", ""), None);
    assert!(admin_get_with(admin, "/health", &Access::plaintext()).is_none(), "HTTPS only");
    // The CLI: a reader token reads and cannot write, with one line naming why.
    let reader_file = certs.join("token-t-reader");
    let base = ["--admin", &admin.to_string(), "--certs", certs.to_str().expect("utf-8")];
    let (ok, out, _) = cli(&[&["status"][..], &base, &["--token-file", reader_file.to_str().expect("utf-8")]].concat());
    assert!(ok && out.contains("leader 1"), "{out}");
    let (ok, _, err) =
        cli(&[&["registry"][..], &base, &["--token-file", reader_file.to_str().expect("utf-8"), "create", "/nope"]]
            .concat());
    assert!(!ok, "a reader cannot write");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no auth") && err.contains("t-reader"), "{err}");
}

#[test]
fn a_revoked_token_is_refused_on_every_node_and_after_a_restart() {
    let spec = ClusterSpec::new("auth-revoke", 3);
    let certs = spec.certs();
    issue(&certs, &["--token", "ci", "--role", "reader"]);
    issue(&certs, &["--client", "dash", "--role", "reader"]);
    let mut nodes: Vec<NodeProcess> = spec.ids.iter().map(|&id| spec.start(id)).collect();
    wait_for(WAIT_MAX, || leader_of(&spec, &[1, 2, 3])).expect("a leader");
    let (token, cert) = (token_access(&certs, "ci"), client_access(&certs, "dash"));
    for &id in &spec.ids {
        assert_eq!(call(&token, spec.admin(id), "GET", "/status", ""), Some(200), "node {id} before");
        assert_eq!(call(&cert, spec.admin(id), "GET", "/status", ""), Some(200), "node {id} before");
    }
    let admin = spec.admin(2).to_string();
    let certs_arg = certs.to_str().expect("utf-8");
    for name in ["ci", "dash"] {
        let (ok, out, err) = cli(&["tokens", "revoke", name, "--admin", &admin, "--certs", certs_arg]);
        assert!(ok && out.contains("revoked"), "{out} {err}");
    }
    for &id in &spec.ids {
        wait_for(WAIT_MAX, || (call(&token, spec.admin(id), "GET", "/status", "") == Some(401)).then_some(()))
            .unwrap_or_else(|| panic!("node {id} refuses the revoked token"));
        wait_for(WAIT_MAX, || (call(&cert, spec.admin(id), "GET", "/status", "") == Some(401)).then_some(()))
            .unwrap_or_else(|| panic!("node {id} refuses the revoked client certificate"));
    }
    // The operator is unaffected; the list shows both names revoked.
    assert_eq!(call(&spec.access(), spec.admin(3), "GET", "/status", ""), Some(200));
    let (ok, out, _) = cli(&["tokens", "list", "--admin", &admin, "--certs", certs_arg, "--json"]);
    assert!(ok, "{out}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out).expect("json");
    for name in ["ci", "dash"] {
        let entry = listed.iter().find(|entry| entry["name"] == name).unwrap_or_else(|| panic!("{name} in {out}"));
        assert!(entry["revoked_ms"].as_u64().is_some(), "{entry}");
        assert_eq!(entry["role"], "reader");
    }
    // A revocation is committed state: a whole-cluster restart keeps it.
    for node in &mut nodes {
        node.terminate();
    }
    let _nodes: Vec<NodeProcess> = spec.ids.iter().map(|&id| spec.start(id)).collect();
    wait_for(WAIT_MAX, || leader_of(&spec, &[1, 2, 3])).expect("a leader again");
    for &id in &spec.ids {
        assert_eq!(call(&token, spec.admin(id), "GET", "/status", ""), Some(401), "node {id} after restart");
    }
    // Revoking is the operator's: a reader token (another one) cannot.
    issue(&certs, &["--token", "ci2", "--role", "submitter"]);
    let submitter = token_access(&certs, "ci2");
    assert_eq!(call(&submitter, spec.admin(1), "POST", "/auth/revoke", r#"{"name": "ci2"}"#), Some(403));
}

#[test]
fn plain_http_is_refused_off_loopback_in_one_line() {
    let spec = ClusterSpec::new("auth-plaintext", 1);
    let port = support::free_tcp_port();
    let data = spec.dir.path().join("data-plain");
    let output = Command::new(binary())
        .args(["node", "--id", "1", "--peers", &spec.peers(), "--certs"])
        .arg(spec.certs())
        .arg("--data-dir")
        .arg(&data)
        .args(["--admin", &format!("0.0.0.0:{port}"), "--admin-plaintext"])
        .output()
        .expect("run node");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|line| line.contains("error")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("admin-plaintext") && lines[0].contains("not a loopback"), "{stderr}");
    // On loopback it is allowed, and plain HTTP then needs a token (the legacy admin token here).
    let _node = spec.start_with_args(1, &spec.certs(), &["--admin-plaintext"]);
    let admin = spec.admin(1);
    wait_for(WAIT_MAX, || (call(&Access::plaintext(), admin, "GET", "/health", "") == Some(200)).then_some(()))
        .expect("plain HTTP on loopback");
    assert_eq!(call(&Access::plaintext(), admin, "GET", "/status", ""), Some(401));
    let legacy = std::fs::read_to_string(spec.certs().join("admin.token")).expect("token");
    assert_eq!(call(&Access::plaintext().with_token(legacy.trim()), admin, "GET", "/status", ""), Some(200));
    let (ok, out, err) = cli(&[
        "status",
        "--admin",
        &admin.to_string(),
        "--plaintext",
        "--certs",
        spec.certs().to_str().expect("utf-8"),
    ]);
    assert!(ok && out.contains("leader"), "{out} {err}");
}

/// A directory with only what a joined worker is given: the CA, the token key's public half, and
/// its own node and admin certificates.
fn worker_only_dir(certs: &Path, into: &Path, id: u64) -> PathBuf {
    std::fs::create_dir_all(into).expect("dir");
    for file in [
        "ca.pem".to_string(),
        "token.pub".to_string(),
        format!("node-{id}.pem"),
        format!("node-{id}.key"),
        format!("admin-{id}.pem"),
        format!("admin-{id}.key"),
    ] {
        std::fs::copy(certs.join(&file), into.join(&file)).unwrap_or_else(|error| panic!("{file}: {error}"));
    }
    into.to_path_buf()
}

#[test]
fn a_joined_worker_runs_with_its_own_certificate_and_the_audit_log_records_the_calls() {
    let spec = ClusterSpec::new("auth-worker", 1);
    let certs = spec.certs();
    issue_certs(&certs, "2");
    issue(&certs, &["--token", "ops", "--role", "submitter"]);
    let _member = spec.start(1);
    wait_for(WAIT_MAX, || leader_of(&spec, &[1])).expect("the member leads");
    let given = worker_only_dir(&certs, &spec.dir.path().join("worker-certs"), 2);
    let worker_admin = SocketAddr::from(([127, 0, 0, 1], support::free_tcp_port()));
    support::register_admin(worker_admin, &certs);
    let log = spec.dir.path().join("node-2.log");
    let child = Command::new(binary())
        .args(["node", "--id", "2", "--join", &spec.admin(1).to_string(), "--certs"])
        .arg(&given)
        .arg("--data-dir")
        .arg(spec.dir.path().join("data-2"))
        .args(["--admin", &worker_admin.to_string(), "--slots", "2"])
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(spec.dir.path().join("node-2.err")).expect("log"))
        .spawn()
        .expect("spawn the worker");
    let _worker = NodeProcess::adopt(2, worker_admin, child, log);
    let runtime = runtime();
    let client = runtime
        .block_on(gridkeeper::client::Client::connect(spec.admin(1), token_access(&certs, "ops")))
        .expect("client");
    wait_for(WAIT_MAX, || {
        let listing =
            runtime.block_on(client.children("/grid/nodes", gridkeeper::consensus::Consistency::Linearizable)).ok()?;
        listing.children.contains(&"2".to_string()).then_some(())
    })
    .expect("the worker registers with its node certificate");
    let request = gridkeeper::api::grid::SubmitRequest {
        task: Some("echo".into()),
        input: Some(serde_json::json!({"value": 7})),
        count: Some(4),
        affinity: Some(2),
        ..Default::default()
    };
    let ids = runtime.block_on(client.submit(&request)).expect("a submitter submits");
    let done = wait_for(WAIT_MAX, || {
        let answer = runtime.block_on(client.wait_tasks(&ids, 1_000)).ok()?;
        answer.done.then_some(answer)
    })
    .expect("the tasks end");
    assert_eq!(done.states.get("succeeded"), Some(&4), "{:?}", done.states);
    // The worker's own admin API serves HTTPS with its admin certificate, to the operator.
    let status = admin_get_with(worker_admin, "/status", &spec.access()).expect("worker status over HTTPS");
    assert!(status.contains("\"node\":2"), "{status}");
    // A refused call is recorded too.
    assert_eq!(
        call(&token_access(&certs, "ops"), spec.admin(1), "POST", "/grid/drain", r#"{"node": 2, "draining": false}"#),
        Some(403)
    );
    let (ok, out, err) = cli(&[
        "audit",
        "--admin",
        &spec.admin(1).to_string(),
        "--certs",
        certs.to_str().expect("utf-8"),
        "--since",
        "1h",
        "--json",
    ]);
    assert!(ok, "{err}");
    let records: Vec<serde_json::Value> =
        out.lines().map(|line| serde_json::from_str(line).expect("a JSON record")).collect();
    let find = |action: &str, who: &str, outcome: &str| {
        records.iter().any(|record| record["action"] == action && record["who"] == who && record["outcome"] == outcome)
    };
    assert!(find("grid.submit", "ops", "ok"), "{out}");
    assert!(find("grid.drain", "ops", "no auth"), "{out}");
    assert!(find("registry.create", "node-2", "ok"), "the worker's registration: {out}");
    assert!(find("grid.worker.report", "node-2", "ok"), "the worker's reports: {out}");
    for record in &records {
        for field in ["ts_ms", "who", "role", "from", "action", "target", "outcome"] {
            assert!(record.get(field).is_some(), "{field} in {record}");
        }
    }
    assert!(!out.contains("gk1."), "no token in the audit log");
    // A worker whose certificate is from another CA is refused, says why in one line, and retries.
    let foreign = spec.dir.path().join("foreign-certs");
    issue_certs(&foreign, "3");
    let foreign_log = spec.dir.path().join("node-3.log");
    let intruder = Command::new(binary())
        .args(["node", "--id", "3", "--join", &spec.admin(1).to_string(), "--certs"])
        .arg(&foreign)
        .arg("--data-dir")
        .arg(spec.dir.path().join("data-3"))
        .args(["--admin", &SocketAddr::from(([127, 0, 0, 1], support::free_tcp_port())).to_string()])
        .stdout(std::fs::File::create(&foreign_log).expect("log"))
        .stderr(std::fs::File::create(&foreign_log).expect("log"))
        .spawn()
        .expect("spawn the intruder");
    let mut intruder = NodeProcess::adopt(3, spec.admin(1), intruder, foreign_log);
    let said = wait_for(WAIT_MAX, || {
        let log = intruder.log_text();
        (log.matches("refused this worker's credential").count() >= 2).then_some(log)
    });
    assert!(said.is_some(), "the refused worker says why and retries: {}", intruder.log_text());
    assert!(intruder.is_running(), "it keeps retrying rather than exiting");
    intruder.kill();
    // A reader cannot read the audit log.
    issue(&certs, &["--token", "viewer", "--role", "reader"]);
    assert_eq!(call(&token_access(&certs, "viewer"), spec.admin(1), "GET", "/audit", ""), Some(403));
}
