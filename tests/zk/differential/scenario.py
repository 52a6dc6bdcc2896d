"""The scripted scenario of the differential harness, and its normalization.

``run_scenario(hosts)`` connects kazoo clients to ``hosts`` (a fresh ensemble: the names of sequential
nodes depend on it), performs a fixed list of operations and returns ``[(label, result), ...]`` where
every result is already normalized and JSON-able:

  {"ok": value}     the call returned; Stats become dicts (see ``norm_stat``), listings are sorted
  {"err": "Name"}   the call raised; the exception's class name (kazoo maps error codes to classes)

Normalization drops czxid/mzxid/pzxid/ctime/mtime and session ids. ``ephemeralOwner`` becomes
"none" (0), "session:<name>" (one of the scenario's sessions), "container" (0x8000000000000000),
"ttl:<ms>" (top byte 0xFF, ZooKeeper's TTL marker) or "other:<hex>".

kazoo 2.11 has no API for TTL/container creates, addWatch, removeWatches, getEphemerals,
getAllChildrenNumber or whoAmI; ``Raw*`` request classes below speak those opcodes directly
(jute layouts from ZooKeeper's zookeeper.jute), submitted through the client's request queue.
Watch notifications are recorded raw, as (type, path) in arrival order, by wrapping kazoo's
connection reader (persistent watches fire repeatedly, which kazoo's one-shot bookkeeping drops).
"""

import re
import struct
import threading
import time
from collections import namedtuple

from kazoo.client import KazooClient
from kazoo.protocol import connection as kazoo_connection
from kazoo.protocol.serialization import (Create, Exists, GetChildren, Watch, ZnodeStat, int_struct,
                                          long_struct, read_string, stat_struct, write_buffer,
                                          write_string)
from kazoo.security import ACL, Id, OPEN_ACL_UNSAFE, READ_ACL_UNSAFE, make_digest_acl

OP_TIMEOUT = 10.0
EVENT_NAMES = {1: "NodeCreated", 2: "NodeDeleted", 3: "NodeDataChanged", 4: "NodeChildrenChanged",
               5: "DataWatchRemoved", 6: "ChildWatchRemoved", 7: "PersistentWatchRemoved"}

# ---------------------------------------------------------------- raw requests kazoo 2.11 lacks


def _write_acls(acls):
    b = bytearray(int_struct.pack(len(acls)))
    for acl in acls:
        b.extend(int_struct.pack(acl.perms) + write_string(acl.id.scheme) + write_string(acl.id.id))
    return b


def _read_create2_response(buf, offset):
    path, offset = read_string(buf, offset)
    return path, ZnodeStat._make(stat_struct.unpack_from(buf, offset))


class RawCreate2(namedtuple("RawCreate2", "path data acl flags")):
    """create2 (15), or createContainer (19) with flags=4."""
    type = 15

    def serialize(self):
        b = bytearray(write_string(self.path))
        b.extend(write_buffer(self.data))
        b.extend(_write_acls(self.acl))
        b.extend(int_struct.pack(self.flags))
        return b

    @classmethod
    def deserialize(cls, buf, offset):
        return _read_create2_response(buf, offset)


class RawCreateContainer(RawCreate2):
    type = 19


class RawCreateTTL(namedtuple("RawCreateTTL", "path data acl flags ttl")):
    """createTTL (21): flags 5 = persistent with TTL, 6 = persistent-sequential with TTL."""
    type = 21

    def serialize(self):
        b = bytearray(write_string(self.path))
        b.extend(write_buffer(self.data))
        b.extend(_write_acls(self.acl))
        b.extend(int_struct.pack(self.flags))
        b.extend(long_struct.pack(self.ttl))
        return b

    @classmethod
    def deserialize(cls, buf, offset):
        return _read_create2_response(buf, offset)


class RawAddWatch(namedtuple("RawAddWatch", "path mode")):
    """addWatch (106): mode 0 persistent, 1 persistent-recursive."""
    type = 106

    def serialize(self):
        return bytearray(write_string(self.path) + int_struct.pack(self.mode))

    @classmethod
    def deserialize(cls, buf, offset):
        return True


class RawRemoveWatches(namedtuple("RawRemoveWatches", "path watch_type")):
    """removeWatches (18): type 1 children, 2 data, 3 any."""
    type = 18

    def serialize(self):
        return bytearray(write_string(self.path) + int_struct.pack(self.watch_type))

    @classmethod
    def deserialize(cls, buf, offset):
        return True


class RawGetEphemerals(namedtuple("RawGetEphemerals", "prefix")):
    type = 103

    def serialize(self):
        return bytearray(write_string(self.prefix))

    @classmethod
    def deserialize(cls, buf, offset):
        count = int_struct.unpack_from(buf, offset)[0]
        offset += 4
        out = []
        for _ in range(max(count, 0)):
            s, offset = read_string(buf, offset)
            out.append(s)
        return out


