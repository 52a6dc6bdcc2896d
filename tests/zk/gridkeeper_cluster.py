"""Real gridkeeper node processes standing in for kazoo's Java ZooKeeper launcher.

kazoo's test suite gets its servers from ``kazoo.testing.harness.get_global_cluster()``, which builds a
``kazoo.testing.common.ZookeeperCluster`` of ``ManagedZooKeeper`` Java processes. This module offers the
same interface over ``gridkeeper node`` processes with their ZooKeeper listener on, so kazoo's own tests
run unchanged against gridkeeper (``kazoo_plugin.py`` installs it).

What the tests touch, and what it does here:
  cluster[i], iter(cluster), len(cluster)   the servers, node ids 1..size in order
  cluster.start()                           starts every stopped node, waits for a leader, every ZK port and
                                            the state version (2: ACLs and /zookeeper)
  cluster.stop() / .terminate() / .reset()  stops every node (SIGTERM); terminate and reset also wipe data
  server.address                            "127.0.0.1:<zk port>"
  server.running                            whether this adapter believes the node runs
  server.run() / .start()                   starts the node with its old data dir; waits until it serves
  server.stop()                             SIGTERM, bounded wait, then SIGKILL; keeps the data dir
  server.kill()                             SIGKILL (not in kazoo's interface; for our own checks)
  server.reset() / .destroy()               stop and wipe the data dir (logs are kept for a post-mortem)
  get_logs()                                the tails of the node logs (kazoo's conftest prints them)

Configuration, from the environment (tests/zk_kazoo.rs sets the first two):
  GK_ZK_BINARY     the gridkeeper binary (required)
  GK_ZK_DIR        working directory: certs/, node-N/data, node-N/node.log (default: a new temp dir)
  GK_ZK_SIZE       voters in the cluster (default 3)
  GK_ZK_PORT_BASE  node N uses BASE+10*(N-1): +0 mesh (UDP), +1 admin, +2 ZooKeeper (default: free ports)
  GK_ZK_4LW        the --zk-4lw allow list (default "*", as kazoo's harness configures ZooKeeper)
  GK_ZK_RUST_LOG   RUST_LOG for the nodes (default "info")

``python gridkeeper_cluster.py check`` starts a cluster, stops and restarts one node, kills and
restarts another, and prints what it saw: a self-test of this adapter that needs no ZooKeeper client.
"""

import atexit
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HOST = "127.0.0.1"
# Longest a start waits for its nodes to serve, and a stop for a node to exit after SIGTERM.
WAIT_MAX_SECONDS = 30.0
POLL_SECONDS = 0.025
LOG_TAIL_LINES = 100


