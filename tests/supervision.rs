//! The supervision tree in-process: injected child failures are restarted (and counted), and a crash
//! loop past the restart budget stops the node.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gridkeeper::credentials::Authority;
use gridkeeper::ids::NodeId;
use gridkeeper::limits::RESTARTS_IN_WINDOW_MAX;
use gridkeeper::mesh::DetectorConfig;
use gridkeeper::node::supervisor::{admin_actor_name, mesh_actor_name, start, AdminMsg, MeshMsg, SupervisorArgs};
use gridkeeper::node::{NodeConfig, NodeView};
use ractor::ActorCell;

const WAIT: Duration = Duration::from_secs(20);

async fn wait_until<T>(mut check: impl FnMut() -> Option<T>) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(found) = check() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("state reached within the bound")
}

/// Waits for an actor registered as `name` other than `previous`.
async fn next_actor(name: &str, previous: Option<&ActorCell>) -> ActorCell {
    wait_until(|| {
        ractor::registry::where_is(name)
            .filter(|cell| previous.is_none_or(|previous| previous.get_id() != cell.get_id()))
    })
    .await
}

async fn metrics_text(admin: std::net::SocketAddr) -> Option<String> {
    let body = gridkeeper::admin::client::get(admin, "/metrics").await.ok()?;
    Some(String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_children_are_restarted_within_the_budget_then_the_node_stops() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let node = NodeId(1);
    let mesh_port = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], mesh_port));
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], admin_port));
    let authority = Authority::generate().expect("CA");
    let data_dir = std::env::temp_dir().join(format!("gk-supervision-{}", std::process::id()));
    let config = NodeConfig {
        id: node,
        peers: BTreeMap::from([(node, listen)]),
        listen,
        certs: data_dir.join("unused"),
        data_dir: data_dir.clone(),
        admin,
        detector: DetectorConfig::default(),
        registry: gridkeeper::registry::RegistryLimits::default(),
        admin_server: Default::default(),
        slots: 2,
        weight: 1,
        prefetch: 0,
        placement: gridkeeper::grid::Strategy::default(),
        join: None,
        unplaceable_timeout_ms: None,
    };
    let view = NodeView::new(node);
    let args = Arc::new(SupervisorArgs {
        config,
        credentials: authority.node_credentials(node).expect("credentials"),
        view: view.clone(),
        prometheus: gridkeeper::admin::telemetry::install().expect("recorder"),
        admin_token: "test-token".into(),
        instance: String::new(),
        kinds: gridkeeper::worker::builtin::kinds(),
    });
    let (_supervisor, ended) = start(args).await.expect("tree starts");
    tokio::pin!(ended);

    // The admin server fails: it is restarted on the same address, and the restart is counted.
    let first_admin = next_actor(&admin_actor_name(node, ""), None).await;
    first_admin.send_message(AdminMsg::Stopped("injected failure".into())).expect("send");
    next_actor(&admin_actor_name(node, ""), Some(&first_admin)).await;
    let counted = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(text) = metrics_text(admin).await {
                if text.contains("gridkeeper_supervisor_restarts_total{child=\"admin\"} 1") {
                    return text;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the admin server is back and counts its restart");
    assert!(counted.contains("gridkeeper_supervisor_child_failures_total{child=\"admin\"} 1"), "{counted}");

    // The mesh fails: it is shut down and a new one binds the same UDP address.
    let first_mesh = next_actor(&mesh_actor_name(node, ""), None).await;
    first_mesh.send_message(MeshMsg::Failed("injected failure".into())).expect("send");
    next_actor(&mesh_actor_name(node, ""), Some(&first_mesh)).await;
    let new_mesh = wait_until(|| view.mesh().filter(|mesh| mesh.local_addr().ok() == Some(listen))).await;
    assert_eq!(new_mesh.local_addr().expect("bound"), listen);

    // A crash loop: failures beyond the budget stop the supervisor.
    let mut failures = 2;
    let mut current = next_actor(&admin_actor_name(node, ""), Some(&first_admin)).await;
    while failures <= RESTARTS_IN_WINDOW_MAX {
        current.send_message(AdminMsg::Stopped("crash loop".into())).expect("send");
        failures += 1;
        if failures <= RESTARTS_IN_WINDOW_MAX {
            current = next_actor(&admin_actor_name(node, ""), Some(&current)).await;
        }
    }
    tokio::time::timeout(WAIT, &mut ended).await.expect("the supervisor gives up after the budget is spent");
    let _ = std::fs::remove_dir_all(data_dir);
}
