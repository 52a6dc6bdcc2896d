//! kazoo's own test suite (kazoo 2.11.0, the Python ZooKeeper client) against real gridkeeper nodes
//! through their ZooKeeper listener. The suite normally launches Java ZooKeeper servers; our pytest
//! plugin (tests/zk/kazoo_plugin.py) hands it gridkeeper node processes instead
//! (tests/zk/gridkeeper_cluster.py: a 3-node cluster whose single nodes the tests stop and restart).
//! kazoo and pytest are installed into `target/zk-tools/kazoo-venv` on first use (see
//! support::zk_tools); the tests kazoo cannot pass against part 1 are deselected, each with its reason,
//! in tests/zk/kazoo_deselect.txt (read by the plugin: `--gk-deselect-file`).
//!
//! By hand, the same suite with other settings (all optional):
//!
//! ```sh
//! GK_ZK_SIZE=5 GK_ZK_PORT_BASE=24000 GK_KAZOO_TESTS=test_client,test_lock GK_KAZOO_ARGS="-x -k create" \
//!     cargo test --test zk_kazoo -- --nocapture
//! ```
//!
//! or without cargo's harness, after one `cargo test --test zk_kazoo` has installed the venv:
//!
//! ```sh
//! cd tests/zk && GK_ZK_BINARY=../../target/debug/gridkeeper ../../target/zk-tools/kazoo-venv/bin/python -B \
//!     -m pytest -p kazoo_plugin --gk-deselect-file kazoo_deselect.txt --pyargs kazoo.tests.test_client -k create
//! ```
//!
//! GK_ZK_SIZE: voters (default 3); GK_ZK_PORT_BASE: node N listens on BASE+10(N-1) (+0 mesh, +1 admin,
//! +2 ZooKeeper; default free ports); GK_KAZOO_TESTS: kazoo test modules (default: the client, watcher,
//! connection and recipe modules, KAZOO_TESTS_DEFAULT); GK_KAZOO_ARGS: extra pytest arguments;
//! GK_ZK_RUST_LOG: the nodes' RUST_LOG; GRIDKEEPER_KEEP_TEST_DIRS=1 keeps node logs and data.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::zk_tools::{self, run_bounded, Finished, KazooEnv};
use support::{binary, TempDir};

/// The kazoo test modules run by default: the client, its watchers and connection handling, and every
/// recipe (each recipe module runs against the cluster too). Left out: the handler and utility modules,
/// which test the client alone, and the eventlet, gevent and SASL variants.
const KAZOO_TESTS_DEFAULT: &str = "test_client,test_watchers,test_connection,test_lock,test_barrier,test_election,\
                                   test_queue,test_party,test_counter,test_cache,test_partitioner,test_lease,\
                                   test_interrupt";
/// Longest the whole pytest run may take; past it pytest and its nodes are killed as a process group.
const PYTEST_TIME_MAX: Duration = Duration::from_secs(20 * 60);
/// Longest a single kazoo test may take (pytest-timeout), so one hung test fails instead of the run.
const PYTEST_TEST_TIMEOUT_SECONDS: &str = "90";
/// Longest the adapter's self-check may take.
const CHECK_TIME_MAX: Duration = Duration::from_secs(3 * 60);

/// One kazoo run at a time in this binary: each starts a 3-node cluster, and two at once on a 2-core CI
/// machine starve heartbeats and session pings, which tests nothing but the machine.
static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Progress lines that show even when the test passes (cargo captures only the print macros).
fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn kazoo_env() -> KazooEnv {
    let started = Instant::now();
    let env = zk_tools::ensure_kazoo().unwrap_or_else(|error| panic!("installing kazoo failed: {error}"));
    note(&format!("zk_kazoo: kazoo venv ready in {:.1} s", started.elapsed().as_secs_f64()));
    env
}

