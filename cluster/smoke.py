"""``make cluster-smoke``: the project's own image on the cluster, the way a user would see it.

In a namespace that enforces the *restricted* Pod Security Standard: the router
(``python -m experiments router`` from ``localhost/movierec-experiments``) runs as two replicas
under the chart's own security context (values.yaml: non-root UID 10001, read-only root file
system, no capabilities, RuntimeDefault seccomp) behind a NodePort Service. Then:

1. a Job of the same image resolves the Service by its DNS names (CoreDNS) and calls it;
2. the host calls the NodePort on the node's address;
3. ``kubectl logs`` shows the router's start line and the Job's output;
4. ``kubectl exec`` runs in a router pod as UID 10001 and cannot write its root file system.

Each check prints its time; any failure exits non-zero with what was seen.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from typing import Any

import yaml

from cluster.images import Image
from cluster.layout import NET, ROOT
from cluster.lifecycle import Timer, kubectl

SMOKE_LABEL = "movierec.io/smoke"
APP = "smoke-router"
PORT = 8082

# Runs in the Job: DNS answers for the Service's short and full names, then an HTTP call each.
# kube-proxy programs a new Service's endpoints within a second or so of them turning Ready;
# like any client, this one retries a refused connection for a while.
def client_script(namespace: str) -> str:
    return f"""
import json, socket, time, urllib.request
out = {{}}
for name in ("{APP}", "{APP}.{namespace}.svc.{NET.cluster_domain}", "kubernetes.default"):
    out[name] = sorted({{a[4][0] for a in socket.getaddrinfo(name, None, socket.AF_INET)}})
for name in ("{APP}", "{APP}.{namespace}.svc.{NET.cluster_domain}"):
    for attempt in range(20):
        try:
            with urllib.request.urlopen(f"http://{{name}}:{PORT}/healthz", timeout=5) as r:
                out["GET " + name] = [r.status, r.read().decode().strip()]
            break
        except OSError as exc:
            out["GET " + name] = [0, str(exc)]
            time.sleep(0.5)
print("SMOKE " + json.dumps(out, sort_keys=True))
"""


def security_contexts() -> tuple[dict[str, Any], dict[str, Any]]:
    values = yaml.safe_load((ROOT / "charts" / "movierec" / "values.yaml").read_text())
    return values["podSecurityContext"], values["containerSecurityContext"]


def manifests(image: str, namespace: str) -> list[dict[str, Any]]:
    pod_sc, container_sc = security_contexts()
    labels = {"app.kubernetes.io/name": APP, "app.kubernetes.io/part-of": "movierec"}
    container = {
        "image": image, "imagePullPolicy": "Never", "securityContext": container_sc,
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"},
                      "limits": {"memory": "512Mi"}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    tmp = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    return [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": namespace,
                      "labels": {"pod-security.kubernetes.io/enforce": "restricted",
                                 SMOKE_LABEL: "true"}}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": APP, "namespace": namespace, "labels": labels},
         "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "securityContext": pod_sc, "automountServiceAccountToken": False,
                      "volumes": tmp,
                      "containers": [{**container, "name": "router",
                                      "args": ["router", f"serving.http_port={PORT}",
                                               "experiments.name=smoke",
                                               "experiments.host=0.0.0.0",
                                               "experiments.state_dir=/tmp/router"],
                                      "ports": [{"name": "http", "containerPort": PORT}],
                                      "readinessProbe": {"httpGet": {"path": "/healthz",
                                                                     "port": "http"},
                                                         "periodSeconds": 2}}]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": APP, "namespace": namespace, "labels": labels},
         "spec": {"type": "NodePort", "selector": labels,
                  "ports": [{"name": "http", "port": PORT, "targetPort": "http"}]}},
        {"apiVersion": "batch/v1", "kind": "Job",
         "metadata": {"name": "smoke-client", "namespace": namespace},
         "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 600, "template": {"spec": {
             "restartPolicy": "Never", "securityContext": pod_sc,
             "automountServiceAccountToken": False, "volumes": tmp,
             "containers": [{**container, "name": "client",
                             "command": ["python", "-c", client_script(namespace)]}]}}}},
    ]


def _wait_endpoints(namespace: str, n: int, timeout: float = 60) -> None:
    """Until the Service's EndpointSlices list ``n`` ready addresses."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        slices = json.loads(kubectl("-n", namespace, "get", "endpointslices", "-l",
                                    f"kubernetes.io/service-name={APP}", "-o", "json").stdout)
        ready = [e for s in slices["items"] for e in s.get("endpoints") or []
                 if e.get("conditions", {}).get("ready")]
        if len(ready) >= n:
            return
        time.sleep(0.5)
    raise SystemExit(f"cluster-smoke: the Service never had {n} ready endpoints")


