//! The whole replicated state: the registry and the task table, applied together so that one log
//! entry changes both atomically. Deterministic: no I/O, no clock.
//!
//! The one coupling: when a node's registration `/grid/nodes/<id>` is deleted (its session expired
//! or closed, or a restarted incarnation replaced it), every attempt the node held is lost and
//! re-queued in the same apply step, and every actor it owned is orphaned in that step too. No
//! separate command can be forgotten or reordered.
//!
//! Invariant: registry commands and grid commands consume the same zxids (log indexes).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Applied, Command, Outcome, Proposal, StateExtras, StateExtras3, StateExtras4, StateExtras5};
use crate::grid::actors::{ActorId, ActorRecord, ActorTable};
use crate::grid::command::{GridCommand, GridEffects, GridOutcome};
use crate::grid::placement::{NodeLoad, Placement};
use crate::grid::settings::ClusterSettings;
use crate::grid::table::{GridError, TableLimits, TaskTable};
use crate::grid::task::{FencingToken, Strategy, TaskId, TaskSpec};
use crate::ids::NodeId;
use crate::registry::{Change, Registry, RegistryError, RegistryLimits, ZPath};

/// Where nodes register.
pub const NODES_PATH: &str = "/grid/nodes";

/// Every waiting task gains one priority level per this much waiting: a task of priority 0 overtakes
/// fresh priority-10 work after about a minute.
pub const AGING_STEP_MS: u64 = 6_000;

/// What a node advertises in its registration (`/grid/nodes/<id>`, JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Mesh address.
    pub addr: String,
    /// Attempts it runs at once.
    #[serde(default)]
    pub slots: u32,
    /// Attempts it accepts queued beyond its slots.
    #[serde(default)]
    pub prefetch: u32,
    /// Relative share under the weighted strategy.
    #[serde(default = "one")]
    pub weight: u32,
    /// Task kinds it can run.
    #[serde(default)]
    pub kinds: BTreeSet<String>,
    /// The highest state version its build applies (see `registry::STATE_VERSION`); absent (1) in
    /// the records of builds before versions. A leader raises the version only once every voter
    /// advertises it.
    #[serde(default = "one")]
    pub state_version: u32,
    /// Its admin API address (`HOST:PORT`), where other nodes fetch the task logs it keeps; absent in
    /// the records of builds before task logs. The record is JSON in the znode's data and unknown
    /// fields are ignored, so builds with and without it read each other's records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    /// The actor kinds it hosts; absent in the records of builds before actors, and of joined
    /// workers (which host none). Added the same way as `admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_kinds: Option<BTreeSet<String>>,
}

fn one() -> u32 {
    1
}

/// The registry and the task table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicatedState {
    /// The znode tree, sessions and TTLs.
    pub registry: Registry,
    /// Tasks.
    pub grid: TaskTable,
    /// The committed cluster-wide settings, `None` until the first are committed. Stored in the
    /// snapshot's [`StateExtras`], not in this type's own layout (which format-1 snapshots fix).
    #[serde(skip)]
    settings: Option<ClusterSettings>,
    /// Actors' ownership records. Stored in the snapshot's [`StateExtras5`], not in this type's own
    /// layout.
    #[serde(skip)]
    actors: ActorTable,
}

impl ReplicatedState {
    /// An empty state.
    pub fn new(registry: RegistryLimits, grid: TableLimits) -> ReplicatedState {
        ReplicatedState {
            registry: Registry::new(registry),
            grid: TaskTable::new(grid, AGING_STEP_MS),
            settings: None,
            actors: ActorTable::new(),
        }
    }

    /// The committed cluster-wide settings, if any were committed yet.
    pub fn settings(&self) -> Option<ClusterSettings> {
        self.settings
    }

    /// What a snapshot stores beside this state's own layout.
    pub fn extras(&self) -> StateExtras {
        StateExtras { settings: self.settings, session_secrets: self.registry.session_secrets().clone() }
    }

    /// What a format-3 snapshot stores beside [`Self::extras`].
    pub fn extras3(&self) -> StateExtras3 {
        let (version, acls) = self.registry.acl_records();
        StateExtras3 { version, acls }
    }

    /// What a format-4 snapshot stores beside [`Self::extras3`].
    pub fn extras4(&self) -> StateExtras4 {
        StateExtras4 { jobs: self.grid.all_job_extras().clone() }
    }

    /// Puts back what [`Self::extras4`] gave (the default for older formats), after this state was read
    /// from a snapshot.
    pub fn restore_extras4(&mut self, extras4: StateExtras4) {
        self.grid.restore_job_extras(extras4.jobs);
    }

    /// What a format-5 snapshot stores beside [`Self::extras4`].
    pub fn extras5(&self) -> StateExtras5 {
        StateExtras5 { actors: self.actors.records().clone() }
    }

    /// Puts back what [`Self::extras5`] gave (the default for older formats), after this state was read
    /// from a snapshot.
    pub fn restore_extras5(&mut self, extras5: StateExtras5) {
        self.actors = ActorTable::from_records(extras5.actors);
    }

    /// One actor's record.
    pub fn actor(&self, id: &ActorId) -> Option<&ActorRecord> {
        self.actors.get(id)
    }

    /// Every actor's record, by id.
    pub fn actors(&self) -> impl Iterator<Item = (&ActorId, &ActorRecord)> {
        self.actors.iter()
    }

    /// The records of actors of `kind`, by key.
    pub fn actors_of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a ActorId, &'a ActorRecord)> + 'a {
        self.actors.of_kind(kind)
    }

    /// Volatile orphans with the zxid that orphaned each, in id order (see `ActorTable::volatile_orphans`).
    pub fn volatile_orphans(&self) -> impl Iterator<Item = (&ActorId, u64)> {
        self.actors.volatile_orphans()
    }

    /// Singletons nobody owns (the leader places them, after the handoff wait for orphans).
    pub fn singletons_unowned(&self) -> Vec<ActorId> {
        self.actors.singletons_unowned()
    }

