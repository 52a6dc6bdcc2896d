//! A hostile or broken peer against a real mesh on loopback: every bad frame or identity closes the
//! connection with the documented code, and the node keeps serving well-behaved peers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use gridkeeper::credentials::{Authority, NodeCredentials};
use gridkeeper::ids::NodeId;
use gridkeeper::mesh::endpoint::close_code;
use gridkeeper::mesh::{tls, Mesh, MeshConfig, MeshSocket};
use gridkeeper::wire::frame::FRAME_VERSION;
use gridkeeper::wire::{encode_frame, Hello, Message, TrafficClass};

const WAIT: Duration = Duration::from_secs(10);

fn loopback_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

struct Target {
    authority: Authority,
    members: BTreeMap<NodeId, SocketAddr>,
    mesh: Mesh,
}

fn start_target() -> Target {
    let authority = Authority::generate().expect("CA");
    let members: BTreeMap<NodeId, SocketAddr> =
        [1, 2].into_iter().map(|id| (NodeId(id), SocketAddr::from(([127, 0, 0, 1], loopback_port())))).collect();
    let credentials = authority.node_credentials(NodeId(2)).expect("credentials");
    let mesh =
        Mesh::start(MeshConfig::new(NodeId(2), members.clone()), &credentials, MeshSocket::Udp(members[&NodeId(2)]))
            .expect("mesh starts");
    Target { authority, members, mesh }
}

/// Connects to node 2 as whoever `credentials` say, sends `hello` (if any) then `bytes` on a new
/// control stream, and returns the application close code the mesh answered with.
async fn close_code_after(target: &Target, credentials: &NodeCredentials, hello: Option<Hello>, bytes: &[u8]) -> u64 {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client endpoint");
    endpoint.set_default_client_config(tls::client_config(credentials).expect("client config"));
    let connection = endpoint
        .connect(target.members[&NodeId(2)], "node-2.gridkeeper")
        .expect("connect")
        .await
        .expect("TLS handshake with a CA-signed certificate succeeds");
    // The mesh may refuse as soon as the handshake ends (an identity it rejects), before anything is
    // sent: failures to send are expected, the close code is what the test checks.
    if let Ok(mut send) = connection.open_uni().await {
        let mut frames = vec![TrafficClass::Control.tag()];
        if let Some(hello) = hello {
            frames.extend(encode_frame(&Message::Hello(hello), 1 << 20).expect("hello"));
        }
        frames.extend_from_slice(bytes);
        let _ = send.write_all(&frames).await;
    }
    let reason = tokio::time::timeout(WAIT, connection.closed()).await.expect("the mesh closes the connection");
    match reason {
        quinn::ConnectionError::ApplicationClosed(close) => close.error_code.into_inner(),
        other => panic!("expected an application close, got {other}"),
    }
}

