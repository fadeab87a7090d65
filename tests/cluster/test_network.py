"""The node's addresses and the guard rules that keep the cluster's traffic on this machine."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cluster.layout import NET
from cluster.network import GUARD_FWD, GUARD_OUT, guard_rules


def _nets(*cidrs: str) -> list[ipaddress.IPv4Network]:
    return [ipaddress.ip_network(c) for c in cidrs]


def test_every_cluster_range_is_guarded_on_output_and_forward() -> None:
    rules = guard_rules()
    for cidr in (NET.pod_cidr, NET.service_cidr, NET.link_cidr):
        assert ["-d", cidr, "!", "-o", NET.host_veth, "-j", "DROP"] in rules[GUARD_OUT]
        assert ["-d", cidr, "-j", "DROP"] in rules[GUARD_FWD]
    # the host forwards nothing from or to the node, whatever its ip_forward
    assert ["-i", NET.host_veth, "-j", "DROP"] in rules[GUARD_FWD]
    assert ["-o", NET.host_veth, "-j", "DROP"] in rules[GUARD_FWD]
    # loopback first: the host's own end of the link is a local address
    assert rules[GUARD_OUT][0] == ["-o", "lo", "-j", "RETURN"]


def test_ranges_do_not_overlap_and_hold_their_special_addresses() -> None:
    pod, svc, link = _nets(NET.pod_cidr, NET.service_cidr, NET.link_cidr)
    assert not pod.overlaps(svc) and not pod.overlaps(link) and not svc.overlaps(link)
    assert ipaddress.ip_address(NET.api_service_ip) in svc
    assert ipaddress.ip_address(NET.dns_service_ip) in svc
    assert {ipaddress.ip_address(NET.host_ip), ipaddress.ip_address(NET.node_ip)} <= set(link.hosts())


def test_guarded_ranges_leave_this_machines_resolver_alone() -> None:
    """A guard on all of 10.0.0.0/8 would cut apt, pip and Go downloads (PLATFORM-NOTES)."""
    resolv = Path("/etc/resolv.conf")
    servers = [ln.split()[1] for ln in resolv.read_text().splitlines()
               if ln.startswith("nameserver")] if resolv.exists() else []
    guarded = _nets(*NET.guarded)
    for server in servers:
        addr = ipaddress.ip_address(server)
        if addr.version == 4:
            assert not any(addr in net for net in guarded), server
