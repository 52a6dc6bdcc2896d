"""pytest plugin (``-p kazoo_plugin``): kazoo's own test suite against gridkeeper nodes.

kazoo's tests get their servers from ``kazoo.testing.harness.get_global_cluster()``. This plugin makes
that return a ``gridkeeper_cluster.GridkeeperCluster`` (real ``gridkeeper node`` processes, configured
by the GK_ZK_* environment variables described there). It must be loaded before any test module imports
``kazoo.testing``, which ``-p`` guarantees.
"""

import sys

import gridkeeper_cluster

# harness.py imports ZookeeperCluster from kazoo.testing.common, whose import needs pyOpenSSL and pyjks
# to build Java keystores. There are no Java servers here, so that module is ours instead.
sys.modules["kazoo.testing.common"] = gridkeeper_cluster

import kazoo.testing.harness as harness  # noqa: E402  (after the module swap above)

harness.get_global_cluster = gridkeeper_cluster.get_global_cluster


def pytest_report_header(config):
    return "kazoo servers: gridkeeper nodes from %s" % gridkeeper_cluster.os.environ.get("GK_ZK_BINARY")
