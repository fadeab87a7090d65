"""The node's configuration files: containerd's CRI, the kubelet, kube-proxy and CNI."""

from __future__ import annotations

import ipaddress
import tomllib

from cluster import node
from cluster.layout import NET, PATHS


def test_containerd_cri_has_the_three_fixes_every_pod_needs_here() -> None:
    cfg = tomllib.loads(node.containerd_config())
    cri = cfg["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True  # no CAP_SYS_RESOURCE: runc dies otherwise
    assert cri["sandbox_image"] == node.PAUSE_IMAGE == "localhost/movierec/pause:3.10"
    assert cri["cni"]["bin_dir"] == "/usr/lib/cni"  # Debian's plugin directory
    runc = cri["containerd"]["runtimes"]["runc"]["options"]
    assert runc["SystemdCgroup"] is False
    # every socket and state path stays under the cluster's own directories
    assert cfg["grpc"]["address"] == str(PATHS.containerd_sock)
    assert runc["Root"].startswith(str(PATHS.run))
    assert cfg["state"].startswith(str(PATHS.run)) and cfg["root"].startswith(str(PATHS.root))


def test_unix_socket_paths_fit_the_kernel_limit() -> None:
    # shim sockets live under the state dir with a 64-hex id; sun_path holds 108 bytes
    assert len(str(PATHS.containerd_sock)) < 60
    assert len(str(PATHS.containerd_state)) < 40


def test_cni_hands_out_pod_addresses_inside_the_guarded_pod_range() -> None:
    cfg = node.cni_config()
    assert [p["type"] for p in cfg["plugins"]] == ["bridge", "portmap"]
    subnet = ipaddress.ip_network(cfg["plugins"][0]["ipam"]["ranges"][0][0]["subnet"])
    assert subnet.subnet_of(ipaddress.ip_network(NET.pod_cidr))
    assert cfg["plugins"][0]["ipam"]["type"] == "host-local"


def test_kubelet_config_never_collects_images_it_cannot_pull_again() -> None:
    cfg = node.kubelet_config()
    assert cfg["imageGCHighThresholdPercent"] == 100
    assert cfg["cgroupDriver"] == "cgroupfs" and cfg["failCgroupV1"] is False
    assert cfg["authentication"]["anonymous"]["enabled"] is False
    assert cfg["authorization"]["mode"] == "Webhook"
    assert cfg["clusterDNS"] == [NET.dns_service_ip]
    assert cfg["containerRuntimeEndpoint"] == f"unix://{PATHS.containerd_sock}"


def test_kube_proxy_serves_node_ports_on_the_node_address_only() -> None:
    cfg = node.kube_proxy_config()
    assert cfg["mode"] == "iptables"
    assert cfg["nodePortAddresses"] == [f"{NET.node_ip}/32"]
    assert cfg["clusterCIDR"] == NET.pod_cidr


def test_components_start_in_dependency_order_with_real_authorization() -> None:
    comps = node.components()
    assert [c.name for c in comps] == ["etcd", "kube-apiserver", "kube-controller-manager",
                                       "kube-scheduler", "containerd", "kubelet", "kube-proxy"]
    api = next(c for c in comps if c.name == "kube-apiserver").argv
    assert api[api.index("--authorization-mode") + 1] == "Node,RBAC"
    assert api[api.index("--enable-admission-plugins") + 1] == "NodeRestriction"
    assert api[api.index("--advertise-address") + 1] == NET.node_ip
    cm = next(c for c in comps if c.name == "kube-controller-manager").argv
    assert "--use-service-account-credentials" in cm


def test_a_socket_file_left_by_a_killed_containerd_is_not_a_ready_containerd(tmp_path):
    import socket

    from cluster.node import _unix_listening

    path = tmp_path / "containerd.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    assert _unix_listening(path)
    server.close()  # the process is gone; the file stays, as after a machine restart
    assert path.is_socket() and not _unix_listening(path)
    assert not _unix_listening(tmp_path / "missing.sock")
