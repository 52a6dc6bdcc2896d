//! The supervision tree in-process: injected child failures are restarted (and counted), a crash
//! loop past the restart budget stops the node, and a worker supervisor that ends restarts the mesh
//! actor that runs it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gridkeeper::credentials::Authority;
use gridkeeper::ids::NodeId;
use gridkeeper::limits::RESTARTS_IN_WINDOW_MAX;
use gridkeeper::mesh::DetectorConfig;
use gridkeeper::node::supervisor::{
    admin_actor_name, mesh_actor_name, start, worker_actor_name, AdminMsg, MeshMsg, SupervisorArgs,
};
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
    let body =
        gridkeeper::admin::client::get(admin, "/metrics", &gridkeeper::client::Access::plaintext()).await.ok()?;
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// A one-node tree's arguments: its id, mesh and admin addresses, and a data directory named for
/// `instance` (which also tells its actors' names apart from other tests' in this process).
fn one_node(node: NodeId, instance: &str) -> (Arc<SupervisorArgs>, NodeView, std::path::PathBuf) {
    let mesh_port = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], mesh_port));
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], admin_port));
    let zk_port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let authority = Authority::generate().expect("CA");
    let data_dir = std::env::temp_dir().join(format!("gk-supervision{instance}-{}", std::process::id()));
    let config = NodeConfig {
        id: node,
        peers: BTreeMap::from([(node, listen.into())]),
        listen,
        certs: data_dir.join("unused"),
        data_dir: data_dir.clone(),
        admin,
        detector: DetectorConfig::default(),
        registry: gridkeeper::registry::RegistryLimits::default(),
        admin_server: Default::default(),
        // The supervision tree is under test here, not the edge: plain HTTP on loopback.
        admin_plaintext: true,
        metrics_public: true,
        slots: 2,
        weight: 1,
        prefetch: 0,
        placement: gridkeeper::grid::Strategy::default(),
        join: None,
        voter: false,
        unplaceable_timeout_ms: None,
        // The ZooKeeper front end restarts with the mesh: its port must bind again each time.
        zk: gridkeeper::zk::ZkSettings { listen: Some(format!("127.0.0.1:{zk_port}")), ..Default::default() }
            .validate(node.0)
            .expect("valid"),
        task_logs: Default::default(),
        actors: Default::default(),
    };
    let view = NodeView::new(node);
    let args = Arc::new(SupervisorArgs {
        config,
        credentials: authority.node_credentials(node).expect("credentials"),
        view: view.clone(),
        prometheus: gridkeeper::admin::telemetry::install().expect("recorder"),
        edge: gridkeeper::admin::auth::EdgeSetup {
            auth: gridkeeper::admin::auth::EdgeAuth {
                metrics_public: true,
                ..gridkeeper::admin::auth::EdgeAuth::admin_token_only("test-token".into())
            },
            tls: None,
        },
        instance: instance.to_string(),
        kinds: gridkeeper::worker::builtin::kinds(),
        actors: gridkeeper::actors::builtin::kinds(),
    });
    (args, view, data_dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_children_are_restarted_within_the_budget_then_the_node_stops() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let node = NodeId(1);
    let (args, view, data_dir) = one_node(node, "");
    let (listen, admin) = (args.config.listen, args.config.admin);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_supervisor_that_stops_restarts_the_mesh_actor_with_a_new_one() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let node = NodeId(1);
    let instance = "-worker-stop";
    let (args, view, data_dir) = one_node(node, instance);
    let listen = args.config.listen;
    let (supervisor, ended) = start(args).await.expect("tree starts");
    let mesh = next_actor(&mesh_actor_name(node, instance), None).await;
    let worker = next_actor(&worker_actor_name(node, instance), None).await;
    assert_eq!(worker.try_get_supervisor().map(|cell| cell.get_id()), Some(mesh.get_id()), "the mesh actor's child");

    // The mesh actor stops its worker on purpose only when it stops itself, and unlinks it first; so a
    // worker that ends while linked has ended on its own, stopped or failed, and the node's services
    // restart with a new one rather than run on without a worker.
    // (A restart may fail while the old mesh actor's files close and be retried, so the check is on
    // the mesh actor and worker registered once things settle.)
    worker.stop(Some("injected stop".into()));
    wait_until(|| {
        let mesh_now = ractor::registry::where_is(mesh_actor_name(node, instance))?;
        let worker_now = ractor::registry::where_is(worker_actor_name(node, instance))?;
        let restarted = mesh_now.get_id() != mesh.get_id() && worker_now.get_id() != worker.get_id();
        let linked = worker_now.try_get_supervisor().map(|cell| cell.get_id()) == Some(mesh_now.get_id());
        (restarted && linked).then_some(())
    })
    .await;
    wait_until(|| view.mesh().filter(|mesh| mesh.local_addr().ok() == Some(listen))).await;

    supervisor.stop(None);
    tokio::time::timeout(WAIT, ended).await.expect("the node stops");
    let _ = std::fs::remove_dir_all(data_dir);
}
