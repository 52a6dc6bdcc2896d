//! One simulated client's connection to the system under test, and the requests every system is
//! driven with: the same keys, the same 256-byte values, the same closed loop.
//!
//! Each simulated client gets a connection of its own (a gridkeeper HTTP connection, a ZooKeeper
//! session, an etcd gRPC channel), so no system gains from pipelining several clients' requests
//! over one connection. gridkeeper's ZooKeeper front end is driven as a ZooKeeper ensemble is, through
//! [`Target::ZooKeeper`]. This module does not time anything: the driver does.

use std::fmt;
use std::net::SocketAddr;
use std::sync::LazyLock;

use anyhow::{bail, Context, Result};
use etcd_client::{Compare, CompareOp, GetOptions, GetResponse, Txn, TxnOp};
use gridkeeper::client::Client as GkClient;
use gridkeeper::consensus::Consistency;
use gridkeeper::registry::CreateMode as GkCreateMode;
use zookeeper_client as zk;

/// Keys the write and read workloads spread over.
pub const KEYS: usize = 1_000;
/// Bytes of every value written or created.
pub const VALUE_BYTES: usize = 256;
/// Parent of every fixture key.
pub const ROOT: &str = "/peers";
/// Parent of the nodes the create workload makes.
pub const SEQUENCE_PARENT: &str = "/peers/seq";
/// Name prefix of sequential nodes; the server appends the counter.
const SEQUENCE_PREFIX: &str = "/peers/seq/n-";

/// The value every write and create carries.
pub static VALUE: LazyLock<String> = LazyLock::new(|| "v".repeat(VALUE_BYTES));

/// Open ACLs, as any benchmark client would use: ACL checks are not what is measured.
const ZK_PERSISTENT: zk::CreateOptions<'static> = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
const ZK_SEQUENTIAL: zk::CreateOptions<'static> =
    zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());

/// The path (ZooKeeper, gridkeeper) or key (etcd) of fixture key `key`.
pub fn key_path(key: usize) -> String {
    format!("{ROOT}/k{key:04}")
}

/// One request kind of the registry workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Replace the value of an existing key.
    Write,
    /// Create a new node: sequential where the system has them.
    Create,
    /// Linearizable read of an existing key.
    Read,
    /// Read served by the contacted member from its own state (may lag).
    ReadLocal,
}

/// A key nobody has created yet, for etcd's create (it has no sequential nodes): unique per
/// window (`window` is the window's client count, and each count runs once per cluster), client
/// and request.
#[derive(Clone, Copy, Debug)]
pub struct FreshKey {
    /// The window's client count.
    pub window: usize,
    /// The simulated client.
    pub client: usize,
    /// The client's request number.
    pub number: u64,
}

impl fmt::Display for FreshKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SEQUENCE_PARENT}/c{}-{}-{}", self.window, self.client, self.number)
    }
}

/// Where one system's members are.
#[derive(Clone, Debug)]
pub enum Target {
    /// Admin API addresses, in node-id order, and how to reach them (HTTPS with the admin token).
    Gridkeeper {
        /// One per node.
        admins: Vec<SocketAddr>,
        /// The cluster CA and the credentials directory's `admin.token`.
        access: gridkeeper::client::Access,
    },
    /// Client addresses, `host:port`: a ZooKeeper ensemble's, or gridkeeper's ZooKeeper listeners
    /// (`gridkeeper-zk`), which get exactly the same client, sessions and requests.
    ZooKeeper {
        /// One per member, in member-id order.
        servers: Vec<String>,
    },
    /// Client URLs or `host:port`.
    Etcd {
        /// One per member.
        endpoints: Vec<String>,
    },
}

/// Which members a connection may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Client `i` talks to member `i % members` only (the caller offsets `i` to choose where the
    /// first client goes).
    Pinned,
    /// Every member is listed, so the client can move when its member dies (failover).
    All,
}

/// A live connection of one simulated client.
pub enum Connection {
    /// One kept-alive HTTP connection through the client API.
    Gridkeeper(GkClient),
    /// One session.
    ZooKeeper(zk::Client),
    /// One gRPC channel (balanced over the endpoints it was given). Boxed: the client holds a
    /// handle per etcd service and dwarfs the other variants.
    Etcd(Box<etcd_client::Client>),
}

impl Target {
    /// How many members the system has.
    pub fn members(&self) -> usize {
        match self {
            Target::Gridkeeper { admins, .. } => admins.len(),
            Target::ZooKeeper { servers } => servers.len(),
            Target::Etcd { endpoints } => endpoints.len(),
        }
    }

