//! Recurring jobs with real processes on 127.0.0.1, through the CLI: a cron in an IANA time zone, pause,
//! resume and trigger, and the refusals (an unknown zone, Quartz's `L`, a trigger while the last run
//! goes on, an unknown job).
//!
//! The nodes run with `TZDIR` pointing at an empty directory: the zone database is the one compiled into
//! the binary, so a machine without zone files schedules the same.

mod support;

use std::process::{Command, Output};

use serde_json::Value;
use support::{binary, status, wait_for, ClusterSpec, NodeProcess, TempDir, WAIT_MAX};

/// Runs `gridkeeper ARGS --admin <node via> --certs <certs>`.
fn cli(spec: &ClusterSpec, via: u64, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .args(["--admin", &spec.admin(via).to_string(), "--certs"])
        .arg(spec.certs())
        .output()
        .expect("run gridkeeper")
}

fn succeeded(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Exit status 1 and one line on stderr containing every one of `wanted`.
fn refused(output: &Output, wanted: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "not refused: {stderr}");
    for want in wanted {
        assert!(stderr.contains(want), "{stderr} lacks {want:?}");
    }
}

/// `gridkeeper jobs --json`, the job named `name`.
fn job(spec: &ClusterSpec, via: u64, name: &str) -> Value {
    let listing: Value = serde_json::from_str(&succeeded(&cli(spec, via, &["jobs", "--json"]))).expect("JSON");
    listing["jobs"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|job| job["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no job {name} in {listing}"))
}

fn number(job: &Value, field: &str) -> u64 {
    job[field].as_u64().unwrap_or_else(|| panic!("{field} of {job}"))
}

