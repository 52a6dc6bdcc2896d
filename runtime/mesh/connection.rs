//! Connection handling: dialing with backoff, accepting with identity checks, and the per-connection
//! stream readers and writers.
//!
//! Invariant: a connection carries traffic only after its peer is identified: by TLS server-name
//! verification when we dial, by certificate plus a matching `Hello` when we accept.
//!
//! Invariant: an incoming handshake holds state only once its source address is validated (QUIC's
//! stateless retry) and it holds a slot of `HandshakeSlots` (bounded overall and per source address).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::address::PeerAddr;
use super::backoff::Backoff;
use super::detector::PeerEvent;
use super::endpoint::{close_code, Inbound, PeerLink, Shared, WeakHandler};
use super::handshake::{RefusalLog, SlotRefusal};
use super::stream::{read_class, read_frame, write_message, StreamReadError};
use super::telemetry::{class_index, count_frame_error, count_handshake_refusal};
use crate::credentials::{node_id_of, node_server_name};
use crate::ids::NodeId;
use crate::limits::HANDSHAKE_REFUSAL_LOG_INTERVAL_MS;
use crate::wire::frame::FrameBuffer;
use crate::wire::message::PROTOCOL_REVISION;
use crate::wire::{Hello, Message, TrafficClass};

/// How long the higher id of a pair waits with no connection before it dials the lower itself.
const FALLBACK_DIAL_QUIET: Duration = Duration::from_millis(1_000);
/// How often that wait looks at the connection.
const FALLBACK_DIAL_CHECK: Duration = Duration::from_millis(100);
/// A dial or an incoming handshake that takes longer than this is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a name lookup before a dial may take (the dial is retried with backoff after).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Pongs waiting to be written; if the control writer falls this far behind, a pong is dropped and
/// the peer's detector simply hears the next one.
const PONGS_QUEUED_MAX: usize = 16;

impl Shared {
    fn on_heard(&self, peer: NodeId) {
        let mut out = Vec::new();
        let mut detector = self.detector.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        detector.on_heard(self.clock.now(), peer, &mut out);
        // Published under the lock so that events for one peer keep their Up/Down alternation.
        self.publish(out);
    }

    fn on_departed(&self, peer: NodeId) {
        let mut out = Vec::new();
        let mut detector = self.detector.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        detector.on_departed(peer, &mut out);
        self.publish(out);
    }

    /// Publishes detector events; callers hold the detector lock.
    pub(super) fn publish(&self, events: Vec<PeerEvent>) {
        for event in events {
            let peer = event.peer();
            let Some(link) = self.link(peer) else { continue };
            match event {
                PeerEvent::Up(_) => {
                    link.telemetry.up.set(1.0);
                    info!(node = %self.config.node, %peer, "peer up");
                }
                PeerEvent::Down(_) => {
                    link.telemetry.up.set(0.0);
                    info!(node = %self.config.node, %peer, "peer down");
                    // A silent connection is useless; closing it lets the dialer start afresh.
                    self.close_connection(peer, close_code::SILENT, b"silent");
                }
            }
            let _ = self.events.send(event);
        }
    }