fn hello(node: u64) -> Option<Hello> {
    Some(Hello { node, incarnation: 1, protocol: 1 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_and_identities_close_the_connection_with_their_codes() {
    let target = start_target();
    let node_one = target.authority.node_credentials(NodeId(1)).expect("node 1");
    let frame_error = u64::from(close_code::FRAME_ERROR);
    let refused = u64::from(close_code::REFUSED);

    let cases: Vec<(&str, Option<Hello>, Vec<u8>, u64)> = vec![
        ("unknown version", hello(1), vec![9, 1, 0, 0, 0, 0], frame_error),
        ("oversized length", hello(1), vec![FRAME_VERSION, 0xff, 0xff, 0xff, 0xff], frame_error),
        ("malformed body", hello(1), [vec![FRAME_VERSION, 8, 0, 0, 0], vec![0xee; 8]].concat(), frame_error),
        ("hello claims another node", hello(3), vec![], refused),
        ("no hello, garbage first", None, vec![FRAME_VERSION, 4, 0, 0, 0, 1, 2, 3, 4], refused),
        (
            "a second hello",
            hello(1),
            encode_frame(&Message::Hello(Hello { node: 1, incarnation: 1, protocol: 1 }), 1 << 20).expect("hello"),
            u64::from(close_code::PROTOCOL),
        ),
    ];
    for (label, hello, bytes, expected) in cases {
        let code = close_code_after(&target, &node_one, hello, &bytes).await;
        assert_eq!(code, expected, "{label}");
    }

    // The operator's certificate is CA-signed but names no node: refused.
    let operator = target.authority.issue_operator().expect("operator");
    use rustls::pki_types::pem::PemObject;
    let operator_credentials = NodeCredentials {
        node: NodeId(1),
        ca: node_one.ca.clone(),
        cert: rustls::pki_types::CertificateDer::from_pem_slice(operator.cert_pem.as_bytes()).expect("cert"),
        key: rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(operator.key_pem.as_bytes()).expect("key"),
    };
    assert_eq!(close_code_after(&target, &operator_credentials, hello(1), &[]).await, refused, "operator certificate");

    // After all that, the real node 1 joins and both sides see each other.
    let one = Mesh::start(
        MeshConfig::new(NodeId(1), target.members.clone()),
        &node_one,
        MeshSocket::Udp(target.members[&NodeId(1)]),
    )
    .expect("node 1 starts");
    let mut events = target.mesh.subscribe();
    tokio::time::timeout(WAIT, async {
        while !target.mesh.is_alive(NodeId(1)) {
            let _ = events.recv().await;
        }
    })
    .await
    .expect("the mesh still accepts a well-behaved peer");
    one.shutdown().await;
    target.mesh.shutdown().await;
}

/// Waits (bounded) until `mesh` has been told by `peer` that its id is retired.
async fn told_retired(mesh: &Mesh, peer: NodeId) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if mesh.told_retired_by().contains(&peer) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_node_is_told_so_on_connections_it_dialed_and_on_ones_it_accepted() {
    let authority = Authority::generate().expect("CA");
    let members: BTreeMap<NodeId, SocketAddr> =
        [1, 2, 3].into_iter().map(|id| (NodeId(id), SocketAddr::from(([127, 0, 0, 1], loopback_port())))).collect();
    let start = |id: u64| {
        let credentials = authority.node_credentials(NodeId(id)).expect("credentials");
        Mesh::start(MeshConfig::new(NodeId(id), members.clone()), &credentials, MeshSocket::Udp(members[&NodeId(id)]))
            .expect("mesh starts")
    };
    let only = |ids: &[u64]| -> BTreeMap<NodeId, gridkeeper::mesh::PeerAddr> {
        ids.iter().map(|&id| (NodeId(id), members[&NodeId(id)].into())).collect()
    };
    let meshes: Vec<Mesh> = [1, 2, 3].into_iter().map(start).collect();
    let (one, two, three) = (&meshes[0], &meshes[1], &meshes[2]);
    let mut events = two.subscribe();
    tokio::time::timeout(WAIT, async {
        while !(two.is_alive(NodeId(1)) && two.is_alive(NodeId(3))) {
            let _ = events.recv().await;
        }
    })
    .await
    .expect("the three connect");

    // Node 2 is retired. Node 1 dialed it: node 2 hears it on a connection it accepted.
    one.set_refused([NodeId(2)]);
    one.set_members(&only(&[1, 3])).expect("members");
    assert!(told_retired(two, NodeId(1)).await, "node 2 never heard it is retired from node 1, which dialed it");
    // Node 2 dials node 3, which refuses it from then on: node 2 hears it on a connection it dialed.
    three.set_refused([NodeId(2)]);
    three.set_members(&only(&[1, 3])).expect("members");
    assert!(told_retired(two, NodeId(3)).await, "node 2 never heard it is retired from node 3, which it dials");
    // Retirement is news only for the retired node; a membership change alone says nothing.
    assert!(one.told_retired_by().is_empty() && three.told_retired_by().is_empty());
    for mesh in &meshes {
        mesh.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_payloads_sent_before_the_inline_handler_exists_reach_it_in_order_once_it_is_given() {
    use gridkeeper::mesh::{Inbound, InboundHandler};
    use gridkeeper::wire::Payload;
    use std::sync::{Arc, Mutex};

    let authority = Authority::generate().expect("CA");
    let members: BTreeMap<NodeId, SocketAddr> =
        [1, 2].into_iter().map(|id| (NodeId(id), SocketAddr::from(([127, 0, 0, 1], loopback_port())))).collect();
    let start = |id: u64, inline: bool| {
        let credentials = authority.node_credentials(NodeId(id)).expect("credentials");
        let mut config = MeshConfig::new(NodeId(id), members.clone());
        config.bulk_inline = inline;
        Mesh::start(config, &credentials, MeshSocket::Udp(members[&NodeId(id)])).expect("mesh starts")
    };
    let (one, two) = (start(1, false), start(2, true));
    // Inline bulk has no channel; a mesh without it takes no handler.
    assert!(two.take_inbound(TrafficClass::Bulk).is_none());
    let refused: InboundHandler = Arc::new(|_| {});
    assert!(one.handle_bulk(&refused).is_err(), "a mesh whose bulk goes through its channel refuses a handler");
    tokio::time::timeout(WAIT, async {
        while !one.is_alive(NodeId(2)) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the two connect");

    const SENT: u32 = 200;
    for n in 0..SENT {
        let payload = Message::Payload(Payload { topic: 7, body: n.to_le_bytes().to_vec() });
        one.send(NodeId(2), TrafficClass::Bulk, &payload).expect("queued");
    }
    // Nothing is delivered (or lost) while no handler exists.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = seen.clone();
    let handler: InboundHandler = Arc::new(move |Inbound { from, payload }| {
        assert_eq!(from, NodeId(1));
        let n = u32::from_le_bytes(payload.body.as_slice().try_into().expect("four bytes"));
        recorder.lock().expect("seen").push(n);
    });
    two.handle_bulk(&handler).expect("the first handler is taken");
    assert!(two.handle_bulk(&handler).is_err(), "a second handler is refused");
    tokio::time::timeout(WAIT, async {
        while seen.lock().expect("seen").len() < SENT as usize {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every payload reaches the handler");
    assert_eq!(*seen.lock().expect("seen"), (0..SENT).collect::<Vec<_>>(), "delivered once each, in the order sent");
    one.shutdown().await;
    two.shutdown().await;
}
