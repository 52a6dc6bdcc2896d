//! The actor service of a node: routes a call to the actor's host and answers it. The admin API, the
//! CLI (through the admin API) and [`ActorRef`](super::ActorRef) on a member all call through here.
//!
//! Routing, per call: the cached location of the actor, else its ownership record (this node's state),
//! else placement: the rendezvous hash of the actor over the registered members that advertise its kind
//! and that the mesh takes for alive. A host that does not own the actor answers `misdirected`, naming
//! the owner it knows: the caller goes there, or reads the record again (linearizably from the second
//! refusal on) and retries, a bounded number of times within the call's deadline. A call that was sent
//! and got no answer is `outcome unknown` and never sent again on the caller's behalf; one that could
//! not be sent (its host is down) is routed again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::host::{ActorHost, Answer, Call, HostConfig, Refusal};
use super::model::ActorKinds;
use super::transport::{self, Transport};
use crate::api::actors::{check_idempotency_key, ActorView};
use crate::api::{ApiError, ErrorCode};
use crate::clock::monotonic;
use crate::consensus::Coordinator;
use crate::grid::actors::ActorId;
use crate::grid::task::Encoding;
use crate::grid::{GridCommand, GridEffects, Placement};
use crate::ids::NodeId;
use crate::limits::{
    ACTORS_LIST_MAX, ACTOR_CALL_TIMEOUT_MS_DEFAULT, ACTOR_CALL_TIMEOUT_MS_MAX, ACTOR_FORGET_BATCH_MAX,
    ACTOR_MESSAGE_BYTES_MAX,
};
use crate::registry::STATE_VERSION_ACTOR_FORGET;
use crate::service::hub::{ActorListener, GridHub};
use crate::state::ReplicatedState;

/// Routing rounds one call makes at most (each after a `misdirected` answer or an unreachable host).
pub const CALL_ROUTES_MAX: u32 = 32;

/// Actor locations a node caches; past it the cache starts afresh (a miss only costs a local read).
pub const ACTOR_LOCATIONS_MAX: usize = 100_000;

/// How often a node looks at its drain flag and at the cluster singletons nobody hosts.
const UPKEEP_EVERY: Duration = Duration::from_millis(100);

/// The first wait before routing again; it doubles up to [`ROUTE_WAIT_MAX`].
const ROUTE_WAIT_MIN: Duration = Duration::from_millis(5);
const ROUTE_WAIT_MAX: Duration = Duration::from_millis(100);

/// How a call is made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// Makes a retry safe: a durable actor answers a repeat with the reply it recorded.
    pub idempotency_key: Option<String>,
    /// How long to wait for the answer (0: `ACTOR_CALL_TIMEOUT_MS_DEFAULT`).
    pub timeout_ms: u64,
    /// Answered once the message is queued on its host, with an empty reply.
    pub tell: bool,
}

/// A call's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallAnswer {
    /// The reply, in the call's encoding (empty for a tell).
    pub reply: Vec<u8>,
    /// The node whose activation answered.
    pub node: NodeId,
}

struct Inner {
    coordinator: Coordinator,
    host: ActorHost,
    transport: Transport,
    locations: Mutex<HashMap<ActorId, NodeId>>,
    serving: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The mesh's bulk handler, kept here: the mesh holds it weakly.
    _bulk: crate::mesh::InboundHandler,
}

/// A node's actor service. Cheap to clone.
#[derive(Clone)]
pub struct ActorService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ActorService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorService").field("node", &self.inner.host.node()).finish_non_exhaustive()
    }
}

impl ActorListener for Inner {
    fn on_applied(&self, effects: &GridEffects, state: &ReplicatedState) {
        self.host.on_applied(effects, state);
    }

    fn on_reset(&self, state: &ReplicatedState) {
        self.host.on_reset(state);
    }

