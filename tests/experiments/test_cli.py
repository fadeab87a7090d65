import json

import yaml

from experiments.__main__ import main
from experiments.config import register_configs
from movierec_core.config import compose


def test_config_composes_with_the_chart_args():
    register_configs()
    cfg = compose("experiments", [
        "serving.http_port=8082", "experiments.name=baseline", "experiments.variant=control",
        "experiments.model_url=http://movierec-model.movierec.svc.cluster.local",
        "kafka.bootstrap=kafka:9092", "data.lake_root=/data/lake", "experiments.state_dir=",
    ])
    assert cfg.experiments.port == 8082 and cfg.experiments.variant == "control"
    from experiments.router import build_router

    router = build_router(cfg.experiments)
    assert router.state.snapshot()["variants"][0]["urls"] == [
        "http://movierec-model.movierec.svc.cluster.local"]
    assert router.state.assign(123, "other") == "control"


def test_render_istio_command_prints_valid_yaml(capsys):
    assert main(["render-istio", "experiments.variants=[{name:a,weight:70,urls:[u]},{name:b,weight:30,urls:[v]}]"]) == 0
    dr, vs = yaml.safe_load_all(capsys.readouterr().out)
    assert dr["kind"] == "DestinationRule" and vs["kind"] == "VirtualService"
    assert [r["weight"] for r in vs["spec"]["http"][-1]["route"]] == [70, 30]


def test_assign_command_prints_bucket_and_variant(capsys):
    assert main(["assign", "48211", "experiments.name=baseline"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "experiment": "baseline", "user_id": 48211, "bucket": 3680, "variant": "champion"}


def test_metric_names_are_exactly_the_documented_ones():
    from experiments.metrics import ExperimentMetrics

    m = ExperimentMetrics()
    m.requests.labels("champion", "200").inc()
    m.duration.labels("champion").observe(0.001)
    m.weight.labels("e", "champion").set(100)
    m.promotions.inc()
    m.rollbacks.inc()
    m.watch_through.labels("e", "champion").set(0.3)
    text = m.exposition().decode()
    for line in (
        'movierec_router_requests_total{status="200",variant="champion"} 1.0',
        'movierec_router_request_duration_seconds_count{variant="champion"} 1.0',
        'movierec_router_variant_weight{experiment="e",variant="champion"} 100.0',
        "movierec_canary_promotions_total 1.0",
        "movierec_canary_rollbacks_total 1.0",
        'movierec_experiment_watch_through{experiment="e",variant="champion"} 0.3',
    ):
        assert line in text.splitlines()


def test_router_process_exits_zero_promptly_on_sigterm(tmp_path):
    """A pod's router is stopped with SIGTERM; it must not sit out the 30 s grace period."""
    import signal
    import subprocess
    import sys

    from devstack.ports import free_port, wait_for_port
    from tests.conftest import REPO_ROOT

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "experiments", "router", f"serving.http_port={port}",
                             f"experiments.state_dir={tmp_path}"], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_for_port("127.0.0.1", port, timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait()


def test_router_sigterm_the_moment_its_port_is_bound_still_exits_zero(tmp_path):
    """The window between bind and the handler: the process signals itself right after the
    listening socket exists, where a probe or a rollout can first see the port; the default
    action would end it with -15 (seen in CI under load)."""
    import subprocess
    import sys
    import textwrap

    from devstack.ports import free_port
    from tests.conftest import REPO_ROOT

    script = textwrap.dedent(f"""
        import os, signal, sys
        from experiments import router
        bind = router.RouterHTTPServer.server_activate
        def activate_then_term(self):
            bind(self)
            os.kill(os.getpid(), signal.SIGTERM)
        router.RouterHTTPServer.server_activate = activate_then_term
        from experiments.__main__ import main
        sys.exit(main(["router", "serving.http_port={free_port()}",
                       "experiments.state_dir={tmp_path}"]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_canary_with_the_challenger_already_champion_has_nothing_to_roll_out(tmp_path, capsys):
    """The pipeline's first run registers its model as champion at once; the canary step then
    exits 0 without touching traffic."""
    from movierec_core.models.testing import tiny_bundle
    from movierec_core.registry import FileRegistry

    registry = FileRegistry(tmp_path / "registry")
    registry.register("movierec", tiny_bundle(tmp_path / "b1"), aliases=("champion", "challenger"))
    code = main(["canary", f"data.registry_root={tmp_path / 'registry'}",
                 f"experiments.report_dir={tmp_path / 'reports'}",
                 "experiments.canary.target=kserve", "experiments.canary.telemetry=file",
                 f"experiments.canary.telemetry_file={tmp_path / 'none.log'}"])
    assert code == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        "experiment": "baseline", "outcome": "nothing_to_roll_out",
        "champion": "v0001", "challenger": "v0001"}
