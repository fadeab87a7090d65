"""The node's processes and their configuration files.

Everything here runs inside the node's network namespace, started by ``python -m cluster node``
(a small supervisor that ``cluster up`` launches with nsenter): etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, containerd, kubelet and kube-proxy, in that order, each
waited for before the next starts, and restarted when it dies unasked (what systemd does on a
kubeadm node).
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cluster.layout import BIN, CACHE, KUBERNETES_VERSION, NET, PATHS
from cluster.pki import NODE_NAME

CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins (not /opt/cni/bin)
PAUSE_IMAGE = "localhost/movierec/pause:3.10"
ETCD_CLIENT_URL = "https://127.0.0.1:2379"
SYSTEM_ARCHIVES = CACHE / "images" / "system"
POD_SUBNET = "10.244.0.0/24"  # this node's slice of NET.pod_cidr, handed out by host-local


@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    ready: Callable[[], bool]


def _https_ok(url: str, cert: str | None = "admin") -> bool:
    """GET ``url`` with the admin's client certificate; ``cert=None`` is a loopback health check
    of a component that serves a self-signed certificate (scheduler, controller-manager)."""
    if cert:
        ctx = ssl.create_default_context(cafile=str(PATHS.pki / "ca.crt"))
        ctx.load_cert_chain(PATHS.pki / f"{cert}.crt", PATHS.pki / f"{cert}.key")
    else:
        ctx = ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _unix_listening(path: Path) -> bool:
    """Something accepts connections on the unix socket ``path``: a socket file a killed
    containerd left behind (the machine stopped without ``cluster down``) is not it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def containerd_config() -> str:
    """containerd 1.6 (Debian) with the CRI plugin set up for this node.

    ``restrict_oom_score_adj``: these machines lack CAP_SYS_RESOURCE, so the -998 the kubelet asks
    for on sandboxes would kill runc. The sandbox image is the pause image built here (no
    registry), CNI plugins come from Debian's directory, and AppArmor is off (not in this kernel).
    """
    return f"""version = 2
root = "{PATHS.containerd_root}"
state = "{PATHS.containerd_state}"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{PATHS.containerd_sock}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    discard_unpacked_layers = false
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{shutil.which('runc') or '/usr/sbin/runc'}"
        Root = "{PATHS.run / 'runc'}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{PATHS.etc / 'cni'}"
    max_conf_num = 1
"""


def cni_config() -> dict:
    """bridge + host-local + portmap; the loopback plugin is called by containerd itself."""
    return {
        "cniVersion": "1.0.0",
        "name": "movierec-pods",
        "plugins": [
            {"type": "bridge", "bridge": NET.bridge, "isGateway": True, "ipMasq": True,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET}]],
                      "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": str(PATHS.root / "cni-ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config() -> dict:
    pki = PATHS.pki
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(pki / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki / "kubelet-server.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-server.key"),
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{PATHS.containerd_sock}",
        "clusterDNS": [NET.dns_service_ip],
        "clusterDomain": NET.cluster_domain,
        "resolvConf": str(PATHS.etc / "resolv.conf"),
        "podLogsDir": str(PATHS.pod_logs),
        "containerLogMaxSize": "10Mi",
        "containerLogMaxFiles": 3,
        "healthzBindAddress": "127.0.0.1",
        "readOnlyPort": 0,
        "maxPods": 110,
        # Images are built here and cannot be pulled again: never garbage-collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # absolute, small thresholds: a percentage of a large, shared disk is gigabytes, and
        # under imagefs pressure the eviction manager deletes images (even the pause image)
        # whatever imageGCHighThresholdPercent says
        "evictionHard": {"memory.available": "200Mi", "nodefs.available": "1Gi",
                         "imagefs.available": "1Gi"},
        "serializeImagePulls": False,
    }


def kube_proxy_config() -> dict:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clusterCIDR": NET.pod_cidr,
        "hostnameOverride": NODE_NAME,
        "bindAddress": NET.node_ip,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "clientConnection": {"kubeconfig": str(PATHS.root / "kube-proxy.kubeconfig")},
        # the sandbox may not raise nf_conntrack_max: leave the kernel's value alone
        "conntrack": {"maxPerCore": 0, "min": 0},
        "nodePortAddresses": [f"{NET.node_ip}/32"],
    }


