"""The node's network namespace, its link to the host, and the guard rules.

The kubelet refuses a loopback node IP, so the node gets a namespace of its own (as kind gives each
node a container) joined to the host by a veth pair on a /30. The host routes the pod and service
ranges to the node, so host processes (tests, the simulator) reach pods, Services and NodePorts.
Guard rules in the host's filter table drop any packet for the cluster's ranges that would leave by
another interface, and any packet from the node that the host would forward: nothing the cluster
sends can reach an address outside this machine.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

from cluster.layout import NET, PATHS, Network

GUARD_OUT = "MOVIEREC-GUARD-OUT"
GUARD_FWD = "MOVIEREC-GUARD-FWD"


def sh(*argv: str, check: bool = True, netns: bool = False) -> subprocess.CompletedProcess:
    cmd = list(argv)
    if netns:
        cmd = ["nsenter", f"--net={PATHS.netns_file}", "--", *cmd]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise SystemExit(f"network: {' '.join(cmd)}: {res.stderr.strip() or res.stdout.strip()}")
    return res


def guard_rules(net: Network = NET) -> dict[str, list[list[str]]]:
    """iptables rules (filter table) for the two guard chains."""
    out = [["-o", "lo", "-j", "RETURN"]]  # the host's own end of the link is a local address
    out += [["-d", cidr, "!", "-o", net.host_veth, "-j", "DROP"] for cidr in net.guarded]
    fwd = [["-i", net.host_veth, "-j", "DROP"], ["-o", net.host_veth, "-j", "DROP"]]
    fwd += [["-d", cidr, "-j", "DROP"] for cidr in net.guarded]
    return {GUARD_OUT: out, GUARD_FWD: fwd}


def _chain_exists(chain: str) -> bool:
    return sh("iptables", "-w", "-n", "-L", chain, check=False).returncode == 0


def install_guards(net: Network = NET) -> None:
    """(Re)write both chains and make sure OUTPUT and FORWARD jump to them first."""
    for chain, rules in guard_rules(net).items():
        if _chain_exists(chain):
            sh("iptables", "-w", "-F", chain)
        else:
            sh("iptables", "-w", "-N", chain)
        for rule in rules:
            sh("iptables", "-w", "-A", chain, *rule)
    for parent, chain in (("OUTPUT", GUARD_OUT), ("FORWARD", GUARD_FWD)):
        if sh("iptables", "-w", "-C", parent, "-j", chain, check=False).returncode != 0:
            sh("iptables", "-w", "-I", parent, "1", "-j", chain)


def remove_guards() -> None:
    for parent, chain in (("OUTPUT", GUARD_OUT), ("FORWARD", GUARD_FWD)):
        while sh("iptables", "-w", "-D", parent, "-j", chain, check=False).returncode == 0:
            pass
        if _chain_exists(chain):
            sh("iptables", "-w", "-F", chain)
            sh("iptables", "-w", "-X", chain)


def netns_exists(net: Network = NET) -> bool:
    return PATHS.netns_file.exists()


def _link_exists(name: str, netns: bool = False) -> bool:
    return sh("ip", "link", "show", name, check=False, netns=netns).returncode == 0


NETNS_DIR = Path("/run/netns")
# `ip netns add` makes /run/netns a shared bind mount of itself the first time; remember whether
# that was us, so `down` can take it away again.
NETNS_MOUNT_MARK = PATHS.root / "netns-dir-mounted-by-cluster"


def _is_mountpoint(path: Path) -> bool:
    return subprocess.run(["mountpoint", "-q", str(path)]).returncode == 0


def up(net: Network = NET) -> None:
    """Namespace, veth pair, addresses, routes and sysctls; idempotent."""
    install_guards(net)  # before any address of the ranges exists
    if not netns_exists(net):
        if not _is_mountpoint(NETNS_DIR) and not NETNS_MOUNT_MARK.exists():
            NETNS_MOUNT_MARK.parent.mkdir(parents=True, exist_ok=True)
            NETNS_MOUNT_MARK.write_text("")
        sh("ip", "netns", "add", net.netns)
    if not _link_exists(net.host_veth):
        sh("ip", "link", "add", net.host_veth, "type", "veth", "peer", "name", net.node_veth,
           "netns", net.netns)
    prefix = net.link_cidr.split("/")[1]
    if net.host_ip not in sh("ip", "-o", "addr", "show", net.host_veth).stdout:
        sh("ip", "addr", "add", f"{net.host_ip}/{prefix}", "dev", net.host_veth)
    sh("ip", "link", "set", net.host_veth, "up")
    if net.node_ip not in sh("ip", "-o", "addr", "show", net.node_veth, netns=True).stdout:
        sh("ip", "addr", "add", f"{net.node_ip}/{prefix}", "dev", net.node_veth, netns=True)
    sh("ip", "link", "set", "lo", "up", netns=True)
    sh("ip", "link", "set", net.node_veth, "up", netns=True)
    # the node's default route leads to the host, which forwards nothing (guard chain)
    sh("ip", "route", "replace", "default", "via", net.host_ip, netns=True)
    for cidr in (net.pod_cidr, net.service_cidr):
        sh("ip", "route", "replace", cidr, "via", net.node_ip, "dev", net.host_veth)
    for key, value in (("net.ipv4.ip_forward", "1"), ("net.bridge.bridge-nf-call-iptables", "1"),
                       ("net.ipv4.conf.all.route_localnet", "1")):
        sh("sysctl", "-q", "-w", f"{key}={value}", netns=True)


def processes_in_netns(net: Network = NET) -> list[int]:
    """PIDs whose network namespace is the node's (to be stopped before it is deleted)."""
    import os

    if not netns_exists(net):
        return []
    target = os.stat(PATHS.netns_file).st_ino
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == target:
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def down(net: Network = NET) -> None:
    if _link_exists(net.host_veth):
        sh("ip", "link", "del", net.host_veth, check=False)
    if netns_exists(net):
        sh("ip", "netns", "del", net.netns, check=False)
    remove_guards()
    if NETNS_MOUNT_MARK.exists() and not any(NETNS_DIR.iterdir()):
        subprocess.run(["umount", str(NETNS_DIR)], capture_output=True)
        NETNS_MOUNT_MARK.unlink()


def leftovers(net: Network = NET) -> list[str]:
    """What of the network is still there (empty after ``down``)."""
    found = []
    if netns_exists(net):
        found.append(f"network namespace {net.netns}")
    if _link_exists(net.host_veth):
        found.append(f"link {net.host_veth}")
    for chain in (GUARD_OUT, GUARD_FWD):
        if _chain_exists(chain):
            found.append(f"iptables chain {chain}")
    ns = json.loads(sh("ip", "-j", "netns", "list", check=False).stdout or "[]")
    found += [f"network namespace {n['name']}" for n in ns if n["name"].startswith("cni-")]
    if NETNS_MOUNT_MARK.exists() and _is_mountpoint(NETNS_DIR):
        found.append(f"mount {NETNS_DIR}")
    return found


def uplinks() -> Sequence[str]:
    routes = json.loads(sh("ip", "-j", "route", "show", "default").stdout or "[]")
    return sorted({r["dev"] for r in routes if "dev" in r})