class RawGetAllChildrenNumber(namedtuple("RawGetAllChildrenNumber", "path")):
    type = 104

    def serialize(self):
        return bytearray(write_string(self.path))

    @classmethod
    def deserialize(cls, buf, offset):
        return int_struct.unpack_from(buf, offset)[0]


class RawWhoAmI(namedtuple("RawWhoAmI", "")):
    type = 107

    def serialize(self):
        return bytearray()

    @classmethod
    def deserialize(cls, buf, offset):
        count = int_struct.unpack_from(buf, offset)[0]
        offset += 4
        out = []
        for _ in range(max(count, 0)):
            provider, offset = read_string(buf, offset)
            user, offset = read_string(buf, offset)
            out.append([provider, user])
        return out


def raw(client, request):
    result = client.handler.async_result()
    client._call(request, result)
    return result.get(timeout=OP_TIMEOUT)


# ---------------------------------------------------------------- raw watch-event recording

_original_read_watch_event = kazoo_connection.ConnectionHandler._read_watch_event


def _recording_read_watch_event(self, buffer, offset):
    log = getattr(self.client, "_diff_events", None)
    if log is not None:
        watch, _ = Watch.deserialize(buffer, offset)
        log.append([EVENT_NAMES.get(watch.type, "type%d" % watch.type), watch.path])
    if watch_type_known(buffer, offset):
        return _original_read_watch_event(self, buffer, offset)


def watch_type_known(buffer, offset):
    return Watch.deserialize(buffer, offset)[0].type in (1, 2, 3, 4)


kazoo_connection.ConnectionHandler._read_watch_event = _recording_read_watch_event

# ---------------------------------------------------------------- normalization


class Normalizer:
    def __init__(self):
        self.sessions = {}  # session id -> name
        self.hosts_ports = []

    def owner(self, value):
        if value == 0:
            return "none"
        unsigned = value & 0xFFFFFFFFFFFFFFFF
        if value in self.sessions:
            return "session:" + self.sessions[value]
        if unsigned == 0x8000000000000000:
            return "container"
        if unsigned >> 56 == 0xFF:
            return "ttl:%d" % (unsigned & 0x00FFFFFFFFFFFFFF)
        return "other:%x" % unsigned

    def stat(self, st):
        return {
            "version": st.version, "cversion": st.cversion, "aversion": st.aversion,
            "dataLength": st.dataLength, "numChildren": st.numChildren,
            "ephemeralOwner": self.owner(st.ephemeralOwner),
            "modified": st.mzxid != st.czxid,
        }

    def __call__(self, value):
        if isinstance(value, ZnodeStat):
            return self.stat(value)
        if isinstance(value, ACL):
            return [value.perms, value.id.scheme, value.id.id]
        if isinstance(value, BaseException):
            return {"err": type(value).__name__}
        if isinstance(value, bytes):
            return self.data(value)
        if hasattr(value, "type") and hasattr(value, "state") and hasattr(value, "path"):  # WatchedEvent
            return [value.type, value.path]
        if isinstance(value, (list, tuple)):
            items = [self(v) for v in value]
            return items
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        return value

    def data(self, value):
        text = value.decode("utf-8", errors="replace")
        for port in self.hosts_ports:
            text = text.replace(str(port), "<port>")
        # /zookeeper/config: the servers' quorum and election ports are the deployment's, not the
        # protocol's (gridkeeper's mesh port serves both roles).
        text = re.sub(r"^(server\.\d+=[^:\n]+):\d+:\d+", r"\1:<port>:<port>", text, flags=re.M)
        return text


