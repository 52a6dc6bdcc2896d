#!/usr/bin/env python3
"""Checks the deployment files in deploy/ (the folder this script is in).

Run from anywhere, with a Python that has deploy/requirements.txt installed:

    python3 -m venv /tmp/deploy-venv && /tmp/deploy-venv/bin/pip install -r deploy/requirements.txt
    /tmp/deploy-venv/bin/python deploy/check.py

Prints one line per check (ok, FAIL or skip) and exits 1 if any check failed. Tools that may be
absent (systemd-analyze, systemd-sysusers, promtool) are run when they are on PATH and reported as
skipped otherwise. Cross-checks read the flag and setting names from runtime/cli/mod.rs and
runtime/node/config.rs, and metric names from runtime/, so the files cannot drift from the code
unnoticed.
"""

from __future__ import annotations

import configparser
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import kubernetes_validate
import kubernetes_validate.utils
import yaml
from dockerfile_parse import DockerfileParser

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
UNIT = DEPLOY / "systemd" / "gridkeeper.service"
SYSUSERS = DEPLOY / "systemd" / "gridkeeper.sysusers"
NODE_TOML = DEPLOY / "systemd" / "node.toml.example"
KUBE = DEPLOY / "kubernetes"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "gridkeeper.json"
CLI_SOURCE = ROOT / "runtime" / "cli" / "mod.rs"
CONFIG_SOURCE = ROOT / "runtime" / "node" / "config.rs"

# The oldest Kubernetes release the manifests claim to work on, and the newest schema the pinned
# kubernetes-validate ships. Both must be in the package: a package that lacks one fails the check
# rather than quietly validating against another release.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")

BINARY = "/usr/local/bin/gridkeeper"
MESH_PORT, ADMIN_PORT, ZK_PORT = 7100, 9100, 2181

# The unit's hardening: key -> accepted values (None: any value, but the key must be there).
YES = {"yes", "true", "on", "1"}
UNIT_REQUIRED = {
    "Type": {"simple"},
    "User": {"gridkeeper"},
    "ExecStart": {f"{BINARY} node --config /etc/gridkeeper/node.toml"},
    "Restart": {"on-failure"},
    "NoNewPrivileges": YES,
    "ProtectSystem": {"strict"},
    "ProtectHome": YES,
    "PrivateTmp": YES,
    "PrivateDevices": YES,
    "ProtectKernelTunables": YES,
    "ProtectKernelModules": YES,
    "ProtectKernelLogs": YES,
    "ProtectControlGroups": YES,
    "ProtectClock": YES,
    "ProtectHostname": YES,
    "RestrictAddressFamilies": {"AF_INET AF_INET6 AF_UNIX"},
    "RestrictNamespaces": YES,
    "RestrictRealtime": YES,
    "RestrictSUIDSGID": YES,
    "LockPersonality": YES,
    "MemoryDenyWriteExecute": YES,
    "SystemCallArchitectures": {"native"},
    "SystemCallFilter": {"@system-service"},
    "CapabilityBoundingSet": {""},
    "AmbientCapabilities": {""},
    "StateDirectory": {"gridkeeper"},
    "ReadWritePaths": {"/var/lib/gridkeeper"},
    "LimitNOFILE": {"65536"},
    "KillSignal": {"SIGTERM"},
    "TimeoutStopSec": {"30", "30s"},
}
# `systemd-analyze security --offline` exposure, times 10, above which the check fails (the unit
# scores 1.7 with systemd 252).
SECURITY_THRESHOLD = 20

FAILURES: list[str] = []


class CheckFailed(Exception):
    pass


class Skipped(Exception):
    pass


def check(name):
    """Runs the decorated function at once as one check and prints its line."""

    def run(function):
        try:
            note = function()
        except Skipped as skip:
            print(f"skip  {name}: {skip}")
        except (CheckFailed, AssertionError) as failure:
            print(f"FAIL  {name}: {failure}")
            FAILURES.append(name)
        except Exception as error:  # a crash in a check is a failure of that check, not of the run
            print(f"FAIL  {name}: {type(error).__name__}: {error}")
            FAILURES.append(name)
        else:
            print(f"ok    {name}" + (f": {note}" if note else ""))
        return function

    return run


def require(condition, message):
    if not condition:
        raise CheckFailed(message)