/// A Python command in the venv with the adapter importable and the node binary and work dir set.
fn python(env: &KazooEnv, workdir: &Path) -> Command {
    let mut command = Command::new(&env.python);
    command
        .arg("-B")
        .current_dir(workdir)
        .env("PYTHONPATH", zk_tools::repo_dir().join("tests/zk"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("GK_ZK_BINARY", binary())
        .env("GK_ZK_DIR", workdir.join("cluster"))
        .env("NO_COLOR", "1")
        // kazoo's tests read a ZooKeeper version from these when set; ours answer `envi` themselves.
        .env_remove("CI")
        .env_remove("ZOOKEEPER_VERSION");
    command
}

/// pytest's closing summary as counts: `{"passed": 150, "deselected": 12, ...}`.
fn summary_counts(output: &str) -> BTreeMap<String, u64> {
    let words = ["passed", "failed", "error", "errors", "skipped", "deselected", "xfailed", "xpassed", "warnings"];
    let line = output.lines().rev().find(|line| line.contains(" in ") && words.iter().any(|word| line.contains(word)));
    let mut counts = BTreeMap::new();
    for part in line.unwrap_or_default().trim_matches(|c| c == '=' || c == ' ').split(", ") {
        let mut fields = part.split_whitespace();
        if let (Some(count), Some(word)) = (fields.next().and_then(|n| n.parse::<u64>().ok()), fields.next()) {
            if words.contains(&word) {
                let word = match word {
                    "errors" => "error",
                    "warnings" => "warning",
                    word => word,
                };
                counts.insert(word.to_string(), count);
            }
        }
    }
    counts
}

/// The warnings, errors, ZooKeeper front end lines and restarts (the last `lines` of them) of every node
/// log under the adapter's work dir.
fn node_logs(workdir: &Path, lines: usize) -> String {
    let mut out = String::new();
    let mut logs: Vec<_> = std::fs::read_dir(workdir.join("cluster"))
        .map(|entries| entries.filter_map(Result::ok).map(|entry| entry.path().join("node.log")).collect())
        .unwrap_or_default();
    logs.sort();
    let wanted = [" WARN ", " ERROR ", "zk", "=== gridkeeper_cluster.py"];
    for log in logs.iter().filter(|log| log.exists()) {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let kept: Vec<&str> = text.lines().filter(|line| wanted.iter().any(|key| line.contains(key))).collect();
        out += &format!("--- {}: warnings, errors, zk lines, restarts (last {lines}) ---\n", log.display());
        out += &kept[kept.len().saturating_sub(lines)..].join("\n");
        out += "\n";
    }
    out
}

/// pytest's failure reports and summary (from its `FAILURES` banner, at most 600 lines), or the tail.
fn pytest_excerpt(finished: &Finished) -> String {
    let lines: Vec<&str> = finished.output.lines().collect();
    match lines.iter().position(|line| line.starts_with('=') && line.contains(" FAILURES ")) {
        Some(from) if lines.len() - from <= 600 => lines[from..].join("\n"),
        Some(from) => format!("{}\n[...]\n{}", lines[from..from + 400].join("\n"), finished.tail(200)),
        None => finished.tail(200),
    }
}

fn failure_report(what: &str, finished: &Finished, workdir: &Path) -> String {
    let how = if finished.timed_out {
        "ran past its time bound and was killed".to_string()
    } else {
        format!("exited {:?}", finished.code)
    };
    format!(
        "{what} {how}\n=== its output ===\n{}\n=== node logs ===\n{}",
        pytest_excerpt(finished),
        node_logs(workdir, 30)
    )
}

#[test]
fn the_adapter_starts_stops_and_restarts_gridkeeper_nodes() {
    let env = kazoo_env();
    let _exclusive = exclusive();
    let workdir = TempDir::new("zk-adapter");
    let started = Instant::now();
    let mut command = python(&env, workdir.path());
    command.args([zk_tools::repo_dir().join("tests/zk/gridkeeper_cluster.py").to_string_lossy().as_ref(), "check"]);
    let finished = run_bounded(&mut command, CHECK_TIME_MAX, &workdir.path().join("check.log"))
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(finished.success(), "{}", failure_report("gridkeeper_cluster.py check", &finished, workdir.path()));
    note(&format!("zk_kazoo: adapter self-check ok in {:.1} s", started.elapsed().as_secs_f64()));
}

#[test]
fn kazoo_test_suite_passes_against_gridkeeper() {
    let env = kazoo_env();
    let _exclusive = exclusive();
    let workdir = TempDir::new("zk-kazoo");
    let modules = std::env::var("GK_KAZOO_TESTS").unwrap_or_else(|_| KAZOO_TESTS_DEFAULT.to_string());
    let mut command = python(&env, workdir.path());
    command
        .args(["-m", "pytest", "-p", "kazoo_plugin", "-p", "no:cacheprovider", "-o", "addopts=", "-rfE", "-v"])
        .arg("--rootdir")
        .arg(env.package.parent().expect("site-packages holds kazoo"))
        .args(["--timeout", PYTEST_TEST_TIMEOUT_SECONDS]);
    for module in modules.split(',').map(str::trim).filter(|module| !module.is_empty()) {
        command.arg(env.package.join(format!("tests/{module}.py")));
    }
    // The plugin deselects exactly the listed tests (pytest's own --deselect drops every test whose id
    // merely starts with an entry) and refuses an entry without a reason or naming no test.
    command.arg("--gk-deselect-file").arg(zk_tools::repo_dir().join("tests/zk/kazoo_deselect.txt"));
    if let Ok(extra) = std::env::var("GK_KAZOO_ARGS") {
        command.args(extra.split_whitespace());
    }
    let started = Instant::now();
    let finished = run_bounded(&mut command, PYTEST_TIME_MAX, &workdir.path().join("pytest.log"))
        .unwrap_or_else(|error| panic!("{error}"));
    let counts = summary_counts(&finished.output);
    note(&format!(
        "zk_kazoo: kazoo {modules}: {} in {:.1} s",
        if counts.is_empty() { "no pytest summary".to_string() } else { format!("{counts:?}") },
        started.elapsed().as_secs_f64()
    ));
    assert!(finished.success(), "{}", failure_report("pytest over kazoo's tests", &finished, workdir.path()));
    assert!(counts.get("passed").copied().unwrap_or(0) > 0, "pytest passed nothing:\n{}", finished.tail(50));
}

#[test]
fn pytest_summaries_parse() {
    let counts =
        summary_counts("x\n===== 3 failed, 150 passed, 2 skipped, 12 deselected, 1 error in 201.33s (0:03:21) =====\n");
    let expected: BTreeMap<String, u64> =
        [("failed", 3), ("passed", 150), ("skipped", 2), ("deselected", 12), ("error", 1)]
            .into_iter()
            .map(|(word, count)| (word.to_string(), count))
            .collect();
    assert_eq!(counts, expected);
    assert!(summary_counts("no summary here").is_empty());
}