def sorted_listing(value):
    """get_children results: order-insensitive."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], list):
        return (sorted(value[0]), value[1])
    if isinstance(value, list):
        return sorted(value)
    return value


def sorted_acls(value):
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], list):
        return (sorted(value[0], key=lambda a: (a.id.scheme, a.id.id, a.perms)), value[1])
    return value


class Recorder:
    def __init__(self):
        self.norm = Normalizer()
        self.results = []
        self.labels = set()
        self.root_cversion_base = 0

    def put(self, label, value):
        assert label not in self.labels, label
        self.labels.add(label)
        self.results.append((label, self.norm(value)))

    def op(self, label, fn, *args, post=None, **kwargs):
        """Calls fn; resolves async results with a timeout; records {"ok": ...} or {"err": ...}."""
        try:
            value = fn(*args, **kwargs)
            if hasattr(value, "get") and hasattr(value, "rawlink"):  # kazoo IAsyncResult
                value = value.get(timeout=OP_TIMEOUT)
            if post is not None:
                value = post(value)
            self.put(label, {"ok": value})
            return value
        except Exception as error:  # noqa: BLE001 - every failure is a finding
            name = type(error).__name__
            if name == "Timeout" or "timeout" in name.lower():
                name = "TIMEOUT"
            self.put(label, {"err": name})
            return None


# ---------------------------------------------------------------- the scenario

DIGEST_ALL = make_digest_acl("alice", "secret", all=True)
DIGEST_READ = make_digest_acl("bob", "pw", read=True)


def new_client(hosts, rec, name):
    client = KazooClient(hosts=hosts, timeout=10.0, randomize_hosts=False)
    client._diff_events = []
    client.start(timeout=30)
    rec.norm.sessions[client.client_id[0]] = name
    return client


def events(client, settle=0.3):
    time.sleep(settle)
    out = list(client._diff_events)
    client._diff_events.clear()
    return out


def run_scenario(hosts):
    rec = Recorder()
    rec.norm.hosts_ports = sorted({int(h.rsplit(":", 1)[1]) for h in hosts.split(",")}, reverse=True)
    c = new_client(hosts, rec, "main")
    try:
        _same_start(c, rec)
        _basics(c, rec)
        _sequential(c, rec)
        _versions_and_delete(c, rec)
        _children_and_stats(c, rec)
        _multi(c, rec)
        _acls(c, hosts, rec)
        _oneshot_watches(c, rec)
        _persistent_watches(c, rec)
        _containers_and_ttl(c, rec)
        _ephemerals(c, hosts, rec)
        _bad_paths(c, rec)
        _zookeeper_subtree(c, rec)
        _misc(c, rec)
        _recipes(c, hosts, rec)
    finally:
        c.stop()
        c.close()
    return rec.results


def _same_start(c, rec):
    """Not recorded: gives both targets the same starting tree and takes the root's baseline.

    A gridkeeper cluster keeps its task grid's registrations under ``/grid`` (world-readable only, so
    no client but the super user changes them); a fresh ZooKeeper has no such node. The scenario
    creates ``/grid`` and ``/grid/nodes`` with the same ACL on a target that lacks them, so root
    listings compare. The root's cversion starts where each server's initial tree puts it (-1 in a
    fresh ZooKeeper 3.8 ensemble), so root stats are recorded relative to the value read here.
    """
    if c.exists("/grid") is None:
        c.create("/grid", b"")
        c.create("/grid/nodes", b"", acl=READ_ACL_UNSAFE)
        c.set_acls("/grid", READ_ACL_UNSAFE)
    rec.root_cversion_base = c.exists("/").cversion


def root_relative(rec, post=None):
    """A post step for results holding the root's stat: its cversion relative to the start."""
    def fix(value):
        if post is not None:
            value = post(value)
        if isinstance(value, ZnodeStat):
            return value._replace(cversion=value.cversion - rec.root_cversion_base)
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], ZnodeStat):
            return (value[0], value[1]._replace(cversion=value[1].cversion - rec.root_cversion_base))
        return value
    return fix


def _basics(c, rec):
    rec.op("create persistent /a", c.create_async, "/a", b"hello")
    rec.op("create exists /a", c.create_async, "/a", b"x")
    rec.op("create2 persistent /a2 (include_data)", c.create, "/a2", b"v", include_data=True)
    rec.op("create no parent /nope/x", c.create_async, "/nope/x", b"")
    rec.op("create makepath /mk/p/q", c.create, "/mk/p/q", b"deep", makepath=True)
    rec.op("get /mk/p", c.get_async, "/mk/p")
    rec.op("get /a", c.get_async, "/a")
    rec.op("get missing /missing", c.get_async, "/missing")
    rec.op("exists /a", c.exists_async, "/a")
    rec.op("exists missing", c.exists_async, "/missing")
    rec.op("exists /", c.exists_async, "/", post=root_relative(rec))
    rec.op("create ephemeral /eph", c.create_async, "/eph", b"e", ephemeral=True)
    rec.op("exists /eph", c.exists_async, "/eph")
    rec.op("create child of ephemeral", c.create_async, "/eph/child", b"")
    rec.op("create2 ephemeral /eph2", c.create, "/eph2", b"", ephemeral=True, include_data=True)
    rec.op("create empty data /empty", c.create_async, "/empty", b"")
    rec.op("get /empty", c.get_async, "/empty")
    rec.op("create large 100KiB", c.create_async, "/large", b"z" * 102400)
    rec.op("exists /large", c.exists_async, "/large")
    rec.op("create over 1MiB", c.create_async, "/huge", b"z" * (1024 * 1024 + 10))
    rec.op("create unicode /ünï", c.create_async, "/\u00fcn\u00ef", b"u")
    rec.op("get unicode", c.get_async, "/\u00fcn\u00ef")