    /// The actor table (counts, the actors a node owns).
    pub fn actor_table(&self) -> &ActorTable {
        &self.actors
    }

    /// Puts back what [`Self::extras`] and [`Self::extras3`] gave (defaults for older formats), after
    /// this state was read from a snapshot, and rebuilds what is derived (the table's byte counts).
    pub fn restore_extras(&mut self, extras: StateExtras, extras3: StateExtras3) {
        self.registry.restore_acl_records(extras3.version, extras3.acls);
        self.registry.restore_session_secrets(extras.session_secrets);
        self.registry.rebuild_derived();
        match extras.settings {
            Some(settings) => self.configure(settings),
            None => self.grid.rebuild_derived(),
        }
    }

    fn configure(&mut self, settings: ClusterSettings) {
        self.settings = Some(settings);
        self.registry.set_limits(settings.registry.into());
        self.grid.set_limits(settings.grid.into());
    }

    /// Applies `proposal` at `zxid`.
    pub fn apply(&mut self, zxid: u64, proposal: &Proposal, effects: &mut GridEffects) -> (Applied, Vec<Change>) {
        // The registry keeps the zxid sequence for every entry, grid entries included.
        let (result, changes) = self.registry.apply(zxid, proposal);
        if let Command::App(GridCommand::Configure { settings }) = &proposal.command {
            self.configure(*settings);
            return (Ok(Outcome::App(GridOutcome::Recorded { applied: 1, refused: 0 })), changes);
        }
        if let Command::App(command) = &proposal.command {
            if let Some(outcome) = self.apply_actor_command(zxid, command, effects) {
                return (Ok(Outcome::App(outcome)), changes);
            }
            // A plan is made from an earlier state: a node may have lost its registration since. An
            // attempt for an unregistered node would be held by nobody and lost by no expiry, so it is
            // refused here and the task stays pending.
            if let GridCommand::FailUnplaceable { tasks, after_ms } = command {
                let kinds = self.registered_kinds();
                self.grid.on_tick(proposal.now_ms);
                let outcome = self.grid.fail_unplaceable(
                    (tasks, *after_ms),
                    |kind| kinds.contains(kind),
                    (zxid, proposal.now_ms),
                    effects,
                );
                return (Ok(Outcome::App(outcome)), changes);
            }
            let registered_only;
            let command = match command {
                // A move to a node that is gone, or that no longer runs the task's kind, is dropped.
                GridCommand::Reassign { moves } => {
                    let nodes: BTreeMap<NodeId, NodeRecord> = self.nodes().into_iter().collect();
                    let kept = moves
                        .iter()
                        .copied()
                        .filter(|(task, _, node)| {
                            let kind = self.grid.get(*task).map(|entry| entry.spec.kind.as_str());
                            nodes.get(node).zip(kind).is_some_and(|(record, kind)| record.kinds.contains(kind))
                        })
                        .collect();
                    registered_only = GridCommand::Reassign { moves: kept };
                    &registered_only
                }
                GridCommand::Assign { assignments }
                    if assignments.iter().any(|(_, node)| !self.is_registered(*node)) =>
                {
                    let kept: Vec<(TaskId, NodeId)> =
                        assignments.iter().copied().filter(|(_, node)| self.is_registered(*node)).collect();
                    registered_only = GridCommand::Assign { assignments: kept };
                    &registered_only
                }
                GridCommand::SubmitPlaced { tasks, nodes }
                    if nodes.iter().flatten().any(|node| !self.is_registered(*node)) =>
                {
                    let kept = nodes.iter().map(|node| node.filter(|node| self.is_registered(*node))).collect();
                    registered_only = GridCommand::SubmitPlaced { tasks: tasks.clone(), nodes: kept };
                    &registered_only
                }
                other => other,
            };
            let result = self.grid.apply(zxid, proposal.now_ms, command, effects).map(Outcome::App).map_err(refusal);
            return (result, changes);
        }
        for change in &changes {
            if let Change::NodeDeleted { path } = change {
                if let Some(node) = registered_node(path) {
                    self.grid.on_node_lost_into(node, proposal.now_ms, effects);
                    self.actors.on_node_lost(node, zxid, effects);
                }
            }
        }
        (result.map(crate::registry::Outcome::widen), changes)
    }

    /// Applies an actor command (`None` for any other). Refusals are outcomes, not errors, so the
    /// proposer branches on them.
    fn apply_actor_command(
        &mut self,
        zxid: u64,
        command: &GridCommand,
        effects: &mut GridEffects,
    ) -> Option<GridOutcome> {
        Some(match command {
            GridCommand::ActorActivate { actor, node, durable } => {
                let registered = self.is_registered(*node);
                self.actors.activate(zxid, actor, *node, *durable, registered, effects)
            }
            GridCommand::ActorCommit { commits } => self.actors.commit(commits),
            GridCommand::ActorRelease { actor, token } => self.actors.release(actor, *token, effects),
            GridCommand::ActorSingleton { actor, durable, start } => {
                self.actors.singleton(actor, *durable, *start, effects)
            }
            GridCommand::ActorForget { actors } => self.actors.forget(actors),
            _ => return None,
        })
    }

    /// The attempts `node`'s current incarnation holds with a token above `after`: `None` unless
    /// `session` (non-zero) owns its registration `/grid/nodes/<id>`. Attempts assigned before that
    /// registration was created belong to an earlier incarnation of the node and are left out, so a
    /// restarted node never runs its previous life's work.
    pub fn incarnation_attempts(&self, node: NodeId, session: u64, after: u64) -> Option<Vec<(TaskId, FencingToken)>> {
        let floor = after.max(self.registration_zxid(node, session)?);
        Some(self.grid.held_by(node).into_iter().filter(|(_, token)| token.0 > floor).collect())
    }

