"""Apply the chart to a real kube-apiserver + etcd (`make k8s-apiserver-test`, opt-in).

Starts etcd and the kube-apiserver built by scripts/build-k8s-apiserver.sh on free local
ports, installs the CRDs of KServe v0.20 (the YAMLs in ../shared/schemas/crds-yaml), Argo,
Istio and the Prometheus operator (CRDs rebuilt from the schemas in ../shared/schemas/crds:
structural schemas, so the apiserver validates and prunes with them), then:

1. every object of every render (defaults + ci/*-values.yaml) and of workflows/ is created
   with ``dryRun=All&fieldValidation=Strict``: schema, CEL rules, defaulting and unknown
   fields are all checked by the API server itself;
2. ``helm install`` of the default values for real, and every object read back.

No controllers run (no kubelet, KServe, Argo, Istio): this checks that every object is
accepted, not that it works.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
BIN = REPO_ROOT / ".cache" / "bin"
sys.path.insert(0, str(REPO_ROOT / "tools"))
sys.path.insert(0, str(REPO_ROOT))
import k8s_render  # noqa: E402

from devstack.ports import free_port  # noqa: E402

NAMESPACE = "movierec"
# CRDs rebuilt from the shared JSON schemas: (schema file, plural, kind, served versions)
SCHEMA_CRDS = [
    ("argoproj.io/workflowtemplate_v1alpha1.json", "workflowtemplates", "WorkflowTemplate"),
    ("argoproj.io/cronworkflow_v1alpha1.json", "cronworkflows", "CronWorkflow"),
    ("argoproj.io/workflowtemplate_v1alpha1.json", "workflows", "Workflow"),
    ("networking.istio.io/virtualservice_v1.json", "virtualservices", "VirtualService"),
    ("networking.istio.io/destinationrule_v1.json", "destinationrules", "DestinationRule"),
    ("monitoring.coreos.com/servicemonitor_v1.json", "servicemonitors", "ServiceMonitor"),
    ("monitoring.coreos.com/podmonitor_v1.json", "podmonitors", "PodMonitor"),
    ("monitoring.coreos.com/prometheusrule_v1.json", "prometheusrules", "PrometheusRule"),
]


# (kind, text in the default render, misspelling): each must make the API server refuse it
NEGATIVE_CONTROLS = [
    ("Deployment", "revisionHistoryLimit: 3", "revisionHistoryLimt: 3"),
    ("InferenceService", "scaleTarget: 70", "scaleTargt: 70"),
    ("WorkflowTemplate", "depends: train", "dependz: train"),
    ("VirtualService", "subset: control", "subsett: control"),
    ("PrometheusRule", "- name: movierec-sla", "- nam: movierec-sla"),
    ("ServiceMonitor", "    - port: metrics\n      path: /metrics", "    - port: metrics\n      pathh: /metrics"),
]


def _structural(node: Any) -> Any:
    """Drop `additionalProperties: false` (strict-validation aid, not allowed in CRD schemas)."""
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    return {k: _structural(v) for k, v in node.items()
            if not (k == "additionalProperties" and v is False)}


def crd_from_schema(schema_file: str, plural: str, kind: str) -> dict[str, Any]:
    group = schema_file.split("/")[0]
    version = schema_file.rsplit("_", 1)[1].removesuffix(".json")
    schema = _structural(json.loads((SHARED / "schemas" / "crds" / schema_file).read_text()))
    schema["properties"].pop("status", None)
    schema["properties"]["status"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    versions = [{"name": version, "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}]
    if group == "networking.istio.io":  # Istio serves v1 and v1beta1 with the same schema
        versions.append({"name": "v1beta1", "served": True, "storage": False,
                         "schema": {"openAPIV3Schema": copy.deepcopy(schema)}})
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": plural, "singular": kind.lower(), "kind": kind,
                           "listKind": f"{kind}List"},
                 "versions": versions},
    }


class Cluster:
    """etcd + kube-apiserver on free ports in a temporary directory."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.token = "movierec-apiserver-check"
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self._resources: dict[tuple[str, str], tuple[str, bool]] = {}
        self.client = httpx.Client(base_url=self.url, verify=False, timeout=60,
                                   headers={"Authorization": f"Bearer {self.token}"})

    def start(self) -> None:
        etcd = shutil.which("etcd")
        if etcd is None or not (BIN / "kube-apiserver").exists():
            raise SystemExit("etcd / .cache/bin/kube-apiserver missing: run scripts/build-k8s-apiserver.sh")
        client_port, peer_port = free_port(), free_port()
        log = open(self.dir / "etcd.log", "w")
        self.procs.append(subprocess.Popen(
            [etcd, "--name", "check", "--data-dir", str(self.dir / "etcd"),
             "--listen-client-urls", f"http://127.0.0.1:{client_port}",
             "--advertise-client-urls", f"http://127.0.0.1:{client_port}",
             "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
             "--initial-cluster", f"check=http://127.0.0.1:{peer_port}",
             "--max-request-bytes", str(8 * 1024 * 1024), "--quota-backend-bytes", str(2 * 1024**3)],
            stdout=log, stderr=subprocess.STDOUT))
        subprocess.run(["openssl", "genrsa", "-out", str(self.dir / "sa.key"), "2048"],
                       check=True, capture_output=True)
        (self.dir / "tokens.csv").write_text(f"{self.token},admin,admin,system:masters\n")
        log = open(self.dir / "apiserver.log", "w")
        self.procs.append(subprocess.Popen(
            [str(BIN / "kube-apiserver"),
             f"--etcd-servers=http://127.0.0.1:{client_port}",
             f"--secure-port={self.port}", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
             f"--cert-dir={self.dir / 'certs'}", f"--token-auth-file={self.dir / 'tokens.csv'}",
             "--authorization-mode=RBAC",
             "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
             f"--service-account-key-file={self.dir / 'sa.key'}",
             f"--service-account-signing-key-file={self.dir / 'sa.key'}",
             "--service-cluster-ip-range=10.96.0.0/16", "--storage-media-type=application/json",
             "--v=1"],
            stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if any(p.poll() is not None for p in self.procs):
                break
            time.sleep(1)
        tail = (self.dir / "apiserver.log").read_text()[-3000:]
        raise SystemExit(f"kube-apiserver did not become ready:\n{tail}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    def kubeconfig(self) -> Path:
        path = self.dir / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "check",
            "clusters": [{"name": "check", "cluster": {"server": self.url, "insecure-skip-tls-verify": True}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "check", "context": {"cluster": "check", "user": "admin",
                                                       "namespace": NAMESPACE}}],
        }))
        return path

    # -- API helpers -----------------------------------------------------------------------
    def create(self, obj: dict[str, Any], dry_run: bool) -> httpx.Response:
        path = self.collection(obj)
        params = {"fieldValidation": "Strict"}
        if dry_run:
            params["dryRun"] = "All"
        return self.client.post(path, params=params, json=obj)

    def collection(self, obj: dict[str, Any]) -> str:
        api_version, kind = obj["apiVersion"], obj["kind"]
        key = (api_version, kind)
        if key not in self._resources:
            base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            listing = self.client.get(base).json()
            for r in listing.get("resources", []):
                if "/" not in r["name"]:
                    self._resources[(api_version, r["kind"])] = (r["name"], r["namespaced"])
        name, namespaced = self._resources[key]
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        if namespaced:
            ns = obj["metadata"].get("namespace", NAMESPACE)
            return f"{base}/namespaces/{ns}/{name}"
        return f"{base}/{name}"

    def install_crds(self) -> int:
        crds = []
        for f in sorted((SHARED / "schemas" / "crds-yaml" / "kserve-v0.20.0").glob("*.yaml")):
            crds += [d for d in yaml.safe_load_all(f.read_text()) if d and d.get("kind") == "CustomResourceDefinition"]
        crds += [crd_from_schema(*spec) for spec in SCHEMA_CRDS]
        for crd in crds:
            r = self.client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
            if r.status_code not in (201, 409):
                raise SystemExit(f"CRD {crd['metadata']['name']} rejected: {r.status_code} {r.text[:2000]}")
        deadline = time.monotonic() + 60
        for crd in crds:
            name = crd["metadata"]["name"]
            while True:
                status = self.client.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}").json()
                conditions = {c["type"]: c["status"] for c in status.get("status", {}).get("conditions", [])}
                if conditions.get("Established") == "True":
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"CRD {name} not established: {status.get('status')}")
                time.sleep(0.5)
        # discovery of new groups can lag a little behind Established
        time.sleep(2)
        return len(crds)


