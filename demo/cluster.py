"""``python -m demo --target cluster``: the closed loop against the platform on the local cluster.

The chart is installed with ``ci/local-values.yaml`` (Kafka, Redis, Prometheus in the release,
hostPath storage, the model server as a KServe InferenceService in Standard mode, the router
splitting champion/challenger 50/50 from its weights ConfigMap). The simulator stays on the
host, as the streaming service would be outside: it produces to the broker's external listener
(a NodePort), calls ``/recommend`` through the router's NodePort and serves the metadata API on
the host's end of the node link. Snapshot, training and the drift job run in the cluster as Jobs
of the project's images. The report is the demo's (lake == ledger, latency, watch-through with
the oracle ratio) plus a check that the analysis attributes every request to the model that
served it: per-version counts from the model servers' own provenance records.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import yaml

from cluster.layout import BIN, NET, PATHS, ROOT
from demo.platform import TOPIC, DemoSettings, Platform, run_step, scrape, wait_until
from devstack.ports import wait_for_port

NAMESPACE = "movierec"
RELEASE = "movierec"
CHART = ROOT / "charts" / "movierec"
KAFKA_NODEPORT, ROUTER_NODEPORT, PROMETHEUS_NODEPORT = 30094, 30082, 30090
METADATA_PORT = 18080
PROVENANCE_TOPIC = f"{TOPIC}.provenance"


def kubectl(*args: str, check: bool = True, input: str | None = None,
            timeout: float | None = None) -> subprocess.CompletedProcess:
    res = subprocess.run([str(BIN / "kubectl"), "--kubeconfig", str(PATHS.admin_kubeconfig),
                          "-n", NAMESPACE, *args], capture_output=True, text=True, input=input,
                         timeout=timeout)
    if check and res.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args[:4])}: {res.stderr.strip()[-2000:]}")
    return res


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([str(BIN / "helm"), "--kubeconfig", str(PATHS.admin_kubeconfig),
                          "-n", NAMESPACE, *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args[:3])}: {(res.stderr or res.stdout)[-3000:]}")
    return res


class ExternalBroker:
    """The in-cluster broker as the host sees it (its EXTERNAL listener on the NodePort)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def start(self) -> ExternalBroker:
        host, port = self.bootstrap.rsplit(":", 1)
        if not wait_for_port(host, int(port), timeout=180):
            raise RuntimeError(f"the cluster's Kafka is not reachable at {self.bootstrap}")
        return self

    def stop(self) -> None:
        """The broker belongs to the release; `helm uninstall` removes it."""


def host_values() -> dict[str, Any]:
    """What any run from this host sets on top of ci/local-values.yaml: where the volumes and
    the simulator's metadata API are, the router's NodePort, provenance to Kafka."""
    return {
        "localStorage": {"hostPathRoot": str(PATHS.volumes)},
        "platform": {"metadataApiUrl": f"http://{NET.host_ip}:{METADATA_PORT}"},
        "modelServer": {"extraArgs": [f"model_server.provenance_topic={PROVENANCE_TOPIC}"]},
        "router": {"nodePort": ROUTER_NODEPORT},
        "tests": {"knownUserId": 1, "unknownUserId": 999_999_999},
    }


def demo_values(settings: DemoSettings) -> dict[str, Any]:
    """The demo's A/B on top of :func:`host_values`."""
    values = host_values()
    values["experiment"] = {"name": "demo-ab", "abTest": False,
                            "variants": [{"name": "champion", "weight": 100, "args": []}]}
    # the challenger is the InferenceService's Standard-mode canary predictor; the router
    # (one component, sticky by user hash) sends it half of the users
    values["modelServer"]["canary"] = {"enabled": True, "name": "challenger",
                                       "trafficPercent": 50, "alias": "challenger"}
    return values