    fn on_lease(&self, sent_at: Option<crate::clock::Instant>) {
        self.host.on_lease(sent_at);
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ActorService {
    /// The service of `coordinator`'s node, if it hosts actors (every member started by a node does).
    pub fn of(coordinator: &Coordinator) -> Option<ActorService> {
        let listener = GridHub::of(coordinator)?.actors()?;
        let inner = listener.into_any().downcast::<Inner>().ok()?;
        Some(ActorService { inner })
    }

    /// Starts hosting `kinds` on `coordinator`'s node: attaches to its grid hub, handles the mesh's
    /// bulk stream and runs the host. Stop it with [`ActorService::stop`].
    ///
    /// # Errors
    /// A message if the coordinator has no grid hub, or its mesh does not hand bulk payloads to a
    /// handler ([`crate::mesh::MeshConfig::bulk_inline`]) or has one already.
    pub fn start(coordinator: &Coordinator, kinds: ActorKinds, config: HostConfig) -> Result<ActorService, String> {
        let hub = GridHub::of(coordinator).ok_or("this coordinator runs no task grid")?;
        let host = ActorHost::new(coordinator.clone(), kinds, config);
        let transport = Transport::new(coordinator.mesh().clone());
        let bulk = transport::handler(transport.clone(), host.clone());
        coordinator.mesh().handle_bulk(&bulk)?;
        let inner = Arc::new(Inner {
            coordinator: coordinator.clone(),
            host: host.clone(),
            transport: transport.clone(),
            locations: Mutex::new(HashMap::new()),
            serving: Mutex::new(Vec::new()),
            _bulk: bulk,
        });
        hub.attach_actors(inner.clone());
        // Started after attaching: every orphaning the host did not hear was applied before.
        let running = host.start();
        let serving = tokio::spawn(transport::watch_peers(transport));
        let service = ActorService { inner };
        let upkeep = tokio::spawn(upkeep(service.clone()));
        lock(&service.inner.serving).extend([running, serving, upkeep]);
        Ok(service)
    }

    /// Stops hosting: every activation stops, the hub forgets the service.
    pub fn stop(&self) {
        if let Some(hub) = GridHub::of(&self.inner.coordinator) {
            hub.detach_actors();
        }
        self.inner.host.stop();
        for task in lock(&self.inner.serving).drain(..) {
            task.abort();
        }
    }

    /// This node's host.
    pub fn host(&self) -> &ActorHost {
        &self.inner.host
    }

    /// Calls `actor` with `message` (encoded as `encoding`; the reply comes back the same way).
    ///
    /// # Errors
    /// `bad arguments` (an invalid id, idempotency key or timeout; a message that did not decode),
    /// `too large`, `overloaded` (the actor's mailbox is full), `quota exceeded` (the host's
    /// activation bound), `actor failed` (the handler's error), `unavailable` (no node hosts the kind,
    /// once every live member has registered: until then, as while a cluster forms, the call waits
    /// within its deadline; no leader; every route refused within the deadline), `outcome unknown` (sent, and no answer
    /// came: the host died mid-call, or a commit's fate is unknown).
    pub async fn call(
        &self,
        actor: ActorId,
        message: Vec<u8>,
        encoding: Encoding,
        options: CallOptions,
    ) -> Result<CallAnswer, ApiError> {
        actor.check().map_err(ApiError::bad_arguments)?;
        if message.len() > ACTOR_MESSAGE_BYTES_MAX {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "a message of {} bytes exceeds ACTOR_MESSAGE_BYTES_MAX ({ACTOR_MESSAGE_BYTES_MAX})",
                    message.len()
                ),
            ));
        }
        if let Some(key) = &options.idempotency_key {
            check_idempotency_key(key)?;
        }
        let timeout_ms = if options.timeout_ms == 0 { ACTOR_CALL_TIMEOUT_MS_DEFAULT } else { options.timeout_ms };
        if timeout_ms > ACTOR_CALL_TIMEOUT_MS_MAX {
            return Err(ApiError::bad_arguments(format!("timeout_ms must be at most {ACTOR_CALL_TIMEOUT_MS_MAX}")));
        }
        let deadline = monotonic() + Duration::from_millis(timeout_ms);
        let call = Call { actor, message, encoding, idempotency_key: options.idempotency_key, tell: options.tell };
        let mut target = lock(&self.inner.locations).get(&call.actor).copied();
        // The node the cache named: a call it answers needs no new entry.
        let mut cached = target;
        let mut wait = ROUTE_WAIT_MIN;
        // Why the last route failed; formatted only when one does (not on every call).
        let mut last: Option<ApiError> = None;
        for round in 0..CALL_ROUTES_MAX {
            let node = match target.take() {
                Some(node) => node,
                // Bounded by the call's deadline too: a linearizable read waits for a quorum. Nothing
                // was sent yet, so running out of time here is `unavailable`, never `outcome unknown`.
                None => match tokio::time::timeout_at(deadline, self.route(&call.actor, round > 1)).await {
                    Ok(Ok(Some(node))) => node,
                    Ok(Ok(None)) => {
                        last = Some(ApiError::new(
                            ErrorCode::Unavailable,
                            format!(
                                "no live node hosts actor kind {:?} yet: a member has not registered",
                                call.actor.kind
                            ),
                        ));
                        pause(&mut wait, deadline).await;
                        continue;
                    }
                    Ok(Err(error)) => return Err(error),
                    Err(_) => break,
                },
            };
            let left = deadline.saturating_duration_since(monotonic());
            if left.is_zero() {
                break;
            }
            match self.call_on(node, &call, left).await {
                Ok(reply) => {
                    if cached != Some(node) {
                        self.remember(&call.actor, node);
                    }
                    return Ok(CallAnswer { reply, node });
                }
                Err(refusal) if refusal.code == ErrorCode::Misdirected || refusal.code == ErrorCode::Unavailable => {
                    lock(&self.inner.locations).remove(&call.actor);
                    cached = None;
                    // Straight to the owner the host named, once; else read the record again.
                    target = refusal.owner.filter(|owner| *owner != node);
                    last = Some(refusal.into_api());
                    if target.is_none() {
                        pause(&mut wait, deadline).await;
                    }
                }
                Err(refusal) => return Err(refusal.into_api()),
            }
        }
        let last = last
            .unwrap_or_else(|| ApiError::new(ErrorCode::Unavailable, format!("no host answered for {}", call.actor)));
        if last.code == ErrorCode::Misdirected {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("{}: no host took the call in time", last.message),
            ));
        }
        Err(last)
    }

    /// One attempt on `node`'s host (this node's in process).
    async fn call_on(&self, node: NodeId, call: &Call, timeout: Duration) -> Answer {
        if node != self.inner.host.node() {
            if !self.inner.transport.is_alive(node) {
                return Err(Refusal::new(ErrorCode::Unavailable, format!("node {node} is down")));
            }
            return self.inner.transport.call(node, call, timeout).await;
        }
        // In this task: an idle actor handles the call here, with no hand-off between threads.
        let submitted = self.inner.host.submit_inline(call.clone())?;
        match tokio::time::timeout(timeout, submitted.answer()).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(Refusal::new(ErrorCode::OutcomeUnknown, "the activation stopped before it answered")),
            Err(_) => {
                Err(Refusal::new(ErrorCode::OutcomeUnknown, format!("no answer within {} ms", timeout.as_millis())))
            }
        }
    }

    fn remember(&self, actor: &ActorId, node: NodeId) {
        let mut locations = lock(&self.inner.locations);
        // Known already (another call put it there meanwhile): no copy of the id and no insert.
        if locations.get(actor) == Some(&node) {
            return;
        }
        if locations.len() >= ACTOR_LOCATIONS_MAX && !locations.contains_key(actor) {
            locations.clear();
        }
        locations.insert(actor.clone(), node);
    }

    /// Where `actor` lives or should: its owner, else the placement among alive registered members
    /// advertising its kind. `None` while none does but a live member has not registered yet (a
    /// cluster starting): it may host the kind once it has. `linearizable`: read after a barrier.
    async fn route(&self, actor: &ActorId, linearizable: bool) -> Result<Option<NodeId>, ApiError> {
        let coordinator = &self.inner.coordinator;
        if linearizable {
            coordinator.sync().await?;
        }
        let me = self.inner.host.node();
        let transport = &self.inner.transport;
        coordinator.read_state(|state| {
            if let Some(owner) = state.actor(actor).and_then(|record| record.node) {
                return Ok(Some(owner));
            }
            let nodes = state.nodes();
            let hosts = nodes
                .iter()
                .filter(|(_, record)| record.actor_kinds.as_ref().is_some_and(|kinds| kinds.contains(&actor.kind)))
                .map(|(node, _)| *node)
                .filter(|node| !state.grid.draining().contains(node))
                .filter(|&node| node == me || transport.is_alive(node));
            if let Some(node) = Placement::rendezvous(&actor.to_string(), hosts) {
                return Ok(Some(node));
            }
            // A node that knows no membership yet is in a cluster still forming: wait too.
            let members = coordinator.membership_addrs();
            let unregistered = members.keys().any(|&member| {
                !nodes.iter().any(|(node, _)| *node == member) && (member == me || transport.is_alive(member))
            });
            if members.is_empty() || unregistered {
                return Ok(None);
            }
            Err(ApiError::new(ErrorCode::Unavailable, format!("no live node hosts actor kind {:?}", actor.kind)))
        })
    }

    /// Actors from this node's state (of `kind`, if given), in (kind, key) order: at most
    /// `ACTORS_LIST_MAX + 1` (one more than a listing shows, so it can say it was cut). Those hosted
    /// here carry the messages their activation handled.
    ///
    /// # Errors
    /// None today; the signature leaves room for a linearizable listing.
    pub async fn list(&self, kind: Option<&str>) -> Result<Vec<ActorView>, ApiError> {
        let handled = self.inner.host.handled();
        let me = self.inner.host.node();
        Ok(self.inner.coordinator.read_state(|state| {
            let records: Box<dyn Iterator<Item = _>> = match kind {
                Some(kind) => Box::new(state.actors_of_kind(kind)),
                None => Box::new(state.actors()),
            };
            records
                .take(ACTORS_LIST_MAX + 1)
                .map(|(id, record)| {
                    let mut view = ActorView::of(id, record);
                    if record.node == Some(me) {
                        view.messages = handled.get(id).copied();
                    }
                    view
                })
                .collect()
        }))
    }
}