    /// The zxid that created `node`'s registration, if `session` (non-zero) owns it.
    pub fn registration_zxid(&self, node: NodeId, session: u64) -> Option<u64> {
        let path = ZPath::parse(&format!("{NODES_PATH}/{node}")).ok()?;
        let stat = self.registry.exists(&path).filter(|stat| stat.ephemeral_owner == session && session != 0)?;
        Some(stat.czxid)
    }

    /// Whether `node` has a registration now.
    pub fn is_registered(&self, node: NodeId) -> bool {
        ZPath::parse(&format!("{NODES_PATH}/{node}")).is_ok_and(|path| self.registry.exists(&path).is_some())
    }

    /// The registered nodes with what they advertise, sorted by id.
    pub fn nodes(&self) -> Vec<(NodeId, NodeRecord)> {
        let Ok(parent) = ZPath::parse(NODES_PATH) else { return Vec::new() };
        let Ok((children, _)) = self.registry.children(&parent) else { return Vec::new() };
        let mut nodes: Vec<(NodeId, NodeRecord)> = children
            .iter()
            .filter_map(|name| {
                let node = NodeId(name.parse().ok()?);
                let path = parent.child(name).ok()?;
                let (data, _) = self.registry.get(&path).ok()?;
                Some((node, serde_json::from_slice(data).ok()?))
            })
            .collect();
        nodes.sort_by_key(|(node, _)| *node);
        nodes
    }

    /// Every task kind some registered node runs.
    pub fn registered_kinds(&self) -> BTreeSet<String> {
        self.nodes().into_iter().flat_map(|(_, record)| record.kinds).collect()
    }

    /// Tasks that have not ended whose kind no registered node runs.
    pub fn unplaceable_count(&self) -> usize {
        let kinds = self.registered_kinds();
        self.grid.open_kinds().iter().filter(|(kind, _)| !kinds.contains(*kind)).map(|(_, open)| open).sum()
    }

    /// What placement knows of every registered node: its slots, kinds and weight, and its running
    /// attempts from the table (exact, where heartbeats would lag).
    pub fn loads(&self) -> Vec<NodeLoad> {
        self.nodes()
            .into_iter()
            .map(|(node, record)| NodeLoad {
                node,
                running: self.grid.running_on(node),
                slots: record.slots,
                prefetch: record.prefetch,
                weight: record.weight,
                kinds: record.kinds,
                draining: self.grid.draining().contains(&node),
            })
            .collect()
    }

    /// The leader's next assignments at `now_ms`, at most `max`.
    pub fn plan(&self, now_ms: u64, placement: &mut Placement, max: usize) -> Vec<(TaskId, NodeId)> {
        self.plan_after(now_ms, placement, max, &InFlight::default())
    }

    /// [`Self::loads`] with the assignments of `in_flight` counted as made.
    pub fn loads_after(&self, in_flight: &InFlight) -> Vec<NodeLoad> {
        let mut loads = self.loads();
        for load in &mut loads {
            load.running = load.running.saturating_add(in_flight.on(load.node));
        }
        loads
    }

    /// The leader's next assignments at `now_ms`, at most `max`, as if the assignments of `in_flight`
    /// (proposed, not yet applied) were applied: their tasks are left out and their nodes' loads raised,
    /// so no task and no slot is planned twice.
    pub fn plan_after(
        &self,
        now_ms: u64,
        placement: &mut Placement,
        max: usize,
        in_flight: &InFlight,
    ) -> Vec<(TaskId, NodeId)> {
        let mut loads = self.loads_after(in_flight);
        self.grid.plan_dispatch_excluding(now_ms, placement, &mut loads, max, &in_flight.tasks)
    }

    /// The leader's placement of tasks being submitted at `now_ms` (see `GridCommand::SubmitPlaced`),
    /// counting `in_flight` as applied: a node for each task that finds room now, `None` for the
    /// others. `None` altogether if none finds room, or if queued work that could be placed now waits
    /// (it goes first: the new tasks queue behind it).
    pub fn place_new(
        &self,
        now_ms: u64,
        placement: &mut Placement,
        specs: &[TaskSpec],
        in_flight: &InFlight,
    ) -> Option<Vec<Option<NodeId>>> {
        let mut loads = self.loads_after(in_flight);
        if self.grid.pending() > in_flight.tasks.len()
            && !self.grid.plan_dispatch_excluding(now_ms, placement, &mut loads.clone(), 1, &in_flight.tasks).is_empty()
        {
            return None;
        }
        let nodes = self.grid.place_new(now_ms, placement, &mut loads, specs);
        nodes.iter().any(Option::is_some).then_some(nodes)
    }

    /// Work stealing's moves at `now_ms`, at most `max` (see `grid::steal`), counting `in_flight` as
    /// applied. Tasks that consistent hashing keeps on their key's node do not move.
    pub fn plan_steals(
        &self,
        now_ms: u64,
        placement: &Placement,
        max: usize,
        in_flight: &InFlight,
    ) -> Vec<(TaskId, FencingToken, NodeId)> {
        let loads = self.loads_after(in_flight);
        let room = |load: &NodeLoad| load.capacity(false) > load.running && !self.grid.draining().contains(&load.node);
        if loads.len() < 2 || !loads.iter().any(room) {
            return Vec::new();
        }
        let default = placement.default_strategy();
        let backlogs = self.grid.backlogs(&loads, |spec| spec.strategy.unwrap_or(default) != Strategy::ConsistentHash);
        crate::grid::steal::plan(&backlogs, now_ms, max)
    }
}

/// Assignments the leader proposed that are not yet applied: their tasks, and how many each node
/// gets. The dispatcher keeps several `Assign` entries in flight and plans each against the committed
/// table plus these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InFlight {
    /// The tasks.
    pub tasks: BTreeSet<TaskId>,
    per_node: BTreeMap<NodeId, u32>,
}

impl InFlight {
    /// Counts `assignments` as made.
    pub fn add(&mut self, assignments: &[(TaskId, NodeId)]) {
        for &(task, node) in assignments {
            self.tasks.insert(task);
            *self.per_node.entry(node).or_default() += 1;
        }
    }

