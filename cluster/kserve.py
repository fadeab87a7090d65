"""``make kserve-up``: KServe v0.20.0's controller on the local cluster, built from its source.

* ``cmd/manager`` (the controller and its admission webhooks) and ``cmd/agent`` (the payload
  logger sidecar the pod webhook injects) are built from ``github.com/kserve/kserve@v0.20.0``
  through the Go module proxy (cluster.gobuild) and packed as from-scratch images.
* The CRDs and the controller are installed by Helm from KServe's own charts in that module
  (``charts/kserve-crd``, ``charts/kserve-resources``), in Standard (raw Deployment) mode with no
  ingress (there is no Istio or Gateway here; the router is the entry point).
* Webhook certificates: no cert-manager. A post-renderer (``python -m cluster.kserve
  postrender``) replaces the chart's cert-manager ``Certificate`` with a Secret holding a serving
  certificate signed by the cluster CA, sets that CA as every webhook's ``caBundle``, and drops
  the kube-rbac-proxy sidecar (metrics stay on the manager's loopback).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from typing import Any

import yaml

from cluster import addons, gobuild, pki
from cluster.layout import BIN, PATHS
from cluster.lifecycle import Timer, kubectl

VERSION = "v0.20.0"
MODULE = "github.com/kserve/kserve"
NAMESPACE = "kserve"
KSERVE = gobuild.GoBuild(name="kserve", module=MODULE, version=VERSION,
                         packages=[f"{MODULE}/cmd/manager", f"{MODULE}/cmd/agent"],
                         prefix="kserve-")
CONTROLLER_IMAGE = "localhost/movierec/kserve-controller"
AGENT_IMAGE = "localhost/movierec/kserve-agent"
WEBHOOK_SERVICE = "kserve-webhook-server-service"
WEBHOOK_SECRET = "kserve-webhook-server-cert"
WEBHOOK_CERT = pki.Cert("kserve-webhook", f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc", server=True,
                        dns=(f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc",
                             f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc.cluster.local"))

VALUES = {
    "kserve": {
        "version": VERSION,
        "certManager": {"enabled": False},
        "agent": {"image": AGENT_IMAGE, "tag": VERSION},
        "controller": {
            "deploymentMode": "Standard",
            "image": CONTROLLER_IMAGE, "tag": VERSION, "imagePullPolicy": "Never",
            # no Istio, Knative or Gateway API here: Services only; the router is the entry point
            "gateway": {"disableIngressCreation": True, "disableIstioVirtualHost": True},
            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"},
                          "limits": {"cpu": "500m", "memory": "512Mi"}},
        },
    },
}


def chart_dir(name: str):
    return gobuild.module_dir(MODULE, VERSION) / "charts" / name


def helm(*args: str, input: str | None = None) -> str:
    res = subprocess.run([str(BIN / "helm"), "--kubeconfig", str(PATHS.admin_kubeconfig), *args],
                         capture_output=True, text=True, input=input)
    if res.returncode != 0:
        raise SystemExit(f"helm {' '.join(args[:3])}: {res.stderr.strip()}")
    return res.stdout


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def postrender(text: str) -> str:
    """The chart's objects, adjusted for a cluster without cert-manager (see module doc)."""
    ca = (PATHS.pki / "ca.crt").read_bytes()
    out: list[dict[str, Any]] = []
    for obj in yaml.safe_load_all(text):
        if not obj:
            continue
        kind = obj.get("kind")
        if kind in ("Certificate", "Issuer") and obj["apiVersion"].startswith("cert-manager.io/"):
            continue
        annotations = obj.get("metadata", {}).get("annotations") or {}
        annotations.pop("cert-manager.io/inject-ca-from", None)
        if kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            for hook in obj.get("webhooks", []):
                hook["clientConfig"]["caBundle"] = _b64(ca)
        if kind == "Deployment" and obj["metadata"]["name"] == "kserve-controller-manager":
            spec = obj["spec"]["template"]["spec"]
            spec["containers"] = [c for c in spec["containers"] if c["name"] != "kube-rbac-proxy"]
            # a rebuilt image keeps its tag: roll the pods when the binary changed
            template_meta = obj["spec"]["template"].setdefault("metadata", {})
            template_meta.setdefault("annotations", {})["movierec.io/build"] = \
                gobuild.stamp_path(KSERVE).read_text().split()[-1] if gobuild.stamp_path(KSERVE).is_file() else ""
        if kind == "Secret" and obj["metadata"]["name"] == WEBHOOK_SECRET:
            continue  # replaced below
        out.append(obj)
    out.append({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": WEBHOOK_SECRET, "namespace": NAMESPACE,
                     "labels": {"app.kubernetes.io/name": "kserve"}},
        "data": {"tls.crt": _b64((PATHS.pki / f"{WEBHOOK_CERT.name}.crt").read_bytes()),
                 "tls.key": _b64((PATHS.pki / f"{WEBHOOK_CERT.name}.key").read_bytes()),
                 "ca.crt": _b64(ca)},
    })
    return yaml.safe_dump_all(out, sort_keys=False)