def run_tool(argv, cwd=None, stdin=None):
    result = subprocess.run(argv, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return result.returncode, lines


# ---------------------------------------------------------------------------------------------
# What the code accepts: node flags, config-file keys, metric names.


def node_flags():
    """The long flags of `gridkeeper node`, from the NodeArgs struct in runtime/cli/mod.rs."""
    text = CLI_SOURCE.read_text()
    body = re.search(r"struct NodeArgs \{(.*?)\n\}", text, re.S)
    require(body, f"no `struct NodeArgs` in {CLI_SOURCE}")
    flags, attribute = set(), None
    for line in body.group(1).splitlines():
        line = line.strip()
        if line.startswith("#[arg("):
            attribute = line
        field = re.match(r"(?:pub\s+)?([a-z_0-9]+)\s*:", line)
        if field and attribute is not None:
            explicit = re.search(r'long\s*=\s*"([^"]+)"', attribute)
            flags.add(explicit.group(1) if explicit else field.group(1).replace("_", "-"))
            attribute = None
    require(len(flags) > 10, f"found only {sorted(flags)} in NodeArgs")
    return flags


def config_keys():
    """The keys of a node config file: the fields of NodeSettings in runtime/node/config.rs."""
    text = CONFIG_SOURCE.read_text()
    body = re.search(r"pub struct NodeSettings \{(.*?)\n\}", text, re.S)
    require(body, f"no `pub struct NodeSettings` in {CONFIG_SOURCE}")
    keys = set(re.findall(r"^\s*pub ([a-z_0-9]+): Option<", body.group(1), re.M))
    require(len(keys) > 10, f"found only {sorted(keys)} in NodeSettings")
    return keys


def runtime_metric_names():
    """Every gridkeeper_* and process_* name written as a string in runtime/ (the process metrics
    are rendered in runtime/admin/telemetry.rs)."""
    names = set()
    for source in (ROOT / "runtime").rglob("*.rs"):
        names.update(re.findall(r'"((?:gridkeeper|process)_[a-z0-9_]+)"', source.read_text()))
    require(names, "no gridkeeper_* metric names under runtime/")
    return names


def expr_metric_names(expr):
    """The gridkeeper_* and process_* series an expression names, with a histogram's `_bucket`,
    `_sum` and `_count` series taken back to the histogram's name."""
    names = set()
    for metric in re.findall(r"\b(?:gridkeeper|process)_[a-z0-9_]+", expr):
        names.add(re.sub(r"_(bucket|sum|count)$", "", metric))
    return names


# ---------------------------------------------------------------------------------------------
# Dockerfile


def dockerfile_stages():
    parser = DockerfileParser(fileobj=io.BytesIO(DOCKERFILE.read_bytes()))
    stages = []
    for instruction in parser.structure:
        if instruction["instruction"] == "COMMENT":
            continue
        if instruction["instruction"] == "FROM":
            stages.append([])
        require(stages, f"line {instruction['startline'] + 1}: {instruction['instruction']} before any FROM")
        stages[-1].append(instruction)
    return stages


@check("Dockerfile: parses, at least 2 FROM stages")
def _():
    stages = dockerfile_stages()
    require(len(stages) >= 2, f"{len(stages)} FROM stage(s)")
    return ", ".join(stage[0]["value"] for stage in stages)


@check("Dockerfile: build stage runs cargo build --release --locked --bin gridkeeper")
def _():
    runs = [i["value"] for stage in dockerfile_stages()[:-1] for i in stage if i["instruction"] == "RUN"]
    words = [shlex.split(run) for run in runs]
    require(
        any(all(flag in w for flag in ("build", "--release", "--locked")) and "gridkeeper" in w for w in words),
        f"no such RUN among {runs}",
    )


@check("Dockerfile: final stage runs as a non-root USER")
def _():
    final = dockerfile_stages()[-1]
    users = [i["value"].strip() for i in final if i["instruction"] == "USER"]
    require(users, "the final stage has no USER")
    user, _, group = users[-1].partition(":")
    require(user not in ("root", "0", ""), f"USER {users[-1]}")
    require(group not in ("root", "0"), f"USER {users[-1]}")
    return f"USER {users[-1]}"


@check("Dockerfile: final stage has an exec-form ENTRYPOINT to the binary")
def _():
    final = dockerfile_stages()[-1]
    entrypoints = [i["value"].strip() for i in final if i["instruction"] == "ENTRYPOINT"]
    require(entrypoints, "the final stage has no ENTRYPOINT")
    require(entrypoints[-1] == f'["{BINARY}"]', f"ENTRYPOINT {entrypoints[-1]}")


@check("Dockerfile: final stage copies only the binary (one COPY --from, no ADD)")
def _():
    final = dockerfile_stages()[-1]
    copies = [i for i in final if i["instruction"] in ("COPY", "ADD")]
    require(len(copies) == 1, f"{len(copies)} COPY/ADD instructions in the final stage")
    require(copies[0]["instruction"] == "COPY", "ADD in the final stage")
    words = shlex.split(copies[0]["value"])
    flags = [w for w in words if w.startswith("--")]
    paths = [w for w in words if not w.startswith("--")]
    require(any(f.startswith("--from=") for f in flags), f"COPY without --from: {copies[0]['value']}")
    require(len(paths) == 2 and paths[1] == BINARY, f"COPY {copies[0]['value']}: want one source, to {BINARY}")
    require(Path(paths[0]).name == "gridkeeper", f"COPY source {paths[0]} is not the binary")


@check("Dockerfile: final stage EXPOSEs 7100/udp 9100/tcp 2181/tcp")
def _():
    final = dockerfile_stages()[-1]
    exposed = {p.lower() for i in final if i["instruction"] == "EXPOSE" for p in i["value"].split()}
    want = {f"{MESH_PORT}/udp", f"{ADMIN_PORT}/tcp", f"{ZK_PORT}/tcp"}
    require(want <= exposed, f"missing {sorted(want - exposed)}")


@check("Dockerfile.dockerignore: keeps .git and target/ out of the context")
def _():
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    require(".git" in patterns, ".git is not excluded")
    require(patterns & {"target", "**/target"}, "target is not excluded")
    require(not patterns & {".cargo", "Cargo.lock", "runtime"}, "excludes files the build needs")


# ---------------------------------------------------------------------------------------------
# systemd


def unit_service_section():
    parser = configparser.ConfigParser(strict=False, interpolation=None, empty_lines_in_values=False)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(UNIT.read_text(), source=str(UNIT))
    require(parser.has_section("Service"), "no [Service] section")
    return parser["Service"]


@check("systemd unit: hardening and service keys present with the expected values")
def _():
    service = unit_service_section()
    wrong = []
    for key, accepted in UNIT_REQUIRED.items():
        if key not in service:
            wrong.append(f"{key} missing")
        elif accepted is not None and service[key].strip().lower() not in {a.lower() for a in accepted}:
            wrong.append(f"{key}={service[key]}")
    require(not wrong, "; ".join(wrong))
    return f"{len(UNIT_REQUIRED)} keys"


@check("systemd unit: ExecStart names only existing `node` flags; config file and data dir agree")
def _():
    service = unit_service_section()
    words = shlex.split(service["ExecStart"])
    require(words[:2] == [BINARY, "node"], f"ExecStart {service['ExecStart']}")
    flags = node_flags()
    unknown = [w for w in words[2:] if w.startswith("--") and w[2:].split("=")[0] not in flags]
    require(not unknown, f"unknown flags {unknown}")
    config = words[words.index("--config") + 1]
    require(config == "/etc/gridkeeper/node.toml", f"--config {config}")
    data_dir = tomllib.loads(NODE_TOML.read_text()).get("data_dir")
    require(data_dir == service["ReadWritePaths"].strip(), f"node.toml data_dir {data_dir} is not ReadWritePaths")
    require(data_dir == "/var/lib/" + service["StateDirectory"].strip(), f"data_dir {data_dir} is not StateDirectory")


@check("systemd-analyze verify gridkeeper.service (no output allowed)")
def _():
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        raise Skipped("systemd-analyze is not on PATH")
    # verify checks that ExecStart's executable exists. Where gridkeeper is not installed, a copy of
    # the unit (same file name) points ExecStart at an executable stub, and nothing else changes.
    # Every other line of output (unknown keys, unparsable values, unknown system call groups, ...)
    # is a failure: verify itself exits 0 on those.
    # Tolerated: only a message that the user or group `gridkeeper` does not exist on this machine
    # (matched after the "FILE:LINE: " prefix, which names the unit, is cut off).
    allowed = [
        re.compile(r"^(failed to resolve|unknown) (user|group)( name)? '?gridkeeper'?\b", re.I),
        re.compile(r"^(user|group) '?gridkeeper'? (not found|does not exist|is unknown)", re.I),
    ]

    def tolerated(line):
        message = re.sub(r"^\S+:\d+: ", "", line.strip())
        return any(pattern.search(message) for pattern in allowed)

    with tempfile.TemporaryDirectory(prefix="gk-unit-") as scratch:
        unit = UNIT
        if not Path(BINARY).is_file():
            stub = Path(scratch) / "gridkeeper"
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
            text = UNIT.read_text()
            require(text.count(f"ExecStart={BINARY} ") == 1, f"ExecStart={BINARY} not found once")
            unit = Path(scratch) / UNIT.name
            unit.write_text(text.replace(f"ExecStart={BINARY} ", f"ExecStart={stub} "))
        code, lines = run_tool([analyze, "verify", str(unit)], cwd=scratch)
    bad = [line for line in lines if not tolerated(line)]
    require(not bad and code == 0, f"exit {code}: " + " | ".join(bad or lines))
    notes = [line for line in lines if line not in bad]
    return ("tolerated: " + " | ".join(notes)) if notes else ("binary stubbed" if unit != UNIT else "")


@check(f"systemd-analyze security --offline: exposure at most {SECURITY_THRESHOLD / 10}")
def _():
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        raise Skipped("systemd-analyze is not on PATH")
    code, lines = run_tool([analyze, "--version"])
    version = re.match(r"systemd (\d+)", lines[0] if lines else "")
    if not version or int(version.group(1)) < 250:
        raise Skipped(f"needs systemd 250 or later for --offline, have {lines[:1]}")
    with tempfile.TemporaryDirectory(prefix="gk-unit-") as scratch:
        unit = Path(scratch) / UNIT.name
        unit.write_text(UNIT.read_text())
        code, lines = run_tool(
            [analyze, "security", "--offline=true", f"--threshold={SECURITY_THRESHOLD}", "--no-pager", str(unit)],
            cwd=scratch,
        )
    overall = next((line for line in lines if "Overall exposure level" in line), "no overall exposure line")
    require(code == 0, f"exit {code}: {overall}")
    return overall.split(":", 1)[-1].strip()


@check("systemd-sysusers --dry-run gridkeeper.sysusers creates user and group gridkeeper")
def _():
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        raise Skipped("systemd-sysusers is not on PATH")
    with tempfile.TemporaryDirectory(prefix="gk-sysusers-") as scratch:
        (Path(scratch) / "etc").mkdir()
        code, lines = run_tool([sysusers, f"--root={scratch}", "--dry-run", "-"], stdin=SYSUSERS.read_text())
    output = " | ".join(lines)
    require(code == 0, f"exit {code}: {output}")
    require(any("user 'gridkeeper'" in line for line in lines), output)
    require(any("group 'gridkeeper'" in line for line in lines), output)


@check("node.toml.example: TOML whose keys (set and commented) are NodeSettings fields")
def _():
    text = NODE_TOML.read_text()
    settings = tomllib.loads(text)
    keys = config_keys()
    commented = set(re.findall(r"^#\s*([a-z_0-9]+)\s*=", text, re.M))
    unknown = sorted((set(settings) | commented) - keys)
    require(not unknown, f"not config keys: {unknown}")
    missing = {"id", "peers", "certs", "data_dir"} - set(settings)
    require(not missing, f"required keys missing: {sorted(missing)}")
    peers = dict(entry.split("=", 1) for entry in settings["peers"].split(","))
    require(str(settings["id"]) in peers, f"id {settings['id']} is not in peers")
    return f"{len(settings)} set, {len(commented)} commented"


# ---------------------------------------------------------------------------------------------
# Kubernetes


def kube_documents():
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    documents = []
    for resource in kustomization.get("resources", []):
        for document in yaml.safe_load_all((KUBE / resource).read_text()):
            if document:
                documents.append((resource, document))
    return kustomization, documents


def one(documents, kind, **where):
    found = [
        d for _, d in documents if d["kind"] == kind and all(d.get("spec", {}).get(k) == v for k, v in where.items())
    ]
    require(len(found) == 1, f"{len(found)} {kind} resources matching {where or 'any'}")
    return found[0]


@check("kustomization.yaml lists every manifest in deploy/kubernetes, and only existing ones")
def _():
    kustomization, _ = kube_documents()
    require(kustomization.get("kind") == "Kustomization", "kind is not Kustomization")
    listed = set(kustomization.get("resources", []))
    present = {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml"}
    require(listed == present, f"listed {sorted(listed)}, present {sorted(present)}")


@check(f"kubernetes-validate --strict against Kubernetes {', '.join(KUBERNETES_VERSIONS)}")
def _():
    shipped = kubernetes_validate.utils.all_versions()
    absent = [v for v in KUBERNETES_VERSIONS if v not in shipped]
    require(not absent, f"kubernetes-validate {kubernetes_validate.__version__} has no schema for {absent}")
    _, documents = kube_documents()
    require(documents, "no manifests")
    errors = []
    for version in KUBERNETES_VERSIONS:
        for resource, document in documents:
            label = f"{resource} {document.get('kind')}/{document.get('metadata', {}).get('name')} @ {version}"
            try:
                validated = kubernetes_validate.validate(document, version, strict=True)
                require(validated == kubernetes_validate.utils.major_minor(version), f"{label}: got {validated}")
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(p) for p in error.path)
                errors.append(f"{label}: {path}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError as error:
                errors.append(f"{label}: {error.message}")
    require(not errors, " | ".join(errors))
    return f"{len(documents)} resources: " + ", ".join(sorted(f"{d['kind']}/{d['metadata']['name']}" for _, d in documents))


def statefulset_parts():
    _, documents = kube_documents()
    sts = one(documents, "StatefulSet")
    pod = sts["spec"]["template"]
    containers = pod["spec"]["containers"]
    require(len(containers) == 1, f"{len(containers)} containers")
    return documents, sts, pod, containers[0]


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@check("StatefulSet: serviceName is the headless Service, which publishes not-ready pods on 7100/UDP")
def _():
    documents, sts, pod, container = statefulset_parts()
    headless = one(documents, "Service", clusterIP="None")
    name = headless["metadata"]["name"]
    require(sts["spec"]["serviceName"] == name, f"serviceName {sts['spec']['serviceName']}, headless Service {name}")
    require(headless["spec"].get("publishNotReadyAddresses") is True, "publishNotReadyAddresses is not true")
    ports = {(p["port"], p.get("protocol", "TCP")) for p in headless["spec"]["ports"]}
    require((MESH_PORT, "UDP") in ports, f"headless ports {ports}")
    return name


@check("Selectors: StatefulSet, every Service and the PDB select the pod template's labels")
def _():
    documents, sts, pod, container = statefulset_parts()
    labels = pod["metadata"]["labels"]
    require(matches(sts["spec"]["selector"]["matchLabels"], labels), "StatefulSet selector")
    for _, doc in documents:
        if doc["kind"] == "Service":
            require(matches(doc["spec"].get("selector"), labels), f"Service {doc['metadata']['name']} selector")
        if doc["kind"] == "PodDisruptionBudget":
            selector = doc["spec"]["selector"]
            require(not selector.get("matchExpressions"), "PDB matchExpressions are not checked here")
            require(matches(selector.get("matchLabels"), labels), "PDB selector does not match the pod labels")
            require(doc["spec"].get("maxUnavailable") == 1, f"PDB maxUnavailable {doc['spec'].get('maxUnavailable')}")


@check("Services: every port targets a container port of the same protocol")
def _():
    documents, sts, pod, container = statefulset_parts()
    ports = {p["name"]: p for p in container["ports"]}
    by_number = {p["containerPort"]: p for p in container["ports"]}
    for _, doc in documents:
        if doc["kind"] != "Service":
            continue
        for port in doc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            found = ports.get(target) if isinstance(target, str) else by_number.get(target)
            require(found, f"Service {doc['metadata']['name']} port {port['port']}: no container port {target}")
            require(
                found.get("protocol", "TCP") == port.get("protocol", "TCP"),
                f"Service {doc['metadata']['name']} port {port['port']}: protocol differs from the container's",
            )
    admin = one(documents, "Service", type="ClusterIP")
    numbers = {(p["port"], p.get("protocol", "TCP")) for p in admin["spec"]["ports"]}
    require({(ADMIN_PORT, "TCP"), (ZK_PORT, "TCP")} <= numbers, f"Service {admin['metadata']['name']} ports {numbers}")


def probe_port(container, port):
    if isinstance(port, str):
        named = [p["containerPort"] for p in container["ports"] if p["name"] == port]
        require(named, f"no container port named {port}")
        return named[0]
    return port


@check("Probes: readiness GET /ready over HTTPS on 9100, liveness TCP on 9100")
def _():
    _, _, _, container = statefulset_parts()
    ready = container.get("readinessProbe", {}).get("httpGet")
    require(ready, "no readinessProbe.httpGet")
    require(ready.get("path") == "/ready", f"readiness path {ready.get('path')}")
    require(ready.get("scheme") == "HTTPS", f"readiness scheme {ready.get('scheme')}")
    require(probe_port(container, ready["port"]) == ADMIN_PORT, f"readiness port {ready['port']}")
    live = container.get("livenessProbe", {}).get("tcpSocket")
    require(live, "no livenessProbe.tcpSocket")
    require(probe_port(container, live["port"]) == ADMIN_PORT, f"liveness port {live['port']}")


@check("Pod security: non-root, read-only root, no capabilities, RuntimeDefault seccomp")
def _():
    _, _, pod, container = statefulset_parts()
    pod_ctx, ctx = pod["spec"].get("securityContext", {}), container.get("securityContext", {})
    require(pod_ctx.get("runAsNonRoot") is True or ctx.get("runAsNonRoot") is True, "runAsNonRoot is not true")
    require(pod_ctx.get("runAsUser", 65532) != 0 and ctx.get("runAsUser", 65532) != 0, "runAsUser 0")
    require(ctx.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not true")
    require(ctx.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false")
    require(ctx.get("capabilities", {}).get("drop") == ["ALL"], f"capabilities {ctx.get('capabilities')}")
    require(not ctx.get("capabilities", {}).get("add"), "capabilities are added")
    seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
    require(seccomp == "RuntimeDefault", f"seccompProfile {seccomp}")


def node_args(container):
    args = container.get("args", [])
    require(args[:1] == ["node"], f"args start {args[:1]}, want node")
    values, flag = {}, None
    for word in args[1:]:
        if word.startswith("--"):
            name, equals, value = word[2:].partition("=")
            values.setdefault(name, []).append(value if equals else None)
            flag = None if equals else name
        else:
            require(flag, f"stray argument {word!r}")
            values[flag][-1] = word
            flag = None
    return values


@check("StatefulSet args: known `node` flags, peers are the pods, mounts and ports agree")
def _():
    _, sts, pod, container = statefulset_parts()
    args = node_args(container)
    # --id auto (the hostname's trailing ordinal plus 1) is a value, not a flag: the flag is --id.
    unknown = sorted(set(args) - node_flags())
    require(not unknown, f"not flags of `gridkeeper node`: {unknown}")
    require(args.get("id") == ["auto"], f"--id {args.get('id')}")
    name, service, replicas = sts["metadata"]["name"], sts["spec"]["serviceName"], sts["spec"]["replicas"]
    want = ",".join(f"{i + 1}={name}-{i}.{service}:{MESH_PORT}" for i in range(replicas))
    require(args.get("peers") == [want], f"--peers {args.get('peers')}, want {want}")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for flag, port in (("listen", ports.get("mesh")), ("admin", ports.get("admin")), ("zk-listen", ports.get("zookeeper"))):
        value = (args.get(flag) or [""])[0]
        require(value.rsplit(":", 1)[-1] == str(port), f"--{flag} {value} is not on container port {port}")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claims = {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
    require(args.get("data-dir") == ["/var/lib/gridkeeper"], f"--data-dir {args.get('data-dir')}")
    data = [n for n, path in mounts.items() if path == "/var/lib/gridkeeper"]
    require(data and data[0] in claims, "/var/lib/gridkeeper is not a volumeClaimTemplate mount")
    require(args.get("certs") == ["/etc/gridkeeper/certs"], f"--certs {args.get('certs')}")
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    certs = [n for n, path in mounts.items() if path == "/etc/gridkeeper/certs"]
    secret = volumes.get(certs[0], {}).get("secret", {}) if certs else {}
    require(secret.get("secretName") == "gridkeeper-certs", "/etc/gridkeeper/certs is not the Secret gridkeeper-certs")
    env = {e["name"] for e in container.get("env", [])}
    referenced = set(re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", " ".join(container["args"])))
    require(referenced <= env, f"args use undefined $({sorted(referenced - env)})")
    admin_service = "gridkeeper"
    require(admin_service in (args.get("admin-host") or []), f"--admin-host lacks {admin_service}")


@check("StatefulSet: 3 replicas, Parallel, image user matches the Dockerfile's nonroot (65532)")
def _():
    _, sts, pod, _ = statefulset_parts()
    require(sts["spec"]["replicas"] == 3, f"replicas {sts['spec']['replicas']}")
    require(sts["spec"].get("podManagementPolicy") == "Parallel", "podManagementPolicy is not Parallel")
    final = dockerfile_stages()[-1]
    require(any(i["value"].strip() == "nonroot:nonroot" for i in final if i["instruction"] == "USER"), "USER")
    require("distroless" in final[0]["value"] and final[0]["value"].endswith(":nonroot"), final[0]["value"])
    require(pod["spec"]["securityContext"].get("runAsUser") == 65532, "runAsUser is not 65532 (distroless nonroot)")


# ---------------------------------------------------------------------------------------------
# Prometheus


def alert_rules():
    document = yaml.safe_load(ALERTS.read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    require(rules, "no rules")
    return rules


@check("prometheus.yml: HTTPS scrape of 3 nodes with the CA and client-prometheus certificate")
def _():
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = config["scrape_configs"]
    require(len(jobs) == 1, f"{len(jobs)} scrape jobs")
    job = jobs[0]
    require(job.get("scheme") == "https", f"scheme {job.get('scheme')}")
    require(job.get("metrics_path", "/metrics") == "/metrics", f"metrics_path {job.get('metrics_path')}")
    tls = job.get("tls_config", {})
    names = {Path(tls.get(k, "")).name for k in ("ca_file", "cert_file", "key_file")}
    require(names == {"ca.pem", "client-prometheus.pem", "client-prometheus.key"}, f"tls_config {tls}")
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    require(len(targets) == 3 and all(t.endswith(f":{ADMIN_PORT}") for t in targets), f"targets {targets}")
    for rule_file in config.get("rule_files", []):
        require((PROMETHEUS.parent / rule_file).is_file(), f"rule file {rule_file} is not beside prometheus.yml")
    require(config.get("rule_files"), "no rule_files")


# The alerts the cluster's operators rely on (issue 15): a node down, no leader, frequent leader
# changes, slow fsync, a growing queue, a high task failure rate, a spike of session expiries.
ALERTS_REQUIRED = {
    "GridkeeperNodeDown": "up",
    "GridkeeperNoLeader": "gridkeeper_raft_is_leader",
    "GridkeeperLeaderFlapping": "gridkeeper_raft_leader_changes_total",
    "GridkeeperFsyncSlow": "gridkeeper_raft_fsync_seconds",
    "GridkeeperQueueGrowing": "gridkeeper_grid_queue_depth",
    "GridkeeperTaskFailureRate": "gridkeeper_grid_completed_total",
    "GridkeeperSessionExpirySpike": "gridkeeper_registry_sessions_expired_total",
}
SEVERITIES = {"critical", "warning"}


@check("alerts.yml: every rule has alert, expr, for, a severity, summary and description; the required alerts are there")
def _():
    rules = alert_rules()
    by_name = {}
    for rule in rules:
        require(rule.get("alert") and rule.get("expr"), f"rule without alert or expr: {rule}")
        name = rule["alert"]
        require(name not in by_name, f"{name}: twice")
        by_name[name] = rule
        require(re.fullmatch(r"[0-9]+[smh]", str(rule.get("for", ""))), f"{name}: no `for:` duration")
        severity = rule.get("labels", {}).get("severity")
        require(severity in SEVERITIES, f"{name}: severity {severity!r}, want one of {sorted(SEVERITIES)}")
        annotations = rule.get("annotations", {})
        require(annotations.get("summary") and annotations.get("description"), f"{name}: summary or description missing")
    for name, metric in ALERTS_REQUIRED.items():
        require(name in by_name, f"no alert {name}")
        expr = str(by_name[name]["expr"])
        used = expr_metric_names(expr) | set(re.findall(r"\bup\b", expr))
        require(metric in used, f"{name} does not use {metric}")
    return f"{len(rules)} rules"


@check("alerts.yml: every gridkeeper_* and process_* metric an expression uses exists in runtime/")
def _():
    known = runtime_metric_names()
    unknown, names = [], set()
    for rule in alert_rules():
        for base in expr_metric_names(str(rule["expr"])):
            names.add(base)
            if base not in known:
                unknown.append(f"{rule['alert']}: {base}")
    require(not unknown, f"metrics not in runtime/: {unknown}")
    return f"{len(alert_rules())} rules over {len(names)} metrics"


# ---------------------------------------------------------------------------------------------
# Grafana

# What the dashboard's variables stand for when its expressions are checked by Prometheus's parser.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$job": "gridkeeper",
    "$instance": ".*",
}


def dashboard():
    return json.loads(DASHBOARD.read_text())


def dashboard_panels():
    """Every panel but rows (rows' own nested panels included, for collapsed rows)."""
    panels = []
    for panel in dashboard()["panels"]:
        if panel.get("type") == "row":
            panels.extend(panel.get("panels", []))
        else:
            panels.append(panel)
    return panels


def dashboard_exprs():
    """(panel title, refId, expr) for every query of the dashboard."""
    return [(p["title"], t["refId"], t["expr"]) for p in dashboard_panels() for t in p.get("targets", [])]


def substitute_variables(expr):
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    require("$" not in expr, f"unknown Grafana variable in {expr}")
    return expr


@check("grafana dashboard: a Grafana JSON model with a Prometheus data source variable and no hard-coded instance")
def _():
    model = dashboard()
    for key in ("title", "uid", "panels", "schemaVersion", "templating", "time"):
        require(key in model, f"no {key!r}")
    require(isinstance(model["schemaVersion"], int) and model["schemaVersion"] >= 36, f"schemaVersion {model['schemaVersion']}")
    variables = {v["name"]: v for v in model["templating"]["list"]}
    sources = [v for v in variables.values() if v.get("type") == "datasource" and v.get("query") == "prometheus"]
    require(len(sources) == 1, "want exactly one data source variable of type prometheus")
    source = "${%s}" % sources[0]["name"]
    require(variables.get("instance", {}).get("type") == "query", "no `instance` query variable")
    ids, cells = set(), set()
    for panel in dashboard()["panels"] + [p for r in dashboard()["panels"] for p in r.get("panels", [])]:
        require(panel.get("id") not in ids, f"panel id {panel.get('id')} twice")
        ids.add(panel.get("id"))
        pos = panel.get("gridPos", {})
        require(all(isinstance(pos.get(k), int) for k in "hwxy"), f"{panel.get('title')}: gridPos {pos}")
        require(0 <= pos["x"] and pos["x"] + pos["w"] <= 24, f"{panel.get('title')}: wider than the grid")
        for cell in {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}:
            require(cell not in cells, f"{panel.get('title')}: overlaps another panel")
            cells.add(cell)
        if panel.get("type") == "row":
            continue
        require(panel.get("title") and panel.get("type"), f"panel without title or type: {panel.get('id')}")
        require(panel.get("datasource", {}).get("uid") == source, f"{panel['title']}: data source is not {source}")
        targets = panel.get("targets", [])
        require(targets, f"{panel['title']}: no query")
        require(len({t.get("refId") for t in targets}) == len(targets), f"{panel['title']}: refIds repeat")
        for target in targets:
            require(target.get("expr"), f"{panel['title']}: a query without expr")
            require(target.get("datasource", {}).get("uid") == source, f"{panel['title']}: a query's data source")
    for title, _, expr in dashboard_exprs():
        require(not re.search(r'instance\s*=~?\s*"(?!\$instance")', expr), f"{title}: hard-coded instance in {expr}")
        require(not re.search(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+|:[0-9]{4,5}\b", expr), f"{title}: an address in {expr}")
    return f"{len(dashboard_panels())} panels, {len(dashboard_exprs())} queries"


@check("grafana dashboard: every gridkeeper_* and process_* metric a query uses exists in runtime/")
def _():
    known = runtime_metric_names()
    unknown, names = [], set()
    for title, _, expr in dashboard_exprs():
        for base in expr_metric_names(expr):
            names.add(base)
            if base not in known:
                unknown.append(f"{title}: {base}")
    require(not unknown, f"metrics not in runtime/: {unknown}")
    return f"{len(names)} metrics"


@check("promtool check config prometheus.yml")
def _():
    promtool = shutil.which("promtool")
    if promtool is None:
        raise Skipped("promtool is not on PATH")
    # `check config` also checks the rule files it names, and that the TLS files exist: those are on
    # the Prometheus host, not here, so --syntax-only.
    code, lines = run_tool([promtool, "check", "config", "--syntax-only", str(PROMETHEUS)])
    require(code == 0, " | ".join(lines))


@check("promtool check rules alerts.yml")
def _():
    promtool = shutil.which("promtool")
    if promtool is None:
        raise Skipped("promtool is not on PATH")
    code, lines = run_tool([promtool, "check", "rules", str(ALERTS)])
    require(code == 0, " | ".join(lines))


@check("promtool check rules on the dashboard's queries (each as a recording rule)")
def _():
    promtool = shutil.which("promtool")
    if promtool is None:
        raise Skipped("promtool is not on PATH")
    rules = [
        {"record": f"gridkeeper_dashboard:panel_{n}", "expr": substitute_variables(expr)}
        for n, (_, _, expr) in enumerate(dashboard_exprs())
    ]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "dashboard-rules.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        code, lines = run_tool([promtool, "check", "rules", str(path)])
    require(code == 0, " | ".join(lines))
    return f"{len(rules)} queries parse"


def main():
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