    /// Closes the current connection to `peer`, if any.
    pub(super) fn close_connection(&self, peer: NodeId, code: u32, reason: &[u8]) {
        if let Some((_, connection)) = self.connections().get(&peer) {
            connection.close(code.into(), reason);
        }
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<NodeId, (u64, quinn::Connection)>> {
        self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes `connection` the current one for `peer`, closing any older one.
    fn register(&self, peer: NodeId, connection: &quinn::Connection) -> u64 {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        if let Some((_, old)) = self.connections().insert(peer, (generation, connection.clone())) {
            old.close(close_code::REPLACED.into(), b"replaced");
        }
        generation
    }

    fn unregister(&self, peer: NodeId, generation: u64) {
        let mut connections = self.connections();
        if connections.get(&peer).is_some_and(|(current, _)| *current == generation) {
            connections.remove(&peer);
        }
    }
}

/// Redials `peer` forever, with backoff after failures, running each connection until it ends.
pub(super) async fn dial_loop(shared: Arc<Shared>, peer: NodeId) {
    let seed = shared.config.node.0 ^ peer.0.rotate_left(32) ^ shared.config.incarnation;
    let mut jitter = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut backoff = Backoff::default();
    let fallback = peer < shared.config.node;
    loop {
        if fallback {
            // The higher id of a pair: wait until the pair has had no connection for a while.
            let mut quiet = Duration::ZERO;
            while quiet < FALLBACK_DIAL_QUIET {
                tokio::time::sleep(FALLBACK_DIAL_CHECK).await;
                quiet = if shared.is_connected(peer) { Duration::ZERO } else { quiet + FALLBACK_DIAL_CHECK };
            }
        }
        match dial(&shared, peer).await {
            Ok(connection) => {
                backoff.on_success();
                run_connection(shared.clone(), peer, connection, None).await;
            }
            Err(reason) => debug!(node = %shared.config.node, %peer, %reason, "dial failed"),
        }
        let wait = backoff.on_failure(jitter.random::<f64>());
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

/// The address to dial for `target`: an IP address as it is; a name resolved now (so a peer that
/// came back at a new address is found), preferring an address of the endpoint's own family.
async fn resolve(shared: &Shared, target: &PeerAddr) -> Result<SocketAddr, String> {
    if let Some(addr) = target.socket_addr() {
        return Ok(addr);
    }
    let name = target.name().unwrap_or_default();
    let found: Vec<SocketAddr> = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, target.port)))
        .await
        .map_err(|_| format!("resolving {target} timed out"))?
        .map_err(|error| format!("resolving {target}: {error}"))?
        .collect();
    let ipv6 = shared.endpoint.local_addr().is_ok_and(|local| local.is_ipv6());
    found
        .iter()
        .find(|addr| addr.is_ipv6() == ipv6)
        .or(found.first())
        .copied()
        .ok_or_else(|| format!("{target} resolves to no address"))
}

async fn dial(shared: &Shared, peer: NodeId) -> Result<quinn::Connection, String> {
    let target = shared.link(peer).ok_or_else(|| format!("node {peer} is no longer a member"))?.addr();
    let addr = resolve(shared, &target).await?;
    let connecting = shared
        .endpoint
        .connect_with(shared.client_config.clone(), addr, &node_server_name(peer))
        .map_err(|error| error.to_string())?;
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await {
        Err(_) => Err("handshake timed out".into()),
        Ok(Err(quinn::ConnectionError::TransportError(error))) => {
            shared.on_refusal("tls", addr, &format!("TLS handshake with node {peer} failed: {error}"));
            Err(error.to_string())
        }
        Ok(Err(error)) => Err(error.to_string()),
        Ok(Ok(connection)) => Ok(connection),
    }
}

/// Accepts incoming connections: unvalidated sources get a stateless retry, the rest a bounded slot.
pub(super) async fn accept_loop(shared: Arc<Shared>) {
    let mut handlers = JoinSet::new();
    loop {
        let summary_due = shared.refusal_log().next_deadline();
        let incoming = tokio::select! {
            incoming = shared.endpoint.accept() => incoming,
            () = sleep_until_due(&shared, summary_due) => {
                shared.log_refusal_summary();
                continue;
            }
        };
        let Some(incoming) = incoming else { return };
        while handlers.try_join_next().is_some() {}
        admit(&shared, incoming, &mut handlers);
    }
}

/// Sleeps until the open refusal interval ends or, with none open, for one interval: a handler may
/// open one meanwhile, and its summary must not wait for the next connection to arrive.
async fn sleep_until_due(shared: &Shared, due: Option<crate::ids::Millis>) {
    let at = due.unwrap_or_else(|| shared.clock.now().plus(HANDSHAKE_REFUSAL_LOG_INTERVAL_MS));
    tokio::time::sleep_until(shared.clock.instant_at(at)).await;
}

/// Decides what an incoming connection costs: a Retry packet, a refusal, or a slot and a handler.
fn admit(shared: &Arc<Shared>, incoming: quinn::Incoming, handlers: &mut JoinSet<()>) {
    let remote = incoming.remote_address();
    if !incoming.remote_address_validated() {
        // Stateless retry: an unproven source costs one Retry packet and no state. Only a sender that
        // receives at its address comes back with the token, so spoofed or fire-and-forget Initials
        // never reach a slot. quinn guarantees an unvalidated incoming may be retried.
        if let Err(error) = incoming.retry() {
            error.into_incoming().ignore();
        }
        return;
    }
    let slot = match HandshakeSlot::take(shared, remote.ip()) {
        Ok(slot) => slot,
        Err(refusal) => {
            incoming.refuse();
            let detail = match refusal {
                SlotRefusal::Busy => "every handshake slot is taken".to_string(),
                SlotRefusal::SourceBusy => format!("{} holds its share of handshake slots", remote.ip()),
            };
            shared.on_refusal(refusal.reason(), remote, &detail);
            return;
        }
    };
    let shared = shared.clone();
    handlers.spawn(async move {
        let identified = identify(&shared, incoming).await;
        drop(slot);
        match identified {
            Ok((peer, connection, control)) => run_connection(shared, peer, connection, Some(control)).await,
            Err(Refusal { reason, detail }) => shared.on_refusal(reason, remote, &detail),
        }
    });
}

/// A slot of [`super::handshake::HandshakeSlots`], given back when dropped.
struct HandshakeSlot {
    shared: Arc<Shared>,
    source: IpAddr,
}

impl HandshakeSlot {
    fn take(shared: &Arc<Shared>, source: IpAddr) -> Result<HandshakeSlot, SlotRefusal> {
        shared.handshake_slots().try_admit(source)?;
        Ok(HandshakeSlot { shared: shared.clone(), source })
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.shared.handshake_slots().release(self.source);
    }
}

impl Shared {
    fn handshake_slots(&self) -> std::sync::MutexGuard<'_, super::handshake::HandshakeSlots> {
        self.handshakes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn refusal_log(&self) -> std::sync::MutexGuard<'_, RefusalLog> {
        self.refusals.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a refused handshake and logs it: in full if it is the first after a quiet interval,
    /// otherwise in the interval's summary.
    fn on_refusal(&self, reason: &'static str, remote: SocketAddr, detail: &str) {
        count_handshake_refusal(reason);
        let now = self.clock.now();
        let mut log = self.refusal_log();
        if let Some(summary) = log.poll_summary(now) {
            warn!(node = %self.config.node, "{summary}");
        }
        if log.on_refusal(now, reason) {
            warn!(node = %self.config.node, %remote, reason, %detail, "refused peer (more refusals are summarized)");
        }
    }

