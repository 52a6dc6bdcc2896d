//! Hostile clients against a real node's admin API: a slowloris header, idle keep-alive connections,
//! more connections than one address may hold, more watch streams than one address may hold, and
//! foreign `Host:` names. Each is refused or closed, counted, and does not stop other clients; the
//! watches of closed streams are given back. The HTTP layer is driven in plain HTTP (`--admin-plaintext`,
//! loopback), with the legacy admin token; a stalled or plaintext TLS handshake is checked on HTTPS.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use gridkeeper::limits::{ADMIN_CONNECTIONS_PER_CLIENT_MAX, ADMIN_WATCHES_PER_CLIENT_MAX};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const OTHER_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

async fn connect_from(source: Ipv4Addr, admin: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((IpAddr::V4(source), 0))).expect("bind the client address");
    socket.connect(admin).await.expect("connect")
}

/// Reads until the server closes the connection (EOF or reset), for at most `limit`. Returns what was
/// read, and whether the connection was closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut received = Vec::new();
    let outcome = tokio::time::timeout(limit, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => received.extend_from_slice(&buffer[..read]),
            }
        }
    })
    .await;
    (received, outcome.is_ok())
}

/// Reads a response head (up to the blank line), for at most [`WAIT_MAX`].
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let read = tokio::time::timeout(WAIT_MAX, async {
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                break;
            }
            head.push(byte[0]);
        }
    })
    .await;
    assert!(read.is_ok(), "no response head within {WAIT_MAX:?}");
    String::from_utf8_lossy(&head).into_owned()
}

/// The node's operator credential (its legacy admin token), as a request header line.
fn auth(spec: &ClusterSpec) -> String {
    let token = gridkeeper::credentials::load_admin_token(&spec.certs()).expect("token");
    format!("Authorization: Bearer {token}")
}

