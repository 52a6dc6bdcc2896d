//! Real processes on 127.0.0.1: the binary, real QUIC with mutual TLS, kill -9.

mod support;

use std::process::Command;

use support::*;

#[test]
fn peers_named_by_dns_names_form_a_cluster_that_serves_writes() {
    let mut spec = ClusterSpec::new("names", 3);
    spec.peer_host = "localhost".to_string();
    let _nodes: Vec<_> = spec.ids.iter().map(|&id| spec.start(id)).collect();
    let formed = wait_for(WAIT_MAX, || leader_of(&spec, &[1, 2, 3]).filter(|_| sees_alive(spec.admin(3), &[1, 2, 3])));
    assert!(formed.is_some(), "no cluster formed over names: {:?}", status(spec.admin(3)));
    let view = status(spec.admin(1)).expect("status");
    for member in &view.members {
        assert!(member.addr.starts_with("localhost:"), "members show their names: {view:?}");
    }
    let written = Command::new(binary())
        .env("GRIDKEEPER_CERTS", spec.certs())
        .args(["registry", "--admin", &spec.admin(2).to_string(), "create", "/named", "yes"])
        .output()
        .expect("registry create");
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));

    // `members` through a node that may not lead: every voter by name, alive, caught up (lags come
    // from the leader, over the mesh).
    let members = |via: u64| -> Option<serde_json::Value> {
        let output = Command::new(binary())
            .env("GRIDKEEPER_CERTS", spec.certs())
            .args(["members", "--admin", &spec.admin(via).to_string(), "--json"])
            .output()
            .ok()?;
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).ok()
    };
    let caught_up = wait_for(WAIT_MAX, || {
        let view = members(3)?;
        let rows = view["members"].as_array()?.clone();
        let settled =
            rows.len() == 3 && rows.iter().all(|row| row["role"] == "voter" && row["alive"] == true && row["lag"] == 0);
        settled.then_some(view)
    });
    let view = caught_up.unwrap_or_else(|| panic!("members never showed 3 caught-up voters: {:?}", members(3)));
    assert!(view["leader"].is_u64(), "{view}");
    for (index, row) in view["members"].as_array().expect("rows").iter().enumerate() {
        assert_eq!(row["id"], index as u64 + 1);
        assert_eq!(row["addr"], format!("localhost:{}", spec.mesh_ports[index]));
    }
    let table = Command::new(binary())
        .env("GRIDKEEPER_CERTS", spec.certs())
        .args(["members", "--admin", &format!("localhost:{}", spec.admin(1).port())])
        .output()
        .expect("members");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("ROLE") && table.lines().filter(|line| line.contains(" voter ")).count() == 3, "{table}");
}

#[test]
fn three_nodes_form_the_mesh_and_serve_status_metrics_and_health() {
    let spec = ClusterSpec::new("form", 3);
    let _nodes: Vec<_> = spec.ids.iter().map(|&id| spec.start(id)).collect();
    for &id in &spec.ids {
        let formed = wait_for(WAIT_MAX, || sees_alive(spec.admin(id), &[1, 2, 3]).then_some(()));
        assert!(formed.is_some(), "node {id} never saw all three alive: {:?}", status(spec.admin(id)));
    }
    // A follower may hear of its leader a moment before it learns the first commit.
    let view = wait_for(WAIT_MAX, || {
        status(spec.admin(2)).filter(|view| view.leader.is_some() && view.commit_index.is_some_and(|index| index >= 1))
    })
    .expect("a leader is known and has committed");
    assert_eq!(view.node, 2);
    assert!(view.term.is_some_and(|term| term >= 1) && view.commit_index.is_some_and(|index| index >= 1), "{view:?}");
    assert_eq!(view.members.len(), 3);
    assert!(view.members.iter().all(|member| member.last_seen_ms.is_some_and(|ms| ms < 5_000)), "{view:?}");

    assert_eq!(admin_get(spec.admin(1), "/health").as_deref(), Some("ok\n"));
    let metrics = admin_get(spec.admin(1), "/metrics").expect("metrics");
    assert_eq!(metric_sum(&metrics, "gridkeeper_peer_up{peer=\"2\"}"), 1.0, "{metrics}");
    assert!(metric_sum(&metrics, "gridkeeper_mesh_frames_received_total") > 0.0, "{metrics}");
    assert!(metric_sum(&metrics, "gridkeeper_mesh_bytes_sent_total") > 0.0, "{metrics}");
    assert!(metrics.contains("gridkeeper_mesh_heartbeat_rtt_seconds_bucket{"), "real histogram buckets: {metrics}");

    let table = Command::new(binary())
        .env("GRIDKEEPER_CERTS", spec.certs())
        .args(["status", "--admin", &spec.admin(3).to_string()])
        .output()
        .expect("status");
    assert!(table.status.success());
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains(&format!("leader {}", view.leader.expect("leader"))), "{table}");
    assert_eq!(table.lines().filter(|line| line.contains(" yes ")).count(), 3, "{table}");
    let json = Command::new(binary())
        .env("GRIDKEEPER_CERTS", spec.certs())
        .args(["status", "--json", "--admin", &spec.admin(3).to_string()])
        .output()
        .expect("status");
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("--json prints JSON");
    assert_eq!(parsed["node"], 3);
    assert_eq!(parsed["members"].as_array().map(Vec::len), Some(3));
}