    fn log_refusal_summary(&self) {
        let summary = self.refusal_log().poll_summary(self.clock.now());
        if let Some(summary) = summary {
            warn!(node = %self.config.node, "{summary}");
        }
    }
}

struct Refusal {
    reason: &'static str,
    detail: String,
}

fn refuse(connection: &quinn::Connection, reason: &'static str, detail: String) -> Refusal {
    connection.close(close_code::REFUSED.into(), detail.as_bytes());
    Refusal { reason, detail }
}

/// Completes the handshake and checks the dialer is the member its certificate and `Hello` say.
async fn identify(
    shared: &Arc<Shared>,
    incoming: quinn::Incoming,
) -> Result<(NodeId, quinn::Connection, quinn::RecvStream), Refusal> {
    let connection = match tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await {
        Err(_) => return Err(Refusal { reason: "timeout", detail: "handshake timed out".into() }),
        Ok(Err(error)) => return Err(Refusal { reason: "tls", detail: format!("TLS handshake failed: {error}") }),
        Ok(Ok(connection)) => connection,
    };
    let cert = connection
        .peer_identity()
        .and_then(|identity| identity.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok())
        .and_then(|chain| chain.first().cloned());
    let Some(cert) = cert else {
        return Err(refuse(&connection, "identity", "no client certificate".into()));
    };
    let peer = node_id_of(cert.as_ref()).map_err(|error| refuse(&connection, "identity", error.to_string()))?;
    if peer == shared.config.node {
        return Err(refuse(&connection, "identity", format!("the peer claims this node's own id {peer}")));
    }
    if shared.link(peer).is_none() {
        if let Err(detail) = shared.admit_unknown(peer, connection.remote_address()) {
            if shared.refused_read().contains(&peer) {
                // Told in so many words, so that a removed node learns it is out.
                connection.close(close_code::RETIRED.into(), detail.as_bytes());
                return Err(Refusal { reason: "removed", detail });
            }
            return Err(refuse(&connection, "not_member", detail));
        }
    }
    // The lower id dials; a higher one dials only when the pair had no connection for a while. If
    // one is up, this is the losing side of a race: the lower id's own connection stays.
    if peer > shared.config.node && shared.is_connected(peer) {
        let detail = format!("node {} already has a connection to node {peer}", shared.config.node);
        return Err(refuse(&connection, "duplicate", detail));
    }
    let hello = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_hello(&connection, shared.config.frame_bytes_max)).await;
    let (hello, control) = match hello {
        Err(_) => return Err(refuse(&connection, "timeout", "no hello in time".into())),
        Ok(Err(detail)) => return Err(refuse(&connection, "hello", detail)),
        Ok(Ok(found)) => found,
    };
    if hello.node != peer.0 {
        let detail = format!("certificate names node {peer} but the peer claims to be node {}", hello.node);
        return Err(refuse(&connection, "identity_mismatch", detail));
    }
    if hello.protocol != PROTOCOL_REVISION {
        let detail = format!("peer speaks protocol {}, this node {PROTOCOL_REVISION}", hello.protocol);
        return Err(refuse(&connection, "protocol", detail));
    }
    Ok((peer, connection, control))
}