    /// Forgets `assignments` (applied, or their proposal failed).
    pub fn remove(&mut self, assignments: &[(TaskId, NodeId)]) {
        for &(task, node) in assignments {
            self.tasks.remove(&task);
            if let Some(count) = self.per_node.get_mut(&node) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.per_node.remove(&node);
                }
            }
        }
    }

    /// Counts one attempt in flight to each of `nodes` (placed submissions: their tasks have no ids
    /// until they apply, and are never in the queue).
    pub fn add_nodes(&mut self, nodes: &[NodeId]) {
        for &node in nodes {
            *self.per_node.entry(node).or_default() += 1;
        }
    }

    /// Forgets what [`Self::add_nodes`] counted.
    pub fn remove_nodes(&mut self, nodes: &[NodeId]) {
        for &node in nodes {
            if let Some(count) = self.per_node.get_mut(&node) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.per_node.remove(&node);
                }
            }
        }
    }

    /// Attempts in flight to `node`.
    pub fn on(&self, node: NodeId) -> u32 {
        self.per_node.get(&node).copied().unwrap_or(0)
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

/// The node a registration path names, if it is one.
pub fn registered_node(path: &ZPath) -> Option<NodeId> {
    let name = path.as_str().strip_prefix(NODES_PATH)?.strip_prefix('/')?;
    name.parse().ok().map(NodeId)
}

fn refusal(error: GridError) -> RegistryError {
    RegistryError::BadArguments { reason: error.to_string() }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::grid::command::{GridOutcome, Report};
    use crate::grid::steal::STEAL_GRACE_MS;
    use crate::grid::task::{FencingToken, TaskSpec, TaskState};
    use crate::grid::Strategy;
    use crate::registry::CreateMode;

    fn propose(state: &mut ReplicatedState, zxid: &mut u64, command: Command) -> (Applied, GridEffects) {
        *zxid += 1;
        let mut effects = GridEffects::default();
        let (result, _) = state.apply(*zxid, &Proposal { now_ms: *zxid * 10, command }, &mut effects);
        (result, effects)
    }

    fn create(path: &str, data: Vec<u8>, mode: CreateMode, session: Option<crate::registry::SessionId>) -> Command {
        Command::Create { path: ZPath::parse(path).expect("valid"), data, mode, session, ttl_ms: None }
    }

    #[test]
    fn the_committed_settings_apply_on_every_replica_and_defaults_before_them() {
        // Two replicas built from different local limits still apply with the defaults until the
        // settings entry, and with the committed settings after it.
        let small = RegistryLimits { data_bytes_max: 100, ..RegistryLimits::default() };
        let mut replicas = [
            ReplicatedState::new(RegistryLimits::default(), TableLimits::default()),
            ReplicatedState::new(RegistryLimits::default(), TableLimits::default()),
        ];
        let settings = ClusterSettings::new(small, TableLimits::default());
        for state in &mut replicas {
            let mut zxid = 0;
            assert!(state.settings().is_none());
            let (before, _) = propose(state, &mut zxid, create("/a", vec![1; 1_000], CreateMode::Persistent, None));
            assert!(before.is_ok(), "{before:?}");
            let (configured, _) = propose(state, &mut zxid, Command::App(GridCommand::Configure { settings }));
            assert!(configured.is_ok(), "{configured:?}");
            let (after, _) = propose(state, &mut zxid, create("/b", vec![1; 1_000], CreateMode::Persistent, None));
            assert!(matches!(after, Err(RegistryError::TooLarge { max: 100, .. })), "{after:?}");
            assert_eq!(state.settings(), Some(settings));
        }
        assert_eq!(replicas[0].registry, replicas[1].registry);
    }

    /// Registers `nodes`, each with 2 slots, no prefetch and the kind `noop`; returns their sessions.
    fn register_with_sessions(
        state: &mut ReplicatedState,
        zxid: &mut u64,
        nodes: &[u64],
    ) -> Vec<crate::registry::SessionId> {
        for path in ["/grid", "/grid/nodes"] {
            if state.registry.exists(&ZPath::parse(path).expect("valid")).is_none() {
                let (created, _) = propose(state, zxid, create(path, vec![], CreateMode::Persistent, None));
                assert!(created.is_ok(), "{created:?}");
            }
        }
        let mut sessions = Vec::new();
        for &node in nodes {
            let (opened, _) = propose(state, zxid, Command::OpenSession { timeout_ms: 750 });
            let Ok(Outcome::SessionOpened { session, .. }) = opened else { panic!("{opened:?}") };
            sessions.push(session);
            let record = NodeRecord {
                addr: "127.0.0.1:1".into(),
                slots: 2,
                prefetch: 0,
                weight: 1,
                kinds: BTreeSet::from(["noop".into()]),
                state_version: 1,
                admin: None,
                actor_kinds: None,
            };
            let data = serde_json::to_vec(&record).expect("json");
            let path = format!("/grid/nodes/{node}");
            let (created, _) = propose(state, zxid, create(&path, data, CreateMode::Ephemeral, Some(session)));
            assert!(created.is_ok(), "{created:?}");
        }
        sessions
    }

    #[test]
    fn a_placed_submission_assigns_the_tasks_that_found_room_in_its_own_entry() {
        let mut state = ReplicatedState::new(RegistryLimits::default(), TableLimits::default());
        let mut zxid = 0;
        register_with_sessions(&mut state, &mut zxid, &[1, 2]);
        let mut placement = Placement::new(Strategy::LeastLoaded, 0);
        let now = (zxid + 1) * 10;
        // Two nodes of 2 slots: 4 of 5 ready tasks find room; a delayed one never does at submission.
        let mut tasks = vec![TaskSpec::new("noop", vec![]); 6];
        tasks[1].not_before_ms = now + 1_000;
        let nodes = state.place_new(now, &mut placement, &tasks, &InFlight::default()).expect("room");
        assert_eq!(nodes.iter().flatten().count(), 4, "{nodes:?}");
        assert_eq!((nodes[1], nodes[5]), (None, None));
        // What is in flight counts: with those 4 counted, nothing finds room.
        let mut in_flight = InFlight::default();
        in_flight.add_nodes(&nodes.iter().flatten().copied().collect::<Vec<_>>());
        assert_eq!(state.place_new(now, &mut placement, &tasks, &in_flight), None);
        let command = Command::App(GridCommand::SubmitPlaced { tasks: tasks.clone(), nodes: nodes.clone() });
        let (submitted, effects) = propose(&mut state, &mut zxid, command);
        let Ok(Outcome::App(outcome)) = submitted else { panic!("{submitted:?}") };
        let ids = outcome.ids();
        assert_eq!((ids.len(), effects.submitted), (6, 6));
        // Each placed task is assigned under this entry's zxid, to its node, in the same step.
        let expected: Vec<(TaskId, NodeId, FencingToken)> = ids
            .iter()
            .zip(&nodes)
            .filter_map(|(task, node)| node.map(|node| (*task, node, FencingToken(zxid))))
            .collect();
        assert_eq!(effects.assigned, expected);
        for (task, node) in ids.iter().zip(&nodes) {
            let entry = state.grid.get(*task).expect("known");
            let expected = if node.is_some() { TaskState::Assigned } else { TaskState::Pending };
            assert_eq!(entry.state, expected, "{task:?}");
        }
        assert_eq!((state.grid.pending(), state.grid.running_on(NodeId(1)) + state.grid.running_on(NodeId(2))), (2, 4));
        // The attempts are what an `Assign` would have made: a report under the token is applied.
        let report = Report { task: ids[0], token: FencingToken(zxid), started_ms: 1, outcome: Some(Ok(vec![])) };
        let (recorded, _) = propose(&mut state, &mut zxid, Command::App(GridCommand::Report { reports: vec![report] }));
        assert_eq!(recorded, Ok(Outcome::App(GridOutcome::Recorded { applied: 1, refused: 0 })));
        // Queued work that could be placed now goes first: a new submission is not placed past it.
        assert_eq!(state.grid.pending(), 2);
        assert_eq!(state.place_new(now, &mut placement, &tasks[..1], &InFlight::default()), None);
        // ... unless it is in flight already.
        let plan = state.plan(now, &mut placement, 10);
        assert_eq!(plan.len(), 1);
        let mut in_flight = InFlight::default();
        in_flight.add(&plan);
        assert_eq!(state.place_new(now, &mut placement, &tasks[..1], &in_flight), None, "no room left");
        // A node that is not registered when the entry applies leaves its task queued; a placement
        // that does not name one node or none per task is refused whole.
        let tasks = vec![TaskSpec::new("noop", vec![]); 2];
        let pending = state.grid.pending();
        let command =
            Command::App(GridCommand::SubmitPlaced { tasks: tasks.clone(), nodes: vec![Some(NodeId(9)), None] });
        let (submitted, effects) = propose(&mut state, &mut zxid, command);
        assert!(submitted.is_ok(), "{submitted:?}");
        assert!(effects.assigned.is_empty());
        assert_eq!(state.grid.pending(), pending + 2);
        let command = Command::App(GridCommand::SubmitPlaced { tasks, nodes: vec![Some(NodeId(1))] });
        let (refused, effects) = propose(&mut state, &mut zxid, command);
        assert!(refused.is_err(), "{refused:?}");
        assert_eq!((effects.submitted, state.grid.pending()), (0, pending + 2));
    }

    #[test]
    fn a_nodes_expiry_requeues_its_work_in_the_same_step() {
        let mut state = ReplicatedState::new(RegistryLimits::default(), TableLimits::default());
        let mut zxid = 0;
        let sessions = register_with_sessions(&mut state, &mut zxid, &[1, 2]);
        assert_eq!(state.nodes().len(), 2);
        let tasks = vec![TaskSpec::new("noop", vec![]); 3];
        let (submitted, effects) = propose(&mut state, &mut zxid, Command::App(GridCommand::Submit { tasks }));
        let Ok(Outcome::App(outcome)) = submitted else { panic!("{submitted:?}") };
        assert_eq!((outcome.ids().len(), effects.submitted), (3, 3));
        let plan = state.plan(zxid * 10, &mut Placement::new(Strategy::LeastLoaded, 0), 10);
        assert_eq!(plan.len(), 3);
        let (_, effects) = propose(&mut state, &mut zxid, Command::App(GridCommand::Assign { assignments: plan }));
        let token = FencingToken(zxid);
        assert!(effects.assigned.iter().all(|&(_, _, t)| t == token));
        let on_one: Vec<TaskId> =
            effects.assigned.iter().filter(|(_, node, _)| *node == NodeId(1)).map(|(task, _, _)| *task).collect();
        assert_eq!(on_one.len(), 2, "least loaded spreads 2 + 1");
        // Node 1's session expires: its two attempts are lost and queued again, in that same entry.
        let (_, effects) = propose(&mut state, &mut zxid, Command::ExpireSessions { sessions: vec![sessions[0]] });
        assert_eq!(effects.lost.len(), 2);
        assert_eq!(state.grid.pending(), 2);
        // Its late report is fenced.
        let report = Report { task: on_one[0], token, started_ms: 1, outcome: Some(Ok(vec![])) };
        let (recorded, effects) =
            propose(&mut state, &mut zxid, Command::App(GridCommand::Report { reports: vec![report] }));
        assert_eq!(recorded, Ok(Outcome::App(GridOutcome::Recorded { applied: 0, refused: 1 })));
        assert_eq!(effects.refused, 1);
        // A plan made before the expiry and applied after it would give node 1 work nobody holds: refused.
        let (recorded, _) = propose(
            &mut state,
            &mut zxid,
            Command::App(GridCommand::Assign { assignments: vec![(on_one[1], NodeId(1))] }),
        );
        assert_eq!(recorded, Ok(Outcome::App(GridOutcome::Recorded { applied: 0, refused: 0 })));
        assert_eq!(state.grid.get(on_one[1]).expect("known").state, TaskState::Pending);
        // The survivor takes them as slots allow: node 2 has 1 running of 2.
        let plan = state.plan(zxid * 10, &mut Placement::new(Strategy::LeastLoaded, 0), 10);
        assert_eq!(plan.iter().map(|(_, node)| *node).collect::<Vec<_>>(), vec![NodeId(2)]);
        assert_eq!(state.grid.get(on_one[0]).expect("known").state, TaskState::Pending);
    }

    #[test]
    fn replicas_agree_on_zoned_and_paused_jobs_and_a_snapshot_keeps_them() {
        use crate::grid::command::{JobExtras, JobSpec};
        use crate::grid::schedule::{Cadence, CronExpr, Misfire};
        let job = JobSpec {
            name: "nightly".into(),
            task: TaskSpec::new("noop", vec![]),
            cadence: Cadence::Cron(CronExpr::parse("30 2 * * *").expect("valid")),
            misfire: Misfire::Skip,
            overlap: false,
        };
        // The numbers come from the entries (the proposer read the zone); replicas only apply them.
        let commands = [
            GridCommand::ScheduleZoned {
                job: Box::new(job),
                tz: "Europe/Berlin".into(),
                due_ms: Some(1_743_296_400_000),
            },
            GridCommand::Pause { name: "nightly".into() },
            GridCommand::Trigger { name: "nightly".into() },
        ];
        let mut replicas = [
            ReplicatedState::new(RegistryLimits::default(), TableLimits::default()),
            ReplicatedState::new(RegistryLimits::default(), TableLimits::default()),
        ];
        for state in &mut replicas {
            let mut zxid = 0;
            for command in &commands {
                let (applied, _) = propose(state, &mut zxid, Command::App(command.clone()));
                assert_eq!(applied, Ok(Outcome::App(GridOutcome::Recorded { applied: 1, refused: 0 })), "{command:?}");
            }
        }
        let want = JobExtras { tz: Some("Europe/Berlin".into()), paused: true };
        assert_eq!(replicas[0].extras4().jobs, BTreeMap::from([("nightly".to_string(), want)]));
        assert_eq!(replicas[0].extras4(), replicas[1].extras4());
        assert_eq!(replicas[0].grid.jobs(), replicas[1].grid.jobs());
        // A snapshot stores the layout (which has no place for them) and the extras beside it.
        let layout = postcard::to_stdvec(&replicas[0]).expect("encodes");
        let extras4 = postcard::to_stdvec(&replicas[0].extras4()).expect("encodes");
        let mut loaded: ReplicatedState = postcard::from_bytes(&layout).expect("decodes");
        loaded.restore_extras(replicas[0].extras(), replicas[0].extras3());
        assert!(loaded.extras4().jobs.is_empty(), "the layout alone does not carry them");
        loaded.restore_extras4(postcard::from_bytes(&extras4).expect("decodes"));
        assert_eq!(loaded.extras4(), replicas[0].extras4());
        assert!(loaded.grid.due_jobs(u64::MAX).is_empty(), "still paused after the load");
    }

    #[test]
    fn a_refused_batch_accepts_nothing_and_history_is_bounded() {
        let limits = TableLimits { history_max: 2, ..TableLimits::default() };
        let mut state = ReplicatedState::new(RegistryLimits::default(), limits);
        let mut zxid = 0;
        let mut bad = TaskSpec::new("noop", vec![]);
        bad.retry.attempts_max = 0;
        let tasks = vec![TaskSpec::new("noop", vec![]), bad];
        let (refused, _) = propose(&mut state, &mut zxid, Command::App(GridCommand::Submit { tasks }));
        assert!(matches!(refused, Err(RegistryError::BadArguments { .. })), "{refused:?}");
        assert!(state.grid.is_empty());
        let tasks = vec![TaskSpec::new("noop", vec![]); 3];
        let (submitted, _) = propose(&mut state, &mut zxid, Command::App(GridCommand::Submit { tasks }));
        let Ok(Outcome::App(outcome)) = submitted else { panic!("{submitted:?}") };
        let (_, effects) = propose(&mut state, &mut zxid, Command::App(GridCommand::Cancel { tasks: outcome.ids() }));
        assert_eq!(effects.ended.len(), 3);
        assert_eq!(state.grid.len(), 2, "the oldest ended task left the history");
    }

    #[test]
    fn unplaceable_tasks_fail_only_when_apply_agrees() {
        let mut state = ReplicatedState::new(RegistryLimits::default(), TableLimits::default());
        let mut zxid = 0;
        for path in ["/grid", "/grid/nodes"] {
            let (created, _) = propose(&mut state, &mut zxid, create(path, vec![], CreateMode::Persistent, None));
            assert!(created.is_ok(), "{created:?}");
        }
        let record = NodeRecord {
            addr: "a".into(),
            slots: 1,
            prefetch: 0,
            weight: 1,
            kinds: BTreeSet::from(["noop".into()]),
            state_version: 1,
            admin: None,
            actor_kinds: None,
        };
        let data = serde_json::to_vec(&record).expect("json");
        let (created, _) = propose(&mut state, &mut zxid, create("/grid/nodes/1", data, CreateMode::Persistent, None));
        assert!(created.is_ok(), "{created:?}");
        let tasks = vec![TaskSpec::new("noop", vec![]), TaskSpec::new("nobody", vec![])];
        let (submitted, _) = propose(&mut state, &mut zxid, Command::App(GridCommand::Submit { tasks }));
        let Ok(Outcome::App(outcome)) = submitted else { panic!("{submitted:?}") };
        let ids = outcome.ids();
        assert_eq!(state.unplaceable_count(), 1);
        let submitted_ms = zxid * 10;
        let after_ms = 1_000;
        assert_eq!(state.grid.unplaceable_overdue(submitted_ms + 999, after_ms, |kind| kind == "noop", 10), vec![]);
        assert_eq!(
            state.grid.unplaceable_overdue(submitted_ms + 1_000, after_ms, |kind| kind == "noop", 10),
            vec![ids[1]]
        );
        // Too soon (the proposal's time is zxid × 10 here): refused.
        let fail = Command::App(GridCommand::FailUnplaceable { tasks: ids.clone(), after_ms });
        let (recorded, _) = propose(&mut state, &mut zxid, fail.clone());
        assert_eq!(recorded, Ok(Outcome::App(GridOutcome::Recorded { applied: 0, refused: 2 })));
        let fail = Command::App(GridCommand::FailUnplaceable { tasks: ids.clone(), after_ms: 10 });
        let (recorded, effects) = propose(&mut state, &mut zxid, fail);
        assert_eq!(recorded, Ok(Outcome::App(GridOutcome::Recorded { applied: 1, refused: 1 })), "noop is placeable");
        assert_eq!(effects.ended, vec![(ids[1], TaskState::Failed)]);
        let failed = state.grid.get(ids[1]).expect("in history");
        let error = failed.attempts[0].error.as_deref().unwrap_or_default();
        assert!(error.contains("unplaceable") && error.contains("nobody"), "{error}");
        assert_eq!((state.unplaceable_count(), state.grid.pending()), (0, 1));
    }

    #[test]
    fn actors_are_granted_to_registered_nodes_and_orphaned_in_the_step_that_deletes_the_registration() {
        use crate::grid::actors::{ActorCommit, ActorId, ActorRefusal};
        let mut state = ReplicatedState::new(RegistryLimits::default(), TableLimits::default());
        let mut zxid = 0;
        register(&mut state, &mut zxid, &[1, 2]);
        let actor = ActorId::new("counter", "a").expect("valid");
        let activate = |node: u64| {
            Command::App(GridCommand::ActorActivate { actor: actor.clone(), node: NodeId(node), durable: true })
        };
        let (refused, _) = propose(&mut state, &mut zxid, activate(3));
        let want = GridOutcome::ActorRefused { owner: None, reason: ActorRefusal::NotRegistered };
        assert_eq!(refused, Ok(Outcome::App(want)), "node 3 has no registration");
        let (granted, effects) = propose(&mut state, &mut zxid, activate(1));
        let token = FencingToken(zxid);
        let want = GridOutcome::ActorActivated { token, state: vec![], seq: 0, recent: vec![] };
        assert_eq!(granted, Ok(Outcome::App(want)));
        assert_eq!(effects.actors_activated, vec![(actor.clone(), NodeId(1), token)]);
        let commit = ActorCommit { actor: actor.clone(), token, seq: 1, state: b"7".to_vec(), replies: vec![] };
        let (committed, _) =
            propose(&mut state, &mut zxid, Command::App(GridCommand::ActorCommit { commits: vec![commit] }));
        assert_eq!(committed, Ok(Outcome::App(GridOutcome::ActorsCommitted { refused: vec![] })));
        assert_eq!(state.actors_of_kind("counter").count(), 1);
        assert_eq!(state.actors_of_kind("other").count(), 0);
        // Node 1's registration goes: the actor is orphaned by that very entry.
        let delete = Command::Delete { path: ZPath::parse("/grid/nodes/1").expect("valid"), version: None };
        let (deleted, effects) = propose(&mut state, &mut zxid, delete);
        assert!(deleted.is_ok(), "{deleted:?}");
        assert_eq!(effects.actors_orphaned, vec![actor.clone()]);
        assert_eq!(effects.actors_ended, vec![(actor.clone(), NodeId(1), token)]);
        let record = state.actor(&actor).expect("kept");
        assert_eq!((record.node, record.orphaned_zxid, record.seq), (None, zxid, 1));
        // Node 2 takes it over from its committed state; a snapshot keeps the record.
        let (granted, _) = propose(&mut state, &mut zxid, activate(2));
        let want =
            GridOutcome::ActorActivated { token: FencingToken(zxid), state: b"7".to_vec(), seq: 1, recent: vec![] };
        assert_eq!(granted, Ok(Outcome::App(want)));
        let layout = postcard::to_stdvec(&state).expect("encodes");
        let mut loaded: ReplicatedState = postcard::from_bytes(&layout).expect("decodes");
        assert!(loaded.actor(&actor).is_none(), "the layout alone does not carry actors");
        loaded.restore_extras5(state.extras5());
        assert_eq!(loaded.actor_table(), state.actor_table());
    }

    /// `/grid/nodes/<id>` for each of `nodes` (slots 2, prefetch 4, kind noop), persistent.
    fn register(state: &mut ReplicatedState, zxid: &mut u64, nodes: &[u64]) {
        for path in ["/grid", "/grid/nodes"] {
            let _ = propose(state, zxid, create(path, vec![], CreateMode::Persistent, None));
        }
        for node in nodes {
            let record = NodeRecord {
                addr: "a".into(),
                slots: 2,
                prefetch: 4,
                weight: 1,
                kinds: BTreeSet::from(["noop".into()]),
                state_version: STATE_VERSION_TEST,
                admin: None,
                actor_kinds: None,
            };
            let data = serde_json::to_vec(&record).expect("json");
            let path = format!("/grid/nodes/{node}");
            let (created, _) = propose(state, zxid, create(&path, data, CreateMode::Persistent, None));
            assert!(created.is_ok(), "{created:?}");
        }
    }

    const STATE_VERSION_TEST: u32 = crate::registry::STATE_VERSION;

    #[test]
    fn pipelined_plans_never_double_book_a_task_or_a_slot() {
        let mut state = ReplicatedState::new(RegistryLimits::default(), TableLimits::default());
        let mut zxid = 0;
        register(&mut state, &mut zxid, &[1, 2]);
        let tasks = vec![TaskSpec::new("noop", vec![]); 20];
        let _ = propose(&mut state, &mut zxid, Command::App(GridCommand::Submit { tasks }));
        let mut placement = Placement::new(Strategy::LeastLoaded, 0);
        let mut in_flight = InFlight::default();
        let mut plans = Vec::new();
        // Four plans before any is applied: 2 nodes × (2 slots + 4 prefetched) = 12 attempts in all.
        for _ in 0..4 {
            let plan = state.plan_after(zxid * 10, &mut placement, 5, &in_flight);
            in_flight.add(&plan);
            plans.push(plan);
        }
        let sizes: Vec<usize> = plans.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![5, 5, 2, 0]);
        let planned: BTreeSet<TaskId> = plans.iter().flatten().map(|(task, _)| *task).collect();
        assert_eq!(planned.len(), 12, "no task planned twice");
        // Applied in another order than planned, every assignment lands, and no node is over its room.
        for plan in plans.iter().rev() {
            let (applied, _) =
                propose(&mut state, &mut zxid, Command::App(GridCommand::Assign { assignments: plan.clone() }));
            assert!(applied.is_ok(), "{applied:?}");
            in_flight.remove(plan);
        }
        assert!(in_flight.is_empty());
        assert_eq!((state.grid.running_on(NodeId(1)), state.grid.running_on(NodeId(2))), (6, 6));
        assert!(state.plan(zxid * 10, &mut placement, 5).is_empty(), "every slot and prefetch taken");
        // A proposal whose fate was unknown and that commits again later changes nothing.
        let (again, effects) =
            propose(&mut state, &mut zxid, Command::App(GridCommand::Assign { assignments: plans[0].clone() }));
        assert_eq!(again, Ok(Outcome::App(GridOutcome::Recorded { applied: 0, refused: 5 })));
        assert!(effects.assigned.is_empty());
    }

    #[test]
    fn queued_work_is_stolen_by_idle_nodes_and_apply_checks_every_move() {
        let mut state = ReplicatedState::new(RegistryLimits::default(), TableLimits::default());
        let mut zxid = 0;
        register(&mut state, &mut zxid, &[1, 2, 3]);
        let tasks = vec![TaskSpec::new("noop", vec![]); 6];
        let (submitted, _) = propose(&mut state, &mut zxid, Command::App(GridCommand::Submit { tasks }));
        let Ok(Outcome::App(outcome)) = submitted else { panic!("{submitted:?}") };
        let ids = outcome.ids();
        // All six on node 1 (as a plan made while the others were busy would): 2 run there, 4 wait.
        let assignments = ids.iter().map(|&task| (task, NodeId(1))).collect();
        let _ = propose(&mut state, &mut zxid, Command::App(GridCommand::Assign { assignments }));
        let token = FencingToken(zxid);
        let assigned_ms = zxid * 10;
        for &task in &ids[..2] {
            let report = Report { task, token, started_ms: assigned_ms, outcome: None };
            let _ = propose(&mut state, &mut zxid, Command::App(GridCommand::Report { reports: vec![report] }));
        }
        let placement = Placement::new(Strategy::LeastLoaded, 0);
        let none = InFlight::default();
        assert!(
            state.plan_steals(assigned_ms + STEAL_GRACE_MS - 1, &placement, 100, &none).is_empty(),
            "too young to move"
        );
        let now = assigned_ms + STEAL_GRACE_MS;
        let moves = state.plan_steals(now, &placement, 100, &none);
        // 6 held on node 1 against 0: 3 go to node 2, then 3 against 0: 1 to node 3; the oldest
        // unstarted ones (the started ones never move).
        let expected = vec![
            (ids[2], token, NodeId(2)),
            (ids[3], token, NodeId(2)),
            (ids[4], token, NodeId(2)),
            (ids[5], token, NodeId(3)),
        ];
        assert_eq!(moves, expected);
        // Between the plan and its apply, task 3 started and node 3 left: those two moves are dropped.
        let report = Report { task: ids[2], token, started_ms: now, outcome: None };
        let _ = propose(&mut state, &mut zxid, Command::App(GridCommand::Report { reports: vec![report] }));
        let (deleted, _) = propose(
            &mut state,
            &mut zxid,
            Command::Delete { path: ZPath::parse("/grid/nodes/3").expect("valid"), version: None },
        );
        assert!(deleted.is_ok(), "{deleted:?}");
        let (applied, effects) = propose(&mut state, &mut zxid, Command::App(GridCommand::Reassign { moves }));
        assert_eq!(applied, Ok(Outcome::App(GridOutcome::Recorded { applied: 2, refused: 1 })));
        let moved = FencingToken(zxid);
        assert_eq!(effects.stolen, vec![(NodeId(1), ids[3]), (NodeId(1), ids[4])]);
        assert_eq!(effects.assigned, vec![(ids[3], NodeId(2), moved), (ids[4], NodeId(2), moved)]);
        assert_eq!((state.grid.running_on(NodeId(1)), state.grid.running_on(NodeId(2))), (4, 2));
        // Node 2's worker is handed them as its own incarnation's; node 1's no longer holds them.
        let held = state.grid.held_by(NodeId(2));
        assert_eq!(held, vec![(ids[3], moved), (ids[4], moved)]);
        assert!(state.grid.held_by(NodeId(1)).iter().all(|(task, _)| *task != ids[3] && *task != ids[4]));
    }

    #[test]
    fn node_records_with_and_without_an_admin_address_read_each_other() {
        // An older build's record (no `admin`) reads as none, and is written back the same way.
        let old = r#"{"addr":"127.0.0.1:7101","slots":2,"prefetch":0,"weight":1,"kinds":["noop"],"state_version":2}"#;
        let record: NodeRecord = serde_json::from_str(old).expect("an older record");
        assert_eq!(record.admin, None);
        assert_eq!(serde_json::to_string(&record).expect("json"), old);
        // A newer record, with fields this build does not know, still reads (as older builds read
        // ours: no record type refuses unknown fields).
        let newer = r#"{"addr":"a","admin":"127.0.0.1:9101","kinds":[],"shard":"eu-1"}"#;
        let record: NodeRecord = serde_json::from_str(newer).expect("a newer record");
        assert_eq!(record.admin.as_deref(), Some("127.0.0.1:9101"));
    }
}