def _sequential(c, rec):
    c.create("/seq")
    names = []
    for i in range(3):
        names.append(rec.op("seq create /seq/n- #%d" % i, c.create_async, "/seq/n-", b"", sequence=True))
    rec.op("seq delete middle", c.delete_async, names[1] or "/seq/x")
    rec.op("seq create after delete", c.create_async, "/seq/n-", b"", sequence=True)
    rec.op("seq create plain sibling", c.create_async, "/seq/plain", b"")
    rec.op("seq create after plain", c.create_async, "/seq/n-", b"", sequence=True)
    rec.op("seq create other prefix", c.create_async, "/seq/m-", b"", sequence=True)
    rec.op("seq create ephemeral-sequential", c.create_async, "/seq/e-", b"", ephemeral=True, sequence=True)
    rec.op("seq create2 sequential include_data", c.create, "/seq/d-", b"dd", sequence=True, include_data=True)
    rec.op("seq children", c.get_children_async, "/seq", post=sorted_listing)
    rec.op("seq stat /seq", c.exists_async, "/seq")
    c.create("/seqdir")
    rec.op("seq trailing slash (kazoo) /seqdir/", c.create_async, "/seqdir/", b"", sequence=True)
    rec.op("seq trailing slash raw create /seqdir/", raw, c, Create("/seqdir/", b"", OPEN_ACL_UNSAFE, 2))
    rec.op("nonseq trailing slash raw create /seqdir/", raw, c, Create("/seqdir/", b"", OPEN_ACL_UNSAFE, 0))
    rec.op("seqdir children", c.get_children_async, "/seqdir", post=sorted_listing)


def _versions_and_delete(c, rec):
    c.create("/v", b"0")
    rec.op("set /v no version", c.set_async, "/v", b"1")
    rec.op("set /v version=1", c.set_async, "/v", b"22", 1)
    rec.op("set /v bad version=7", c.set_async, "/v", b"bad", 7)
    rec.op("set /v version=-1", c.set_async, "/v", b"", -1)
    rec.op("get /v", c.get_async, "/v")
    rec.op("set missing", c.set_async, "/missing", b"x")
    rec.op("delete /v bad version", c.delete_async, "/v", 1)
    rec.op("delete /v version=3", c.delete_async, "/v", 3)
    rec.op("delete missing", c.delete_async, "/missing")
    rec.op("delete not empty /mk/p", c.delete_async, "/mk/p")
    rec.op("delete recursive /mk", c.delete, "/mk", recursive=True)
    rec.op("exists /mk after recursive delete", c.exists_async, "/mk")
    rec.op("delete root /", c.delete_async, "/")


def _children_and_stats(c, rec):
    c.create("/ch")
    for name in ("b", "a", "c"):
        c.create("/ch/" + name, name.encode())
    rec.op("get_children /ch", c.get_children_async, "/ch", post=sorted_listing)
    rec.op("get_children /ch include_data", c.get_children, "/ch", include_data=True, post=sorted_listing)
    rec.op("get_children missing", c.get_children_async, "/missing")
    rec.op("get_children leaf /ch/a", c.get_children_async, "/ch/a", post=sorted_listing)
    c.delete("/ch/b")
    rec.op("stat /ch after create 3 delete 1", c.exists_async, "/ch")
    rec.op("get_children / ", c.get_children_async, "/", post=sorted_listing)


def _multi(c, rec):
    t = c.transaction()
    t.create("/tx", b"t")
    t.create("/tx/child", b"c")
    t.set_data("/tx", b"t2")
    t.check("/tx", 1)
    t.create("/tx/s-", b"", sequence=True)
    t.delete("/tx/child")
    rec.op("multi success", t.commit_async)
    rec.op("multi success stat /tx", c.exists_async, "/tx")
    t = c.transaction()
    t.create("/tx2", b"")
    t.check("/tx", 99)
    t.set_data("/tx", b"never")
    t.delete("/missing")
    rec.op("multi failing (bad check)", t.commit_async)
    rec.op("multi failing left no /tx2", c.exists_async, "/tx2")
    t = c.transaction()
    t.check("/missing", 0)
    rec.op("multi check on missing", t.commit_async)
    t = c.transaction()
    t.create("/tx3", b"")
    t.create("/tx3", b"")
    rec.op("multi duplicate create", t.commit_async)
    t = c.transaction()
    rec.op("multi empty", t.commit_async)
    t = c.transaction()
    t.check("/tx", 1)
    rec.op("multi check-only ok", t.commit_async)
    rec.op("check via set version (no-op)", c.exists_async, "/tx")