/// Waits before routing again: `wait`, at most until `deadline`; the next wait doubles, up to
/// [`ROUTE_WAIT_MAX`].
async fn pause(wait: &mut Duration, deadline: tokio::time::Instant) {
    tokio::time::sleep((*wait).min(deadline.saturating_duration_since(monotonic()))).await;
    *wait = (*wait * 2).min(ROUTE_WAIT_MAX);
}

/// Every [`UPKEEP_EVERY`]: follows this node's drain flag (a draining host releases its activations,
/// so their next calls activate them elsewhere), and activates here every cluster singleton nobody
/// hosts whose placement is this node. Placement is the same rendezvous hash every node computes, so
/// nodes agree on it; if two views differ for a moment, the log grants one activation and refuses the
/// other. On the leader, also removes the records of volatile orphans whose handoff wait has passed
/// here ([`forget_orphans`]).
async fn upkeep(service: ActorService) {
    let me = service.inner.host.node();
    loop {
        tokio::time::sleep(UPKEEP_EVERY).await;
        forget_orphans(&service).await;
        let (draining, singletons) = service.inner.coordinator.read_state(|state| {
            let hosted = service.inner.host.kinds();
            let singletons: Vec<ActorId> =
                state.singletons_unowned().into_iter().filter(|actor| hosted.factory(&actor.kind).is_some()).collect();
            (state.grid.draining().contains(&me), singletons)
        });
        service.inner.host.set_draining(draining);
        if draining {
            continue;
        }
        for actor in singletons {
            if service.route(&actor, false).await.ok().flatten() == Some(me) {
                if let Err(refusal) = service.inner.host.ensure(&actor) {
                    tracing::debug!(node = %me, %actor, reason = %refusal.message, "a singleton is not activated here now");
                }
            }
        }
    }
}

