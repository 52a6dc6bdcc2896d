//! A data directory written before data formats carried a version (format 1: commit e4de538, made by
//! `tests/fixtures/make_format1_datadir.sh`) still loads: today's binary starts on it, serves every
//! znode and task written then (from the format-1 snapshot and from the log after it), records the
//! log's format, writes format-2 snapshots from then on, and loads its own again after a restart.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

const WAIT_MAX: Duration = Duration::from_secs(60);

fn unpack_fixture(into: &Path) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1-datadir.tar.gz");
    let status = Command::new("tar").arg("-xzf").arg(&fixture).arg("-C").arg(into).status().expect("run tar");
    assert!(status.success(), "tar could not unpack {}", fixture.display());
}

fn children_count(admin: std::net::SocketAddr, path: &str) -> Option<usize> {
    let body = admin_get(admin, &format!("/registry/children?path={path}"))?;
    let value: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(value.get("children")?.as_array()?.len())
}

fn check_format1_content(spec: &ClusterSpec) {
    let admin = spec.admin(1);
    // 21,000 sequential children plus one: most from the snapshot, the last ones from the log.
    let count = wait_for(WAIT_MAX, || children_count(admin, "/fixture")).expect("/fixture is readable");
    assert_eq!(count, 21_001);
    let node = admin_get(admin, "/registry/node?path=/fixture/after-snapshot").expect("read");
    assert!(node.contains("kept in the log"), "{node}");
    let root = admin_get(admin, "/registry/node?path=/fixture").expect("read");
    assert!(root.contains("format 1"), "{root}");
    let task = admin_get(admin, "/grid/tasks?id=5").expect("task 5");
    assert!(task.contains("succeeded") && task.contains("format 1"), "{task}");
}

#[test]
fn a_format1_data_dir_loads_and_keeps_working() {
    let spec = ClusterSpec::new("format1", 1);
    unpack_fixture(spec.dir.path());
    std::fs::rename(spec.dir.path().join("data"), spec.dir.path().join("data-1")).expect("place the data dir");
    let snapshot = spec.dir.path().join("data-1/raft/snapshot.bin");
    assert_ne!(std::fs::read(&snapshot).expect("fixture snapshot")[0], 0xFF, "the fixture must be format 1");

    let mut node = spec.start(1);
    wait_for(WAIT_MAX, || status(spec.admin(1)).and_then(|view| view.leader)).expect("node 1 leads");
    check_format1_content(&spec);

    // New writes go on top; enough of them that the node takes a snapshot in today's format.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let client =
            gridkeeper::client::Client::connect_with_certs(spec.admin(1), &spec.certs()).await.expect("client");
        client.create("/today", "format 2", gridkeeper::registry::CreateMode::Persistent, None).await.expect("create");
    });
    node.terminate();

    let mut node = spec.start(1);
    wait_for(WAIT_MAX, || status(spec.admin(1)).and_then(|view| view.leader)).expect("node 1 leads again");
    check_format1_content(&spec);
    let today = admin_get(spec.admin(1), "/registry/node?path=/today").expect("read /today");
    assert!(today.contains("format 2"), "{today}");
    node.kill();
}