def _acls(c, hosts, rec):
    rec.op("get_acls /", c.get_acls_async, "/", post=root_relative(rec, sorted_acls))
    rec.op("get_acls /a", c.get_acls_async, "/a", post=sorted_acls)
    rec.op("get_acls missing", c.get_acls_async, "/missing")
    rec.op("create empty ACL list", c.create_async, "/emptyacl", b"", acl=[])
    rec.op("create world:anyone read-only", c.create_async, "/ro", b"r", acl=READ_ACL_UNSAFE)
    rec.op("set on read-only", c.set_async, "/ro", b"w")
    rec.op("create child on read-only", c.create_async, "/ro/x", b"")
    rec.op("get_acls /ro", c.get_acls_async, "/ro", post=sorted_acls)
    rec.op("create digest alice", c.create_async, "/dg", b"secret-data", acl=[DIGEST_ALL])
    rec.op("get digest node without auth", c.get_async, "/dg")
    rec.op("exists digest node without auth", c.exists_async, "/dg")
    rec.op("get_acls digest node without auth", c.get_acls_async, "/dg", post=sorted_acls)
    rec.op("create auth-scheme ACL without auth", c.create_async, "/authacl", b"",
           acl=[ACL(31, Id("auth", ""))])
    rec.op("add_auth wrong password", c.add_auth_async, "digest", "alice:wrong")
    rec.op("get digest node with wrong auth", c.get_async, "/dg")
    rec.op("add_auth alice", c.add_auth_async, "digest", "alice:secret")
    rec.op("get digest node with auth", c.get_async, "/dg")
    rec.op("whoami after add_auth", raw, c, RawWhoAmI(), post=sorted)
    rec.op("create auth-scheme ACL with auth", c.create_async, "/authacl", b"", acl=[ACL(31, Id("auth", ""))])
    rec.op("get_acls /authacl", c.get_acls_async, "/authacl", post=sorted_acls)
    rec.op("set_acls /dg world:anyone version=0", c.set_acls_async, "/dg", OPEN_ACL_UNSAFE, 0)
    rec.op("set_acls /dg bad version", c.set_acls_async, "/dg", OPEN_ACL_UNSAFE, 0)
    rec.op("get_acls /dg after set", c.get_acls_async, "/dg", post=sorted_acls)
    rec.op("set_acls /dg digest bob read, mixed", c.set_acls_async, "/dg", [DIGEST_READ, DIGEST_ALL], -1)
    rec.op("get_acls /dg mixed", c.get_acls_async, "/dg", post=sorted_acls)
    rec.op("set_acls empty list", c.set_acls_async, "/dg", [], -1)
    rec.op("set_acls bad scheme", c.set_acls_async, "/dg", [ACL(31, Id("nosuch", "x"))], -1)
    rec.op("set_acls missing node", c.set_acls_async, "/missing", OPEN_ACL_UNSAFE, -1)
    rec.op("create ip ACL", c.create_async, "/ipacl", b"", acl=[ACL(31, Id("ip", "127.0.0.1"))])
    rec.op("get ip ACL node", c.get_async, "/ipacl")
    other = new_client(hosts, rec, "other")
    try:
        rec.op("other: get /dg no auth", other.get_async, "/dg")
        rec.op("other: set /dg no auth", other.set_async, "/dg", b"x")
        rec.op("other: get /authacl no auth", other.get_async, "/authacl")
        rec.op("other: add_auth bob", other.add_auth_async, "digest", "bob:pw")
        rec.op("other: get /dg as bob", other.get_async, "/dg")
        rec.op("other: set /dg as bob (read only)", other.set_async, "/dg", b"x")
        rec.op("other: delete child under /dg as bob", other.delete_async, "/dg/none")
        rec.op("other: whoami", raw, other, RawWhoAmI(), post=sorted)
    finally:
        other.stop()
        other.close()


def _oneshot_watches(c, rec):
    fired = []

    def w(event):
        fired.append([event.type, event.path])

    c._diff_events.clear()
    rec.op("watch exists missing /w", c.exists_async, "/w", watch=w)
    c.create("/w", b"1")
    rec.op("watch events after create /w", events, c)
    rec.op("watch get /w", c.get_async, "/w", watch=w)
    c.set("/w", b"2")
    c.set("/w", b"3")
    rec.op("watch events after 2 sets (one-shot)", events, c)
    rec.op("watch get_children /w", c.get_children_async, "/w", watch=w, post=sorted_listing)
    c.create("/w/k", b"")
    c.create("/w/k2", b"")
    rec.op("watch events after 2 child creates", events, c)
    rec.op("watch get /w/k", c.get_async, "/w/k", watch=w)
    rec.op("watch get_children /w again", c.get_children_async, "/w", watch=w, post=sorted_listing)
    c.delete("/w/k")
    rec.op("watch events after delete /w/k", events, c)
    rec.op("watch exists /w", c.exists_async, "/w", watch=w)
    rec.op("watch get_children /w 3", c.get_children_async, "/w", watch=w, post=sorted_listing)
    c.delete("/w/k2")
    c.delete("/w")
    rec.op("watch events after delete child then /w", events, c)
    rec.put("watch callbacks (kazoo view)", fired)
    rec.op("watch set data on no-watch node", c.set_async, "/a", b"nowatch")
    rec.op("watch no events", events, c)


