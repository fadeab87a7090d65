"""``up``, ``down`` and ``status`` of the local cluster, each stage timed.

``up`` is idempotent: a running, Ready node is left alone; builds, certificates, etcd data and
images are kept between runs, so a second ``up`` after ``down`` takes seconds plus the node's
start. ``down`` stops every process (the node's supervisor, then any container shim), unmounts
what the kubelet and containerd mounted, removes the pods' network namespaces, the node's
namespace and link, and the guard chains, then checks that nothing is left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from string import Template

from cluster import gobuild, network, node, pki, system_images
from cluster.layout import BIN, NET, PATHS, ROOT
from cluster.pki import NODE_NAME

NODE_PIDFILE = PATHS.root / "node.pid"
NODE_LOG = PATHS.logs / "node.log"
MANIFESTS = Path(__file__).resolve().parent / "manifests"
REQUIRED_COMMANDS = ("containerd", "containerd-shim-runc-v2", "runc", "etcd", "iptables", "ip",
                     "nsenter", "ctr", "openssl", "gcc")


class Timer:
    """Prints each stage and its duration; ``times`` keeps them for a report."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.times: dict[str, float] = {}
        self.t0 = time.monotonic()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        print(f"{self.prefix}: {name} ...", flush=True)
        t0 = time.monotonic()
        yield
        self.times[name] = round(time.monotonic() - t0, 1)
        print(f"{self.prefix}: {name} done in {self.times[name]:.1f} s", flush=True)

    def total(self) -> float:
        return round(time.monotonic() - self.t0, 1)


def kubectl(*args: str, check: bool = True, capture: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess:
    res = subprocess.run([str(BIN / "kubectl"), "--kubeconfig", str(PATHS.admin_kubeconfig), *args],
                         capture_output=capture, text=True, input=input)
    if check and res.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)}: {(res.stderr or '').strip()}")
    return res


def preflight() -> None:
    if os.geteuid() != 0:
        raise SystemExit("cluster: must run as root (network namespaces, mounts, iptables)")
    missing = [c for c in REQUIRED_COMMANDS if shutil.which(c) is None]
    if missing:
        raise SystemExit(f"cluster: missing commands {', '.join(missing)}; `make cluster-deps` "
                         "installs the Debian packages (mk/cluster.mk)")


