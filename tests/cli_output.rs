//! The command line as people and scripts meet it, against a real three-node cluster: aligned tables
//! with RFC 3339 times and ages, `--json` on every command, `GRIDKEEPER_ADMIN`/`GRIDKEEPER_CERTS`
//! instead of flags, `--since` durations (a bad one is a usage error, exit 2), one-line errors with
//! exit 1, shell completions, and node logs: no colour codes in a file, JSON lines with
//! `--log-format json` or `log_format = "json"` in the config file.

mod support;

use std::path::Path;
use std::process::Command;

use gridkeeper::cli::flags::parse_rfc3339;
use support::{binary, leader_of, wait_for, ClusterSpec, NodeProcess, WAIT_MAX};

/// Longest one CLI call may take (a `submit --wait` included) before the test calls it stuck.
const CALL_SECONDS_MAX: &str = "60";

/// One finished CLI call.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        &self.stdout
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok().trim()).unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.stdout))
    }
}

/// `gridkeeper ARGS` with exactly the environment `env` adds (no GRIDKEEPER_* from the caller's),
/// bounded by `timeout`.
fn gk(args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = Command::new("timeout")
        .args([CALL_SECONDS_MAX, binary()])
        .args(args)
        .env_remove("GRIDKEEPER_ADMIN")
        .env_remove("GRIDKEEPER_CERTS")
        .envs(env.iter().copied())
        .output()
        .expect("run gridkeeper under timeout");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The cells of a table line as byte ranges: text separated by runs of two or more spaces (a cell
/// may hold single spaces, `3s ago`).
fn cells(line: &str) -> Vec<(usize, usize)> {
    let bytes = line.as_bytes();
    let (mut out, mut at) = (Vec::new(), 0);
    while at < bytes.len() {
        while at < bytes.len() && bytes[at] == b' ' {
            at += 1;
        }
        if at == bytes.len() {
            break;
        }
        let start = at;
        while at < bytes.len() && !(bytes[at] == b' ' && bytes.get(at + 1).is_none_or(|&next| next == b' ')) {
            at += 1;
        }
        out.push((start, at));
    }
    out
}

/// Every line of `table` has as many cells as its header (fewer only where the last ones are empty),
/// and every column's cells start at one offset (left-aligned) or end at one (right-aligned).
/// Returns the rows as cell texts.
fn aligned(table: &str) -> Vec<Vec<String>> {
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines.len() >= 2, "a header and rows: {table}");
    assert!(
        lines.iter().all(|line| line.is_ascii() && !line.ends_with(' ')),
        "plain ASCII, no trailing blanks: {table}"
    );
    let spans: Vec<Vec<(usize, usize)>> = lines.iter().map(|line| cells(line)).collect();
    let columns = spans[0].len();
    assert!(spans.iter().all(|row| row.len() + 1 >= columns && row.len() <= columns), "{columns} cells: {table}");
    for column in 0..columns {
        let present = || spans.iter().filter_map(|row| row.get(column));
        let starts: std::collections::BTreeSet<usize> = present().map(|cell| cell.0).collect();
        let ends: std::collections::BTreeSet<usize> = present().map(|cell| cell.1).collect();
        assert!(starts.len() == 1 || ends.len() == 1, "column {column} is not aligned: {table}");
    }
    lines.iter().zip(&spans).map(|(line, row)| row.iter().map(|&(a, b)| line[a..b].to_string()).collect()).collect()
}

/// Every non-empty line of a node's log file is a JSON object with a timestamp in RFC 3339, a level
/// and a target; some carry a message.
fn assert_json_log(log: &Path) {
    let text = std::fs::read_to_string(log).expect("node log");
    let lines: Vec<&str> = text.lines().filter(|line| !line.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "a node logs as it starts: {text}");
    let mut messages = 0;
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"));
        let timestamp = value["timestamp"].as_str().unwrap_or_default();
        assert!(parse_rfc3339(timestamp).is_some(), "RFC 3339 timestamp: {line}");
        assert!(value["level"].is_string() && value["target"].is_string(), "{line}");
        messages += usize::from(value["message"].is_string());
    }
    assert!(messages > 0, "messages are flattened into the object: {text}");
}

