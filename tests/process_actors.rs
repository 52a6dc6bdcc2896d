//! Grid actors with real processes on 127.0.0.1: three `gridkeeper node` processes, the built-in
//! durable `counter` called through the CLI with a submitter token, listed with its node, and kept
//! through a kill -9 of its host: a call through another node answers with the total intact. A
//! reader may list actors but not call them (403), and every call is in the serving node's audit log.
//!
//! The retries here carry an idempotency key: a call answered `outcome unknown` (or whose connection
//! died) may have been applied, and only a key makes sending it again safe.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gridkeeper::client::Access;
use support::{admin_get, binary, http, status, wait_for, ClusterSpec, NodeProcess, WAIT_MAX};

/// Longest one CLI call may take before the test calls it stuck (a call waits at most 10 s).
const CALL_SECONDS_MAX: &str = "30";

/// One finished CLI call.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> serde_json::Value {
        assert!(self.ok, "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.stdout))
    }
}

fn gk(args: &[&str]) -> Run {
    let output = Command::new("timeout")
        .args([CALL_SECONDS_MAX, binary()])
        .args(args)
        .env_remove("GRIDKEEPER_ADMIN")
        .env_remove("GRIDKEEPER_CERTS")
        .output()
        .expect("run gridkeeper under timeout");
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The flags that reach node `via` with the token `certs/token-<name>`.
fn connect(spec: &ClusterSpec, via: u64, name: &str) -> Vec<String> {
    let certs = spec.certs();
    vec![
        "--admin".into(),
        spec.admin(via).to_string(),
        "--certs".into(),
        certs.display().to_string(),
        "--token-file".into(),
        certs.join(format!("token-{name}")).display().to_string(),
    ]
}

/// `gridkeeper actor call --kind counter --key KEY --message '{"add": 1}'` through node `via` as the
/// submitter, with `extra` flags.
fn add_one(spec: &ClusterSpec, via: u64, key: &str, extra: &[&str]) -> Run {
    let mut args: Vec<String> = vec!["actor".into(), "call".into()];
    args.extend(connect(spec, via, "caller"));
    for flag in ["--kind", "counter", "--key", key, "--message", r#"{"add": 1}"#].iter().chain(extra) {
        args.push(flag.to_string());
    }
    gk(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Adds one with `idempotency_key` through `via` until a call answers, within `limit`; returns the
/// answer. Every refusal on the way (no host yet, the host lost) is one the key makes safe to repeat.
fn add_one_surely(
    spec: &ClusterSpec,
    via: u64,
    key: &str,
    idempotency_key: &str,
    limit: Duration,
) -> serde_json::Value {
    let mut last = String::new();
    wait_for(limit, || {
        let run = add_one(spec, via, key, &["--idempotency-key", idempotency_key, "--json"]);
        if run.ok {
            return Some(run.json());
        }
        last = run.stderr;
        None
    })
    .unwrap_or_else(|| panic!("no answer through node {via} within {limit:?}; last: {last}"))
}

fn actors_json(spec: &ClusterSpec, via: u64) -> serde_json::Value {
    let mut args: Vec<String> = vec!["actors".into()];
    args.extend(connect(spec, via, "viewer"));
    args.push("--json".into());
    gk(&args.iter().map(String::as_str).collect::<Vec<_>>()).json()
}

/// The listed actor `counter/<key>`.
fn listed(answer: &serde_json::Value, key: &str) -> Option<serde_json::Value> {
    answer["actors"].as_array()?.iter().find(|actor| actor["kind"] == "counter" && actor["key"] == key).cloned()
}

fn issue_token(certs: &Path, name: &str, role: &str) {
    let certs = certs.to_str().expect("utf-8 path");
    let run = gk(&["certs", "--out", certs, "--token", name, "--role", role]);
    assert!(run.ok, "certs: {}", run.stderr);
}

fn token_access(certs: &Path, name: &str) -> Access {
    let token = std::fs::read_to_string(certs.join(format!("token-{name}"))).expect("token file");
    Access::ca_only(certs).expect("ca").with_token(token.trim())
}

#[test]
fn a_counter_counts_through_the_cli_and_keeps_its_total_when_its_host_is_killed() {
    let spec = ClusterSpec::new("actors", 3);
    let mut nodes: Vec<NodeProcess> = spec.ids.iter().map(|&id| spec.start(id)).collect();
    wait_for(WAIT_MAX, || {
        let view = status(spec.admin(1))?;
        view.leader?;
        (view.members.iter().filter(|member| member.slots.is_some()).count() == 3).then_some(())
    })
    .expect("a leader and every node registered");
    issue_token(&spec.certs(), "caller", "submitter");
    issue_token(&spec.certs(), "viewer", "reader");

    // Totals 1, 2, 3. The first call may come before any host is ready, so it is repeated until it
    // answers, under an idempotency key; the next two are sent once each.
    let first = add_one_surely(&spec, 1, "a", "first", WAIT_MAX);
    assert_eq!(first["reply"], serde_json::json!({"total": 1}), "{first}");
    let host = first["node"].as_u64().expect("the answering node");
    assert!((1..=3).contains(&host), "{first}");
    for total in [2, 3] {
        let run = add_one(&spec, 1, "a", &[]);
        assert!(run.ok, "call {total}: {}", run.stderr);
        assert_eq!(run.stdout.trim(), format!(r#"{{"total":{total}}}"#), "the reply, one line of JSON");
    }
    // The same key again is answered with the recorded reply, not counted again.
    let repeat = add_one_surely(&spec, 1, "a", "first", WAIT_MAX);
    assert_eq!(repeat["reply"], serde_json::json!({"total": 1}), "a repeat with the key: {repeat}");

    // Listed with its node, as JSON and as a table, through any node.
    let answer = actors_json(&spec, 2);
    let actor = listed(&answer, "a").unwrap_or_else(|| panic!("counter/a listed: {answer}"));
    assert_eq!((actor["node"].as_u64(), actor["durable"].as_bool()), (Some(host), Some(true)), "{actor}");
    assert_eq!(actor["seq"].as_u64(), Some(3), "three calls committed: {actor}");
    let mut args: Vec<String> = vec!["actors".into()];
    args.extend(connect(&spec, 2, "viewer"));
    args.extend(["--kind".into(), "counter".into()]);
    let table = gk(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(table.ok, "{}", table.stderr);
    assert!(table.stdout.starts_with("KIND "), "{}", table.stdout);
    let row: Vec<&str> = table.stdout.lines().nth(1).expect("a row").split_whitespace().collect();
    assert_eq!(row[..4], ["counter", "a", host.to_string().as_str(), "yes"], "{}", table.stdout);

    // A reader lists but may not call: 403 `no auth`, also through the CLI (one line, exit 1).
    let reader = token_access(&spec.certs(), "viewer");
    let body = r#"{"kind": "counter", "key": "a", "message": {"add": 1}}"#;
    let refused = http(&reader, spec.admin(1), "POST", "/grid/actors/call", body).expect("an answer");
    assert_eq!(refused.0, 403, "{}", refused.1);
    assert!(refused.1.contains("no auth"), "{}", refused.1);
    assert_eq!(http(&reader, spec.admin(1), "GET", "/grid/actors", "").map(|answer| answer.0), Some(200));
    let mut args: Vec<String> = vec!["actor".into(), "call".into()];
    args.extend(connect(&spec, 1, "viewer"));
    args.extend(["--kind", "counter", "--key", "a", "--message", "1"].map(String::from));
    let run = gk(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!run.ok && run.stderr.trim().lines().count() == 1 && run.stderr.contains("no auth"), "{}", run.stderr);

    // A tell through the CLI returns once queued; the call after it, from the same caller, sees it.
    let mut args: Vec<String> = vec!["actor".into(), "tell".into()];
    args.extend(connect(&spec, 1, "caller"));
    args.extend(["--kind", "counter", "--key", "told", "--message", r#"{"add": 2}"#, "--json"].map(String::from));
    let mut told = None;
    wait_for(WAIT_MAX, || {
        let run = gk(&args.iter().map(String::as_str).collect::<Vec<_>>());
        told = Some(run.stderr.clone());
        run.ok.then(|| run.json())
    })
    .map(|answer| assert!(answer["node"].as_u64().is_some() && answer.get("reply").is_none(), "{answer}"))
    .unwrap_or_else(|| panic!("the tell is taken: {told:?}"));
    let after = add_one(&spec, 1, "told", &["--json"]);
    assert!(after.ok, "{}", after.stderr);
    assert_eq!(after.json()["reply"], serde_json::json!({"total": 3}), "the told add was handled first");

    // Each call is in the audit log of the node that served it, naming the actor.
    wait_for(WAIT_MAX, || {
        let audit = admin_get(spec.admin(1), "/audit")?;
        (audit.contains("grid.actors.call") && audit.contains("actor=counter/a")).then_some(())
    })
    .unwrap_or_else(|| panic!("the calls audited: {:?}", admin_get(spec.admin(1), "/audit")));

    // kill -9 of the host: a call through another node answers with the total intact, from a new host.
    let via = spec.ids.iter().copied().find(|&id| id != host).expect("another node");
    let killed = Instant::now();
    nodes[(host - 1) as usize].kill();
    let moved = add_one_surely(&spec, via, "a", "after-kill", WAIT_MAX);
    println!("actors: counter/a answered again {} ms after kill -9 of its host", killed.elapsed().as_millis());
    assert_eq!(moved["reply"], serde_json::json!({"total": 4}), "the total survives the move: {moved}");
    let new_host = moved["node"].as_u64().expect("the answering node");
    assert_ne!(new_host, host, "activated elsewhere");
    let actor = listed(&actors_json(&spec, via), "a").expect("still listed");
    assert_eq!((actor["node"].as_u64(), actor["seq"].as_u64()), (Some(new_host), Some(4)), "{actor}");
}