def write_configs() -> None:
    for d in (PATHS.etc, PATHS.etc / "cni", PATHS.logs, PATHS.run, PATHS.kubelet_dir,
              PATHS.pod_logs, PATHS.etcd_data, PATHS.volumes):
        d.mkdir(parents=True, exist_ok=True)
    PATHS.etcd_data.chmod(0o700)
    files = {
        PATHS.etc / "containerd.toml": containerd_config(),
        PATHS.etc / "cni" / "10-movierec.conflist": json.dumps(cni_config(), indent=2),
        PATHS.etc / "kubelet.json": json.dumps(kubelet_config(), indent=2),
        PATHS.etc / "kube-proxy.json": json.dumps(kube_proxy_config(), indent=2),
        # pods with dnsPolicy Default get this; nothing points outside the cluster
        PATHS.etc / "resolv.conf": f"nameserver {NET.dns_service_ip}\n",
    }
    for path, text in files.items():
        path.write_text(text)


def components() -> list[Component]:
    pki, root = PATHS.pki, PATHS.root
    kc = {n: str(root / f"{n}.kubeconfig") for n in
          ("admin", "controller-manager", "scheduler", "kube-proxy", "kubelet")}
    api = f"https://{NET.node_ip}:6443"
    return [
        Component("etcd", [
            shutil.which("etcd") or "/usr/bin/etcd", "--name", NODE_NAME,
            "--data-dir", str(PATHS.etcd_data),
            "--listen-client-urls", ETCD_CLIENT_URL, "--advertise-client-urls", ETCD_CLIENT_URL,
            "--listen-peer-urls", "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
            "--initial-cluster", f"{NODE_NAME}=http://127.0.0.1:2380",
            "--listen-metrics-urls", "http://127.0.0.1:2381",
            "--cert-file", str(pki / "etcd-server.crt"), "--key-file", str(pki / "etcd-server.key"),
            "--client-cert-auth", "--trusted-ca-file", str(pki / "ca.crt"),
            "--snapshot-count", "10000", "--quota-backend-bytes", str(4 << 30),
            "--log-level", "warn", "--logger", "zap"],
            lambda: _http_ok("http://127.0.0.1:2381/health")),
        Component("kube-apiserver", [
            str(BIN / "kube-apiserver"),
            "--etcd-servers", ETCD_CLIENT_URL, "--etcd-cafile", str(pki / "ca.crt"),
            "--etcd-certfile", str(pki / "apiserver-etcd-client.crt"),
            "--etcd-keyfile", str(pki / "apiserver-etcd-client.key"),
            "--bind-address", "0.0.0.0", "--secure-port", "6443",
            "--advertise-address", NET.node_ip,
            "--service-cluster-ip-range", NET.service_cidr,
            "--service-node-port-range", "30000-32767",
            "--client-ca-file", str(pki / "ca.crt"),
            "--tls-cert-file", str(pki / "apiserver.crt"),
            "--tls-private-key-file", str(pki / "apiserver.key"),
            "--kubelet-client-certificate", str(pki / "apiserver-kubelet-client.crt"),
            "--kubelet-client-key", str(pki / "apiserver-kubelet-client.key"),
            "--kubelet-certificate-authority", str(pki / "ca.crt"),
            "--kubelet-preferred-address-types", "InternalIP",
            "--service-account-issuer", f"https://kubernetes.default.svc.{NET.cluster_domain}",
            "--service-account-key-file", str(pki / "sa.pub"),
            "--service-account-signing-key-file", str(pki / "sa.key"),
            "--authorization-mode", "Node,RBAC",
            "--enable-admission-plugins", "NodeRestriction",
            "--enable-aggregator-routing=true",
            "--requestheader-client-ca-file", str(pki / "front-proxy-ca.crt"),
            "--requestheader-allowed-names", "front-proxy-client",
            "--requestheader-username-headers", "X-Remote-User",
            "--requestheader-group-headers", "X-Remote-Group",
            "--requestheader-extra-headers-prefix", "X-Remote-Extra-",
            "--proxy-client-cert-file", str(pki / "front-proxy-client.crt"),
            "--proxy-client-key-file", str(pki / "front-proxy-client.key"),
            "--anonymous-auth=true",  # /livez, /readyz and /version only (system:public-info-viewer)
            "--profiling=false",
            "--audit-log-path", str(PATHS.logs / "audit.log"),
            "--audit-policy-file", str(PATHS.etc / "audit-policy.yaml"),
            "--audit-log-maxsize", "50", "--audit-log-maxbackup", "2",
            "--v", "0"],
            lambda: _https_ok(f"{api}/readyz")),
        Component("kube-controller-manager", [
            str(BIN / "kube-controller-manager"),
            "--kubeconfig", kc["controller-manager"],
            "--authentication-kubeconfig", kc["controller-manager"],
            "--authorization-kubeconfig", kc["controller-manager"],
            "--bind-address", "127.0.0.1",
            "--use-service-account-credentials",
            "--service-account-private-key-file", str(pki / "sa.key"),
            "--root-ca-file", str(pki / "ca.crt"),
            "--cluster-signing-cert-file", str(pki / "ca.crt"),
            "--cluster-signing-key-file", str(pki / "ca.key"),
            "--cluster-name", "movierec",
            # pod IPs come from CNI host-local, not from node.spec.podCIDR
            "--controllers", "*,-nodeipam",
            "--leader-elect=false", "--v", "0"],
            lambda: _https_ok("https://127.0.0.1:10257/healthz", cert=None)),
        Component("kube-scheduler", [
            str(BIN / "kube-scheduler"),
            "--kubeconfig", kc["scheduler"],
            "--authentication-kubeconfig", kc["scheduler"],
            "--authorization-kubeconfig", kc["scheduler"],
            "--bind-address", "127.0.0.1", "--leader-elect=false", "--v", "0"],
            lambda: _https_ok("https://127.0.0.1:10259/healthz", cert=None)),
        Component("containerd", [
            shutil.which("containerd") or "/usr/bin/containerd",
            "--config", str(PATHS.etc / "containerd.toml"), "--log-level", "warn"],
            lambda: _unix_listening(PATHS.containerd_sock)),
        Component("kubelet", [
            str(BIN / "kubelet"),
            "--config", str(PATHS.etc / "kubelet.json"),
            "--kubeconfig", kc["kubelet"],
            "--hostname-override", NODE_NAME,
            "--node-ip", NET.node_ip,
            "--root-dir", str(PATHS.kubelet_dir),
            "--v", "0"],
            lambda: _http_ok("http://127.0.0.1:10248/healthz")),
        Component("kube-proxy", [
            str(BIN / "kube-proxy"), "--config", str(PATHS.etc / "kube-proxy.json"), "--v", "0"],
            lambda: _http_ok("http://127.0.0.1:10256/healthz")),
    ]


AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    verbs: [get, list, watch]
  - level: None
    users: ["system:kube-proxy", "system:kube-scheduler", "system:kube-controller-manager"]
  - level: None
    userGroups: ["system:nodes"]
  - level: None
    resources: [{group: "", resources: [events]}, {group: coordination.k8s.io, resources: [leases]}]
  - level: Metadata
"""


def run(log: Callable[[str], None] = print) -> None:
    """Run the node in the foreground (inside its network namespace) until SIGTERM."""
    from devstack.supervisor import Supervisor

    write_configs()
    (PATHS.etc / "audit-policy.yaml").write_text(AUDIT_POLICY)
    sup = Supervisor(PATHS.logs, watch_interval=1.0)
    started: dict[str, float] = {}
    with sup:
        for comp in components():
            t0 = time.monotonic()
            started[comp.name] = time.time()
            child = sup.start(comp.name, comp.argv, restart=True)
            deadline = t0 + 120
            while not comp.ready():
                if not child.alive() and child.restarts > 3:
                    raise SystemExit(f"node: {comp.name} keeps dying:\n{child.log_tail()}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"node: {comp.name} not ready after 120 s:\n{child.log_tail()}")
                time.sleep(0.2)
            log(f"node: {comp.name} ready in {time.monotonic() - t0:.1f} s")
            if comp.name == "containerd":
                # the sandbox image must be there before the kubelet asks for its first pod
                for archive in sorted(SYSTEM_ARCHIVES.glob("*.oci.tar")):
                    import_archive(archive)
        ready_marker().write_text(json.dumps({"version": KUBERNETES_VERSION, "started": started}))
        while True:
            time.sleep(3600)


def ctr(*args: str) -> list[str]:
    return ["ctr", "--address", str(PATHS.containerd_sock), "--namespace", "k8s.io", *args]


def import_archive(archive: Path) -> None:
    """Import an OCI archive into the CRI's image store (unpacked for overlayfs)."""
    res = subprocess.run(ctr("images", "import", "--snapshotter", "overlayfs",
                             str(archive)), capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"node: importing {archive.name} failed: {res.stderr.strip()}")


def image_present(name: str) -> bool:
    listed = subprocess.run(ctr("images", "ls", "-q", f"name=={name}"), capture_output=True,
                            text=True).stdout.split()
    return name in listed


def ready_marker() -> Path:
    return PATHS.run / "node.ready"


def started_at(component: str) -> float:
    """When the running node supervisor started ``component`` (epoch seconds)."""
    return float(json.loads(ready_marker().read_text())["started"][component])
