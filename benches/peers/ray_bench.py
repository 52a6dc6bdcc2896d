#!/usr/bin/env python3
"""Ray's side of the peers benchmark: the two task workloads gridkeeper is compared on.

- tasks: end-to-end throughput of 20,000 no-op remote tasks (submit all, then ray.get all), after a
  warm-up of 100 that starts the worker processes.
- task-retry: a remote task with max_retries=3 sleeps; its worker process is killed with SIGKILL (the
  task reports its PID from inside), and the time from the kill to the retry's start (which the
  retried task reports) is measured.

Ray runs as a one-node local cluster with num_cpus=2, started by ray.init() and stopped by
ray.shutdown() on the way out, SIGTERM included. The dashboard is left out: it would compete for the
two cores with the workers being measured.

Prints one JSON line per measurement, in the harness's schema, and appends it to --out.
"""

import argparse
import json
import os
import signal
import sys
import tempfile
import time

import ray

WARMUP_TASKS = 100
POLL_S = 0.005
ATTEMPT_WAIT_S = 60.0
SLEEP_TASK_S = 60.0


@ray.remote
def noop():
    return None


@ray.remote(max_retries=3)
def sleeper(report_dir, seconds):
    """Reports (pid, start time) in a file of its own per attempt, then sleeps."""
    started = time.time()
    path = os.path.join(report_dir, f"attempt-{os.getpid()}.json")
    # Write then rename, so the driver never reads half a file.
    with open(path + ".tmp", "w") as out:
        json.dump({"pid": os.getpid(), "started": started}, out)
    os.rename(path + ".tmp", path)
    time.sleep(seconds)
    return None


def record(workload, ops_per_s=None, errors=0, gap_ms=None):
    return {
        "system": "ray",
        "workload": workload,
        "clients": 1,
        "ops_per_s": ops_per_s,
        "p50_us": None,
        "p99_us": None,
        "errors": errors,
        "gap_ms": gap_ms,
    }


def tasks(count):
    ray.get([noop.remote() for _ in range(WARMUP_TASKS)])
    started = time.perf_counter()
    refs = [noop.remote() for _ in range(count)]
    errors = 0
    try:
        ray.get(refs)
    except ray.exceptions.RayError:
        # Count the failures one by one only when there are some.
        errors = 0
        for ref in refs:
            try:
                ray.get(ref)
            except ray.exceptions.RayError:
                errors += 1
    elapsed = time.perf_counter() - started
    return record("tasks", ops_per_s=count / elapsed, errors=errors)


def attempts(report_dir):
    """The attempts reported so far, oldest first."""
    found = []
    for name in os.listdir(report_dir):
        if name.startswith("attempt-") and name.endswith(".json"):
            with open(os.path.join(report_dir, name)) as report:
                found.append(json.load(report))
    return sorted(found, key=lambda attempt: attempt["started"])


def wait_for_attempts(report_dir, n):
    deadline = time.monotonic() + ATTEMPT_WAIT_S
    while time.monotonic() < deadline:
        seen = attempts(report_dir)
        if len(seen) >= n:
            return seen
        time.sleep(POLL_S)
    raise TimeoutError(f"attempt {n} did not start within {ATTEMPT_WAIT_S} s")


def task_retry():
    with tempfile.TemporaryDirectory(prefix="peers-ray-") as report_dir:
        ref = sleeper.remote(report_dir, SLEEP_TASK_S)
        first = wait_for_attempts(report_dir, 1)[0]
        killed = time.time()
        os.kill(first["pid"], signal.SIGKILL)
        retry = wait_for_attempts(report_dir, 2)[1]
        ray.cancel(ref, force=True)
        gap_ms = (retry["started"] - killed) * 1e3
        print(f"ray_bench: killed worker pid {first['pid']}; retry started {gap_ms:.0f} ms later", file=sys.stderr)
        return record("task-retry", gap_ms=gap_ms)


def on_sigterm(_signum, _frame):
    # Turn SIGTERM into an exit, so the finally below stops the Ray processes ray.init() started.
    sys.exit(143)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="target/peers/results.jsonl", help="results file (JSON lines, appended)")
    parser.add_argument("--tasks", type=int, default=20_000, help="no-op tasks per throughput run")
    parser.add_argument("--quick", action="store_true", help="accepted for symmetry; both workloads are one-shot")
    parser.add_argument(
        "--workloads", default="tasks,task-retry", help="comma separated: tasks, task-retry (in this order)"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    workloads = [name for name in args.workloads.split(",") if name]
    for name in workloads:
        if name not in ("tasks", "task-retry"):
            parser.error(f"unknown workload {name}")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        print(f"ray_bench: Ray {ray.__version__}, num_cpus=2", file=sys.stderr)
        for name in workloads:
            result = tasks(args.tasks) if name == "tasks" else task_retry()
            line = json.dumps(result)
            print(line)
            with open(args.out, "a") as out:
                out.write(line + "\n")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
