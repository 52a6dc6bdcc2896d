//! Real-process test support: launch `gridkeeper` nodes on 127.0.0.1, read their admin API, kill
//! them. Every wait is bounded and polls for the awaited state; nothing sleeps blindly.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use gridkeeper::admin::StatusView;

pub mod netns;
pub mod zk_tools;

/// Longest any test waits for a cluster to reach a state.
pub const WAIT_MAX: Duration = Duration::from_secs(30);
/// How often a waiting test looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_gridkeeper")
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let unique =
            format!("gk-{name}-{}-{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let dir = std::env::temp_dir().join(unique);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // GRIDKEEPER_KEEP_TEST_DIRS=1 keeps node logs and data for a post-mortem.
        if std::env::var_os("GRIDKEEPER_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Ports this test process handed out: the kernel may give a just-released port out again, and two
/// nodes of one cluster (one's admin port, another's ZooKeeper port) must never share one.
fn unique_port(mut draw: impl FnMut() -> u16) -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        let port = draw();
        if given.insert(port) {
            return port;
        }
    }
}

/// A loopback UDP port that was free a moment ago, and not handed out before by this process.
pub fn free_udp_port() -> u16 {
    unique_port(|| UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port())
}

/// A loopback TCP port that was free a moment ago, and not handed out before by this process.
pub fn free_tcp_port() -> u16 {
    unique_port(|| TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port())
}

/// Polls `check` until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Runs `gridkeeper certs`.
pub fn issue_certs(dir: &Path, nodes: &str) {
    let output =
        Command::new(binary()).args(["certs", "--out"]).arg(dir).args(["--nodes", nodes]).output().expect("run certs");
    assert!(output.status.success(), "certs failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// One `gridkeeper node` process.
pub struct NodeProcess {
    pub id: u64,
    pub admin: SocketAddr,
    child: Option<Child>,
    pub log: PathBuf,
}

impl NodeProcess {
    /// Wraps a node process started by the caller.
    pub fn adopt(id: u64, admin: SocketAddr, child: Child, log: PathBuf) -> NodeProcess {
        NodeProcess { id, admin, child: Some(child), log }
    }

    /// The exit status, if the process has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| child.try_wait().ok().flatten().is_none())
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then the exit status (bounded wait).
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let status = wait_for(WAIT_MAX, || child.try_wait().ok().flatten());
        if status.is_none() {
            let _ = child.kill();
        }
        status
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster's launch parameters: ids, addresses, credentials.
pub struct ClusterSpec {
    pub dir: TempDir,
    pub ids: Vec<u64>,
    pub mesh_ports: Vec<u16>,
    pub admin_ports: Vec<u16>,
    /// ZooKeeper client ports: free ones, so test binaries running at once never share the default.
    pub zk_ports: Vec<u16>,
    /// The host every `--peers` entry names: `127.0.0.1` unless a test sets a name.
    pub peer_host: String,
    /// The ids `--peers` lists (every id unless a test keeps some to add later).
    pub founders: Vec<u64>,
}

impl ClusterSpec {
    pub fn new(name: &str, size: u64) -> ClusterSpec {
        let dir = TempDir::new(name);
        let ids: Vec<u64> = (1..=size).collect();
        let nodes = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        issue_certs(&dir.path().join("certs"), &nodes);
        let spec = ClusterSpec {
            mesh_ports: ids.iter().map(|_| free_udp_port()).collect(),
            admin_ports: ids.iter().map(|_| free_tcp_port()).collect(),
            zk_ports: ids.iter().map(|_| free_tcp_port()).collect(),
            peer_host: "127.0.0.1".to_string(),
            founders: ids.clone(),
            ids,
            dir,
        };
        for &id in &spec.ids {
            register_admin(spec.admin(id), &spec.certs());
        }
        spec
    }

    /// How a client reaches this cluster: HTTPS as its operator.
    pub fn access(&self) -> gridkeeper::client::Access {
        gridkeeper::client::Access::from_certs(&self.certs()).expect("operator credentials")
    }

    pub fn peers(&self) -> String {
        self.founders.iter().map(|&id| format!("{id}={}", self.mesh_addr(id))).collect::<Vec<_>>().join(",")
    }

    /// Node `id`'s mesh address as peers dial it.
    pub fn mesh_addr(&self, id: u64) -> String {
        format!("{}:{}", self.peer_host, self.mesh_ports[(id - 1) as usize])
    }

    pub fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    pub fn admin(&self, id: u64) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.admin_ports[(id - 1) as usize]))
    }

    /// A node's ZooKeeper client address.
    pub fn zk(&self, id: u64) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.zk_ports[(id - 1) as usize]))
    }

    /// Every node's ZooKeeper client address, as a ZooKeeper connect string (`host:port,...`).
    pub fn zk_hosts(&self) -> String {
        self.ids.iter().map(|&id| self.zk(id).to_string()).collect::<Vec<_>>().join(",")
    }

    /// Starts node `id` with this spec's credentials.
    pub fn start(&self, id: u64) -> NodeProcess {
        self.start_with_certs(id, &self.certs())
    }

    /// Starts node `id` with the credentials in `certs`.
    pub fn start_with_certs(&self, id: u64, certs: &Path) -> NodeProcess {
        self.start_with_args(id, certs, &[])
    }

    /// Starts node `id` with the credentials in `certs` and extra flags.
    pub fn start_with_args(&self, id: u64, certs: &Path, extra: &[&str]) -> NodeProcess {
        self.start_with_env(id, certs, extra, &[])
    }

    /// Starts node `id` with the credentials in `certs`, extra flags and environment variables.
    pub fn start_with_env(&self, id: u64, certs: &Path, extra: &[&str], env: &[(&str, &str)]) -> NodeProcess {
        if extra.contains(&"--admin-plaintext") {
            register_plaintext(self.admin(id), certs);
        } else {
            register_admin(self.admin(id), certs);
        }
        let peers = ["--peers".to_string(), self.peers()];
        self.spawn(id, certs, &peers, extra, env)
    }

    /// Starts node `id` as a voter joining the running cluster through node `via`'s admin API
    /// (`members add` must have named it first).
    pub fn start_joining_voter(&self, id: u64, via: u64) -> NodeProcess {
        register_admin(self.admin(id), &self.certs());
        let join = [
            "--join".to_string(),
            self.admin(via).to_string(),
            "--voter".to_string(),
            "--listen".to_string(),
            format!("127.0.0.1:{}", self.mesh_ports[(id - 1) as usize]),
        ];
        self.spawn(id, &self.certs(), &join, &[], &[])
    }

    fn spawn(&self, id: u64, certs: &Path, membership: &[String], extra: &[&str], env: &[(&str, &str)]) -> NodeProcess {
        let log = self.dir.path().join(format!("node-{id}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(binary())
            .args(["node", "--id", &id.to_string()])
            .args(membership)
            .arg("--certs")
            .arg(certs)
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("data-{id}")))
            .args(["--admin", &self.admin(id).to_string()])
            .args(if extra.contains(&"--zk-listen") {
                vec![]
            } else {
                vec!["--zk-listen".to_string(), self.zk(id).to_string()]
            })
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("spawn node");
        NodeProcess { id, admin: self.admin(id), child: Some(child), log }
    }
}