def _persistent_watches(c, rec):
    c._diff_events.clear()
    rec.op("addWatch persistent /pw (missing)", raw, c, RawAddWatch("/pw", 0))
    c.create("/pw", b"")
    c.set("/pw", b"1")
    c.set("/pw", b"2")
    c.create("/pw/c", b"")
    c.set("/pw/c", b"x")
    c.delete("/pw/c")
    c.delete("/pw")
    c.create("/pw", b"again")
    rec.op("persistent /pw events", events, c)
    rec.op("removeWatches /pw any", raw, c, RawRemoveWatches("/pw", 3))
    c.set("/pw", b"after-remove")
    rec.op("persistent /pw events after remove", events, c)
    rec.op("removeWatches /pw again (none left)", raw, c, RawRemoveWatches("/pw", 3))
    rec.op("addWatch persistent-recursive /prw", raw, c, RawAddWatch("/prw", 1))
    c.create("/prw", b"")
    c.create("/prw/a", b"")
    c.set("/prw/a", b"1")
    c.create("/prw/a/b", b"")
    c.create("/prw/a/s-", b"", sequence=True)
    c.delete("/prw/a/b")
    c.create("/prwx", b"")  # sibling with a common prefix: not under /prw
    c.delete("/prwx")
    rec.op("persistent-recursive /prw events", events, c)
    rec.op("addWatch bad mode 7", raw, c, RawAddWatch("/prw", 7))
    rec.op("addWatch persistent-recursive /", raw, c, RawAddWatch("/", 1))
    c.create("/rootwatched", b"")
    c.delete("/rootwatched")
    rec.op("persistent-recursive / events", events, c)
    rec.op("removeWatches / any", raw, c, RawRemoveWatches("/", 3))
    rec.op("removeWatches /prw data", raw, c, RawRemoveWatches("/prw", 2))
    rec.op("removeWatches /prw any", raw, c, RawRemoveWatches("/prw", 3))
    rec.op("removeWatches unwatched /a", raw, c, RawRemoveWatches("/a", 3))
    c.set("/prw/a", b"2")
    rec.op("persistent-recursive events after remove", events, c)