class ClusterPlatform(Platform):
    """The demo's stages with the platform on the cluster (see the module doc)."""

    def __init__(self, settings: DemoSettings, console: Any, keep: bool = False) -> None:
        super().__init__(settings, console)
        self.broker = ExternalBroker(f"{NET.node_ip}:{KAFKA_NODEPORT}")
        self.keep = keep
        self.values = demo_values(settings)  # on top of ci/local-values.yaml
        self.installed = False
        self.probes: dict[str, int] = {}
        self.ports["router"] = ROUTER_NODEPORT
        self.ports["metadata_api"] = METADATA_PORT

    # ------------------------------------------------------------------ where things are
    @property
    def data_root(self) -> Path:
        return PATHS.volumes / NAMESPACE / "data"

    @property
    def lake_root(self) -> Path:
        return self.data_root / "lake"

    @property
    def registry_root(self) -> Path:
        return self.data_root / "registry"

    @property
    def router_address(self) -> str:
        return f"{NET.node_ip}:{ROUTER_NODEPORT}"

    def _pod_ip(self, selector: str) -> str:
        return kubectl("get", "pods", "-l", selector, "--field-selector=status.phase=Running",
                       "-o", "jsonpath={.items[0].status.podIP}").stdout.strip()

    def ingestor_counts(self) -> dict[str, float]:
        try:
            ip = self.ports.get("ingestor_ip") or self._pod_ip("app.kubernetes.io/component=ingestor")
            self.ports["ingestor_ip"] = ip
            return scrape(f"http://{ip}:9101/metrics")
        except (httpx.HTTPError, RuntimeError):
            self.ports.pop("ingestor_ip", None)  # a restarted pod has a new address
            return {}

    def ingestor_restarted(self) -> bool:
        counts = kubectl("get", "pods", "-l", "app.kubernetes.io/component=ingestor", "-o",
                         "jsonpath={.items[*].status.containerStatuses[*].restartCount}",
                         check=False).stdout.split()
        return any(int(c) > 0 for c in counts) or len(counts) != 1

    # ------------------------------------------------------------------ stages
    def install(self) -> None:
        self.status.stage("helm install movierec (ci/local-values.yaml): Kafka, Redis, "
                          "Prometheus, ingestor, InferenceService, router, drift")
        t0 = time.monotonic()
        self.fresh_start()
        self.argo_access()
        run_step(["python", "-m", "cluster", "volumes", NAMESPACE, "data", "kafka"],
                 self.logs / "volumes.log", "volumes")
        values = self.run_dir / "demo-values.yaml"
        values.write_text(yaml.safe_dump(self.values))
        helm("upgrade", "--install", RELEASE, str(CHART), "--create-namespace",
             "-f", str(CHART / "ci" / "local-values.yaml"), "-f", str(values),
             "--wait", "--timeout", "10m")
        self.installed = True
        for what in ("statefulset/movierec-kafka", "deployment/movierec-ingestor",
                     "deployment/movierec-router", "deployment/movierec-prometheus"):
            kubectl("rollout", "status", what, "--timeout=300s")
        self.timings["install_s"] = time.monotonic() - t0
        self.console.print(f"   installed in {self.timings['install_s']:.0f}s; router "
                           f"http://{self.router_address}, Prometheus "
                           f"http://{NET.node_ip}:{PROMETHEUS_NODEPORT}")

    def fresh_start(self) -> None:
        """The report reconciles the lake with this run's ledger: no release, claim, volume or
        data of an earlier run may remain (the data claim and its volume outlive uninstalls)."""
        import shutil

        helm("uninstall", RELEASE, "--wait", "--timeout", "5m", check=False)
        # the namespace takes the demo's Jobs (their pods hold the data claim) and the claims
        cluster_kubectl = [str(BIN / "kubectl"), "--kubeconfig", str(PATHS.admin_kubeconfig)]
        subprocess.run([*cluster_kubectl, "delete", "namespace", NAMESPACE, "--ignore-not-found",
                        "--wait=true", "--timeout=300s"], capture_output=True)
        subprocess.run([*cluster_kubectl, "delete", "pv", "-l",
                        f"app.kubernetes.io/instance={RELEASE}", "--wait=true"],
                       capture_output=True)
        shutil.rmtree(PATHS.volumes / NAMESPACE, ignore_errors=True)

    def argo_access(self) -> None:
        """With Argo installed (make argo-up), its Roles in the namespace just recreated."""
        if subprocess.run([str(BIN / "kubectl"), "--kubeconfig", str(PATHS.admin_kubeconfig),
                           "get", "namespace", "argo"], capture_output=True).returncode != 0:
            return
        from cluster.argo import managed_namespace_objects

        subprocess.run([str(BIN / "kubectl"), "--kubeconfig", str(PATHS.admin_kubeconfig),
                        "create", "namespace", NAMESPACE], capture_output=True)
        kubectl("apply", "-f", "-", input=yaml.safe_dump_all(managed_namespace_objects()))

    def start_infrastructure(self) -> None:
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        from simulator.runner import Simulator
        from simulator.sinks import KafkaSink

        self.install()
        self.status.stage("simulator on the host: world, metadata API, producer to the "
                          "cluster's Kafka")
        t0 = time.monotonic()
        self.broker.start()
        admin = KafkaAdminClient(bootstrap_servers=self.broker.bootstrap)
        for topic, partitions in ((TOPIC, 4), (f"{TOPIC}.dlq", 1), (PROVENANCE_TOPIC, 1)):
            try:
                admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                              replication_factor=1)])
            except TopicAlreadyExistsError:
                pass
        admin.close()
        self.sim = Simulator.from_overrides([
            f"world.n_users={self.s.users}", f"seed={self.s.seed}",
            f"faults.invalid_rate={self.s.invalid_rate}",
            f"faults.duplicate_rate={self.s.duplicate_rate}",
        ])
        # the pods reach the host on its end of the node link
        api = self.sim.start_metadata_api(host=NET.host_ip, port=METADATA_PORT)
        self.sink = KafkaSink(self.broker.bootstrap, TOPIC, partitions=4)
        self.console.print(f"   broker {self.broker.bootstrap}, metadata API {api.url}, "
                           f"{self.sim.world.n_users:,} users × {self.sim.world.n_movies:,} movies")
        self.timings["infrastructure_s"] = time.monotonic() - t0

    def start_ingestor(self, restart: bool = False) -> None:
        self.status.stage("ingestor (Deployment): Kafka → DLQ, Parquet lake, online store")
        kubectl("rollout", "status", "deployment/movierec-ingestor", "--timeout=300s")
        if not wait_until(lambda: bool(self.ingestor_counts()), 120, self.status,
                          lambda: "waiting for the ingestor's /metrics"):
            raise RuntimeError("the ingestor's /metrics does not answer")

    def wait_ingested(self, timeout: float = 1800) -> None:
        super().wait_ingested(timeout)

    def job(self, name: str, component: str, argv: list[str], timeout: float = 1800,
            cpu: str = "500m", memory: str = "3Gi", code: str = "") -> str:
        """Run ``python -m <argv>`` (or ``python -c <code>``) as a Job of image ``component``
        with the data claim at /data, under the chart's security context; its logs, or an
        error with them."""
        chart = yaml.safe_load((CHART / "values.yaml").read_text())
        image = f"localhost/movierec-{component}:{yaml.safe_load((CHART / 'Chart.yaml').read_text())['appVersion']}"
        kubectl("delete", "job", name, "--ignore-not-found", "--wait=true")
        manifest = {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "movierec",
                                                  "app.kubernetes.io/component": name}},
            "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 3600, "template": {"spec": {
                "restartPolicy": "Never", "automountServiceAccountToken": False,
                "serviceAccountName": "movierec-ingestor",
                "securityContext": chart["podSecurityContext"],
                "containers": [{
                    "name": "main", "image": image, "imagePullPolicy": "Never",
                    "command": ["python", "-c", code] if code else ["python", "-m", *argv],
                    "env": [{"name": "HOME", "value": "/tmp"},
                            {"name": "PYTHONUNBUFFERED", "value": "1"}],
                    "resources": {"requests": {"cpu": cpu, "memory": "512Mi"},
                                  "limits": {"cpu": "2", "memory": memory}},
                    "securityContext": chart["containerSecurityContext"],
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                                     {"name": "data", "mountPath": "/data"}]}],
                "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                            {"name": "data", "persistentVolumeClaim": {"claimName": "movierec-data"}}],
            }}},
        }
        kubectl("apply", "-f", "-", input=json.dumps(manifest))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = json.loads(kubectl("get", "job", name, "-o", "json").stdout).get("status", {})
            if status.get("succeeded") or status.get("failed"):
                break
            self.status.update(f"job {name}: running")
            time.sleep(2)
        logs = kubectl("logs", f"job/{name}", check=False).stdout
        (self.logs / f"job-{name}.log").write_text(logs)
        if not status.get("succeeded"):
            raise RuntimeError(f"job {name} did not succeed ({status}); logs:\n{logs[-3000:]}")
        return logs

    def train(self) -> None:
        self.status.stage("snapshot → trainer (Jobs in the cluster): champion and challenger "
                          "registered")
        t0 = time.monotonic()
        data = ["data.lake_root=/data/lake", "data.registry_root=/data/registry"]
        runs = ["trainer.output_dir=/tmp/trainer-runs"]  # read-only root file system
        out = self.job("demo-snapshot", "ingestor", ["ingestor", "snapshot", *data])
        manifest = json.loads(out[out.index("{"):out.rindex("}") + 1])
        self.figures["snapshot"] = {"id": manifest["snapshot_id"],
                                    "files": len(manifest["files"]),
                                    "rows": sum(f.get("rows", 0) for f in manifest["files"])}
        candidates = ",".join(self.s.candidates)
        self.job("demo-train-champion", "trainer", [
            "trainer", *data, *runs, *self.s.champion_overrides, f"snapshot={manifest['snapshot_id']}",
            f"candidates=[{candidates}]", "promote=true"], cpu="1")
        self.job("demo-train-challenger", "trainer", [
            "trainer", *data, *runs, f"snapshot={manifest['snapshot_id']}", "candidates=[popularity]",
            "trainer.evaluate=false"])
        self.timings["train_s"] = time.monotonic() - t0
        self.console.print(f"   snapshot {manifest['snapshot_id']}: "
                           f"{self.figures['snapshot']['rows']:,} rows; models: "
                           f"{self.registry_summary()}")

    def serve(self, restart: bool = False, weights: tuple[float, float] = (50, 50)) -> None:
        self.status.stage("InferenceService Ready (champion predictor + challenger canary), "
                          "router splitting 50/50")
        t0 = time.monotonic()
        kubectl("wait", "--for=condition=Ready", "inferenceservice/movierec-model",
                "--timeout=600s")
        for deploy in ("movierec-model-predictor", "movierec-model-challenger-predictor",
                       "movierec-router"):
            kubectl("rollout", "status", f"deployment/{deploy}", "--timeout=300s")
        router = f"http://{self.router_address}"
        self.probes = {"champion": 1, "challenger": 1}  # forced by header: not in the analysis
        for variant in ("champion", "challenger"):
            resp = httpx.get(f"{router}/recommend/1", headers={"x-movierec-variant": variant},
                             timeout=10)
            if resp.status_code != 200 or not resp.headers.get("x-model-version"):
                raise RuntimeError(f"{variant} does not serve through the router: "
                                   f"{resp.status_code} {resp.text[:200]}")
        weights_cm = json.loads(kubectl("get", "configmap", "movierec-router-weights", "-o",
                                        "json").stdout)
        self.figures["router_weights"] = json.loads(weights_cm["data"]["weights.json"])
        self.timings["serve_ready_s"] = time.monotonic() - t0
        self.console.print(f"   router {router} → {self.figures['router_weights']['weights']}")

    def start_prometheus(self) -> None:
        self.prom = SimpleNamespace(url=f"http://{NET.node_ip}:{PROMETHEUS_NODEPORT}")

    def drift(self) -> None:
        self.status.stage("drift job (the drift image as a Job) over the lake")
        # the chart's hourly CronJob compares windows ending at the wall clock; the simulated
        # events carry the simulator's clock, so the demo names the windows as `make demo` does
        hours = max(self.s.live_minutes / 60, 0.5)
        out = self.job("demo-drift", "drift", [
            "drift", "data.lake_root=/data/lake", "data.registry_root=/data/registry",
            f"drift.current_hours={hours}", f"drift.reference_hours={hours}",
            "drift.retrain.enabled=false"])
        # the log mixes stderr in (alibi-detect's note that no torch/TF is present)
        self.figures["drift"] = next((ln for ln in out.splitlines()
                                      if re.match(r"(no drift|DRIFT)\b", ln)), out.strip()[:200])
        self.console.print(f"   {self.figures['drift']}")

    def restarts(self) -> dict[str, int]:
        """Container restarts per pod of the release (and why the last one ended)."""
        pods = json.loads(kubectl("get", "pods", "-l", f"app.kubernetes.io/instance={RELEASE}",
                                  "-o", "json").stdout)["items"]
        out = {}
        for pod in pods:
            for c in pod.get("status", {}).get("containerStatuses", []):
                if c.get("restartCount"):
                    reason = c.get("lastState", {}).get("terminated", {}).get("reason", "")
                    out[f"{pod['metadata']['name']}/{c['name']}"] = \
                        f"{c['restartCount']} ({reason})" if reason else c["restartCount"]
        return out

    # ------------------------------------------------------------------ attribution check
    def served_versions(self) -> dict[str, int]:
        """Per model version, the /recommend answers the model servers logged themselves
        (their provenance records in Kafka), counted over the whole run."""
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.broker.bootstrap, enable_auto_commit=False)
        counts: Counter[str] = Counter()
        try:
            tps = [TopicPartition(PROVENANCE_TOPIC, p)
                   for p in sorted(consumer.partitions_for_topic(PROVENANCE_TOPIC) or ())]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            end = consumer.end_offsets(tps)
            deadline = time.monotonic() + 120
            while any(consumer.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=500).values():
                    for rec in batch:
                        record = json.loads(rec.value)
                        if record.get("endpoint") == "recommend":
                            counts[str(record.get("model_version", ""))] += 1
        finally:
            consumer.close()
        return dict(counts)

    def helm_test(self) -> dict[str, Any]:
        res = helm("test", RELEASE, "--logs", "--timeout", "5m", check=False)
        return {"passed": res.returncode == 0, "output": (res.stdout + res.stderr)[-2000:]}

    def close(self) -> None:
        self.prom = None  # the release's Prometheus: `helm uninstall` removes it
        super().close()
        if self.installed and not self.keep:
            helm("uninstall", RELEASE, "--wait", "--timeout", "5m", check=False)


def attribution(p: ClusterPlatform, probes: dict[str, int]) -> dict[str, Any]:
    """The analysis's per-variant request counts (router requests in the lake, each user's
    variant recomputed from the experiment's weights) against what each variant's model
    server logged it served (provenance records, minus the demo's own forced probes)."""
    from demo.report import AB_WEIGHTS, EXPERIMENT, read_table
    from experiments.assignment import Allocation
    from movierec_core import lake

    req = read_table(p.lake_root, lake.RECOMMENDATION_REQUESTS, ["server", "user_id", "status"])
    via_router = req[req["server"] == p.router_address]
    alloc = Allocation.from_weights(AB_WEIGHTS)
    analysis = Counter(alloc.variant_of(EXPERIMENT, int(u)) for u in via_router["user_id"])
    versions = {alias: p.registry_summary().get(alias) for alias in ("champion", "challenger")}
    served = p.served_versions()
    logged = {variant: served.get(str(version), 0) - probes.get(variant, 0)
              for variant, version in versions.items()}
    return {"analysis_requests": dict(analysis), "model_server_requests": logged,
            "versions": versions, "served_by_version": served,
            "non_200_at_the_caller": int((via_router["status"] != 200).sum()),
            "equal": dict(analysis) == logged}
