"""Image builds: what each Dockerfile takes from the repo, when it must be rebuilt, and the check
that runs inside every image."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cluster import images
from cluster.layout import ROOT


def test_one_image_per_dockerfile_named_for_the_chart() -> None:
    assert images.components() == ["drift", "experiments", "ingestor", "kafka", "model-server",
                                   "prometheus", "pushgateway", "redis", "simulator", "trainer"]
    assert images.Image("model-server").name == f"localhost/movierec-model-server:{images.chart_version()}"


def test_each_dockerfile_gets_only_the_bases_it_declares() -> None:
    declared = {c: images.BUILD_ARG.findall(images.Image(c).dockerfile.read_text())
                for c in images.components()}
    assert declared["kafka"] == ["JAVA_IMAGE"] and declared["redis"] == ["DEBIAN_IMAGE"]
    assert declared["model-server"] == ["PYTHON_IMAGE"]
    assert all(set(args) <= set(images.BASE_IMAGES) for args in declared.values())
    assert set(images.INFRA_CHECKS) == {"kafka", "redis", "prometheus", "pushgateway"}


def test_build_inputs_are_the_files_the_copy_lines_take() -> None:
    inputs = {p.relative_to(ROOT).as_posix() for p in
              images.build_inputs(ROOT / "docker" / "model-server.Dockerfile")}
    assert {"docker/model-server.Dockerfile", "pyproject.toml", "constraints.txt",
            "model_server/__main__.py", "movierec_core/events.py"} <= inputs
    assert not any(p.startswith(("experiments/", "trainer/", "tests/")) for p in inputs)
    assert not any("__pycache__" in p for p in inputs)


def test_a_changed_input_changes_the_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "ROOT", tmp_path)
    f = tmp_path / "a.py"
    f.write_text("x = 1\n")
    first = images.inputs_digest([f], "base")
    assert images.inputs_digest([f], "base") == first
    f.write_text("x = 2\n")
    assert images.inputs_digest([f], "base") != first
    f.write_text("x = 1\n")
    assert images.inputs_digest([f], "other base") != first


@pytest.mark.parametrize("component", ["ingestor", "experiments"])
def test_the_inside_check_imports_every_module_and_asks_for_help(component: str) -> None:
    """The same script `make images` runs in each image, run here against the dev venv."""
    res = subprocess.run([sys.executable, "-c", images.IMPORT_CHECK, images.package_of(component),
                          *images.direct_requirements(images.Image(component).dockerfile)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().endswith(f"python -m {images.package_of(component)} --help ok")


def test_the_inside_check_fails_on_a_missing_import(tmp_path: Path) -> None:
    pkg = tmp_path / "brokenpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "uses_missing.py").write_text("import no_such_dependency_xyz\n")
    res = subprocess.run([sys.executable, "-c", images.IMPORT_CHECK, "brokenpkg"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": f"{tmp_path}:{ROOT}"})
    assert res.returncode != 0 and "no_such_dependency_xyz" in res.stderr


def test_each_dockerfile_installs_the_lock_and_its_own_extra_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    expected = {"ingestor": "ingest", "model-server": "serving", "experiments": "experiments",
                "trainer": "trainer", "drift": "drift", "simulator": "simulator"}
    for component, extra in expected.items():
        text = (ROOT / "docker" / f"{component}.Dockerfile").read_text()
        assert "pip install -c constraints.txt -r requirements.txt" in text
        assert "COPY pyproject.toml constraints.txt ./" in text
        assert "['dev']" not in text and "'all'" not in text
        if extra:
            assert f"p['optional-dependencies']['{extra}']" in text
            assert extra in extras
        else:
            assert "optional-dependencies" not in text


def test_extras_pin_the_versions_of_the_lock() -> None:
    pins = dict(line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    pins = {k.lower().replace("_", "-"): v for k, v in pins.items()}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for name, extra in project["optional-dependencies"].items():
        if name != "dev":
            reqs += [r for r in extra if not r.startswith("movierec[")]
    for req in reqs:
        name, version = req.split("==")
        assert pins.get(name.lower().replace("_", "-")) == version, req


def test_the_inside_check_fails_on_a_requirement_the_image_lacks(tmp_path: Path) -> None:
    """implicit is imported lazily by the project; the check imports every direct requirement,
    so a missing one (or a missing shared library under it) fails the build."""
    pkg = tmp_path / "okpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    res = subprocess.run([sys.executable, "-c", images.IMPORT_CHECK, "okpkg", "numpy",
                          "no-such-distribution"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, env={"PYTHONPATH": f"{tmp_path}:{ROOT}"})
    assert res.returncode != 0 and "no-such-distribution is not installed" in res.stderr


def test_direct_requirements_are_the_core_plus_the_dockerfiles_extra() -> None:
    ingestor = images.direct_requirements(images.Image("ingestor").dockerfile)
    server = images.direct_requirements(images.Image("model-server").dockerfile)
    assert "implicit" in ingestor and "kserve" not in ingestor
    # the serving extra: KServe, its event loop, and lleaves (with LLVM) for the ranker
    assert set(server) - set(ingestor) == {"kserve", "uvloop", "lleaves", "llvmlite"}
