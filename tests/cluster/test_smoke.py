"""The smoke test's objects carry the chart's security context in a restricted namespace."""

from __future__ import annotations

import yaml

from cluster import smoke
from cluster.layout import ROOT


def test_smoke_pods_run_under_the_charts_own_security_context() -> None:
    values = yaml.safe_load((ROOT / "charts" / "movierec" / "values.yaml").read_text())
    objs = {o["kind"]: o for o in smoke.manifests("localhost/movierec-experiments:0.1.0", "movierec-smoke-x")}
    assert objs["Namespace"]["metadata"]["labels"] ["pod-security.kubernetes.io/enforce"] == "restricted"
    for kind in ("Deployment", "Job"):
        spec = objs[kind]["spec"]["template"]["spec"]
        assert spec["securityContext"] == values["podSecurityContext"]
        (container,) = spec["containers"]
        assert container["securityContext"] == values["containerSecurityContext"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["imagePullPolicy"] == "Never"
    assert objs["Service"]["spec"]["type"] == "NodePort"
    assert objs["Deployment"]["spec"]["replicas"] == 2