fn start_cluster(spec: &ClusterSpec) -> Vec<NodeProcess> {
    let config = spec.dir.path().join("json-log.toml");
    std::fs::write(&config, "log_format = \"json\"\n").expect("config file");
    let config = config.to_str().expect("utf-8 path").to_string();
    vec![
        spec.start(1),
        spec.start_with_args(2, &spec.certs(), &["--log-format", "json"]),
        spec.start_with_args(3, &spec.certs(), &["--config", &config]),
    ]
}

#[test]
fn the_cli_prints_tables_json_and_times_and_nodes_log_without_colour() {
    let spec = ClusterSpec::new("cli-output", 3);
    let nodes = start_cluster(&spec);
    let leader = wait_for(WAIT_MAX, || leader_of(&spec, &[1, 2, 3])).expect("a leader");
    let (admin, certs) = (spec.admin(1).to_string(), spec.certs().to_str().expect("utf-8 path").to_string());
    let env = [("GRIDKEEPER_ADMIN", admin.as_str()), ("GRIDKEEPER_CERTS", certs.as_str())];

    // Status and members, by the environment alone: the first line as before, then aligned rows.
    let status = gk(&["status"], &env);
    let first = status.ok().lines().next().unwrap_or_default().to_string();
    assert!(first.starts_with(&format!("node 1  leader {leader}  term ")), "{}", status.stdout);
    let rows = aligned(&status.stdout[first.len() + 1..]);
    assert_eq!(rows[0], ["ID", "ADDRESS", "ALIVE", "LAST SEEN", "RUNNING", "SLOTS", "LOAD"]);
    assert_eq!(rows.len(), 4, "{}", status.stdout);
    assert!(rows[1..].iter().all(|row| row[3].ends_with(" ago") || row[3] == "never"), "{rows:?}");
    assert_eq!(gk(&["status", "--json"], &env).json()["members"].as_array().map(Vec::len), Some(3));
    let members = gk(&["members"], &env);
    let rows = aligned(members.ok().split_once('\n').expect("two parts").1);
    assert_eq!(rows[0], ["ID", "ADDRESS", "ROLE", "ALIVE", "LAG"]);
    assert_eq!(gk(&["members", "--json"], &env).json()["members"].as_array().map(Vec::len), Some(3));
    // Flags win over the environment; without either, a missing --admin is a usage error.
    let unreachable = [("GRIDKEEPER_ADMIN", "127.0.0.1:1"), ("GRIDKEEPER_CERTS", certs.as_str())];
    assert_eq!(gk(&["status", "--json", "--admin", &admin], &unreachable).json()["node"], 1);
    assert_eq!(gk(&["status", "--json", "--admin", &admin, "--certs", &certs], &[]).json()["node"], 1);
    let missing = gk(&["status"], &[]);
    assert_eq!(missing.code, Some(2), "{}", missing.stderr);
    assert!(missing.stderr.contains("--admin"), "{}", missing.stderr);
    assert_eq!(gk(&["members"], &[]).code, Some(2));

    // Tasks: submitted just now, so `--since 1h` lists them; a future --since lists none.
    let waited = gk(&["submit", "--task", "noop", "--count", "3", "--wait", "--json"], &env).json();
    assert_eq!(waited["states"]["succeeded"], 3, "{waited}");
    let ids: Vec<u64> = waited["ids"].as_array().expect("ids").iter().filter_map(serde_json::Value::as_u64).collect();
    let listed = gk(&["tasks", "--since", "1h"], &env);
    let rows = aligned(listed.ok());
    assert_eq!(rows[0], ["ID", "TASK", "STATE", "ATTEMPTS", "NODE", "SUBMITTED"]);
    for id in &ids {
        let row = rows.iter().find(|row| row[0] == id.to_string()).unwrap_or_else(|| panic!("task {id}: {rows:?}"));
        assert_eq!(row[2], "succeeded");
        assert!(row[5].ends_with(" ago"), "an age: {row:?}");
    }
    let page = gk(&["tasks", "--since", "1h", "--json"], &env).json();
    let found: Vec<u64> =
        page["tasks"].as_array().expect("tasks").iter().filter_map(|task| task["id"].as_u64()).collect();
    assert!(ids.iter().all(|id| found.contains(id)), "{page}");
    let later = gk(&["tasks", "--since", "2099-01-01T00:00:00Z", "--json"], &env).json();
    assert_eq!(later["tasks"].as_array().map(Vec::len), Some(0), "{later}");
    assert_eq!(
        gk(&["tasks", "--state", "succeeded", "--json"], &env).json()["tasks"].as_array().map(Vec::len),
        Some(3)
    );
    let one = gk(&["tasks", "--id", &ids[0].to_string()], &env);
    let head = one.ok().lines().next().unwrap_or_default();
    let submitted = head.split("submitted ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap_or_default();
    assert!(parse_rfc3339(submitted).is_some() && head.ends_with(" ago)"), "{head}");
    aligned(&one.stdout.lines().skip(1).filter(|line| !line.starts_with("result")).collect::<Vec<_>>().join("\n"));
    assert_eq!(gk(&["tasks", "--id", &ids[0].to_string(), "--json"], &env).json()["id"], ids[0]);
    // Bad values are usage errors (exit 2) that say what is accepted; a failed call is one line, exit 1.
    for bad in
        [&["tasks", "--since", "1y"][..], &["tasks", "--since", "1h", "--since-ms", "0"], &["tasks", "--state", "done"]]
    {
        let refused = gk(bad, &env);
        assert_eq!(refused.code, Some(2), "{bad:?}: {}", refused.stderr);
    }
    let refused = gk(&["tasks", "--since", "1y"], &env);
    assert!(refused.stderr.contains("1y") && refused.stderr.contains("RFC 3339"), "{}", refused.stderr);
    assert!(gk(&["tasks", "--state", "done"], &env).stderr.contains("timed_out"), "the values are listed");
    let unknown = gk(&["tasks", "--id", "999999"], &env);
    assert_eq!(unknown.code, Some(1));
    assert_eq!(unknown.stderr.trim().lines().count(), 1, "{}", unknown.stderr);
    assert!(unknown.stderr.contains("no task"), "{}", unknown.stderr);
    assert!(gk(&["submit", "--task", "echo", "--strategy", "round-robin"], &env).json()["ids"].is_array());

    // Drain, the registry, credentials and the audit log, each with --json.
    assert_eq!(
        gk(&["drain", "--node", "3", "--json"], &env).json(),
        serde_json::json!({"node": 3, "draining": true, "held": 0})
    );
    assert_eq!(gk(&["drain", "--node", "3", "--undo", "--json"], &env).json()["draining"], false);
    let registry = |args: &[&str]| gk(&[&["registry"][..], args].concat(), &env);
    assert_eq!(registry(&["create", "/cli", "v1", "--json"]).json()["path"], "/cli");
    assert_eq!(registry(&["set", "/cli", "v2", "--json"]).json()["version"], 1);
    assert_eq!(registry(&["get", "/cli", "--json"]).json()["data"], "v2");
    assert_eq!(registry(&["--consistency", "local", "get", "/cli"]).ok().trim(), "v2");
    assert!(registry(&["ls", "/", "--json"]).json().as_array().is_some_and(|names| names.contains(&"cli".into())));
    let stat = registry(&["stat", "/cli"]);
    let ctime = stat.ok().lines().find(|line| line.starts_with("ctime = ")).unwrap_or_default();
    let shown = ctime.split('(').nth(1).and_then(|rest| rest.strip_suffix(')')).unwrap_or_default();
    assert!(parse_rfc3339(shown).is_some(), "{}", stat.stdout);
    assert!(registry(&["stat", "/cli", "--json"]).json()["mtime"].is_u64());
    assert_eq!(registry(&["delete", "/cli", "--json"]).json(), serde_json::json!({"path": "/cli", "deleted": true}));
    assert_eq!(registry(&["--local", "--consistency", "local", "ls", "/"]).code, Some(2));

    let issued = gk(&["certs", "--out", &certs, "--token", "cli-reader", "--role", "reader", "--json"], &[]).json();
    let created: Vec<&str> =
        issued["created"].as_array().expect("created").iter().filter_map(|path| path.as_str()).collect();
    assert!(created.iter().any(|path| path.ends_with("token-cli-reader")), "{issued}");
    assert_eq!(gk(&["certs", "--out", &certs, "--token", "x", "--role", "admin"], &[]).code, Some(2));
    assert_eq!(gk(&["tokens", "revoke", "cli-reader", "--json"], &env).json()["name"], "cli-reader");
    let revoked = wait_for(WAIT_MAX, || {
        let listed = gk(&["tokens", "list", "--json"], &env).json();
        let entries = listed.as_array()?.clone();
        entries.iter().any(|entry| entry["name"] == "cli-reader" && entry["revoked_ms"].is_u64()).then_some(())
    });
    assert!(revoked.is_some(), "tokens list --json shows the revocation");
    let tokens = gk(&["tokens", "list"], &env);
    let rows = aligned(tokens.ok());
    assert_eq!(rows[0], ["NAME", "KIND", "ROLE", "ISSUED", "REVOKED"]);
    let row = rows.iter().find(|row| row[0] == "cli-reader").expect("the token is listed");
    assert!(parse_rfc3339(&row[3]).is_some() && parse_rfc3339(&row[4]).is_some(), "{row:?}");
    let audit = gk(&["audit", "--since", "1h", "--json"], &env);
    assert!(
        audit.ok().lines().count() > 0
            && audit.stdout.lines().all(|line| serde_json::from_str::<serde_json::Value>(line).is_ok())
    );
    assert_eq!(gk(&["audit", "--since", "yesterday"], &env).code, Some(2));

    // Node logs: text without escape codes in a file (stderr is not a terminal), JSON lines when
    // asked by flag or by config file.
    drop(nodes);
    let text = std::fs::read(spec.dir.path().join("node-1.log")).expect("node 1 log");
    assert!(!text.windows(2).any(|pair| pair == b"\x1b["), "no ANSI escapes in a log file");
    assert!(String::from_utf8_lossy(&text).contains("INFO"), "node 1 logged text");
    assert_json_log(&spec.dir.path().join("node-2.log"));
    assert_json_log(&spec.dir.path().join("node-3.log"));
}

#[test]
fn completions_name_the_subcommands_and_bash_accepts_its_script() {
    let dir = support::TempDir::new("cli-completions");
    let bash = gk(&["completions", "bash"], &[]);
    let script = bash.ok();
    for name in ["status", "members", "tasks", "registry", "completions", "--since", "--json"] {
        assert!(script.contains(name), "bash completion names {name}");
    }
    let file = dir.path().join("gridkeeper.bash");
    std::fs::write(&file, script).expect("write the script");
    let checked = Command::new("bash").arg("-n").arg(&file).output().expect("bash runs");
    assert!(checked.status.success(), "bash -n: {}", String::from_utf8_lossy(&checked.stderr));
    for shell in ["zsh", "fish"] {
        assert!(gk(&["completions", shell], &[]).ok().contains("tasks"), "{shell}");
    }
    let unknown = gk(&["completions", "tcsh"], &[]);
    assert_eq!(unknown.code, Some(2));
    assert!(unknown.stderr.contains("bash") && unknown.stderr.contains("zsh"), "{}", unknown.stderr);
}