/// How to reach every admin address a [`ClusterSpec`] of this process handed out, so that
/// [`admin_get`] reaches any node as its cluster's operator (over HTTPS, or plain HTTP with the admin
/// token for a node a test started with `--admin-plaintext`).
fn access_by_admin() -> &'static std::sync::Mutex<std::collections::HashMap<SocketAddr, gridkeeper::client::Access>> {
    static MAP: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<SocketAddr, gridkeeper::client::Access>>,
    > = std::sync::OnceLock::new();
    MAP.get_or_init(Default::default)
}

/// Records that the node at `admin` is reached over HTTPS as the operator whose credentials are in
/// `certs`.
pub fn register_admin(admin: SocketAddr, certs: &Path) {
    let access = gridkeeper::client::Access::from_certs(certs).expect("operator credentials");
    access_by_admin().lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(admin, access);
}

/// Records that the node at `admin` serves plain HTTP (`--admin-plaintext`): it is reached with the
/// admin token in `certs`.
pub fn register_plaintext(admin: SocketAddr, certs: &Path) {
    let token = gridkeeper::credentials::load_admin_token(certs).expect("admin token");
    let access = gridkeeper::client::Access::plaintext().with_token(token);
    access_by_admin().lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(admin, access);
}

/// How to reach the node at `admin`, as registered (plain HTTP with no credential for an address no
/// spec handed out).
pub fn access_for(admin: SocketAddr) -> gridkeeper::client::Access {
    let registered = access_by_admin().lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&admin).cloned();
    registered.unwrap_or_else(gridkeeper::client::Access::plaintext)
}

/// GET `path` from a node's admin API, as the operator.
pub fn admin_get(admin: SocketAddr, path: &str) -> Option<String> {
    admin_get_with(admin, path, &access_for(admin))
}

/// GET `path` from a node's admin API with `access`.
pub fn admin_get_with(admin: SocketAddr, path: &str, access: &gridkeeper::client::Access) -> Option<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let body = runtime.block_on(gridkeeper::admin::client::get(admin, path, access)).ok()?;
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// A node's `/status`, if it answers.
pub fn status(admin: SocketAddr) -> Option<StatusView> {
    serde_json::from_str(&admin_get(admin, "/status")?).ok()
}

/// Whether `observer` reports exactly `alive` as its live members (itself included).
pub fn sees_alive(admin: SocketAddr, alive: &[u64]) -> bool {
    status(admin).is_some_and(|view| {
        let mut up: Vec<u64> = view.members.iter().filter(|member| member.alive).map(|member| member.id).collect();
        up.sort_unstable();
        up == alive
    })
}

/// The value of a Prometheus sample whose line starts with `prefix` (name and labels), summed.
pub fn metric_sum(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The leader every node in `alive` agrees on, if they agree and it is one of them.
pub fn leader_of(spec: &ClusterSpec, alive: &[u64]) -> Option<u64> {
    let leaders: Vec<Option<u64>> =
        alive.iter().map(|&id| status(spec.admin(id)).and_then(|view| view.leader)).collect();
    match leaders.first() {
        Some(Some(leader)) if leaders.iter().all(|other| *other == Some(*leader)) && alive.contains(leader) => {
            Some(*leader)
        }
        _ => None,
    }
}

/// `METHOD path` with a JSON `body` through `access`: the HTTP status and body, or `None` if no
/// exchange happened (the connection or its TLS handshake failed).
pub fn http(
    access: &gridkeeper::client::Access,
    admin: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Option<(u16, String)> {
    use http_body_util::BodyExt;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mut sender = access.dial::<http_body_util::Full<bytes::Bytes>>(admin).await.ok()?;
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, admin.to_string())
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(authorization) = access.authorization() {
            request = request.header(hyper::header::AUTHORIZATION, authorization);
        }
        let request = request.body(http_body_util::Full::new(bytes::Bytes::from(body.to_string()))).ok()?;
        let response = tokio::time::timeout(WAIT_MAX, sender.send_request(request)).await.ok()?.ok()?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&bytes).into_owned()))
    })
}