async fn read_hello(
    connection: &quinn::Connection,
    body_bytes_max: usize,
) -> Result<(Hello, quinn::RecvStream), String> {
    let mut recv = connection.accept_uni().await.map_err(|error| error.to_string())?;
    let class = read_class(&mut recv).await.map_err(|error| error.to_string())?;
    if class != TrafficClass::Control {
        return Err(format!("first stream is {class:?}, expected Control"));
    }
    let mut buffer = FrameBuffer::new();
    match read_frame(&mut recv, &mut buffer, body_bytes_max).await {
        Ok((Message::Hello(hello), _)) => Ok((hello, recv)),
        Ok((other, _)) => Err(format!("expected Hello, got {other:?}")),
        Err(error) => Err(error.to_string()),
    }
}

/// Runs an identified connection until it closes: writers for our three streams, readers for the
/// peer's. `control` is the peer's control stream when we accepted (already read up to its Hello).
async fn run_connection(
    shared: Arc<Shared>,
    peer: NodeId,
    connection: quinn::Connection,
    control: Option<quinn::RecvStream>,
) {
    let Some(link) = shared.link(peer) else {
        connection.close(close_code::REMOVED.into(), b"not a member");
        return;
    };
    let generation = shared.register(peer, &connection);
    if shared.link(peer).is_none() {
        // Removed between the lookup and the registration: remove_peer may have missed it.
        connection.close(close_code::REMOVED.into(), b"not a member");
    }
    link.telemetry.connections.increment(1);
    debug!(node = %shared.config.node, %peer, remote = %connection.remote_address(), "connected");
    let mut tasks = JoinSet::new();
    let (pong_sender, pong_receiver) = mpsc::channel(PONGS_QUEUED_MAX);
    let mut pong_receiver = Some(pong_receiver);
    let dialed = control.is_none();
    // Opened here, in class order, before any writer runs: stream ids follow the order of the
    // opens, the peer accepts streams in id order, and an acceptor refuses a connection whose first
    // stream is not Control. Writers opening their own streams raced for the lowest id.
    let mut sends = Vec::with_capacity(TrafficClass::ALL.len());
    for _ in TrafficClass::ALL {
        match connection.open_uni().await {
            Ok(send) => sends.push(send),
            Err(error) => {
                debug!(node = %shared.config.node, %peer, %error, "connection ended before its streams opened");
                shared.unregister(peer, generation);
                on_closed(&shared, peer, &error);
                return;
            }
        }
    }
    for (class, send) in TrafficClass::ALL.into_iter().zip(sends) {
        let pongs = if class == TrafficClass::Control { pong_receiver.take() } else { None };
        tasks.spawn(write_stream(shared.clone(), link.clone(), send, class, dialed, pongs));
    }
    let expected_streams = if let Some(control) = control {
        tasks.spawn(read_stream(
            shared.clone(),
            peer,
            link.clone(),
            TrafficClass::Control,
            control,
            pong_sender.clone(),
        ));
        TrafficClass::ALL.len() - 1
    } else {
        TrafficClass::ALL.len()
    };
    tasks.spawn(accept_streams(shared.clone(), peer, link.clone(), connection.clone(), expected_streams, pong_sender));
    let reason = tokio::select! {
        reason = connection.closed() => reason,
        Some(Ok(Err(error))) = tasks.join_next() => match connection.close_reason() {
            // The stream failed because the connection ended: its reason is the news.
            Some(reason) => reason,
            None => {
                let code = match &error {
                    StreamReadError::Frame(_) => close_code::FRAME_ERROR,
                    _ => close_code::PROTOCOL,
                };
                if let Some(kind) = error.error_kind() {
                    count_frame_error(Some(peer), kind);
                }
                warn!(node = %shared.config.node, %peer, %error, "closing connection");
                connection.close(code.into(), error.to_string().as_bytes());
                connection.closed().await
            }
        }
    };
    tasks.shutdown().await;
    shared.unregister(peer, generation);
    debug!(node = %shared.config.node, %peer, %reason, "connection ended");
    on_closed(&shared, peer, &reason);
}

