"""Pinned versions, paths and address ranges of the local cluster: one place, stamped into builds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache"
BIN = CACHE / "bin"

KUBERNETES_VERSION = "v1.34.4"
COREDNS_VERSION = "v1.14.0"



@dataclass(frozen=True)
class Network:
    """Addresses of the node's namespace. Every range here is guarded so it never leaves the host.

    The node gets its own network namespace (the kubelet refuses a loopback node IP), joined to
    the host by one veth pair on a /30. Pods sit on a bridge inside the node namespace.
    """

    netns: str = "movierec-node"
    host_veth: str = "mrnode-host"
    node_veth: str = "mrnode0"
    host_ip: str = "172.31.254.1"
    node_ip: str = "172.31.254.2"
    link_cidr: str = "172.31.254.0/30"
    pod_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/16"
    api_service_ip: str = "10.96.0.1"
    dns_service_ip: str = "10.96.0.10"
    bridge: str = "cni0"
    cluster_domain: str = "cluster.local"

    @property
    def guarded(self) -> tuple[str, ...]:
        """Ranges that must never be routed out of this machine."""
        return (self.pod_cidr, self.service_cidr, self.link_cidr)


NET = Network()


@dataclass(frozen=True)
class Paths:
    """Everything the cluster writes lives under .cache/cluster (state) and .cache/bin (builds)."""

    root: Path = CACHE / "cluster"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        """Sockets and state of running processes: short paths (unix sockets are capped at 108 bytes)."""
        return Path("/run/movierec-cluster")

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_state(self) -> Path:
        return self.run / "containerd"

    @property
    def containerd_sock(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def volumes(self) -> Path:
        """hostPath root for the node's PersistentVolumes."""
        return self.root / "volumes"

    @property
    def netns_file(self) -> Path:
        return Path("/run/netns") / NET.netns

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"


PATHS = Paths()