/// On the leader: proposes `ActorForget` for the volatile orphans (at most `ACTOR_FORGET_BATCH_MAX`)
/// whose handoff wait has passed on this node. A volatile orphan has nothing left to keep, and its
/// record would otherwise hold its place under `ACTOR_RECORDS_MAX` until its key is called again. Once
/// the wait has passed on the proposer, which applied the orphaning after it was committed, the lost
/// host's lease has run out, so a node that activates the key afresh after the entry needs no wait.
async fn forget_orphans(service: &ActorService) {
    let coordinator = &service.inner.coordinator;
    if !coordinator.is_leader() || !crate::service::registry::cluster_applies(coordinator, STATE_VERSION_ACTOR_FORGET) {
        return;
    }
    let orphans: Vec<(ActorId, u64)> = coordinator.read_state(|state| {
        state.volatile_orphans().take(ACTOR_FORGET_BATCH_MAX).map(|(actor, zxid)| (actor.clone(), zxid)).collect()
    });
    if orphans.is_empty() {
        return;
    }
    let actors = service.inner.host.handed_off(orphans);
    if actors.is_empty() {
        return;
    }
    let count = actors.len();
    match crate::service::tasks::write(coordinator, GridCommand::ActorForget { actors }).await {
        Ok(_) => tracing::debug!(count, "volatile orphans forgotten"),
        Err(error) => tracing::debug!(count, %error, "forgetting volatile orphans failed; the next round tries again"),
    }
}