def _webhooks_answer() -> bool:
    """The API server reaches the webhooks (failurePolicy Fail): a server-side dry run of an
    InferenceService passes both the defaulting and the validating webhook."""
    probe = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
             "metadata": {"name": "webhook-probe", "namespace": NAMESPACE},
             "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"},
                                              "storageUri": "pvc://none/model"}}}}
    res = kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(probe),
                  check=False)
    return res.returncode == 0


def up() -> dict[str, float]:
    timer = Timer("kserve-up")
    with timer.stage(f"build KServe {VERSION} controller and agent"):
        gobuild.build(KSERVE)
        addons.binary_image(f"{CONTROLLER_IMAGE}:{VERSION}", {"manager": BIN / "kserve-manager"},
                            ["/manager"])
        addons.binary_image(f"{AGENT_IMAGE}:{VERSION}", {"ko-app/agent": BIN / "kserve-agent"},
                            ["/ko-app/agent"])
    with timer.stage("webhook serving certificate (cluster CA)"):
        pki.sign(PATHS.pki, WEBHOOK_CERT)
    with timer.stage("CRDs (charts/kserve-crd)"):
        helm("upgrade", "--install", "kserve-crd", str(chart_dir("kserve-crd")), "-n", NAMESPACE,
             "--create-namespace", "--wait")
    with timer.stage("controller and webhooks (charts/kserve-resources)"):
        values = PATHS.root / "kserve-values.yaml"
        values.write_text(yaml.safe_dump(VALUES))
        helm("upgrade", "--install", "kserve", str(chart_dir("kserve-resources")), "-n", NAMESPACE,
             "-f", str(values), "--post-renderer", sys.executable,
             "--post-renderer-args", "-m", "--post-renderer-args", "cluster.kserve",
             "--post-renderer-args", "postrender")
        kubectl("-n", NAMESPACE, "rollout", "status", "deployment/kserve-controller-manager",
                "--timeout=300s")
    with timer.stage("webhooks answer"):
        deadline = time.monotonic() + 120
        while not _webhooks_answer():
            if time.monotonic() > deadline:
                raise SystemExit("kserve-up: the KServe webhooks do not answer; see "
                                 "kubectl -n kserve logs deploy/kserve-controller-manager")
            time.sleep(2)
    print(f"kserve-up: KServe {VERSION} ready in {timer.total():.0f} s")
    return timer.times


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["postrender"]:
        sys.stdout.write(postrender(sys.stdin.read()))
        return 0
    if args[:1] == ["up"]:
        up()
        return 0
    print("usage: python -m cluster.kserve up | postrender  (make kserve-up)")
    return 0 if args[:1] in (["-h"], ["--help"]) else 2


if __name__ == "__main__":
    sys.exit(main())