/// Acts on why the peer ended a connection, whichever side dialed it.
fn on_closed(shared: &Shared, peer: NodeId, reason: &quinn::ConnectionError) {
    if let quinn::ConnectionError::ApplicationClosed(close) = reason {
        if close.error_code == close_code::GOODBYE.into() {
            shared.on_departed(peer);
        } else if close.error_code == close_code::RETIRED.into() {
            shared.on_told_retired(peer);
        }
    }
}

async fn accept_streams(
    shared: Arc<Shared>,
    peer: NodeId,
    link: Arc<PeerLink>,
    connection: quinn::Connection,
    expected: usize,
    pongs: mpsc::Sender<Message>,
) -> Result<(), StreamReadError> {
    let mut readers = JoinSet::new();
    for _ in 0..expected {
        let mut recv = connection.accept_uni().await.map_err(|error| StreamReadError::Transport(error.to_string()))?;
        let class = read_class(&mut recv).await?;
        readers.spawn(read_stream(shared.clone(), peer, link.clone(), class, recv, pongs.clone()));
    }
    // Any reader's end ends the connection: a healthy peer never finishes a stream.
    match readers.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(join_error)) => Err(StreamReadError::Transport(join_error.to_string())),
        None => Ok(()),
    }
}

async fn read_stream(
    shared: Arc<Shared>,
    peer: NodeId,
    link: Arc<PeerLink>,
    class: TrafficClass,
    mut recv: quinn::RecvStream,
    pongs: mpsc::Sender<Message>,
) -> Result<(), StreamReadError> {
    let counters = link.telemetry.class(class).clone();
    let inbound = shared.inbound[class_index(class)].clone();
    let inline = class == TrafficClass::Bulk && shared.config.bulk_inline;
    let mut handler: Option<WeakHandler> = None;
    let mut buffer = FrameBuffer::new();
    loop {
        let (message, bytes) = read_frame(&mut recv, &mut buffer, shared.config.frame_bytes_max).await?;
        counters.frames_received.increment(1);
        counters.bytes_received.increment(bytes as u64);
        if class == TrafficClass::Control {
            shared.on_heard(peer);
        }
        match message {
            Message::Ping { seq, sent_us } if class == TrafficClass::Control => {
                let _ = pongs.try_send(Message::Pong { seq, sent_us });
            }
            Message::Pong { sent_us, .. } if class == TrafficClass::Control => {
                let rtt_us = shared.clock.micros().saturating_sub(sent_us);
                link.telemetry.heartbeat_rtt.record(rtt_us as f64 / 1e6);
            }
            Message::Payload(payload) if inline => {
                if handler.is_none() {
                    // Waits (reading nothing more) until the handler is given.
                    let mut given = shared.bulk_handler.subscribe();
                    let Ok(slot) = given.wait_for(Option::is_some).await else { return Ok(()) };
                    handler = slot.clone();
                }
                // Its owner dropped it: nobody takes bulk payloads any more.
                let Some(handler) = handler.as_ref().and_then(std::sync::Weak::upgrade) else { return Ok(()) };
                handler(Inbound { from: peer, payload });
            }
            Message::Payload(payload) => {
                if inbound.send(Inbound { from: peer, payload }).await.is_err() {
                    return Ok(());
                }
            }
            other => {
                let detail = format!("unexpected {other:?} on the {} stream", class.label());
                return Err(StreamReadError::Transport(detail));
            }
        }
    }
}

