//! The deployment files in `deploy/` (container, systemd, Kubernetes, Prometheus, Grafana), checked by
//! tools nobody here wrote: `dockerfile-parse`, `kubernetes-validate` (the API's own schemas, strict),
//! `systemd-analyze verify` and `security`, `systemd-sysusers` and `promtool` (the alert rules, and
//! every query of the Grafana dashboard as a recording rule). `deploy/check.py` runs
//! them; this test installs them (Debian's `systemd` and `prometheus`, a venv with the pins in
//! `deploy/requirements.txt`), so none is skipped, and shows the checker fails on a broken copy.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::zk_tools::{ensure_apt, ensure_venv, repo_dir, run_bounded, tools_dir};

const CHECK_TIME_MAX: Duration = Duration::from_secs(300);

fn check(python: &Path, script: &Path, log: &str) -> (bool, String) {
    let finished = run_bounded(Command::new(python).arg("-B").arg(script), CHECK_TIME_MAX, &tools_dir().join(log))
        .expect("run deploy/check.py");
    assert!(!finished.timed_out, "check.py ran past {CHECK_TIME_MAX:?}:\n{}", finished.output);
    (finished.success(), finished.output)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn the_deployment_files_pass_outside_checkers_and_a_broken_copy_does_not() {
    ensure_apt("deploy-apt.installed", &["systemd", "prometheus"]).unwrap_or_else(|error| panic!("{error}"));
    let python = ensure_venv("deploy-venv", "deploy/requirements.txt").unwrap_or_else(|error| panic!("{error}"));
    let repo = repo_dir();

    let (passed, output) = check(&python, &repo.join("deploy/check.py"), "deploy-check.log");
    assert!(passed, "deploy/check.py failed:\n{output}");
    let skipped: Vec<&str> = output.lines().filter(|line| line.starts_with("skip")).collect();
    assert!(skipped.is_empty(), "every tool is installed, yet checks were skipped: {skipped:?}\n{output}");
    for tool in [
        "kubernetes-validate",
        "systemd-analyze verify",
        "promtool check rules alerts.yml",
        "promtool check rules on the dashboard's queries",
        "grafana dashboard: a Grafana JSON model",
        "alerts.yml: every rule has alert, expr, for",
        "Dockerfile",
    ] {
        assert!(
            output.lines().any(|line| line.starts_with("ok") && line.contains(tool)),
            "{tool} did not run:\n{output}"
        );
    }

    // The same checks on a copy whose image runs as root and whose readiness probe is misspelt.
    let scratch = tools_dir().join(format!("deploy-broken-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    copy_dir(&repo.join("deploy"), &scratch.join("deploy"));
    copy_dir(&repo.join("runtime"), &scratch.join("runtime"));
    let dockerfile = scratch.join("deploy/Dockerfile");
    let text = std::fs::read_to_string(&dockerfile).expect("Dockerfile");
    assert!(text.contains("USER nonroot:nonroot"), "the Dockerfile's final stage names its user");
    std::fs::write(&dockerfile, text.replace("USER nonroot:nonroot", "USER root")).expect("write");
    let statefulset = scratch.join("deploy/kubernetes/statefulset.yaml");
    let text = std::fs::read_to_string(&statefulset).expect("statefulset");
    std::fs::write(&statefulset, text.replace("readinessProbe:", "readinesProbe:")).expect("write");
    // A dashboard query with a metric no code exports and a PromQL syntax error; an alert without
    // `for:`; a hard-coded instance.
    let dashboard = scratch.join("deploy/grafana/gridkeeper.json");
    let text = std::fs::read_to_string(&dashboard).expect("dashboard");
    assert!(text.contains("gridkeeper_raft_fsync_seconds_bucket") && text.contains("process_threads{"), "dashboard");
    let text = text
        .replacen("gridkeeper_raft_fsync_seconds_bucket", "gridkeeper_raft_fsync_millis_bucket", 1)
        .replacen("process_threads{", "process_threads{instance=\\\"10.0.0.5:9100\\\", ", 1)
        .replacen("sum(up{", "sum((up{", 1);
    std::fs::write(&dashboard, text).expect("write");
    let alerts = scratch.join("deploy/prometheus/alerts.yml");
    let text = std::fs::read_to_string(&alerts).expect("alerts");
    assert!(text.contains("        for: 10m\n"), "alerts.yml has a 10m for:");
    std::fs::write(&alerts, text.replacen("        for: 10m\n", "", 1)).expect("write");
    let (passed, output) = check(&python, &scratch.join("deploy/check.py"), "deploy-check-broken.log");
    std::fs::remove_dir_all(&scratch).ok();
    assert!(!passed, "a root image and a misspelt probe passed:\n{output}");
    let failed: Vec<&str> = output.lines().filter(|line| line.starts_with("FAIL")).collect();
    assert!(failed.iter().any(|line| line.contains("USER")), "{output}");
    assert!(failed.iter().any(|line| line.contains("kubernetes-validate")), "{output}");
    for (check, because) in [
        ("metric a query uses exists in runtime/", "gridkeeper_raft_fsync_millis"),
        ("promtool check rules on the dashboard's queries", "parse error"),
        ("no hard-coded instance", "hard-coded instance"),
        ("alerts.yml: every rule has alert, expr, for", "no `for:`"),
    ] {
        assert!(
            failed.iter().any(|line| line.contains(check) && line.contains(because)),
            "no FAIL line for {check:?} naming {because:?}:\n{output}"
        );
    }
}