    /// Opens the connection of simulated client `index`.
    ///
    /// # Errors
    /// When the member(s) cannot be reached.
    pub async fn connect(&self, index: usize, reach: Reach) -> Result<Connection> {
        match self {
            Target::Gridkeeper { admins, access } => {
                // `connect_any` uses the first reachable address and fails over along the rest, so a
                // rotated list both pins the client and lets it move: the same for either reach.
                let mut order = admins.clone();
                order.rotate_left(index % admins.len());
                let client = GkClient::connect_any(&order, access.clone())
                    .await
                    .with_context(|| format!("connect to gridkeeper at {}", order[0]))?;
                Ok(Connection::Gridkeeper(client))
            }
            Target::ZooKeeper { servers } => {
                let cluster = match reach {
                    Reach::Pinned => servers[index % servers.len()].clone(),
                    Reach::All => servers.join(","),
                };
                let client = zk::Client::connect(&cluster)
                    .await
                    .with_context(|| format!("connect to ZooKeeper at {cluster}"))?;
                Ok(Connection::ZooKeeper(client))
            }
            Target::Etcd { endpoints } => {
                let chosen = match reach {
                    Reach::Pinned => vec![endpoints[index % endpoints.len()].clone()],
                    Reach::All => endpoints.clone(),
                };
                let described = chosen.join(",");
                let client = etcd_client::Client::connect(chosen, None)
                    .await
                    .with_context(|| format!("connect to etcd at {described}"))?;
                Ok(Connection::Etcd(Box::new(client)))
            }
        }
    }
}

impl Connection {
    /// Runs one request of `op` on fixture key `key`; `fresh` is used only by etcd's create.
    ///
    /// # Errors
    /// Whatever the system answered other than success, including a read of a missing key.
    pub async fn run(&mut self, op: Op, key: usize, fresh: FreshKey) -> Result<()> {
        let value = VALUE.as_str();
        match self {
            Connection::Gridkeeper(client) => match op {
                Op::Write => {
                    client.set(&key_path(key), value, None).await?;
                }
                Op::Create => {
                    client.create(SEQUENCE_PREFIX, value, GkCreateMode::PersistentSequential, None).await?;
                }
                Op::Read => {
                    client.get(&key_path(key), Consistency::Linearizable).await?;
                }
                Op::ReadLocal => {
                    client.get(&key_path(key), Consistency::Local).await?;
                }
            },
            Connection::ZooKeeper(client) => match op {
                Op::Write => {
                    client.set_data(&key_path(key), value.as_bytes(), None).await?;
                }
                Op::Create => {
                    client.create(SEQUENCE_PREFIX, value.as_bytes(), &ZK_SEQUENTIAL).await?;
                }
                // ZooKeeper's reads are served by the contacted server without a quorum round;
                // `sync` + read is not a linearizable read either, so there is nothing to measure.
                Op::Read => bail!("ZooKeeper has no linearizable read; its getData is measured as read-local"),
                Op::ReadLocal => {
                    client.get_data(&key_path(key)).await?;
                }
            },
            Connection::Etcd(client) => match op {
                Op::Write => {
                    client.put(key_path(key), value, None).await?;
                }
                Op::Create => {
                    // A create is a put that must not overwrite: the transaction's guard is the
                    // key's create revision being 0 (the key does not exist).
                    let fresh = fresh.to_string();
                    let create = Txn::new()
                        .when([Compare::create_revision(fresh.as_str(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(fresh.as_str(), value, None)]);
                    if !client.txn(create).await?.succeeded() {
                        bail!("etcd key {fresh} already exists");
                    }
                }
                Op::Read => found(client.get(key_path(key), None).await?)?,
                Op::ReadLocal => found(client.get(key_path(key), Some(GetOptions::new().with_serializable())).await?)?,
            },
        }
        Ok(())
    }

    /// Makes sure `path` exists (gridkeeper, ZooKeeper) or holds `data` (etcd): fixture set-up.
    ///
    /// # Errors
    /// Whatever the system answered other than success or "exists".
    pub async fn ensure(&mut self, path: &str, data: &str) -> Result<()> {
        match self {
            Connection::Gridkeeper(client) => match client.create(path, data, GkCreateMode::Persistent, None).await {
                Ok(_) => Ok(()),
                Err(error) if error.code() == gridkeeper::api::ErrorCode::NodeExists => Ok(()),
                Err(error) => Err(error).with_context(|| format!("create {path}")),
            },
            Connection::ZooKeeper(client) => match client.create(path, data.as_bytes(), &ZK_PERSISTENT).await {
                Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
                Err(error) => Err(error).with_context(|| format!("create {path}")),
            },
            Connection::Etcd(client) => {
                client.put(path, data, None).await.with_context(|| format!("put {path}"))?;
                Ok(())
            }
        }
    }
}

/// A read of a fixture key that finds nothing is an error, as it is for the other systems.
fn found(response: GetResponse) -> Result<()> {
    if response.kvs().is_empty() {
        bail!("etcd key not found");
    }
    Ok(())
}

/// Creates the parents and the 1,000 keys every registry workload uses, through one client.
///
/// # Errors
/// When a member cannot be reached or refuses a fixture.
pub async fn prepare(target: &Target) -> Result<()> {
    let mut connection = target.connect(0, Reach::Pinned).await?;
    // etcd has no parents; a put of an empty value is harmless there.
    if !matches!(target, Target::Etcd { .. }) {
        connection.ensure(ROOT, "").await?;
        connection.ensure(SEQUENCE_PARENT, "").await?;
    }
    for key in 0..KEYS {
        connection.ensure(&key_path(key), &VALUE).await?;
    }
    Ok(())
}