def _wait_for(what, check, limit=WAIT_MAX_SECONDS):
    """Polls ``check`` until it returns a true value, for at most ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise RuntimeError("gave up after %.0f s waiting for %s" % (limit, what))
        time.sleep(POLL_SECONDS)


def _free_port(kind):
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _accepts(port):
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def _status(admin_port, certs):
    """The node's admin ``/status`` document over HTTPS (the cluster CA in ``certs`` verifies the node,
    the operator certificate there is the credential), or None if it does not answer."""
    try:
        context = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
        context.load_cert_chain(os.path.join(certs, "operator.pem"), os.path.join(certs, "operator.key"))
        url = "https://%s:%d/status" % (HOST, admin_port)
        with urllib.request.urlopen(url, timeout=1, context=context) as response:
            return json.loads(response.read(1 << 20))
    except (OSError, ValueError):
        return None


class GridkeeperServer:
    """One ``gridkeeper node`` process; the interface of kazoo's ``ManagedZooKeeper``."""

    def __init__(self, cluster, node_id, mesh_port, admin_port, zk_port):
        self.cluster = cluster
        self.node_id = node_id
        self.host = HOST
        self.mesh_port = mesh_port
        self.admin_port = admin_port
        self.client_port = zk_port
        self.working_path = os.path.join(cluster.workdir, "node-%d" % node_id)
        self.data_path = os.path.join(self.working_path, "data")
        self.log_path = os.path.join(self.working_path, "node.log")
        self.process = None
        self.starts = 0
        self._lock = threading.RLock()

    @property
    def address(self):
        return "%s:%d" % (self.host, self.client_port)

    @property
    def secure_address(self):
        raise NotImplementedError("gridkeeper's ZooKeeper listener has no TLS port")

    @property
    def secure_client_port(self):
        raise NotImplementedError("gridkeeper's ZooKeeper listener has no TLS port")

    @property
    def running(self):
        with self._lock:
            return self.process is not None and self.process.poll() is None

    def spawn(self):
        """Starts the process without waiting for it to serve."""
        with self._lock:
            if self.running:
                return
            os.makedirs(self.data_path, exist_ok=True)
            self.starts += 1
            log = open(self.log_path, "ab")
            log.write(b"=== gridkeeper_cluster.py: start %d of node %d ===\n" % (self.starts, self.node_id))
            log.flush()
            args = [
                self.cluster.binary, "node",
                "--id", str(self.node_id),
                "--peers", self.cluster.peers(),
                "--certs", self.cluster.certs,
                "--data-dir", self.data_path,
                "--admin", "%s:%d" % (HOST, self.admin_port),
                "--zk-listen", self.address,
                "--zk-4lw", self.cluster.four_letter_words,
            ]
            env = dict(os.environ, RUST_LOG=os.environ.get("GK_ZK_RUST_LOG", "info"))
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
            log.close()

    def wait_serving(self):
        """Waits until the ZooKeeper port accepts and, when a majority runs, the node knows a leader."""

        def serving():
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError("node %d exited (%s); its log ends:\n%s" % (
                    self.node_id, self.process and self.process.returncode, "".join(self.get_logs(30))))
            if not _accepts(self.client_port):
                return False
            if not self.cluster.has_majority():
                return True
            status = _status(self.admin_port, self.cluster.certs)
            return status is not None and status.get("leader") is not None

        _wait_for("node %d to serve on %s" % (self.node_id, self.address), serving)

    def run(self):
        """Starts the node with its existing data dir; returns once it serves."""
        self.spawn()
        self.wait_serving()

    start = run

    def stop(self):
        """SIGTERM and a bounded wait (then SIGKILL); the data dir stays."""
        with self._lock:
            if self.process is None:
                return
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(WAIT_MAX_SECONDS)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None

    def kill(self):
        """SIGKILL, as a crash."""
        with self._lock:
            if self.process is None:
                return
            self.process.kill()
            self.process.wait()
            self.process = None

    def reset(self):
        """Stops the node and wipes its data."""
        self.stop()
        shutil.rmtree(self.data_path, ignore_errors=True)

    destroy = reset

    def get_logs(self, num_lines=LOG_TAIL_LINES):
        try:
            with open(self.log_path, "r", errors="replace") as log:
                return log.readlines()[-num_lines:]
        except OSError:
            return []


class GridkeeperCluster:
    """A gridkeeper cluster of ``size`` voters; the interface of kazoo's ``ZookeeperCluster``."""

    def __init__(self, binary, workdir, size=3, port_base=None, four_letter_words="*"):
        self.binary = binary
        self.workdir = workdir
        self.four_letter_words = four_letter_words
        self.certs = os.path.join(workdir, "certs")
        os.makedirs(workdir, exist_ok=True)
        ids = list(range(1, size + 1))
        result = subprocess.run(
            [binary, "certs", "--out", self.certs, "--nodes", ",".join(map(str, ids))],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=WAIT_MAX_SECONDS)
        if result.returncode != 0:
            raise RuntimeError("gridkeeper certs failed: %s" % result.stderr.decode(errors="replace"))
        self._servers = []
        for node_id in ids:
            if port_base is not None:
                base = port_base + 10 * (node_id - 1)
                ports = (base, base + 1, base + 2)
            else:
                ports = (_free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM),
                         _free_port(socket.SOCK_STREAM))
            self._servers.append(GridkeeperServer(self, node_id, *ports))

    def __getitem__(self, index):
        return self._servers[index]

    def __iter__(self):
        return iter(self._servers)

    def __len__(self):
        return len(self._servers)

    @property
    def hosts(self):
        """The connect string: every server's address."""
        return ",".join(server.address for server in self)

    def peers(self):
        return ",".join("%d=%s:%d" % (s.node_id, HOST, s.mesh_port) for s in self)

    def has_majority(self):
        return 2 * sum(1 for server in self if server.running) > len(self)

    def start(self):
        """Starts every stopped node, then waits until all serve and agree on a running leader."""
        # Spawned together: a single node cannot elect a leader, so waiting on each in turn would stall.
        for server in reversed(self._servers):
            server.spawn()
        for server in self:
            server.wait_serving()
        _wait_for("the nodes to agree on a leader", self._agreed_leader)
        # A fresh cluster raises its state version (ACLs, /zookeeper) once every voter registered.
        _wait_for("the state version to reach 2 on every node", self._upgraded)

    def _upgraded(self):
        for server in self:
            status = _status(server.admin_port, self.certs) if server.running else None
            if server.running and (status is None or (status.get("state_version") or 0) < 2):
                return False
        return True

    def _agreed_leader(self):
        running = [server for server in self if server.running]
        leaders = set()
        for server in running:
            status = _status(server.admin_port, self.certs)
            if status is None or status.get("leader") is None:
                return None
            leaders.add(status["leader"])
        running_ids = {server.node_id for server in running}
        return len(leaders) == 1 and leaders <= running_ids

    def stop(self):
        for server in self:
            server.stop()

    def terminate(self):
        """Stops every node and wipes its data; a later start() begins a fresh cluster."""
        for server in self:
            server.destroy()

    def reset(self):
        for server in self:
            server.reset()

    def kill_all(self):
        for server in self:
            server.kill()

    def wipe(self):
        """SIGKILL every node and wipe its data, keeping the logs."""
        for server in self:
            server.kill()
            shutil.rmtree(server.data_path, ignore_errors=True)

    def get_logs(self):
        logs = []
        for server in self:
            logs += ["--- node %d (%s) ---\n" % (server.node_id, server.log_path)]
            logs += server.get_logs()
        return logs

    def get_ssl_client_configuration(self):
        raise NotImplementedError("gridkeeper's ZooKeeper listener has no TLS")


