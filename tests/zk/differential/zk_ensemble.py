"""A 3-member Apache ZooKeeper ensemble (Debian ``zookeeper`` package) for the differential harness.

Launches ``org.apache.zookeeper.server.quorum.QuorumPeerMain`` like /work/shared/peers/zk-cluster.sh
does, but with this harness's own zoo.cfg:
  extendedTypesEnabled=true            TTL nodes (CreateTTL) are accepted
  4lw.commands.whitelist=*             every four-letter word
  admin.enableServer=false             no AdminServer (no HTTP port to clash)
and no superDigest (``zookeeper.DigestAuthenticationProvider.superDigest`` is never set).
Keys zoo.cfg does not know become ``zookeeper.<key>`` system properties (QuorumPeerConfig).
The container manager reads the unprefixed system property ``znode.container.checkIntervalMs``, so
that one is a JVM flag (-Dznode.container.checkIntervalMs=1000: empty containers and expired TTL
nodes are reaped within ~1 s instead of the 60 s default).

Ports on 127.0.0.1: client BASE..BASE+2 (default 22181-22183), quorum BASE+700.. (22881-22883),
election BASE+1700.. (23881-23883). Data, configs and logs under ``workdir``/zkN.

Standalone use:  python zk_ensemble.py check   (start, print srvr of each member, stop)
"""

import os
import socket
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"
CLASSPATH = ":".join([
    "/etc/zookeeper/conf",
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/slf4j-log4j12.jar",
    "/usr/share/java/log4j-1.2.jar",
    "/usr/share/java/servlet-api.jar",
])
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"


def four_letter_word(port, word, timeout=2.0):
    """The server's answer to a four-letter word, or "" if it does not answer."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as conn:
            conn.sendall(word.encode())
            chunks = []
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


class ZooKeeperEnsemble:
    def __init__(self, workdir, size=3, base_port=22181, heap="256m"):
        self.workdir = workdir
        self.size = size
        self.base_port = base_port
        self.heap = heap
        self.processes = []

    def client_port(self, i):
        return self.base_port + i - 1

    @property
    def hosts(self):
        return ",".join("%s:%d" % (HOST, self.client_port(i)) for i in range(1, self.size + 1))

    def _write_config(self, i):
        d = os.path.join(self.workdir, "zk%d" % i)
        os.makedirs(os.path.join(d, "data"), exist_ok=True)
        os.makedirs(os.path.join(d, "logs"), exist_ok=True)
        with open(os.path.join(d, "data", "myid"), "w") as f:
            f.write("%d\n" % i)
        lines = [
            "tickTime=2000",
            "initLimit=10",
            "syncLimit=5",
            "dataDir=%s" % os.path.join(d, "data"),
            "clientPort=%d" % self.client_port(i),
            "clientPortAddress=%s" % HOST,
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            "extendedTypesEnabled=true",
            "maxClientCnxns=0",
        ]
        if self.size > 1:
            for j in range(1, self.size + 1):
                lines.append("server.%d=%s:%d:%d" % (j, HOST, self.base_port + 700 + j - 1,
                                                     self.base_port + 1700 + j - 1))
        cfg = os.path.join(d, "zoo.cfg")
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        return d, cfg

    def start(self, timeout=60):
        for i in range(1, self.size + 1):
            if four_letter_word(self.client_port(i), "ruok", 0.5):
                raise RuntimeError("port %d already serves; refusing to start" % self.client_port(i))
        for i in range(1, self.size + 1):
            d, cfg = self._write_config(i)
            log = open(os.path.join(d, "logs", "stdout.log"), "ab")
            args = ["java", "-Xmx" + self.heap, "-Dzookeeper.log.dir=" + os.path.join(d, "logs"),
                    "-Dzookeeper.root.logger=INFO,CONSOLE",
                    "-Dznode.container.checkIntervalMs=1000", "-cp", CLASSPATH, MAIN_CLASS, cfg]
            self.processes.append(subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                                   stderr=subprocess.STDOUT, start_new_session=True))
            log.close()
        deadline = time.monotonic() + timeout
        modes = []
        while time.monotonic() < deadline:
            for i, p in enumerate(self.processes, 1):
                if p.poll() is not None:
                    raise RuntimeError("zk%d exited with %s; see %s" % (
                        i, p.returncode, os.path.join(self.workdir, "zk%d" % i, "logs", "stdout.log")))
            modes = []
            for i in range(1, self.size + 1):
                out = four_letter_word(self.client_port(i), "srvr")
                mode = [l.split(": ", 1)[1] for l in out.splitlines() if l.startswith("Mode: ")]
                modes.append(mode[0] if mode else None)
            if self.size == 1 and modes == ["standalone"]:
                return
            if modes.count("leader") == 1 and modes.count("follower") == self.size - 1:
                return
            time.sleep(0.5)
        raise RuntimeError("ZooKeeper quorum did not form within %d s (modes %s)" % (timeout, modes))

    def stop(self):
        for p in self.processes:
            if p.poll() is None:
                p.terminate()
        for p in self.processes:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.processes = []


if __name__ == "__main__":
    if sys.argv[1:] != ["check"]:
        print(__doc__)
        sys.exit(2)
    ensemble = ZooKeeperEnsemble(tempfile.mkdtemp(prefix="zk-diff-"))
    try:
        ensemble.start()
        for i in range(1, ensemble.size + 1):
            print("zk%d:" % i, four_letter_word(ensemble.client_port(i), "srvr").strip().replace("\n", " | "))
    finally:
        ensemble.stop()
    print("stopped")