#[test]
fn a_killed_node_is_reported_down_and_rejoins_when_restarted() {
    let spec = ClusterSpec::new("kill", 3);
    let mut nodes: Vec<_> = spec.ids.iter().map(|&id| spec.start(id)).collect();
    for &id in &spec.ids {
        assert!(
            wait_for(WAIT_MAX, || sees_alive(spec.admin(id), &[1, 2, 3]).then_some(())).is_some(),
            "mesh never formed"
        );
    }
    for victim in [3u64, 1] {
        let others: Vec<u64> = spec.ids.iter().copied().filter(|&id| id != victim).collect();
        nodes[(victim - 1) as usize].kill();
        for &observer in &others {
            let down = wait_for(WAIT_MAX, || sees_alive(spec.admin(observer), &others).then_some(()));
            assert!(down.is_some(), "node {observer} never reported killed node {victim} down");
        }
        nodes[(victim - 1) as usize] = spec.start(victim);
        for &observer in &spec.ids {
            let back = wait_for(WAIT_MAX, || sees_alive(spec.admin(observer), &[1, 2, 3]).then_some(()));
            assert!(
                back.is_some(),
                "node {observer} never saw restarted node {victim}: {:?}",
                status(spec.admin(observer))
            );
        }
    }
}

#[test]
fn a_node_with_certificates_from_another_ca_is_refused() {
    let spec = ClusterSpec::new("foreign", 3);
    let foreign = spec.dir.path().join("foreign-certs");
    issue_certs(&foreign, "3");
    let _one = spec.start(1);
    let _two = spec.start(2);
    let mut intruder = spec.start_with_certs(3, &foreign);
    let refused = wait_for(WAIT_MAX, || {
        let metrics = admin_get(spec.admin(1), "/metrics")?;
        (metric_sum(&metrics, "gridkeeper_mesh_handshake_refusals_total") > 0.0).then_some(())
    });
    assert!(refused.is_some(), "node 1 never counted a refused handshake");
    assert!(wait_for(WAIT_MAX, || sees_alive(spec.admin(1), &[1, 2]).then_some(())).is_some());
    assert!(sees_alive(spec.admin(1), &[1, 2]), "the intruder must never be alive: {:?}", status(spec.admin(1)));
    let alone = wait_for(WAIT_MAX, || sees_alive(spec.admin(3), &[3]).then_some(()));
    assert!(alone.is_some(), "the intruder must see nobody: {:?}", status(spec.admin(3)));
    let log = _one.log_text();
    assert!(log.contains("refused peer"), "the refusal is logged with its reason: {log}");
    intruder.kill();
}