# The names harness.py imports from kazoo.testing.common, which this module replaces.
ManagedZooKeeper = GridkeeperServer
ZookeeperCluster = GridkeeperCluster

CLUSTER = None


def cluster_from_env():
    binary = os.environ.get("GK_ZK_BINARY")
    if not binary:
        raise RuntimeError("GK_ZK_BINARY must name the gridkeeper binary (target/debug/gridkeeper)")
    workdir = os.environ.get("GK_ZK_DIR") or tempfile.mkdtemp(prefix="gk-kazoo-")
    port_base = os.environ.get("GK_ZK_PORT_BASE")
    return GridkeeperCluster(
        binary=binary,
        workdir=workdir,
        size=int(os.environ.get("GK_ZK_SIZE", "3")),
        port_base=int(port_base) if port_base else None,
        four_letter_words=os.environ.get("GK_ZK_4LW", "*"),
    )


def get_global_cluster():
    """The one cluster of this process, built from the environment on first use; stands in for
    ``kazoo.testing.harness.get_global_cluster``."""
    global CLUSTER
    if CLUSTER is None:
        CLUSTER = cluster_from_env()
        # Nodes must not outlive pytest. (A run past its bound is killed by the Rust test as a process
        # group, nodes included.)
        atexit.register(CLUSTER.wipe)
    return CLUSTER


def _four_letter_word(port, word):
    try:
        with socket.create_connection((HOST, port), timeout=5) as conn:
            conn.sendall(word.encode())
            chunks = []
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return b"".join(chunks).decode(errors="replace")
                chunks.append(chunk)
    except OSError as error:
        return "(%s)" % error


def check():
    """Self-test: start, stop/run one node, kill/run another, terminate."""
    cluster = get_global_cluster()
    print("workdir", cluster.workdir, "hosts", cluster.hosts)
    cluster.start()
    print("started: leader", _status(cluster[0].admin_port, cluster.certs).get("leader"))
    print("ruok on node 1:", _four_letter_word(cluster[0].client_port, "ruok"))
    cluster[0].stop()
    assert not cluster[0].running
    _wait_for("the others to see node 1 leave", lambda: all(
        not member["alive"]
        for s in cluster if s.running
        for member in (_status(s.admin_port, cluster.certs) or {"members": [{"id": 1, "alive": True}]})["members"]
        if member["id"] == 1))
    print("node 1 stopped; the others see it gone")
    cluster[0].run()
    print("node 1 restarted, serving on", cluster[0].address)
    victim = cluster[len(cluster) - 1]
    victim.kill()
    victim.run()
    cluster.start()
    print("node %d killed and restarted; the cluster agrees on a leader again" % victim.node_id)
    for server in cluster:
        print("node %d srvr:" % server.node_id, _four_letter_word(server.client_port, "srvr").strip())
    cluster.terminate()
    print("check: ok")


if __name__ == "__main__":
    if sys.argv[1:] != ["check"]:
        print(__doc__)
        sys.exit(2)
    check()