def _wait_gone(c, path, limit=10.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if c.exists(path) is None:
            return "gone"
        time.sleep(0.2)
    return "still present after %ds" % limit


def _containers_and_ttl(c, rec):
    rec.op("create container /ct", raw, c, RawCreateContainer("/ct", b"c", OPEN_ACL_UNSAFE, 4))
    rec.op("create container /ct again", raw, c, RawCreateContainer("/ct", b"c", OPEN_ACL_UNSAFE, 4))
    rec.op("create container wrong flags (0)", raw, c, RawCreateContainer("/ct0", b"", OPEN_ACL_UNSAFE, 0))
    rec.op("create2 with container flag via opcode 15", raw, c, RawCreate2("/ct15", b"", OPEN_ACL_UNSAFE, 4))
    rec.op("stat container /ct", c.exists_async, "/ct")
    rec.op("create under container", c.create_async, "/ct/x", b"")
    rec.op("delete under container", c.delete_async, "/ct/x")
    rec.op("container /ct after last child deleted", _wait_gone, c, "/ct")
    rec.op("create empty container /ct2 (never had children)", raw, c,
           RawCreateContainer("/ct2", b"", OPEN_ACL_UNSAFE, 4))
    time.sleep(2.5)
    rec.op("empty never-used container /ct2 after 2.5s", c.exists_async, "/ct2")
    rec.op("create TTL /ttl 1000ms", raw, c, RawCreateTTL("/ttl", b"t", OPEN_ACL_UNSAFE, 5, 1000))
    rec.op("stat TTL /ttl", c.exists_async, "/ttl")
    rec.op("create TTL sequential /ttls-", raw, c, RawCreateTTL("/ttls-", b"", OPEN_ACL_UNSAFE, 6, 60000))
    rec.op("create TTL ttl=0", raw, c, RawCreateTTL("/ttl0", b"", OPEN_ACL_UNSAFE, 5, 0))
    rec.op("create TTL negative ttl", raw, c, RawCreateTTL("/ttlneg", b"", OPEN_ACL_UNSAFE, 5, -5))
    rec.op("create TTL with ephemeral flag", raw, c, RawCreateTTL("/ttleph", b"", OPEN_ACL_UNSAFE, 1, 1000))
    rec.op("create TTL with flags 0", raw, c, RawCreateTTL("/ttlf0", b"", OPEN_ACL_UNSAFE, 0, 1000))
    rec.op("create TTL huge ttl", raw, c, RawCreateTTL("/ttlbig", b"", OPEN_ACL_UNSAFE, 5, 1 << 60))
    rec.op("TTL /ttl after expiry", _wait_gone, c, "/ttl")
    rec.op("create TTL /ttlc with child", raw, c, RawCreateTTL("/ttlc", b"", OPEN_ACL_UNSAFE, 5, 500))
    c.create("/ttlc/child", b"")
    time.sleep(2.5)
    rec.op("TTL node with child after 2.5s", c.exists_async, "/ttlc")


def _ephemerals(c, hosts, rec):
    other = new_client(hosts, rec, "short")
    other.create("/eph-other", b"", ephemeral=True)
    other.create("/seq/eo-", b"", ephemeral=True, sequence=True)
    rec.op("ephemeral of other session: stat", c.exists_async, "/eph-other")
    rec.op("getEphemerals / (main)", raw, c, RawGetEphemerals("/"), post=sorted)
    rec.op("getEphemerals /seq (short)", raw, other, RawGetEphemerals("/seq"), post=sorted)
    rec.op("getEphemerals prefix /ep (short)", raw, other, RawGetEphemerals("/ep"), post=sorted)
    other.stop()
    other.close()
    rec.op("ephemeral after session close", c.exists_async, "/eph-other")
    rec.op("ephemeral-seq after session close: /seq children", c.get_children_async, "/seq", post=sorted_listing)
    rec.op("own ephemeral /eph still there", c.exists_async, "/eph")


def _bad_paths(c, rec):
    for path in ("noslash", "/trailing/", "/double//slash", "/dot/.", "/dotdot/..", "/nul\u0000x", "",
                 "/a/./b"):
        rec.op("raw exists %r" % path, raw, c, Exists(path, None))
        rec.op("raw create %r" % path, raw, c, Create(path, b"", OPEN_ACL_UNSAFE, 0))
    rec.op("raw get_children bad path", raw, c, GetChildren("x//y", None))
    rec.op("kazoo create noslash", c.create_async, "noslash", b"")
    rec.op("create flags 99 (invalid)", raw, c, Create("/badflags", b"", OPEN_ACL_UNSAFE, 99))
    rec.op("create container flag via plain create", raw, c, Create("/flag4", b"", OPEN_ACL_UNSAFE, 4))
    rec.op("create TTL flag via plain create", raw, c, Create("/flag5", b"", OPEN_ACL_UNSAFE, 5))


def _zookeeper_subtree(c, rec):
    rec.op("get_children /", c.get_children_async, "/", post=sorted_listing)
    rec.op("get_children /zookeeper", c.get_children_async, "/zookeeper", post=sorted_listing)
    rec.op("exists /zookeeper", c.exists_async, "/zookeeper")
    rec.op("exists /zookeeper/quota", c.exists_async, "/zookeeper/quota")
    rec.op("get /zookeeper/quota", c.get_async, "/zookeeper/quota")
    rec.op("get /zookeeper/config", c.get_async, "/zookeeper/config",
           post=lambda v: (re.sub(r"version=[0-9a-f]+", "version=<v>", v[0].decode()).encode(), v[1]))
    rec.op("get_acls /zookeeper/config", c.get_acls_async, "/zookeeper/config", post=sorted_acls)
    rec.op("get_children /zookeeper/quota", c.get_children_async, "/zookeeper/quota", post=sorted_listing)
    rec.op("create /zookeeper/x", c.create_async, "/zookeeper/x", b"")
    rec.op("set /zookeeper", c.set_async, "/zookeeper", b"x")
    rec.op("delete /zookeeper", c.delete_async, "/zookeeper")
    rec.op("delete /zookeeper/config", c.delete_async, "/zookeeper/config")
    rec.op("set /zookeeper/config", c.set_async, "/zookeeper/config", b"x")


def _misc(c, rec):
    rec.op("sync /", c.sync_async, "/")
    rec.op("sync /a", c.sync_async, "/a")
    rec.op("sync missing", c.sync_async, "/missing")
    rec.op("getAllChildrenNumber /seq", raw, c, RawGetAllChildrenNumber("/seq"))
    rec.op("getAllChildrenNumber /ch", raw, c, RawGetAllChildrenNumber("/ch"))
    rec.op("getAllChildrenNumber missing", raw, c, RawGetAllChildrenNumber("/missing"))
    rec.op("getEphemerals / end (main)", raw, c, RawGetEphemerals("/"), post=sorted)
    rec.op("4lw ruok", c.command, b"ruok")
    rec.op("4lw isro", c.command, b"isro")
    rec.op("final get_children /", c.get_children_async, "/", post=sorted_listing)


def _in_thread(rec, label, fn, limit=30.0):
    box = {}

    def body():
        try:
            box["ok"] = fn()
        except Exception as error:  # noqa: BLE001
            box["err"] = type(error).__name__

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(limit)
    rec.put(label, box if box else {"err": "TIMEOUT"})


def _recipes(c, hosts, rec):
    def lock():
        l1 = c.Lock("/recipes/lock", "me")
        got = l1.acquire(timeout=10)
        contenders = l1.contenders()
        l2 = c.Lock("/recipes/lock", "you")
        second = l2.acquire(blocking=False)
        l1.release()
        second_after = l2.acquire(timeout=10)
        l2.release()
        return {"acquired": got, "contenders": contenders, "second nonblocking": second,
                "second after release": second_after,
                "children left": sorted(c.get_children("/recipes/lock"))}

    _in_thread(rec, "recipe Lock", lock)

    def counter():
        ctr = c.Counter("/recipes/counter")
        ctr += 1
        ctr += 5
        ctr -= 2
        fctr = c.Counter("/recipes/fcounter", default=0.0)
        fctr += 1.5
        return {"int": ctr.value, "float": fctr.value, "raw": c.get("/recipes/counter")[0].decode()}

    _in_thread(rec, "recipe Counter", counter)

    def election():
        started, stop = threading.Event(), threading.Event()

        def leader():
            started.set()
            stop.wait(10)

        e1 = c.Election("/recipes/election", "alice")
        t = threading.Thread(target=e1.run, args=(leader,), daemon=True)
        t.start()
        started.wait(10)
        e2 = c.Election("/recipes/election", "bob")
        contenders = e2.contenders()
        stop.set()
        t.join(10)
        return {"leader ran": started.is_set(), "contenders": contenders,
                "after": e2.contenders()}

    _in_thread(rec, "recipe Election", election)

    def party():
        p = c.Party("/recipes/party", "member-1")
        p.join()
        q = c.Party("/recipes/party", "member-2")
        q.join()
        members = sorted(p)
        p.leave()
        return {"members": members, "after leave": len(q)}

    _in_thread(rec, "recipe Party", party)

    def barrier():
        b = c.Barrier("/recipes/barrier")
        b.create()
        waited_closed = b.wait(timeout=0.2)
        b.remove()
        waited_open = b.wait(timeout=2)
        db = c.DoubleBarrier("/recipes/double", 1)
        db.enter()
        inside = sorted(c.get_children("/recipes/double"))
        db.leave()
        return {"closed wait": waited_closed, "open wait": waited_open,
                "double barrier inside": len(inside), "after leave": sorted(c.get_children("/recipes/double"))}

    _in_thread(rec, "recipe Barrier", barrier)

    def queue():
        q = c.Queue("/recipes/queue")
        for item, priority in ((b"low", 200), (b"high", 10), (b"mid", 100)):
            q.put(item, priority=priority)
        lq = c.LockingQueue("/recipes/lqueue")
        lq.put_all([b"a", b"b"], priority=5)
        first = lq.get(timeout=5)
        consumed = lq.consume()
        return {"order": [q.get(), q.get(), q.get()], "empty": q.get(), "locking first": first,
                "consumed": consumed, "left": len(lq)}

    _in_thread(rec, "recipe Queue", queue)

    def partitioner_and_cache():
        from kazoo.recipe.cache import TreeCache
        cache = TreeCache(c, "/recipes/tree")
        c.ensure_path("/recipes/tree/a")
        c.create("/recipes/tree/b", b"bee")
        cache.start()
        deadline = time.time() + 10
        while time.time() < deadline and (cache.get_data("/recipes/tree/b") is None):
            time.sleep(0.05)
        seen = cache.get_data("/recipes/tree/b")
        children = sorted(cache.get_children("/recipes/tree") or [])
        cache.close()
        part = c.SetPartitioner("/recipes/partition", set=("x", "y", "z"), time_boundary=0.2)
        deadline = time.time() + 15
        while not part.acquired and not part.failed and time.time() < deadline:
            part.wait_for_acquire(timeout=1)
        owned = sorted(part) if part.acquired else None
        part.finish()
        return {"cache data": seen.data.decode() if seen else None, "cache children": children,
                "partition owned": owned}

    _in_thread(rec, "recipe TreeCache and SetPartitioner", partitioner_and_cache)