#[test]
fn sigterm_stops_a_node_cleanly_and_peers_see_it_leave() {
    let spec = ClusterSpec::new("term", 2);
    let mut one = spec.start(1);
    let _two = spec.start(2);
    assert!(wait_for(WAIT_MAX, || sees_alive(spec.admin(2), &[1, 2]).then_some(())).is_some(), "mesh never formed");
    let status = one.terminate().expect("node exits after SIGTERM");
    assert!(status.success(), "clean shutdown exits 0, got {status:?}: {}", one.log_text());
    assert!(
        wait_for(WAIT_MAX, || sees_alive(spec.admin(2), &[2]).then_some(())).is_some(),
        "peer never saw node 1 leave"
    );
}

#[test]
fn bad_configuration_exits_non_zero_with_a_one_line_error() {
    let spec = ClusterSpec::new("badconfig", 2);
    let certs = spec.certs();
    let data = spec.dir.path().join("data");
    let peers = spec.peers();
    let run = |args: &[&str]| {
        let output = Command::new(binary()).args(args).env("RUST_LOG", "off").output().expect("run");
        (output.status.code(), String::from_utf8_lossy(&output.stderr).trim().to_string())
    };
    let certs_s = certs.to_string_lossy().to_string();
    let data_s = data.to_string_lossy().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["node", "--id", "5", "--peers", &peers, "--certs", &certs_s, "--data-dir", &data_s],
            "node 5 is not in the peer list",
        ),
        (
            vec![
                "node",
                "--id",
                "1",
                "--peers",
                "1=127.0.0.1:7,1=127.0.0.1:8",
                "--certs",
                &certs_s,
                "--data-dir",
                &data_s,
            ],
            "listed twice",
        ),
        (
            vec!["node", "--id", "1", "--peers", &peers, "--certs", "/nonexistent", "--data-dir", &data_s],
            "/nonexistent/ca.pem",
        ),
        (
            vec!["node", "--id", "1", "--peers", &peers, "--certs", &certs_s, "--data-dir", "/proc/gk-nope"],
            "not writable",
        ),
        (vec!["node", "--config", "/nonexistent.toml"], "config file /nonexistent.toml"),
    ];
    for (args, expected) in cases {
        let (code, stderr) = run(&args);
        assert_eq!(code, Some(1), "{args:?} must exit 1; stderr: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line expected, got {stderr:?}");
        assert!(
            stderr.starts_with("gridkeeper: error: ") && stderr.contains(expected),
            "{args:?}: {stderr:?} lacks {expected:?}"
        );
    }
    // Node 2's certificate presented as node 1's.
    std::fs::copy(certs.join("node-2.pem"), certs.join("node-1.pem")).expect("copy");
    let (code, stderr) = run(&["node", "--id", "1", "--peers", &peers, "--certs", &certs_s, "--data-dir", &data_s]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("not valid for node 1"), "{stderr}");
    // The mesh address already taken.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let peers_taken = format!("2=127.0.0.1:{}", taken.local_addr().expect("addr").port());
    let (code, stderr) = run(&[
        "node",
        "--id",
        "2",
        "--peers",
        &peers_taken,
        "--certs",
        &certs_s,
        "--data-dir",
        &data_s,
        "--admin",
        &format!("127.0.0.1:{}", free_tcp_port()),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("is unavailable") && stderr.lines().count() == 1, "{stderr}");
    // Usage errors exit 2.
    assert_eq!(run(&["node", "--id", "x"]).0, Some(2));
}

#[test]
fn certs_reuses_the_ca_and_adds_nodes_without_overwriting_keys() {
    let dir = TempDir::new("certs");
    let certs = dir.path().join("c");
    issue_certs(&certs, "1,2,3");
    let ca = std::fs::read(certs.join("ca.pem")).expect("ca");
    let key = std::fs::read(certs.join("node-1.key")).expect("key");
    issue_certs(&certs, "1,4");
    assert_eq!(std::fs::read(certs.join("ca.pem")).expect("ca"), ca);
    assert_eq!(std::fs::read(certs.join("node-1.key")).expect("key"), key);
    assert!(
        certs.join("node-4.pem").exists() && certs.join("admin.token").exists() && certs.join("operator.pem").exists()
    );
}
