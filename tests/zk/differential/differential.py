"""Differential run: the scenario against Apache ZooKeeper 3.8 and against gridkeeper, then a diff.

Usually started by run.sh. Environment:
  GK_ZK_BINARY       gridkeeper binary (default: <repo>/target/debug/gridkeeper)
  DIFF_WORKDIR       where both targets keep data/logs (default: a new temp dir, kept for post-mortem)
  DIFF_ZK_PORT_BASE  ZooKeeper client ports BASE..BASE+2 (default 22181)
  DIFF_GK_PORT_BASE  gridkeeper node N uses BASE+10*(N-1)+{0,1,2} (default 24100)
  DIFF_ZK_SIZE       ZooKeeper members, 3 (ensemble) or 1 (standalone) (default 3)

Writes <workdir>/zookeeper.json and <workdir>/gridkeeper.json (normalized results), prints a unified
diff with one labeled operation per line, then a summary. Exit status: 0 when both targets ran (even
if they differ), 2 if a target failed to start.
"""

import difflib
import json
import os
import signal
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # tests/zk: gridkeeper_cluster.py

import gridkeeper_cluster  # noqa: E402
import scenario  # noqa: E402
import zk_ensemble  # noqa: E402


def lines_of(results):
    return ["%03d %s => %s" % (i, label, json.dumps(value, sort_keys=True, ensure_ascii=False))
            for i, (label, value) in enumerate(results)]


def run_target(name, start, stop, workdir):
    """Starts a target, runs the scenario, stops it. Returns (results or None, start_error or None)."""
    try:
        hosts = start()
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        stop()
        return None, "%s failed to start" % name
    print("[%s] started: %s" % (name, hosts), flush=True)
    try:
        results = scenario.run_scenario(hosts)
    except Exception:  # noqa: BLE001 - the scenario itself broke; still a finding, keep going
        traceback.print_exc()
        results = [("SCENARIO ABORTED", {"err": traceback.format_exc().strip().splitlines()[-1]})]
    finally:
        stop()
        print("[%s] stopped" % name, flush=True)
    with open(os.path.join(workdir, name + ".json"), "w") as f:
        json.dump(results, f, indent=1, sort_keys=True, ensure_ascii=False)
    return results, None


def main():
    workdir = os.environ.get("DIFF_WORKDIR") or tempfile.mkdtemp(prefix="gk-differential-")
    os.makedirs(workdir, exist_ok=True)
    binary = os.environ.get("GK_ZK_BINARY") or os.path.join(REPO, "target", "debug", "gridkeeper")
    print("workdir:", workdir, flush=True)

    ensemble = zk_ensemble.ZooKeeperEnsemble(
        os.path.join(workdir, "zookeeper"), size=int(os.environ.get("DIFF_ZK_SIZE", "3")),
        base_port=int(os.environ.get("DIFF_ZK_PORT_BASE", "22181")))
    gk = {}

    def gk_start():
        gk["cluster"] = gridkeeper_cluster.GridkeeperCluster(
            binary=binary, workdir=os.path.join(workdir, "gridkeeper"), size=3,
            port_base=int(os.environ.get("DIFF_GK_PORT_BASE", "24100")), four_letter_words="*")
        gk["cluster"].start()
        return gk["cluster"].hosts

    def gk_stop():
        if "cluster" in gk:
            gk["cluster"].stop()  # keeps data and logs under workdir for a post-mortem

    def on_signal(signum, frame):
        ensemble.stop()
        gk_stop()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        def zk_start():
            ensemble.start()
            return ensemble.hosts

        zk_results, zk_error = run_target("zookeeper", zk_start, ensemble.stop, workdir)
        gk_results, gk_error = run_target("gridkeeper", gk_start, gk_stop, workdir)
    finally:
        ensemble.stop()
        gk_stop()

    if zk_error or gk_error:
        print("ERROR:", "; ".join(e for e in (zk_error, gk_error) if e))
        return 2

    zk_lines, gk_lines = lines_of(zk_results), lines_of(gk_results)
    diff = list(difflib.unified_diff(zk_lines, gk_lines, "zookeeper", "gridkeeper", n=0, lineterm=""))
    print("\n".join(diff) if diff else "(no differences)")
    zk_map, gk_map = dict(zk_results), dict(gk_results)
    labels = list(dict.fromkeys([l for l, _ in zk_results] + [l for l, _ in gk_results]))
    differing = [l for l in labels if zk_map.get(l) != gk_map.get(l)]
    print("\nSUMMARY: %d operations recorded (zookeeper %d, gridkeeper %d); %d differ"
          % (len(labels), len(zk_results), len(gk_results), len(differing)))
    for label in differing:
        print("  DIFF", label)
    print("normalized results:", os.path.join(workdir, "zookeeper.json"), os.path.join(workdir, "gridkeeper.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