def check_canary_patches(cluster: Cluster) -> list[str]:
    """The canary step's patches (files/pipeline/canary_apply.py) against the installed
    InferenceService: 25 % to the challenger, then cleared, each read back."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "canary_apply", k8s_render.CHART / "files" / "pipeline" / "canary_apply.py")
    canary_apply = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(canary_apply)
    ns = NAMESPACE
    cm = cluster.client.get(f"/api/v1/namespaces/{ns}/configmaps/movierec-pipeline-scripts").json()
    settings, predictors = (json.loads(cm["data"][k]) for k in ("settings.json", "predictors.json"))
    url = (f"/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices/"
           f"{settings['inference_service']}")
    controller_patch = {"spec": {"canary": [{"predictor": {"name": "canary", "model": {"name": "kserve-container"}},
                                             "trafficPercent": 25}]}}
    failures = []
    for label, body, check in [
        ("canary 25%", canary_apply.translate(controller_patch, settings["mode"],
                                              predictors["primary"], predictors["canary"]),
         lambda isvc: [c["trafficPercent"] for c in isvc["spec"].get("canary", [])] == [25]
         and "serving.alias=challenger" in isvc["spec"]["canary"][0]["predictor"]["model"]["args"]),
        ("clear", canary_apply.clear(settings["mode"], predictors["primary"]),
         lambda isvc: not isvc["spec"].get("canary")),
    ]:
        resp = cluster.client.patch(url, params={"fieldValidation": "Strict"}, json=body,
                                    headers={"Content-Type": "application/merge-patch+json"})
        if resp.status_code != 200 or not check(resp.json()):
            failures.append(f"canary patch {label}: {resp.status_code} {resp.text[:600]}")
    print(f"apiserver: canary patches (25 %, clear) applied to the InferenceService: "
          f"{'ok' if not failures else 'FAILED'}", file=sys.stderr)
    return failures


def main() -> int:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="movierec-apiserver-"))
    cluster = Cluster(workdir)
    failures: list[str] = []
    try:
        cluster.start()
        print(f"apiserver: ready in {time.monotonic() - started:.1f}s at {cluster.url}", file=sys.stderr)
        n_crds = cluster.install_crds()
        print(f"apiserver: {n_crds} CRDs established", file=sys.stderr)
        r = cluster.client.post("/api/v1/namespaces", json={
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        assert r.status_code in (201, 409), r.text

        renders: list[tuple[str, str]] = [("defaults", k8s_render.template())]
        for values in sorted((k8s_render.CHART / "ci").glob("*-values.yaml")):
            renders.append((values.name, k8s_render.template("-f", str(values))))
        for path in sorted((REPO_ROOT / "workflows").glob("*.yaml")):
            renders.append((f"workflows/{path.name}", path.read_text()))
        checked = 0
        for label, manifest in renders:
            for obj in (d for d in yaml.safe_load_all(manifest) if d):
                resp = cluster.create(obj, dry_run=True)
                checked += 1
                warning = resp.headers.get("warning")
                if resp.status_code != 201 or warning:
                    failures.append(f"{label}: {obj['kind']}/{obj['metadata'].get('name')}: "
                                    f"{resp.status_code} {warning or ''} {resp.text[:600]}")
        print(f"apiserver: {checked} objects from {len(renders)} renders created with "
              f"dryRun=All, fieldValidation=Strict: {checked - len(failures)} accepted", file=sys.stderr)

        # negative controls: the same objects with one misspelt field must be refused, or the
        # acceptance above proves nothing (e.g. a CRD that preserves unknown fields)
        defaults = renders[0][1]
        for kind, good, bad in NEGATIVE_CONTROLS:
            obj = next(d for d in yaml.safe_load_all(defaults.replace(good, bad, 1))
                       if d and d["kind"] == kind)
            resp = cluster.create(obj, dry_run=True)
            if resp.status_code == 201:
                failures.append(f"negative control: {kind} with {bad!r} was accepted")
        print(f"apiserver: {len(NEGATIVE_CONTROLS)} negative controls (misspelt fields) refused"
              if not any(f.startswith("negative control") for f in failures) else
              "apiserver: a negative control was accepted", file=sys.stderr)

        proc = subprocess.run(
            [str(k8s_render.HELM), "install", "movierec", str(k8s_render.CHART), "--namespace", NAMESPACE,
             "--kubeconfig", str(cluster.kubeconfig())], capture_output=True, text=True)
        if proc.returncode != 0:
            failures.append(f"helm install: {proc.stderr}")
        else:
            installed = [d for d in yaml.safe_load_all(k8s_render.template()) if d]
            missing = []
            for obj in installed:
                got = cluster.client.get(f"{cluster.collection(obj)}/{obj['metadata']['name']}")
                if got.status_code != 200:
                    missing.append(f"{obj['kind']}/{obj['metadata']['name']}")
            if missing:
                failures.append(f"helm install: objects not found afterwards: {missing}")
            print(f"apiserver: helm install movierec: {len(installed) - len(missing)}/{len(installed)} "
                  f"objects stored", file=sys.stderr)
            failures += check_canary_patches(cluster)
            if proc.stderr.strip():
                print(f"apiserver: helm said: {proc.stderr.strip()[:2000]}", file=sys.stderr)
    finally:
        cluster.stop()
        if not failures and not os.environ.get("KEEP_APISERVER_DIR"):
            shutil.rmtree(workdir, ignore_errors=True)
    for failure in failures:
        print(f"REJECTED {failure}", file=sys.stderr)
    print(f"apiserver: {'FAILED' if failures else 'ok'} in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
