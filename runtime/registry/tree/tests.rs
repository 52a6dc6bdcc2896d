//! Unit tests of the znode tree: commands applied to a fresh registry, exact results asserted.

use super::*;

fn p(text: &str) -> ZPath {
    ZPath::parse(text).expect("valid")
}

struct Fixture {
    registry: Registry,
    zxid: u64,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture { registry: Registry::new(RegistryLimits::default()), zxid: 0 }
    }
    fn run(&mut self, command: Command) -> Applied {
        self.run_at(1_000 + self.zxid, command).0
    }
    fn run_at(&mut self, now_ms: u64, command: Command) -> (Applied, Vec<Change>) {
        self.zxid += 1;
        self.registry.apply(self.zxid, &Proposal { now_ms, command })
    }
    fn create(&mut self, path: &str, mode: CreateMode, session: Option<SessionId>) -> Applied {
        self.run(Command::Create { path: p(path), data: b"d".to_vec(), mode, session, ttl_ms: None })
    }
    fn session(&mut self) -> SessionId {
        match self.run(Command::OpenSession { timeout_ms: 5_000 }) {
            Ok(Outcome::SessionOpened { session, .. }) => session,
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn create_sets_stat_and_updates_the_parent() {
    let mut f = Fixture::new();
    let Ok(Outcome::Created { path, stat }) = f.create("/a", CreateMode::Persistent, None) else { panic!() };
    assert_eq!(path, p("/a"));
    assert_eq!((stat.czxid, stat.mzxid, stat.pzxid, stat.version, stat.data_length), (1, 1, 1, 0, 1));
    let (children, root) = f.registry.children(&ZPath::root()).expect("root");
    assert_eq!(children, vec!["a".to_string()]);
    assert_eq!((root.cversion, root.pzxid, root.num_children), (1, 1, 1));
    assert!(matches!(f.create("/a", CreateMode::Persistent, None).unwrap_err(), RegistryError::NodeExists { .. }));
    assert_eq!(
        f.create("/x/y", CreateMode::Persistent, None).unwrap_err(),
        RegistryError::NoNode { path: "/x".into() }
    );
}

#[test]
fn set_and_delete_check_versions() {
    let mut f = Fixture::new();
    f.create("/a", CreateMode::Persistent, None).expect("create");
    let bad = f.run(Command::Set { path: p("/a"), data: vec![1], version: Some(3) });
    assert!(matches!(bad.unwrap_err(), RegistryError::BadVersion { .. }));
    let Ok(Outcome::Set { stat }) = f.run(Command::Set { path: p("/a"), data: vec![1, 2], version: Some(0) }) else {
        panic!()
    };
    assert_eq!((stat.version, stat.mzxid, stat.czxid, stat.data_length), (1, 3, 1, 2));
    f.create("/a/b", CreateMode::Persistent, None).expect("child");
    assert!(matches!(
        f.run(Command::Delete { path: p("/a"), version: None }).unwrap_err(),
        RegistryError::NotEmpty { .. }
    ));
    assert!(matches!(
        f.run(Command::Delete { path: p("/a/b"), version: Some(1) }).unwrap_err(),
        RegistryError::BadVersion { .. }
    ));
    f.run(Command::Delete { path: p("/a/b"), version: Some(0) }).expect("delete");
    assert!(matches!(f.registry.get(&p("/a/b")).unwrap_err(), RegistryError::NoNode { .. }));
    let big = vec![0; RegistryLimits::default().data_bytes_max + 1];
    assert!(matches!(
        f.run(Command::Set { path: p("/a"), data: big, version: None }).unwrap_err(),
        RegistryError::TooLarge { .. }
    ));
}

#[test]
fn sequential_names_count_per_parent() {
    let mut f = Fixture::new();
    f.create("/q", CreateMode::Persistent, None).expect("parent");
    let names: Vec<String> = (0..3)
        .map(|_| match f.create("/q/item-", CreateMode::PersistentSequential, None) {
            Ok(Outcome::Created { path, .. }) => path.name().to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["item-0000000000", "item-0000000001", "item-0000000002"]);
    f.create("/r", CreateMode::Persistent, None).expect("other parent");
    let Ok(Outcome::Created { path, .. }) = f.create("/r/x", CreateMode::PersistentSequential, None) else { panic!() };
    assert_eq!(path.as_str(), "/r/x0000000000");
}

#[test]
fn ephemerals_belong_to_sessions_and_go_with_them() {
    let mut f = Fixture::new();
    let session = f.session();
    assert!(matches!(f.create("/e", CreateMode::Ephemeral, None).unwrap_err(), RegistryError::BadArguments { .. }));
    assert!(matches!(
        f.create("/e", CreateMode::Ephemeral, Some(SessionId(999))).unwrap_err(),
        RegistryError::SessionExpired { .. }
    ));
    let Ok(Outcome::Created { stat, .. }) = f.create("/e", CreateMode::Ephemeral, Some(session)) else { panic!() };
    assert_eq!(stat.ephemeral_owner, session.0);
    f.create("/e2", CreateMode::EphemeralSequential, Some(session)).expect("sequential ephemeral");
    assert!(matches!(
        f.create("/e/child", CreateMode::Persistent, None).unwrap_err(),
        RegistryError::NoChildrenForEphemerals { .. }
    ));
    let (result, changes) = f.run_at(2_000, Command::ExpireSessions { sessions: vec![session] });
    assert_eq!(result, Ok(Outcome::SessionsEnded { sessions: 1, ephemerals: 2 }));
    assert!(changes.contains(&Change::NodeDeleted { path: p("/e") }));
    assert!(f.registry.exists(&p("/e")).is_none() && !f.registry.has_session(session));
    assert!(matches!(f.run(Command::CloseSession { session }).unwrap_err(), RegistryError::SessionExpired { .. }));
}

#[test]
fn a_container_goes_with_its_last_child() {
    let mut f = Fixture::new();
    f.create("/c", CreateMode::Container, None).expect("container");
    f.create("/c/inner", CreateMode::Container, None).expect("nested container");
    f.create("/c/inner/x", CreateMode::Persistent, None).expect("child");
    f.run(Command::Delete { path: p("/c/inner/x"), version: None }).expect("delete");
    assert!(f.registry.exists(&p("/c/inner")).is_none() && f.registry.exists(&p("/c")).is_none());
}

#[test]
fn ttl_nodes_expire_only_when_idle_and_childless() {
    let mut f = Fixture::new();
    let create =
        Command::Create { path: p("/t"), data: vec![], mode: CreateMode::Persistent, session: None, ttl_ms: Some(100) };
    f.run_at(1_000, create).0.expect("ttl node");
    assert_eq!(f.registry.ttl_candidates(1_099, 10), Vec::<ZPath>::new());
    assert_eq!(f.registry.ttl_candidates(1_100, 10), vec![p("/t")]);
    // Touched since: the apply-time re-check keeps it.
    f.run_at(1_090, Command::Set { path: p("/t"), data: vec![1], version: None }).0.expect("set");
    assert_eq!(f.run_at(1_150, Command::ExpireTtl { paths: vec![p("/t")] }).0, Ok(Outcome::TtlExpired { deleted: 0 }));
    assert_eq!(f.run_at(1_200, Command::ExpireTtl { paths: vec![p("/t")] }).0, Ok(Outcome::TtlExpired { deleted: 1 }));
    let bad =
        Command::Create { path: p("/u"), data: vec![], mode: CreateMode::Ephemeral, session: None, ttl_ms: Some(5) };
    assert!(matches!(f.run(bad).unwrap_err(), RegistryError::BadArguments { .. }));
}

#[test]
fn a_failed_multi_changes_nothing() {
    let mut f = Fixture::new();
    f.create("/a", CreateMode::Persistent, None).expect("a");
    let before = f.registry.clone();
    let ops = vec![
        MultiOp::Create { path: p("/b"), data: vec![], mode: CreateMode::Persistent },
        MultiOp::Set { path: p("/a"), data: vec![9], version: None },
        MultiOp::Delete { path: p("/a"), version: None },
        MultiOp::Check { path: p("/b"), version: 7 },
    ];
    let (result, changes) = f.run_at(5_000, Command::Multi { ops, session: None });
    let Err(RegistryError::MultiFailed { index: 3, cause }) = result else { panic!("{result:?}") };
    assert!(matches!(*cause, RegistryError::BadVersion { .. }));
    assert!(changes.is_empty());
    let mut expected = before;
    expected.last_zxid = f.registry.last_zxid;
    assert_eq!(f.registry, expected, "rolled back exactly");
    let ops = vec![
        MultiOp::Check { path: p("/a"), version: 0 },
        MultiOp::Create { path: p("/b"), data: vec![], mode: CreateMode::Persistent },
    ];
    let Ok(Outcome::Multi { results }) = f.run(Command::Multi { ops, session: None }) else { panic!() };
    assert_eq!(results.len(), 2);
}

#[test]
fn session_timeouts_are_clamped_and_ids_are_zxids() {
    let mut f = Fixture::new();
    let limits = RegistryLimits::default();
    let Ok(Outcome::SessionOpened { session, timeout_ms }) = f.run(Command::OpenSession { timeout_ms: 1 }) else {
        panic!()
    };
    assert_eq!((session, timeout_ms), (SessionId(1), limits.session_timeout_ms_min));
    let Ok(Outcome::SessionOpened { timeout_ms, .. }) = f.run(Command::OpenSession { timeout_ms: u64::MAX }) else {
        panic!()
    };
    assert_eq!(timeout_ms, limits.session_timeout_ms_max);
}

#[test]
#[should_panic(expected = "applied after")]
fn zxids_must_increase() {
    let mut registry = Registry::new(RegistryLimits::default());
    let noop = Proposal { now_ms: 0, command: Command::<()>::Noop };
    let _ = registry.apply(2, &noop);
    let _ = registry.apply(2, &noop);
}

const SECRET: SessionSecret = SessionSecret::from_bytes([7; 16]);
const WRONG: SessionSecret = SessionSecret::from_bytes([8; 16]);
/// A drawn id: large, as random ids are, and below 2^53.
const DRAWN: SessionId = SessionId(0x1f_ffff_ffff_ff00);

impl Fixture {
    fn secured(&mut self, session: SessionId, secret: SessionSecret) -> Applied {
        self.run(Command::OpenSessionSecured { session, secret, timeout_ms: 5_000 })
    }
    fn create_owned(&mut self, path: &str, session: SessionId, secret: SessionSecret) -> Applied {
        let path = p(path);
        self.run(Command::CreateOwned {
            path,
            data: vec![],
            mode: CreateMode::Ephemeral,
            session,
            secret,
            ttl_ms: None,
        })
    }
}

#[test]
fn a_secured_session_acts_only_with_its_secret() {
    let mut f = Fixture::new();
    assert_eq!(f.secured(DRAWN, SECRET), Ok(Outcome::SessionOpened { session: DRAWN, timeout_ms: 5_000 }));
    let before = f.registry.clone();
    let no_auth = RegistryError::NoAuth { session: DRAWN };
    assert_eq!(f.create_owned("/e", DRAWN, WRONG), Err(no_auth.clone()));
    assert_eq!(f.create("/e", CreateMode::Ephemeral, Some(DRAWN)), Err(no_auth.clone()), "no secret at all");
    let ops = vec![MultiOp::Create { path: p("/m"), data: vec![], mode: CreateMode::Ephemeral }];
    let wrong = f.run(Command::MultiOwned { ops: ops.clone(), session: DRAWN, secret: WRONG });
    assert_eq!(wrong, Err(RegistryError::MultiFailed { index: 0, cause: Box::new(no_auth.clone()) }));
    let bare = f.run(Command::Multi { ops: ops.clone(), session: Some(DRAWN) });
    assert!(
        matches!(bare, Err(RegistryError::MultiFailed { cause, .. }) if matches!(*cause, RegistryError::NoAuth { .. }))
    );
    assert_eq!(f.run(Command::CloseSession { session: DRAWN }), Err(no_auth.clone()));
    assert_eq!(f.run(Command::CloseSessionSecured { session: DRAWN, secret: WRONG }), Err(no_auth.clone()));
    assert_eq!(f.registry.check_session_secret(DRAWN, &WRONG), Err(no_auth));
    let mut unchanged = before;
    unchanged.last_zxid = f.registry.last_zxid;
    assert_eq!(f.registry, unchanged, "every refusal changed nothing");

    let Ok(Outcome::Created { stat, .. }) = f.create_owned("/e", DRAWN, SECRET) else { panic!() };
    assert_eq!(stat.ephemeral_owner, DRAWN.0);
    f.run(Command::MultiOwned { ops, session: DRAWN, secret: SECRET }).expect("multi with the secret");
    assert_eq!(f.registry.check_session_secret(DRAWN, &SECRET), Ok(()));
    let closed = f.run(Command::CloseSessionSecured { session: DRAWN, secret: SECRET });
    assert_eq!(closed, Ok(Outcome::SessionsEnded { sessions: 1, ephemerals: 2 }));
    assert!(f.registry.session_secrets().is_empty() && f.registry.exists(&p("/e")).is_none());
    assert!(matches!(
        f.registry.check_session_secret(DRAWN, &SECRET).unwrap_err(),
        RegistryError::SessionExpired { .. }
    ));
}

#[test]
fn a_legacy_session_keeps_its_id_and_old_rules() {
    let mut f = Fixture::new();
    f.create("/a", CreateMode::Persistent, None).expect("a");
    let legacy = f.session();
    assert_eq!(legacy, SessionId(2), "a legacy session's id is its zxid");
    assert!(f.registry.is_legacy_session(legacy));
    f.create("/a/e", CreateMode::Ephemeral, Some(legacy)).expect("old entries apply as before");
    // No secret opens it to the new commands: the new API cannot keep it alive, so it expires.
    assert!(matches!(f.registry.check_session_secret(legacy, &SECRET).unwrap_err(), RegistryError::NoAuth { .. }));
    assert!(matches!(f.create_owned("/a/f", legacy, SECRET).unwrap_err(), RegistryError::NoAuth { .. }));
    assert!(matches!(
        f.run(Command::CloseSessionSecured { session: legacy, secret: SECRET }).unwrap_err(),
        RegistryError::NoAuth { .. }
    ));
    assert_eq!(
        f.run(Command::CloseSession { session: legacy }),
        Ok(Outcome::SessionsEnded { sessions: 1, ephemerals: 1 })
    );
}

#[test]
fn drawn_ids_are_checked_and_a_collision_is_refused() {
    let mut f = Fixture::new();
    f.secured(DRAWN, SECRET).expect("open");
    let before = f.registry.clone();
    assert_eq!(f.secured(DRAWN, WRONG), Err(RegistryError::SessionExists { session: DRAWN }));
    assert_eq!(f.registry.session_secrets().get(&DRAWN), Some(&SECRET), "the first owner keeps it");
    assert!(matches!(f.secured(SessionId(0), SECRET).unwrap_err(), RegistryError::BadArguments { .. }));
    assert!(matches!(f.secured(SessionId(1 << 53), SECRET).unwrap_err(), RegistryError::BadArguments { .. }));
    assert!(matches!(
        f.secured(SessionId(crate::registry::SESSION_ID_MAX + 1), SECRET).unwrap_err(),
        RegistryError::BadArguments { .. }
    ));
    assert_eq!(f.registry.session_count(), before.session_count());
    // A legacy open (from an earlier version's leader) whose zxid is a drawn id is refused too.
    f.zxid = 9;
    f.secured(SessionId(11), SECRET).expect("small drawn id");
    assert_eq!(
        f.run(Command::OpenSession { timeout_ms: 5_000 }),
        Err(RegistryError::SessionExists { session: SessionId(11) })
    );
    assert_eq!(f.registry.session_secrets().get(&SessionId(11)), Some(&SECRET));
}

#[test]
fn secrets_stay_out_of_the_serde_layout_and_are_restored() {
    let mut f = Fixture::new();
    f.secured(DRAWN, SECRET).expect("open");
    let other = SessionId(42);
    f.secured(other, WRONG).expect("open");
    let mut without = f.registry.clone();
    without.secrets.clear();
    let bytes = postcard::to_stdvec(&f.registry).expect("encode");
    assert_eq!(bytes, postcard::to_stdvec(&without).expect("encode"), "the layout is the old one");
    assert!(!bytes.windows(16).any(|window| window == SECRET.as_bytes()), "no secret in the bytes");
    let mut loaded: Registry = postcard::from_bytes(&bytes).expect("decode");
    assert!(loaded.is_legacy_session(DRAWN), "unrestored, a session has no secret");
    let mut carried = f.registry.session_secrets().clone();
    carried.insert(SessionId(5), SECRET);
    loaded.restore_session_secrets(carried);
    assert_eq!(loaded, f.registry, "restored exactly; a closed session's secret dropped");
    let (expired, _) = f.run_at(9_000, Command::ExpireSessions { sessions: vec![DRAWN] });
    assert_eq!(expired, Ok(Outcome::SessionsEnded { sessions: 1, ephemerals: 0 }));
    assert_eq!(f.registry.session_secrets().keys().copied().collect::<Vec<_>>(), vec![other]);
}

#[test]
fn old_commands_keep_their_encoding() {
    // Log entries written before secrets existed must decode to the same commands.
    let encode = |command: &Command| postcard::to_stdvec(command).expect("encode");
    assert_eq!(encode(&Command::OpenSession { timeout_ms: 5 }), [4, 5]);
    assert_eq!(encode(&Command::CloseSession { session: SessionId(3) }), [5, 3]);
    assert_eq!(encode(&Command::Noop), [8]);
    let secured = encode(&Command::OpenSessionSecured { session: SessionId(1), secret: SECRET, timeout_ms: 5 });
    assert_eq!(secured[0], 10, "new variants come after App");
    assert_eq!(postcard::from_bytes::<Command>(&[4, 5]), Ok(Command::OpenSession { timeout_ms: 5 }));
}

#[test]
fn the_tree_is_bounded_in_bytes_and_a_failed_multi_gives_its_bytes_back() {
    let limits = RegistryLimits { data_bytes_total_max: 1_000, ..RegistryLimits::default() };
    let mut registry = Registry::new(limits);
    let create = |path: &str, bytes: usize| Command::Create {
        path: ZPath::parse(path).expect("valid"),
        data: vec![1; bytes],
        mode: CreateMode::Persistent,
        session: None,
        ttl_ms: None,
    };
    let apply =
        |registry: &mut Registry, zxid: u64, command: Command| registry.apply(zxid, &Proposal { now_ms: 0, command }).0;
    assert!(apply(&mut registry, 1, create("/a", 600)).is_ok());
    let held = registry.data_bytes();
    assert_eq!(held, 1 + 2 + 600);
    assert!(matches!(apply(&mut registry, 2, create("/b", 600)), Err(RegistryError::QuotaExceeded { .. })));
    let set =
        |bytes: usize| Command::Set { path: ZPath::parse("/a").expect("valid"), data: vec![2; bytes], version: None };
    assert!(matches!(
        apply(&mut registry, 3, set(2_000)),
        Err(RegistryError::TooLarge { .. }) | Err(RegistryError::QuotaExceeded { .. })
    ));
    assert!(apply(&mut registry, 4, set(100)).is_ok());
    assert_eq!(registry.data_bytes(), 1 + 2 + 100);
    // A multi that creates then fails rolls its bytes back too.
    let ops = vec![
        MultiOp::Create { path: ZPath::parse("/c").expect("valid"), data: vec![3; 300], mode: CreateMode::Persistent },
        MultiOp::Delete { path: ZPath::parse("/missing").expect("valid"), version: None },
    ];
    assert!(apply(&mut registry, 5, Command::Multi { ops, session: None }).is_err());
    assert_eq!(registry.data_bytes(), 1 + 2 + 100);
    assert!(
        apply(&mut registry, 6, Command::Delete { path: ZPath::parse("/a").expect("valid"), version: None }).is_ok()
    );
    assert_eq!(registry.data_bytes(), 1);
    let mut copy = registry.clone();
    copy.rebuild_derived();
    assert_eq!(copy.data_bytes(), registry.data_bytes());
}

#[test]
fn descendants_are_counted_at_every_depth_and_neighbours_are_not() {
    let mut f = Fixture::new();
    for path in ["/a", "/a/b", "/a/b/c", "/a/d", "/a-x", "/a-x/y", "/ab"] {
        f.create(path, CreateMode::Persistent, None).expect("create");
    }
    assert_eq!(f.registry.descendant_count(&p("/a")), Ok(3));
    assert_eq!(f.registry.descendant_count(&p("/a/b/c")), Ok(0));
    assert_eq!(f.registry.descendant_count(&ZPath::root()), Ok(7));
    assert!(matches!(f.registry.descendant_count(&p("/nope")), Err(RegistryError::NoNode { .. })));
}

#[test]
fn a_session_lists_its_ephemerals() {
    let mut f = Fixture::new();
    let session = f.session();
    f.create("/e1", CreateMode::Ephemeral, Some(session)).expect("create");
    f.create("/p", CreateMode::Persistent, None).expect("create");
    f.create("/p/e2", CreateMode::Ephemeral, Some(session)).expect("create");
    assert_eq!(f.registry.session_ephemerals(session), vec![p("/e1"), p("/p/e2")]);
    assert!(f.registry.session_ephemerals(SessionId(999)).is_empty());
}

#[test]
fn create_child_numbers_sequential_children_by_the_parents_cversion() {
    let mut f = Fixture::new();
    f.create("/q", CreateMode::Persistent, None).expect("create");
    let child = |name: &str, mode| Command::CreateChild {
        parent: p("/q"),
        name: name.into(),
        data: Vec::new(),
        mode,
        owner: None,
        ttl_ms: None,
    };
    f.run(child("a", CreateMode::Persistent)).expect("create");
    f.run(Command::Delete { path: p("/q/a"), version: None }).expect("delete");
    // Two changes to the children so far: ZooKeeper names the next sequential child 2.
    let Ok(Outcome::Created { path, .. }) = f.run(child("job-", CreateMode::PersistentSequential)) else { panic!() };
    assert_eq!(path, p("/q/job-0000000002"));
    let Ok(Outcome::Created { path, .. }) = f.run(child("", CreateMode::PersistentSequential)) else { panic!() };
    assert_eq!(path, p("/q/0000000003"));
    assert!(matches!(f.run(child("", CreateMode::Persistent)), Err(RegistryError::InvalidPath { .. })));
    // An earlier version's command keeps its own counter.
    let old = Command::Create {
        path: p("/q/old-"),
        data: Vec::new(),
        mode: CreateMode::PersistentSequential,
        session: None,
        ttl_ms: None,
    };
    let Ok(Outcome::Created { path, .. }) = f.run(old) else { panic!() };
    assert_eq!(path, p("/q/old-0000000002"));
}

// --- State version 2: ACLs, ZooKeeper's own nodes, ZooKeeper's numbering ---------------------------

fn upgrade(f: &mut Fixture) {
    let config = "server.1=127.0.0.1:1:1:participant\nversion=0".to_string();
    assert_eq!(f.run(Command::Upgrade { version: 2, zookeeper_config: config }), Ok(Outcome::Nothing));
    assert_eq!(f.registry.version(), 2);
}

fn create_node(parent: &str, name: &str, mode: CreateMode, acl: Vec<Acl>) -> Command {
    Command::CreateNode { parent: p(parent), name: name.into(), data: vec![], mode, owner: None, ttl_ms: None, acl }
}

fn as_caller(caller: &Caller, command: Command) -> Command {
    Command::As { caller: caller.clone(), command: Box::new(command) }
}

fn digest_caller(name: &str, password: &str) -> Caller {
    let mut caller = Caller::anonymous();
    caller.add(crate::registry::AuthId::new("digest", &acl::digest_id(name, password)));
    caller
}

fn created_name(applied: Applied) -> String {
    match applied {
        Ok(Outcome::Created { path, .. }) => path.name().to_string(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sequential_numbers_count_creates_in_version_2_and_cversion_counts_every_change() {
    let mut f = Fixture::new();
    f.create("/v1", CreateMode::Persistent, None).expect("create");
    let seq = |f: &mut Fixture, parent: &str| {
        created_name(f.run(Command::CreateChild {
            parent: p(parent),
            name: "n-".into(),
            data: vec![],
            mode: CreateMode::PersistentSequential,
            owner: None,
            ttl_ms: None,
        }))
    };
    for _ in 0..3 {
        seq(&mut f, "/v1");
    }
    f.run(Command::Delete { path: p("/v1/n-0000000001"), version: None }).expect("delete");
    assert_eq!(seq(&mut f, "/v1"), "n-0000000004", "version 1 numbers by cversion, deletes included");
    upgrade(&mut f);
    assert_eq!(seq(&mut f, "/v1"), "n-0000000005", "numbers keep growing across the upgrade");
    f.create("/v2", CreateMode::Persistent, None).expect("create");
    for _ in 0..3 {
        seq(&mut f, "/v2");
    }
    f.run(Command::Delete { path: p("/v2/n-0000000001"), version: None }).expect("delete");
    assert_eq!(seq(&mut f, "/v2"), "n-0000000003", "version 2 numbers by creates, as ZooKeeper does");
    let stat = f.registry.exists(&p("/v2")).expect("exists");
    assert_eq!((stat.cversion, stat.num_children), (5, 3), "cversion counts creates and deletes");
}

#[test]
fn version_2_creates_zookeepers_nodes_as_a_fresh_zookeeper_shows_them() {
    let mut f = Fixture::new();
    f.create("/grid", CreateMode::Persistent, None).expect("create");
    f.create("/grid/nodes", CreateMode::Persistent, None).expect("create");
    upgrade(&mut f);
    let (children, zookeeper) = f.registry.children(&p("/zookeeper")).expect("/zookeeper");
    assert_eq!(children, vec!["config".to_string(), "quota".to_string()]);
    assert_eq!(zookeeper.cversion as i32, -2, "ZooKeeper's initial tree: 2 * 0 creates - 2 children");
    let root = f.registry.exists(&ZPath::root()).expect("root");
    assert_eq!(root.cversion as i32, 0, "one create (/grid), and /zookeeper shows as -1");
    let (config, stat) = f.registry.get(&p("/zookeeper/config")).expect("config");
    assert!(config.starts_with(b"server.1="));
    assert_eq!((stat.version as i32, stat.aversion as i32), (-1, -1));
    assert_eq!(f.registry.acl(&p("/zookeeper/config")).expect("acl").0, acl::read_only());
    assert_eq!(f.registry.acl(&p("/grid/nodes")).expect("acl").0, acl::read_only(), "the cluster's own subtree");
    let anyone = Caller::anonymous();
    for path in ["/zookeeper", "/zookeeper/config", "/zookeeper/quota"] {
        let refused = f.run(as_caller(&Caller::superuser(), Command::Delete { path: p(path), version: None }));
        assert!(
            matches!(refused, Err(RegistryError::BadArguments { .. }) | Err(RegistryError::NotEmpty { .. })),
            "{path}: {refused:?}"
        );
    }
    let set = f.run(as_caller(&anyone, Command::Set { path: p("/zookeeper/config"), data: vec![], version: None }));
    assert_eq!(set, Err(RegistryError::Denied { path: "/zookeeper/config".into() }));
    // A registration under /grid/nodes, written by the cluster itself, is world-readable only too.
    f.create("/grid/nodes/1", CreateMode::Persistent, None).expect("the cluster's own create");
    assert_eq!(f.registry.acl(&p("/grid/nodes/1")).expect("acl").0, acl::read_only());
    let deleted = f.run(as_caller(&anyone, Command::Delete { path: p("/grid/nodes/1"), version: None }));
    assert_eq!(deleted, Err(RegistryError::Denied { path: "/grid/nodes".into() }));
    assert_eq!(f.run(Command::Upgrade { version: 2, zookeeper_config: String::new() }), Ok(Outcome::Nothing));
}

#[test]
#[should_panic(expected = "this build applies versions up to")]
fn a_version_this_build_does_not_know_stops_the_replica() {
    let mut f = Fixture::new();
    let _ = f.run(Command::Upgrade { version: STATE_VERSION + 1, zookeeper_config: String::new() });
}

#[test]
fn acls_are_checked_at_apply_for_every_write() {
    let mut f = Fixture::new();
    upgrade(&mut f);
    let alice = digest_caller("alice", "secret");
    let bob = digest_caller("bob", "pw");
    let alice_all = Acl::new(acl::perms::ALL, "digest", &acl::digest_id("alice", "secret"));
    let bob_read = Acl::new(acl::perms::READ, "digest", &acl::digest_id("bob", "pw"));
    let created = f.run(as_caller(&alice, create_node("/", "dg", CreateMode::Persistent, vec![alice_all.clone()])));
    assert!(created.is_ok(), "{created:?}");
    let denied = |path: &str| Err(RegistryError::Denied { path: path.into() });
    // Create needs CREATE on the parent, delete DELETE on the parent, set WRITE, setACL ADMIN.
    assert_eq!(f.run(as_caller(&bob, create_node("/dg", "x", CreateMode::Persistent, acl::open()))), denied("/dg"));
    assert_eq!(f.run(as_caller(&bob, Command::Set { path: p("/dg"), data: vec![1], version: None })), denied("/dg"));
    let set_acl = Command::SetAcl { path: p("/dg"), acl: vec![alice_all.clone(), bob_read.clone()], version: Some(0) };
    assert_eq!(f.run(as_caller(&bob, set_acl.clone())), denied("/dg"));
    let Ok(Outcome::Set { stat }) = f.run(as_caller(&alice, set_acl.clone())) else { panic!("alice may") };
    assert_eq!(stat.aversion, 1);
    assert!(matches!(f.run(as_caller(&alice, set_acl)), Err(RegistryError::BadVersion { expected: 0, actual: 1, .. })));
    assert!(f.registry.may(&bob, &p("/dg"), acl::perms::READ));
    assert!(!f.registry.may(&bob, &p("/dg"), acl::perms::WRITE));
    assert!(!f.registry.may(&Caller::anonymous(), &p("/dg"), acl::perms::READ));
    // A multi fails whole at the op its caller may not do, its check included (READ).
    f.run(as_caller(&alice, create_node("/dg", "c", CreateMode::Persistent, vec![alice_all.clone()]))).expect("child");
    let ops = vec![MultiOp::Check { path: p("/dg"), version: 0 }, MultiOp::Delete { path: p("/dg/c"), version: None }];
    let multi = f.run(as_caller(&bob, Command::Multi { ops: ops.clone(), session: None }));
    assert!(matches!(multi, Err(RegistryError::MultiFailed { index: 1, .. })), "{multi:?}");
    let stranger = f.run(as_caller(&Caller::anonymous(), Command::Multi { ops: ops.clone(), session: None }));
    assert!(matches!(stranger, Err(RegistryError::MultiFailed { index: 0, .. })), "{stranger:?}");
    assert!(f.registry.exists(&p("/dg/c")).is_some(), "nothing applied");
    // The super user passes; the cluster's own commands are not checked.
    f.run(as_caller(&Caller::superuser(), Command::Delete { path: p("/dg/c"), version: None })).expect("super");
    f.run(Command::Set { path: p("/dg"), data: vec![2], version: None }).expect("the cluster's own");
    assert_eq!(
        f.run(as_caller(&alice, create_node("/", "empty", CreateMode::Persistent, vec![]))),
        Err(RegistryError::InvalidAcl { reason: "an ACL has 1 to 64 entries, not 0".into() })
    );
}

#[test]
fn acl_records_survive_the_snapshot_layout() {
    let mut f = Fixture::new();
    upgrade(&mut f);
    let alice = digest_caller("alice", "secret");
    let entry = Acl::new(acl::perms::ALL, "digest", &acl::digest_id("alice", "secret"));
    f.run(as_caller(&alice, create_node("/dg", "", CreateMode::Persistent, vec![entry.clone()]))).expect_err("no name");
    f.run(as_caller(&alice, create_node("/", "dg", CreateMode::Persistent, vec![entry.clone()]))).expect("create");
    let bytes = postcard::to_stdvec(&f.registry).expect("encode");
    let mut loaded: Registry = postcard::from_bytes(&bytes).expect("decode");
    assert_ne!(loaded, f.registry, "ACLs are not in the tree's own layout");
    let (version, records) = f.registry.acl_records();
    loaded.restore_acl_records(version, records);
    loaded.restore_session_secrets(f.registry.session_secrets().clone());
    assert_eq!(loaded, f.registry);
    assert_eq!(loaded.version(), 2);
}
