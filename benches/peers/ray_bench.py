#!/usr/bin/env python3
"""Ray's side of the peers benchmark: the task and actor workloads gridkeeper is compared on.

- tasks: end-to-end throughput of 20,000 no-op remote tasks (submit all, then ray.get all), after a
  warm-up of 100 that starts the worker processes.
- task-retry: a remote task with max_retries=3 sleeps; its worker process is killed with SIGKILL (the
  task reports its PID from inside), and the time from the kill to the retry's start (which the
  retried task reports) is measured.
- actor-calls: calls/s to one actor (a counter: `add(n)` returns the total), closed loop, after a
  warm-up: 1 caller (`ray.get(a.add.remote(1))` in a loop), then 16 concurrent callers, each a closed
  loop of its own in the driver (16 asyncio tasks awaiting `a.add.remote(1)`; the actor, like a
  gridkeeper actor, handles one call at a time). Warm-up 2 s and window 10 s (1 s and 3 s with --quick).
  Records calls/s and the calls' p50/p99.
- actor-restart: an actor with max_restarts=-1 and max_task_retries=-1; its worker process is killed
  with SIGKILL (the actor reports its PID), and the time from the kill until a call answers again is
  measured, over 20 trials (5 with --quick); the record carries the worst, every trial goes to stderr.

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
class Counter:
    """The actor of the actor workloads: a counter, as gridkeeper's."""

    def __init__(self):
        self.total = 0

    def add(self, amount):
        self.total += amount
        return self.total

    def pid(self):
        return os.getpid()


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


def record(workload, ops_per_s=None, errors=0, gap_ms=None, clients=1, p50_us=None, p99_us=None):
    return {
        "system": "ray",
        "workload": workload,
        "clients": clients,
        "ops_per_s": ops_per_s,
        "p50_us": p50_us,
        "p99_us": p99_us,
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


def percentile(sorted_us, fraction):
    if not sorted_us:
        return None
    return float(sorted_us[min(int(len(sorted_us) * fraction), len(sorted_us) - 1)])


def calls_record(clients, latencies_us, errors, window_s):
    latencies_us.sort()
    return record(
        "actor-calls",
        ops_per_s=len(latencies_us) / window_s,
        errors=errors,
        clients=clients,
        p50_us=percentile(latencies_us, 0.50),
        p99_us=percentile(latencies_us, 0.99),
    )


def actor_calls_one(actor, warmup_s, window_s):
    """One caller, closed loop: each call waits for the previous one's answer."""
    count_from = time.perf_counter() + warmup_s
    until = count_from + window_s
    latencies_us, errors = [], 0
    while True:
        started = time.perf_counter()
        if started >= until:
            break
        try:
            ray.get(actor.add.remote(1))
            if started >= count_from:
                latencies_us.append((time.perf_counter() - started) * 1e6)
        except ray.exceptions.RayError:
            errors += started >= count_from
    return calls_record(1, latencies_us, errors, window_s)


def actor_calls_many(actor, callers, warmup_s, window_s):
    """`callers` closed loops at once, as asyncio tasks in the driver awaiting the actor's refs."""
    import asyncio

    async def caller(count_from, until, latencies_us, errors):
        while True:
            started = time.perf_counter()
            if started >= until:
                return
            try:
                await actor.add.remote(1)
                if started >= count_from:
                    latencies_us.append((time.perf_counter() - started) * 1e6)
            except ray.exceptions.RayError:
                errors[0] += started >= count_from

    async def run():
        count_from = time.perf_counter() + warmup_s
        until = count_from + window_s
        latencies_us, errors = [], [0]
        await asyncio.gather(*(caller(count_from, until, latencies_us, errors) for _ in range(callers)))
        return latencies_us, errors[0]

    latencies_us, errors = asyncio.run(run())
    return calls_record(callers, latencies_us, errors, window_s)


def actor_calls(quick):
    warmup_s, window_s = (1.0, 3.0) if quick else (2.0, 10.0)
    actor = Counter.remote()
    ray.get(actor.add.remote(0))
    results = [actor_calls_one(actor, warmup_s, window_s), actor_calls_many(actor, 16, warmup_s, window_s)]
    ray.kill(actor)
    return results


def actor_restart(trials):
    """Kills the actor's worker `trials` times; the worst time until a call answers again."""
    actor = Counter.options(max_restarts=-1, max_task_retries=-1).remote()
    ray.get(actor.add.remote(0))
    gaps_ms, errors = [], 0
    for trial in range(trials):
        pid = ray.get(actor.pid.remote())
        killed = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        try:
            ray.get(actor.add.remote(1), timeout=ATTEMPT_WAIT_S)
        except (ray.exceptions.RayError, TimeoutError) as error:
            errors += 1
            print(f"ray_bench: actor-restart trial {trial}: no answer: {error}", file=sys.stderr)
            continue
        gap_ms = (time.perf_counter() - killed) * 1e3
        gaps_ms.append(gap_ms)
        print(f"ray_bench: actor-restart trial {trial}: killed pid {pid}; answered {gap_ms:.0f} ms later", file=sys.stderr)
    ray.kill(actor)
    return [record("actor-restart", errors=errors, gap_ms=max(gaps_ms) if gaps_ms else None)]


def on_sigterm(_signum, _frame):
    # Turn SIGTERM into an exit, so the finally below stops the Ray processes ray.init() started.
    sys.exit(143)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="target/peers/results.jsonl", help="results file (JSON lines, appended)")
    parser.add_argument("--tasks", type=int, default=20_000, help="no-op tasks per throughput run")
    parser.add_argument(
        "--quick", action="store_true", help="shorter actor-calls windows and 5 actor-restart trials (tasks: no effect)"
    )
    parser.add_argument("--trials", type=int, default=None, help="actor-restart trials (default 20; 5 with --quick)")
    parser.add_argument(
        "--workloads",
        default="tasks,task-retry,actor-calls,actor-restart",
        help="comma separated: tasks, task-retry, actor-calls, actor-restart",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    workloads = [name for name in args.workloads.split(",") if name]
    for name in workloads:
        if name not in ("tasks", "task-retry", "actor-calls", "actor-restart"):
            parser.error(f"unknown workload {name}")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        print(f"ray_bench: Ray {ray.__version__}, num_cpus=2", file=sys.stderr)
        trials = args.trials if args.trials is not None else (5 if args.quick else 20)
        for name in workloads:
            if name == "tasks":
                results = [tasks(args.tasks)]
            elif name == "task-retry":
                results = [task_retry()]
            elif name == "actor-calls":
                results = actor_calls(args.quick)
            else:
                results = actor_restart(trials)
            for result in results:
                line = json.dumps(result)
                print(line)
                with open(args.out, "a") as out:
                    out.write(line + "\n")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
