"""pytest plugin (``-p kazoo_plugin``): kazoo's own test suite against gridkeeper nodes.

kazoo's tests get their servers from ``kazoo.testing.harness.get_global_cluster()``. This plugin makes
that return a ``gridkeeper_cluster.GridkeeperCluster`` (real ``gridkeeper node`` processes, configured
by the GK_ZK_* environment variables described there). It must be loaded before any test module imports
``kazoo.testing``, which ``-p`` guarantees.

``--gk-deselect-file PATH`` deselects the tests listed there (``<node id>  # <reason>`` a line). Unlike
pytest's ``--deselect``, which drops every test whose id merely starts with the given text (so
``test_set_acls`` would take ``test_set_acls_no_node`` with it), an entry names one test, or a whole
module or class. An entry that names nothing collected from its module is an error: the list stays true.
"""

import os
import sys

import pytest

import gridkeeper_cluster

# harness.py imports ZookeeperCluster from kazoo.testing.common, whose import needs pyOpenSSL and pyjks
# to build Java keystores. There are no Java servers here, so that module is ours instead.
sys.modules["kazoo.testing.common"] = gridkeeper_cluster

import kazoo.testing.harness as harness  # noqa: E402  (after the module swap above)

harness.get_global_cluster = gridkeeper_cluster.get_global_cluster


def pytest_addoption(parser):
    parser.addoption(
        "--gk-deselect-file",
        default=None,
        help="deselect the tests listed in this file, one '<node id>  # <reason>' a line",
    )


def pytest_report_header(config):
    return "kazoo servers: gridkeeper nodes from %s" % os.environ.get("GK_ZK_BINARY")


def read_deselect_file(path):
    """The node ids listed in ``path``; every entry must give its reason after ``#``."""
    entries = []
    with open(path) as listing:
        for number, line in enumerate(listing, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            node_id, _, reason = line.partition("#")
            if not reason.strip():
                raise pytest.UsageError("%s:%d: `%s` gives no reason after `#`" % (path, number, line))
            entries.append(node_id.strip())
    return entries


def names(node_id, entry):
    """Whether ``entry`` names the test ``node_id``: the test itself, its class or its module."""
    return node_id == entry or node_id.startswith(entry + "::") or node_id.startswith(entry + "[")


def pytest_collection_modifyitems(config, items):
    path = config.getoption("gk_deselect_file")
    if not path:
        return
    entries = read_deselect_file(path)
    kept, dropped, used = [], [], set()
    for item in items:
        hits = [entry for entry in entries if names(item.nodeid, entry)]
        used.update(hits)
        (dropped if hits else kept).append(item)
    modules = {item.nodeid.split("::")[0] for item in items}
    stale = [entry for entry in entries if entry not in used and entry.split("::")[0] in modules]
    if stale:
        raise pytest.UsageError("%s names tests that do not exist: %s" % (path, ", ".join(stale)))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