def _wait_job(namespace: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = json.loads(kubectl("-n", namespace, "get", "job", "smoke-client", "-o", "json").stdout)
        status = job.get("status", {})
        if status.get("succeeded") or status.get("failed"):
            return status
        time.sleep(1)
    raise SystemExit("smoke: the client Job did not finish in time")


def run(keep: bool = False) -> dict[str, float]:
    timer = Timer("cluster-smoke")
    image = Image("experiments").name
    failures: list[str] = []
    # a fresh namespace per run: CoreDNS caches answers for 30 s, so reusing a name could
    # resolve to the Service of the run before
    kubectl("delete", "namespace", "-l", f"{SMOKE_LABEL}=true", "--wait=false")
    ns = f"movierec-smoke-{secrets.token_hex(3)}"
    with timer.stage(f"router Deployment (2 replicas of {image}) Ready"):
        objs = manifests(image, ns)
        kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs[:3]))
        rollout = kubectl("-n", ns, "rollout", "status", f"deployment/{APP}",
                          "--timeout=120s", check=False)
        if rollout.returncode != 0:
            logs = kubectl("-n", ns, "logs", f"deployment/{APP}", "--previous", "--tail=30",
                           check=False)
            raise SystemExit(f"cluster-smoke: the router never became Ready: {rollout.stderr}"
                             f"\n{logs.stdout}{logs.stderr}")
        _wait_endpoints(ns, 2)
    with timer.stage("Job resolves the Service by DNS and calls it"):
        kubectl("apply", "-f", "-", input=yaml.safe_dump(objs[3]))
        status = _wait_job(ns)
        logs = kubectl("-n", ns, "logs", "job/smoke-client", check=False).stdout
        line = next((ln for ln in logs.splitlines() if ln.startswith("SMOKE ")), None)
        if not status.get("succeeded") or line is None:
            failures.append(f"client Job failed: {status}; logs:\n{logs[-2000:]}")
        else:
            seen = json.loads(line[len("SMOKE "):])
            cluster_ip = kubectl("-n", ns, "get", "svc", APP, "-o",
                                 "jsonpath={.spec.clusterIP}").stdout
            full = f"{APP}.{ns}.svc.{NET.cluster_domain}"
            expect = {APP: [cluster_ip], full: [cluster_ip], "kubernetes.default": [NET.api_service_ip],
                      f"GET {APP}": [200, "ok"], f"GET {full}": [200, "ok"]}
            if seen != expect:
                failures.append(f"DNS/Service answers {seen}, expected {expect}")
    with timer.stage("host calls the NodePort"):
        node_port = kubectl("-n", ns, "get", "svc", APP, "-o",
                            "jsonpath={.spec.ports[0].nodePort}").stdout
        url = f"http://{NET.node_ip}:{node_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                got = (resp.status, resp.read().decode().strip())
        except OSError as exc:
            got = (0, str(exc))
        if got != (200, "ok"):
            failures.append(f"GET {url} answered {got}")
    with timer.stage("kubectl logs and exec"):
        logs = kubectl("-n", ns, "logs", f"deployment/{APP}", check=False).stdout
        if "router for experiment smoke" not in logs:
            failures.append(f"router logs lack its start line:\n{logs[-1000:]}")
        probe = ("import os, json\n"
                 "try:\n    open('/smoke-write', 'w'); ro = False\n"
                 "except OSError:\n    ro = True\n"
                 "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'read_only_root': ro}))")
        res = kubectl("-n", ns, "exec", f"deployment/{APP}", "--", "python", "-c", probe,
                      check=False)
        expect_exec = {"uid": 10001, "gid": 10001, "read_only_root": True}
        if res.returncode != 0 or json.loads(res.stdout or "{}") != expect_exec:
            failures.append(f"exec answered {res.stdout!r} {res.stderr!r}, expected {expect_exec}")
    if not keep:
        with timer.stage("clean up"):
            kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s")
    if failures:
        raise SystemExit("cluster-smoke: FAILED\n- " + "\n- ".join(failures))
    print(f"cluster-smoke: ok in {timer.total():.0f} s")
    return timer.times