async fn write_stream(
    shared: Arc<Shared>,
    link: Arc<PeerLink>,
    mut send: quinn::SendStream,
    class: TrafficClass,
    dialed: bool,
    mut pongs: Option<mpsc::Receiver<Message>>,
) -> Result<(), StreamReadError> {
    let transport = |error: String| StreamReadError::Transport(error);
    send.set_priority(class.send_priority()).map_err(|error| transport(error.to_string()))?;
    send.write_all(&[class.tag()]).await.map_err(|error| transport(error.to_string()))?;
    let max = shared.config.frame_bytes_max;
    let counters = link.telemetry.class(class).clone();
    if dialed && class == TrafficClass::Control {
        let hello =
            Hello { node: shared.config.node.0, incarnation: shared.config.incarnation, protocol: PROTOCOL_REVISION };
        let bytes = write_message(&mut send, &Message::Hello(hello), max).await?;
        counters.frames_sent.increment(1);
        counters.bytes_sent.increment(bytes as u64);
    }
    let queue = link.queues[class_index(class)].receiver.clone();
    let mut queue = queue.lock().await;
    let mut heartbeat = tokio::time::interval(Duration::from_millis(shared.config.detector.heartbeat_interval_ms));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let control = class == TrafficClass::Control;
    let mut seq = 0u64;
    loop {
        let bytes = tokio::select! {
            biased;
            _ = heartbeat.tick(), if control => {
                seq += 1;
                write_message(&mut send, &Message::Ping { seq, sent_us: shared.clock.micros() }, max).await?
            }
            Some(pong) = recv_optional(&mut pongs), if control => write_message(&mut send, &pong, max).await?,
            frame = queue.recv() => {
                let Some(frame) = frame else { return Ok(()) };
                send.write_all(&frame).await.map_err(|error| transport(error.to_string()))?;
                frame.len()
            }
        };
        counters.frames_sent.increment(1);
        counters.bytes_sent.increment(bytes as u64);
    }
}

async fn recv_optional(receiver: &mut Option<mpsc::Receiver<Message>>) -> Option<Message> {
    match receiver {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// Ticks the detector at its next deadline (or every heartbeat interval when nobody is up).
pub(super) async fn detector_loop(shared: Arc<Shared>) {
    let interval = shared.config.detector.heartbeat_interval_ms;
    loop {
        let now = shared.clock.now();
        let next = {
            let detector = shared.detector.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            detector.next_deadline().map_or(now.plus(interval), |deadline| deadline.min(now.plus(interval)))
        };
        tokio::time::sleep_until(shared.clock.instant_at(next)).await;
        let mut out = Vec::new();
        let mut detector = shared.detector.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        detector.on_tick(shared.clock.now(), &mut out);
        shared.publish(out);
    }
}