/// Sends one raw request from `source` with `Connection: close` and `auth` and returns the status and
/// body.
async fn request(source: Ipv4Addr, admin: SocketAddr, auth: &str, head: &str, body: &str) -> (u16, String) {
    let mut stream = connect_from(source, admin).await;
    let raw = format!("{head}\r\n{auth}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    stream.write_all(raw.as_bytes()).await.expect("send");
    let (response, closed) = read_until_closed(&mut stream, WAIT_MAX).await;
    assert!(closed, "the response to {head:?} never ended");
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.get(9..12).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    (status, body)
}

fn metrics(runtime: &tokio::runtime::Runtime, admin: SocketAddr, auth: &str) -> String {
    let (status, body) =
        runtime.block_on(request(OTHER_CLIENT, admin, auth, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1", ""));
    assert_eq!(status, 200, "metrics answer");
    body
}

fn refusals(metrics: &str, reason: &str) -> f64 {
    metric_sum(metrics, &format!("gridkeeper_admin_refusals_total{{reason=\"{reason}\"}}"))
}

fn start_node(name: &str, extra: &[&str]) -> (ClusterSpec, NodeProcess) {
    let spec = ClusterSpec::new(name, 1);
    let node = spec.start_with_args(1, &spec.certs(), &[extra, &["--admin-plaintext"]].concat());
    wait_for(WAIT_MAX, || status(spec.admin(1)).and_then(|view| view.leader)).expect("the node leads");
    (spec, node)
}

#[test]
fn slow_idle_and_crowding_clients_are_closed_and_other_clients_still_served() {
    let (spec, _node) = start_node(
        "adminconns",
        &["--admin-header-timeout-ms", "5000", "--admin-idle-timeout-ms", "1000", "--admin-host", "gk.test"],
    );
    let admin = spec.admin(1);
    let auth = auth(&spec);
    let runtime = runtime();

    // Slowloris: a head that never ends is closed (within the header timeout; the wait only bounds it).
    runtime.block_on(async {
        let mut slow = connect_from(CLIENT, admin).await;
        slow.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.expect("send a partial head");
        let (_, closed) = read_until_closed(&mut slow, WAIT_MAX).await;
        assert!(closed, "a partial request head was never closed");
    });

    // An idle keep-alive connection is closed after its response.
    runtime.block_on(async {
        let mut idle = connect_from(CLIENT, admin).await;
        idle.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.expect("send");
        let (response, closed) = read_until_closed(&mut idle, WAIT_MAX).await;
        assert!(String::from_utf8_lossy(&response).starts_with("HTTP/1.1 200"), "served first");
        assert!(closed, "an idle kept-alive connection was never closed");
    });

    // One address holding its limit of connections does not stop another address.
    let extra = 8;
    let held = runtime.block_on(async {
        let mut held = Vec::new();
        for _ in 0..ADMIN_CONNECTIONS_PER_CLIENT_MAX {
            held.push(connect_from(CLIENT, admin).await);
        }
        for _ in 0..extra {
            let mut refused = connect_from(CLIENT, admin).await;
            let (response, closed) = read_until_closed(&mut refused, WAIT_MAX).await;
            let response = String::from_utf8_lossy(&response);
            assert!(closed && (response.is_empty() || response.starts_with("HTTP/1.1 503")), "{response:?}");
        }
        let (status, _) = request(OTHER_CLIENT, admin, &auth, "GET /status HTTP/1.1\r\nHost: 127.0.0.1", "").await;
        assert_eq!(status, 200, "another address is served while one holds its limit");
        held
    });
    let counted = metrics(&runtime, admin, &auth);
    assert!(refusals(&counted, "per_client") >= extra as f64, "per-client refusals are counted: {counted}");
    assert!(refusals(&counted, "header_timeout") >= 1.0, "the slowloris is counted");
    assert!(refusals(&counted, "idle") >= 1.0, "the idle connection is counted");
    drop(held);

    // Host names: IP literals, localhost and --admin-host names are served; others get 421.
    runtime.block_on(async {
        for (host, expected) in [
            ("Host: evil.example", 421),
            ("Host: 127.0.0.1.evil.example:80", 421),
            ("Host: localhost:9", 200),
            ("Host: GK.test:80", 200),
            ("Host: [::1]:1", 200),
        ] {
            let (status, body) =
                request(OTHER_CLIENT, admin, &auth, &format!("GET /status HTTP/1.1\r\n{host}"), "").await;
            assert_eq!(status, expected, "{host}: {body}");
            if expected == 421 {
                assert!(body.contains("\"error\":\"misdirected\""), "{body}");
            }
        }
        let (status, _) = request(OTHER_CLIENT, admin, &auth, "GET /status HTTP/1.0", "").await;
        assert_eq!(status, 200, "a request without Host is served");
    });
    assert!(refusals(&metrics(&runtime, admin, &auth), "host") >= 2.0, "foreign hosts are counted");
}

/// Opens a persistent watch stream on `/` from `source` and returns it with its response head.
async fn open_watch(source: Ipv4Addr, admin: SocketAddr, auth: &str) -> (TcpStream, String) {
    let mut stream = connect_from(source, admin).await;
    let raw =
        format!("GET /registry/watch?path=/&kind=persistent_recursive HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n\r\n");
    stream.write_all(raw.as_bytes()).await.expect("send");
    let head = read_head(&mut stream).await;
    (stream, head)
}

fn watches(runtime: &tokio::runtime::Runtime, admin: SocketAddr, auth: &str) -> f64 {
    metric_sum(&metrics(runtime, admin, auth), "gridkeeper_registry_watches ")
}

#[test]
fn watch_streams_are_bounded_per_client_outlive_the_idle_timeout_and_are_given_back() {
    let (spec, _node) = start_node("adminwatch", &["--admin-idle-timeout-ms", "1000"]);
    let admin = spec.admin(1);
    let auth = auth(&spec);
    let runtime = runtime();
    let baseline = watches(&runtime, admin, &auth);

    let (mut streams, refused) = runtime.block_on(async {
        let mut streams = Vec::new();
        for _ in 0..ADMIN_WATCHES_PER_CLIENT_MAX {
            let (stream, head) = open_watch(CLIENT, admin, &auth).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            streams.push(stream);
        }
        let (mut refused, head) = open_watch(CLIENT, admin, &auth).await;
        let (body, _) = read_until_closed(&mut refused, WAIT_MAX).await;
        let (other, other_head) = open_watch(OTHER_CLIENT, admin, &auth).await;
        assert!(other_head.starts_with("HTTP/1.1 200"), "another address may watch: {other_head}");
        streams.push(other);
        (streams, format!("{head}{}", String::from_utf8_lossy(&body)))
    });
    assert!(refused.starts_with("HTTP/1.1 429"), "one watch past the per-client limit: {refused}");
    assert!(refused.contains("too many watches"), "{refused}");
    let opened = streams.len() as f64;
    wait_for(WAIT_MAX, || (watches(&runtime, admin, &auth) == baseline + opened).then_some(()))
        .expect("every stream's watch is registered");
    assert!(refusals(&metrics(&runtime, admin, &auth), "watches") >= 1.0, "the refusal is counted");

    runtime.block_on(async {
        // A connection opened after every stream is closed for idleness: the streams have been
        // open for longer than the idle timeout, and must still deliver.
        let mut idle = connect_from(OTHER_CLIENT, admin).await;
        idle.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.expect("send");
        let (_, closed) = read_until_closed(&mut idle, WAIT_MAX).await;
        assert!(closed, "the idle connection is closed");
        let body = r#"{"path": "/after-idle", "data": "x"}"#;
        let head = "POST /registry/create HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json";
        let (status, answer) = request(OTHER_CLIENT, admin, &auth, head, body).await;
        assert_eq!(status, 200, "{answer}");
        let last = streams.len() - 1;
        for index in [0, last] {
            let stream = &mut streams[index];
            let mut event = Vec::new();
            let read = tokio::time::timeout(WAIT_MAX, async {
                let mut buffer = [0u8; 1024];
                while !String::from_utf8_lossy(&event).contains("/after-idle") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => event.extend_from_slice(&buffer[..read]),
                    }
                }
            })
            .await;
            assert!(read.is_ok(), "no event");
            assert!(String::from_utf8_lossy(&event).contains("/after-idle"), "the stream was cut: {event:?}");
        }
    });

    drop(streams);
    wait_for(WAIT_MAX, || (watches(&runtime, admin, &auth) == baseline).then_some(())).unwrap_or_else(|| {
        panic!("watches of closed streams are never given back: {}", watches(&runtime, admin, &auth))
    });
    let (stream, head) = runtime.block_on(open_watch(CLIENT, admin, &auth));
    assert!(head.starts_with("HTTP/1.1 200"), "the client's watch streams were given back: {head}");
    drop(stream);
}

#[test]
fn a_stalled_or_plaintext_tls_handshake_is_closed_and_counted() {
    let spec = ClusterSpec::new("admintls", 1);
    let _node = spec.start_with_args(1, &spec.certs(), &["--admin-header-timeout-ms", "1000"]);
    let admin = spec.admin(1);
    wait_for(WAIT_MAX, || status(admin).and_then(|view| view.leader)).expect("the node leads over HTTPS");
    let runtime = runtime();
    let counted = |reason: &str| {
        let text = admin_get(admin, "/metrics").expect("metrics over HTTPS");
        refusals(&text, reason)
    };
    let (stalls_before, handshakes_before) = (counted("header_timeout"), counted("tls_handshake"));
    runtime.block_on(async {
        // A client that connects and never starts (or never finishes) its handshake.
        let mut silent = connect_from(CLIENT, admin).await;
        let (_, closed) = read_until_closed(&mut silent, WAIT_MAX).await;
        assert!(closed, "a connection with no handshake was never closed");
        let mut partial = connect_from(CLIENT, admin).await;
        partial.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.expect("a partial ClientHello");
        let (_, closed) = read_until_closed(&mut partial, WAIT_MAX).await;
        assert!(closed, "a stalled handshake was never closed");
        // Plain HTTP to the HTTPS port: the handshake fails at once, nothing is served.
        let mut plain = connect_from(CLIENT, admin).await;
        plain.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.expect("send");
        let (response, closed) = read_until_closed(&mut plain, WAIT_MAX).await;
        assert!(closed && !String::from_utf8_lossy(&response).contains("leader"), "plain HTTP is not served");
    });
    wait_for(WAIT_MAX, || (counted("header_timeout") >= stalls_before + 2.0).then_some(())).expect("stalls counted");
    wait_for(WAIT_MAX, || (counted("tls_handshake") > handshakes_before).then_some(()))
        .expect("the failed handshake is counted");
}