#[test]
fn a_zoned_cron_job_pauses_resumes_and_triggers_through_the_cli() {
    let spec = ClusterSpec::new("jobs", 3);
    let no_zone_files = TempDir::new("jobs-no-zoneinfo");
    let tzdir = no_zone_files.path().to_string_lossy().into_owned();
    let _nodes: Vec<NodeProcess> = spec
        .ids
        .iter()
        .map(|&id| spec.start_with_env(id, &spec.certs(), &["--slots", "4"], &[("TZDIR", tzdir.as_str())]))
        .collect();
    let leader = wait_for(WAIT_MAX, || {
        let view = status(spec.admin(1))?;
        let workers = view.members.iter().filter(|member| member.slots.is_some()).count();
        view.leader.filter(|_| workers == 3)
    })
    .expect("a leader and three workers");
    // Every call goes through a follower: forwarded to the leader, answered after it applied here.
    let via = [1, 2, 3].into_iter().find(|&id| id != leader).expect("a follower");

    // A per-second cron read in Berlin, and a witness that fires every 250 ms and is never paused.
    let schedule = ["schedule", "--name", "tick", "--task", "noop", "--cron", "* * * * * *", "--tz", "europe/berlin"];
    assert!(succeeded(&cli(&spec, via, &schedule)).contains("tick"));
    succeeded(&cli(&spec, via, &["schedule", "--name", "witness", "--task", "noop", "--every-ms", "250"]));
    let tick = job(&spec, via, "tick");
    assert_eq!((tick["tz"].as_str(), tick["paused"].as_bool()), (Some("Europe/Berlin"), Some(false)), "{tick}");
    assert_eq!(job(&spec, via, "witness")["tz"], "UTC");
    wait_for(WAIT_MAX, || (number(&job(&spec, via, "tick"), "runs") >= 2).then_some(())).expect("tick fires");

    // Paused: it stays, shows paused with no due time, and fires nothing while the witness fires 16 times
    // (at least 3.75 s of the leader's decisions: three of tick's periods).
    assert_eq!(succeeded(&cli(&spec, via, &["jobs", "pause", "--name", "tick"])).trim(), "job tick paused");
    let paused = job(&spec, via, "tick");
    assert_eq!((paused["paused"].as_bool(), paused["due_ms"].is_null()), (Some(true), true), "{paused}");
    let witness_runs = number(&job(&spec, via, "witness"), "runs");
    wait_for(WAIT_MAX, || (number(&job(&spec, via, "witness"), "runs") >= witness_runs + 16).then_some(()))
        .expect("the witness fires on");
    let still = job(&spec, via, "tick");
    assert_eq!(number(&still, "runs"), number(&paused, "runs"), "a paused job submitted a run: {still}");
    let text = succeeded(&cli(&spec, via, &["jobs"]));
    let row = text.lines().find(|line| line.starts_with("tick ")).unwrap_or_else(|| panic!("{text}"));
    assert!(text.lines().next().is_some_and(|header| header.contains("TZ")), "{text}");
    assert!(row.contains("Europe/Berlin") && row.contains("paused"), "{row}");

    // Resumed: the fire times missed while paused are skipped, and it fires again.
    assert_eq!(succeeded(&cli(&spec, via, &["jobs", "resume", "--name", "tick"])).trim(), "job tick resumed");
    let resumed = job(&spec, via, "tick");
    assert_eq!(resumed["paused"], false, "{resumed}");
    assert!(number(&resumed, "skipped") >= number(&paused, "skipped") + 2, "{paused} then {resumed}");
    assert!(number(&resumed, "due_ms") > 0, "{resumed}");
    let runs = number(&resumed, "runs");
    wait_for(WAIT_MAX, || (number(&job(&spec, via, "tick"), "runs") > runs).then_some(())).expect("tick fires again");

    // Trigger runs once at once, its cadence untouched: paused again so that only the trigger adds a run.
    succeeded(&cli(&spec, via, &["jobs", "pause", "--name", "tick"]));
    let before = job(&spec, via, "tick");
    let printed = succeeded(&cli(&spec, via, &["jobs", "trigger", "--name", "tick", "--json"]));
    let triggered: Value = serde_json::from_str(&printed).expect("the job's view");
    assert_eq!(number(&triggered, "runs"), number(&before, "runs") + 1, "{triggered}");
    assert_eq!(triggered["paused"], true, "{triggered}");
    let run = number(&triggered, "last_task");
    assert!(Some(run) > before["last_task"].as_u64(), "{before} then {triggered}");
    let shown = succeeded(&cli(&spec, via, &["tasks", "--id", &run.to_string(), "--json"]));
    assert!(shown.contains("noop"), "{shown}");

    // A run still going refuses a trigger of a job without overlap (409 `job running`).
    succeeded(&cli(
        &spec,
        via,
        &["schedule", "--name", "slow", "--task", "sleep", "--input", r#"{"ms": 60000}"#, "--every-ms", "3600000"],
    ));
    let printed = succeeded(&cli(&spec, via, &["jobs", "trigger", "--name", "slow"]));
    assert!(printed.starts_with("job slow triggered: task "), "{printed}");
    refused(&cli(&spec, via, &["jobs", "trigger", "--name", "slow"]), &["still going", "overlap"]);
    assert_eq!(number(&job(&spec, via, "slow"), "runs"), 1);

    // Refusals, each one line naming the problem.
    let unknown_zone = ["schedule", "--name", "x", "--task", "noop", "--cron", "0 9 * * *", "--tz", "Mars/Olympus"];
    refused(&cli(&spec, via, &unknown_zone), &["unknown time zone `Mars/Olympus`", "Europe/Berlin"]);
    let last_day = ["schedule", "--name", "x", "--task", "noop", "--cron", "0 0 L * *"];
    refused(&cli(&spec, via, &last_day), &["`L` (the last day) is a Quartz extension gridkeeper does not support"]);
    refused(&cli(&spec, via, &["jobs", "resume", "--name", "nope"]), &["no job"]);
    refused(&cli(&spec, via, &["jobs", "pause", "--name", "nope"]), &["no job"]);
    // Quartz's `?` is accepted.
    succeeded(&cli(
        &spec,
        via,
        &[
            "schedule",
            "--name",
            "weekdays",
            "--task",
            "noop",
            "--cron",
            "0 0 9 ? * MON-FRI",
            "--tz",
            "America/New_York",
        ],
    ));
    assert_eq!(job(&spec, via, "weekdays")["tz"], "America/New_York");
}
