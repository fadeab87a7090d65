"""Certificates: one CA, the identities RBAC sees, serving names, and kubeconfigs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from cluster import pki
from cluster.layout import NET, PATHS

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _text(path: Path) -> str:
    return subprocess.run(["openssl", "x509", "-in", str(path), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    pki.ensure_ca(directory)
    pki.ensure_ca(directory, "front-proxy-ca", "movierec-front-proxy-ca")
    for cert in pki.CERTS:
        pki.sign(directory, cert)
    return directory


def test_every_certificate_verifies_against_its_ca(made: Path) -> None:
    for cert in pki.CERTS:
        ca = "front-proxy-ca" if cert.name == "front-proxy-client" else "ca"
        res = subprocess.run(["openssl", "verify", "-CAfile", str(made / f"{ca}.crt"),
                              str(made / f"{cert.name}.crt")], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr


def test_only_the_admin_and_the_apiservers_kubelet_client_are_cluster_admins(made: Path) -> None:
    masters = {c.name for c in pki.CERTS if c.org == "system:masters"}
    assert masters == {"admin", "apiserver-kubelet-client"}
    assert "O = system:masters" in _text(made / "admin.crt")
    node = _text(made / "kubelet-client.crt")
    assert f"CN = system:node:{pki.NODE_NAME}" in node and "O = system:nodes" in node


def test_apiserver_serves_every_name_pods_and_the_host_use(made: Path) -> None:
    text = _text(made / "apiserver.crt")
    for name in ("kubernetes.default.svc", f"kubernetes.default.svc.{NET.cluster_domain}"):
        assert f"DNS:{name}" in text
    for ip in (NET.node_ip, NET.api_service_ip, "127.0.0.1"):
        assert f"IP Address:{ip}" in text
    assert "TLS Web Server Authentication" in text
    assert "TLS Web Client Authentication" not in text


def test_client_certificates_are_not_server_certificates(made: Path) -> None:
    text = _text(made / "scheduler.crt")
    assert "TLS Web Client Authentication" in text and "Server Authentication" not in text


def test_existing_keys_are_kept(made: Path) -> None:
    before = (made / "admin.key").read_bytes()
    pki.sign(made, next(c for c in pki.CERTS if c.name == "admin"))
    assert (made / "admin.key").read_bytes() == before


def test_kubeconfig_points_at_the_node_with_file_references() -> None:
    text = pki.kubeconfig(PATHS.pki, "scheduler", "scheduler", f"https://{NET.node_ip}:6443")
    assert f"server: https://{NET.node_ip}:6443" in text
    assert f"client-key: {PATHS.pki / 'scheduler.key'}" in text
    assert "client-key-data" not in text