def node_pid() -> int | None:
    try:
        pid = int(NODE_PIDFILE.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _start_node() -> None:
    NODE_LOG.parent.mkdir(parents=True, exist_ok=True)
    node.ready_marker().unlink(missing_ok=True)
    with open(NODE_LOG, "ab") as log:
        proc = subprocess.Popen(
            ["nsenter", f"--net={PATHS.netns_file}", "--", sys.executable, "-m", "cluster", "node"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
            start_new_session=True)
    NODE_PIDFILE.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 300
    while not node.ready_marker().is_file():
        if proc.poll() is not None:
            raise SystemExit(f"cluster: the node supervisor exited with {proc.returncode}:\n"
                             + NODE_LOG.read_text(errors="replace")[-4000:])
        if time.monotonic() > deadline:
            raise SystemExit("cluster: node not up after 300 s; see " + str(NODE_LOG))
        time.sleep(0.5)


def _wait(desc: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"cluster: timed out after {timeout:.0f} s waiting for {desc}")
        time.sleep(1)


def _since(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def node_ready(since: float = 0.0) -> bool:
    """Ready, by a heartbeat of the kubelet started at ``since`` (etcd keeps the old status)."""
    res = kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
    if res.returncode != 0:
        return False
    conds = json.loads(res.stdout)["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True"
               and _since(c["lastHeartbeatTime"]) >= since - 1 for c in conds)


def pods_ready(namespace: str, selector: str, since: float = 0.0) -> bool:
    """Every pod matching ``selector`` Ready, with containers started after ``since``."""
    res = kubectl("-n", namespace, "get", "pods", "-l", selector, "-o", "json", check=False)
    if res.returncode != 0:
        return False
    pods = json.loads(res.stdout)["items"]
    if not pods:
        return False
    for pod in pods:
        status = pod.get("status", {})
        ready = any(c["type"] == "Ready" and c["status"] == "True"
                    for c in status.get("conditions", []))
        started = [c.get("state", {}).get("running", {}).get("startedAt")
                   for c in status.get("containerStatuses", [])]
        if not ready or not started or not all(s and _since(s) >= since - 1 for s in started):
            return False
    return True


def render(name: str, **values: str) -> str:
    return Template((MANIFESTS / name).read_text()).substitute(values)


def apply_addons(since: float) -> None:
    kubectl("apply", "-f", "-", input=render(
        "coredns.yaml", cluster_domain=NET.cluster_domain, dns_service_ip=NET.dns_service_ip,
        coredns_image=system_images.COREDNS_IMAGE))
    kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=180s")
    _wait("CoreDNS Ready", lambda: pods_ready("kube-system", "k8s-app=kube-dns", since), 180)


def up() -> dict[str, float]:
    timer = Timer("cluster-up")
    with timer.stage("preflight"):
        preflight()
    with timer.stage(f"build kubernetes {gobuild.KUBERNETES.version}"):
        gobuild.build(gobuild.KUBERNETES)
    with timer.stage("build pause and coredns images"):
        system_images.archives()
    with timer.stage("certificates and kubeconfigs"):
        pki.ensure_all()
    with timer.stage("network namespace, link and guard rules"):
        network.up()
    with timer.stage("node processes (etcd, control plane, containerd, kubelet, kube-proxy)"):
        if node_pid() is None or not node.ready_marker().is_file():
            stop_node()
            _start_node()
    started = node.started_at("kubelet")
    with timer.stage("node Ready"):
        _wait("node Ready", lambda: node_ready(started), 180)
    with timer.stage("CoreDNS"):
        apply_addons(started)
    times = {**timer.times, "total": timer.total()}
    (PATHS.root / "up-times.json").write_text(json.dumps(times, indent=2) + "\n")
    print(kubectl("get", "nodes", "-o", "wide").stdout, end="")
    print(f"cluster-up: ready in {times['total']:.0f} s. "
          f"export KUBECONFIG={PATHS.admin_kubeconfig}")
    return times


def stop_node(grace: float = 60.0) -> None:
    """SIGTERM the node supervisor; it stops its children in reverse start order."""
    pid = node_pid()
    if pid is None:
        NODE_PIDFILE.unlink(missing_ok=True)
        return
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.2)
    else:
        os.killpg(pid, signal.SIGKILL)
    NODE_PIDFILE.unlink(missing_ok=True)


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def cluster_processes() -> list[int]:
    """Every process of the cluster: in the node's netns, the shims of our containerd and their
    containers, or running one of the binaries built into .cache/bin."""
    ours = set(network.processes_in_netns())
    sock = str(PATHS.containerd_sock)
    tree = _children()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = _cmdline(int(entry))
        if not argv:
            continue
        is_shim = argv[0].endswith("containerd-shim-runc-v2") and sock in argv
        if is_shim or argv[0].startswith(str(BIN) + "/"):
            stack = [int(entry)]
            while stack:
                pid = stack.pop()
                ours.add(pid)
                stack.extend(tree.get(pid, []))
    ours.discard(os.getpid())
    return sorted(ours)


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.1)


def _mountinfo() -> list[tuple[str, str]]:
    """(mount point, fs type) of every mount, in mount order."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        point = left.split()[4].encode().decode("unicode_escape")
        out.append((point, right.split()[0]))
    return out


def cluster_mounts() -> list[str]:
    roots = (str(PATHS.root) + "/", str(PATHS.run) + "/", "/run/netns/cni-", "/var/run/netns/cni-")
    return [p for p, _ in _mountinfo() if p.startswith(roots) or p == str(PATHS.netns_file)]


def _unmount_all() -> None:
    for _ in range(5):
        points = cluster_mounts()
        if not points:
            return
        for point in reversed(points):
            subprocess.run(["umount", point], capture_output=True)
    for point in reversed(cluster_mounts()):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _remove_cgroups() -> None:
    """The kubelet's cgroup tree (cgroupfs driver), bottom-up, once its processes are gone."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / "kubepods"
        if not top.is_dir():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in [*dirs, top]:
            try:
                d.rmdir()
            except OSError:
                pass


def leftovers() -> list[str]:
    found = [f"process {p}: {' '.join(_cmdline(p))[:120]}" for p in cluster_processes()]
    found += [f"mount {p}" for p in cluster_mounts()]
    found += network.leftovers()
    return found


def down() -> dict[str, float]:
    timer = Timer("cluster-down")
    with timer.stage("node processes"):
        stop_node()
    with timer.stage("containers and shims"):
        _kill_all(cluster_processes())
    with timer.stage("mounts, pod network namespaces, cgroups"):
        _unmount_all()
        for ns in Path("/run/netns").glob("cni-*"):
            ns.unlink(missing_ok=True)
        _remove_cgroups()
        shutil.rmtree(PATHS.run, ignore_errors=True)
    with timer.stage("network namespace, link and guard rules"):
        network.down()
    left = leftovers()
    if left:
        raise SystemExit("cluster-down: left behind:\n  " + "\n  ".join(left))
    print(f"cluster-down: nothing left running ({timer.total():.0f} s)")
    return timer.times


def reset() -> None:
    """``down``, then forget the cluster's state (etcd, images, certificates); builds are kept."""
    down()
    shutil.rmtree(PATHS.root, ignore_errors=True)
    print(f"cluster-reset: removed {PATHS.root}")


def status() -> int:
    pid = node_pid()
    print(f"node supervisor: {'pid ' + str(pid) if pid else 'not running'}")
    if pid and node.ready_marker().is_file():
        print(kubectl("get", "nodes,pods", "-A", "-o", "wide", check=False).stdout, end="")
        return 0
    return 1
