"""Certificates and kubeconfigs for the local cluster, made with openssl under .cache/cluster/pki.

One cluster CA signs the serving certificates (apiserver, kubelet, etcd) and the client
certificates, whose subject is the identity RBAC sees: the admin (system:masters), the node
(system:node:<name> in system:nodes), the scheduler, the controller-manager and kube-proxy under
their system: users. Workloads never get a certificate: they use service-account tokens signed by
the separate service-account key pair. Existing files are kept, so a second ``up`` is quick and
clients keep working.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cluster.layout import NET, PATHS

NODE_NAME = "movierec-node"
CA_DAYS = 3650
CERT_DAYS = 825


@dataclass(frozen=True)
class Cert:
    """A key and certificate signed by the cluster CA."""

    name: str
    cn: str
    org: str | None = None
    server: bool = False
    client: bool = False
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()

    def subject(self) -> str:
        return f"/CN={self.cn}" + (f"/O={self.org}" if self.org else "")

    def extensions(self) -> str:
        usage = [u for u, on in (("serverAuth", self.server), ("clientAuth", self.client)) if on]
        lines = ["basicConstraints=critical,CA:FALSE",
                 "keyUsage=critical,digitalSignature,keyEncipherment",
                 f"extendedKeyUsage={','.join(usage)}"]
        alt = [f"DNS:{d}" for d in self.dns] + [f"IP:{i}" for i in self.ips]
        if alt:
            lines.append("subjectAltName=" + ",".join(alt))
        return "\n".join(lines) + "\n"


API_SERVER_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                    f"kubernetes.default.svc.{NET.cluster_domain}", "localhost", NODE_NAME)

CERTS = (
    Cert("apiserver", "kube-apiserver", server=True, dns=API_SERVER_NAMES,
         ips=(NET.node_ip, NET.api_service_ip, "127.0.0.1")),
    Cert("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters", client=True),
    Cert("apiserver-etcd-client", "kube-apiserver-etcd-client", client=True),
    Cert("etcd-server", "etcd", server=True, client=True, dns=("localhost",), ips=("127.0.0.1",)),
    Cert("admin", "kubernetes-admin", "system:masters", client=True),
    Cert("controller-manager", "system:kube-controller-manager", client=True),
    Cert("scheduler", "system:kube-scheduler", client=True),
    Cert("kube-proxy", "system:kube-proxy", client=True),
    Cert("kubelet-client", f"system:node:{NODE_NAME}", "system:nodes", client=True),
    Cert("front-proxy-client", "front-proxy-client", client=True),
    Cert("kubelet-server", NODE_NAME, server=True, dns=(NODE_NAME, "localhost"),
         ips=(NET.node_ip, "127.0.0.1")),
)

# kubeconfig name -> client certificate name
KUBECONFIGS = {"admin": "admin", "controller-manager": "controller-manager",
               "scheduler": "scheduler", "kube-proxy": "kube-proxy", "kubelet": "kubelet-client"}


def _openssl(*args: str) -> None:
    res = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"pki: openssl {args[0]} failed: {res.stderr.strip()}")


def _new_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    path.chmod(0o600)


def ensure_ca(pki: Path, name: str = "ca", cn: str = "movierec-cluster-ca") -> None:
    key, crt = pki / f"{name}.key", pki / f"{name}.crt"
    if key.is_file() and crt.is_file():
        return
    _new_key(key)
    _openssl("req", "-x509", "-new", "-key", str(key), "-subj", f"/CN={cn}", "-days", str(CA_DAYS),
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
             "-out", str(crt))


def _ca_of(cert: Cert) -> str:
    """The aggregation layer's client certificate has a CA of its own (as kubeadm does)."""
    return "front-proxy-ca" if cert.name == "front-proxy-client" else "ca"


def sign(pki: Path, cert: Cert) -> None:
    ca = _ca_of(cert)
    key, crt = pki / f"{cert.name}.key", pki / f"{cert.name}.crt"
    if key.is_file() and crt.is_file():
        return
    _new_key(key)
    with tempfile.TemporaryDirectory() as tmp:
        csr, ext = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
        ext.write_text(cert.extensions())
        _openssl("req", "-new", "-key", str(key), "-subj", cert.subject(), "-out", str(csr))
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(pki / f"{ca}.crt"),
                 "-CAkey", str(pki / f"{ca}.key"), "-CAcreateserial", "-days", str(CERT_DAYS),
                 "-sha256", "-extfile", str(ext), "-out", str(crt))


def ensure_service_account_keys(pki: Path) -> None:
    key, pub = pki / "sa.key", pki / "sa.pub"
    if key.is_file() and pub.is_file():
        return
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key))
    key.chmod(0o600)
    _openssl("pkey", "-in", str(key), "-pubout", "-out", str(pub))


def kubeconfig(pki: Path, user: str, cert: str, server: str) -> str:
    """A kubeconfig with file references (no embedded keys) for one client certificate."""
    return f"""apiVersion: v1
kind: Config
clusters:
- name: movierec
  cluster:
    certificate-authority: {pki / 'ca.crt'}
    server: {server}
users:
- name: {user}
  user:
    client-certificate: {pki / f'{cert}.crt'}
    client-key: {pki / f'{cert}.key'}
contexts:
- name: movierec
  context: {{cluster: movierec, user: {user}}}
current-context: movierec
"""


def ensure_all(pki: Path = PATHS.pki) -> dict[str, Path]:
    """Make whatever is missing; return the path of each component's kubeconfig."""
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    ensure_ca(pki)
    ensure_ca(pki, "front-proxy-ca", "movierec-front-proxy-ca")
    for cert in CERTS:
        sign(pki, cert)
    ensure_service_account_keys(pki)
    server = f"https://{NET.node_ip}:6443"
    out = {}
    for name, cert in KUBECONFIGS.items():
        path = PATHS.root / f"{name}.kubeconfig"
        text = kubeconfig(pki, name, cert, server)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            path.chmod(0o600)
        out[name] = path
    return out
