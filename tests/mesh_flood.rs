//! The mesh port under a flood of half-open QUIC handshakes from one address (127.0.0.2): a member on
//! 127.0.0.1 that restarts during the flood still connects to the flooded node.
//!
//! Without stateless retry and a per-source bound, the flood holds every handshake slot of the
//! flooded node and the restarted member is refused as `busy` for as long as the flood lasts.

#[path = "support/flood.rs"]
mod flood;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use gridkeeper::credentials::Authority;
use gridkeeper::ids::NodeId;
use gridkeeper::mesh::{tls, Mesh, MeshConfig, MeshError, MeshSocket};

use flood::{Flood, FloodConfig};

/// Bound on forming the mesh and on seeing a departure, without a flood.
const FORM_WAIT: Duration = Duration::from_secs(10);
/// Bound on the restarted member reaching the flooded node while the flood goes on.
const RECONNECT_WAIT: Duration = Duration::from_secs(10);
/// Handshakes the flood has started before the member restarts, so the slots are already under siege.
const FLOOD_HEAD_START: usize = 1_500;
/// Tries, and the pause between them, to bind a restarted member's port again (2 s in all).
const REBIND_ATTEMPTS: usize = 200;
const REBIND_PAUSE: Duration = Duration::from_millis(10);

fn loopback_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// About 1,000 half-open handshakes a second, for longer than the member is given to reconnect.
pub fn flood_config(target: SocketAddr) -> FloodConfig {
    FloodConfig {
        source: [127, 0, 0, 2].into(),
        target,
        server_name: "node-3.gridkeeper".into(),
        burst: 5,
        tick: Duration::from_millis(5),
        connections_max: 40_000,
        duration_max: Duration::from_secs(30),
        linger: Duration::from_secs(3),
    }
}

/// Resolves once `done` holds, checking again after each of `mesh`'s liveness events.
async fn until(mesh: &Mesh, done: impl Fn(&Mesh) -> bool) {
    let mut events = mesh.subscribe();
    while !done(mesh) {
        if let Err(tokio::sync::broadcast::error::RecvError::Closed) = events.recv().await {
            return;
        }
    }
}

async fn wait_until(mesh: &Mesh, bound: Duration, what: &str, done: impl Fn(&Mesh) -> bool) {
    let waited = tokio::time::timeout(bound, until(mesh, &done)).await;
    assert!(waited.is_ok() && done(mesh), "{what} within {bound:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_reaches_a_node_under_a_handshake_flood() {
    let authority = Authority::generate().expect("CA");
    let members: BTreeMap<NodeId, SocketAddr> =
        (1..=3).map(|id| (NodeId(id), SocketAddr::from(([127, 0, 0, 1], loopback_port())))).collect();
    let start = |id: u64, incarnation: u64| {
        let credentials = authority.node_credentials(NodeId(id)).expect("credentials");
        let mut config = MeshConfig::new(NodeId(id), members.clone());
        config.incarnation = incarnation;
        Mesh::start(config, &credentials, MeshSocket::Udp(members[&NodeId(id)]))
    };
    let start = |id: u64, incarnation: u64| async move {
        // A restarted member rebinds its old port, which quinn's driver of the previous endpoint
        // releases only once it has run again: retry the bind, bounded.
        for _ in 0..REBIND_ATTEMPTS {
            match start(id, incarnation) {
                Err(MeshError::Bind { .. }) => tokio::time::sleep(REBIND_PAUSE).await,
                started => return started.expect("mesh starts"),
            }
        }
        panic!("node {id} could not bind its port again")
    };
    let (one, two, three) = (start(1, 1).await, start(2, 1).await, start(3, 1).await);
    wait_until(&three, FORM_WAIT, "the mesh forms", |three| three.is_alive(NodeId(1)) && three.is_alive(NodeId(2)))
        .await;

    one.shutdown().await;
    // Dropping the last handle lets quinn's driver release the socket, so node 1 can bind it again.
    drop(one);
    wait_until(&three, FORM_WAIT, "node 3 sees node 1 leave", |three| !three.is_alive(NodeId(1))).await;

    // The flood's certificate is from another CA: it never gets far enough to matter.
    let stranger = Authority::generate().expect("CA").node_credentials(NodeId(1)).expect("credentials");
    let flood = Flood::start(flood_config(members[&NodeId(3)]), tls::client_config(&stranger).expect("client"))
        .expect("the flood binds 127.0.0.2");
    flood.wait_started(FLOOD_HEAD_START).await;

    let one = start(1, 2).await;
    let reached = tokio::time::timeout(RECONNECT_WAIT, async {
        until(&one, |one| one.is_alive(NodeId(3))).await;
        until(&three, |three| three.is_alive(NodeId(1))).await;
    })
    .await;
    let still_flooding = flood.started() < flood_config(members[&NodeId(3)]).connections_max;
    let started = flood.stop().await;
    assert!(
        reached.is_ok(),
        "the restarted node 1 did not reach node 3 within {RECONNECT_WAIT:?} while {started} half-open \
         handshakes came from 127.0.0.2"
    );
    assert!(still_flooding, "the flood was still running when node 1 connected");
    for mesh in [&one, &two, &three] {
        mesh.shutdown().await;
    }
}
