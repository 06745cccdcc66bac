"""The engine plugin of docs/plugin-authoring.md, shipped the way a third party ships one.

``docs/examples/engine-plugin`` is built into a wheel by hatchling and installed by pip; the host
discovers it through its entry point; its engine, ``acme-serve``, is installed with pip into a
virtual environment from a local wheelhouse (no network), where the wheel's console script is the
stdlib-only :mod:`gpustack_core.testing.fake_engine`; then the engine conformance suite launches
it under the supervisor, waits for readiness and calls its OpenAI endpoints.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from gpustack_core import PluginHost
from gpustack_core.contracts import Engine
from gpustack_core.engines import VenvEngine
from gpustack_core.testing import fake_engine
from gpustack_core.testing.engines import DeviceSetup, EngineConformanceSuite
from gpustack_core.types import EngineInstallation, EngineOptions, ModelCategory

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "engine-plugin"
MODULE = EXAMPLE / "src" / "gpustack_engine_acme" / "__init__.py"

#: The engine's own distribution, as its project would publish it on the package index.
ACME_SERVE_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "acme-serve"
version = "1.0.0"

[project.scripts]
acme-serve = "acme_serve:main"

[tool.hatch.build.targets.wheel]
packages = ["acme_serve"]
"""


def pip(*args: str) -> None:
    """Run this environment's pip offline; a failure shows pip's output."""
    argv = [sys.executable, "-m", "pip", *args, "-q", "--disable-pip-version-check", "--no-index"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The wheelhouse holding ``acme-serve`` 1.0.0, and the directory the plugin was installed into."""
    root = tmp_path_factory.mktemp("acme")
    engine_project = root / "acme-serve"
    (engine_project / "acme_serve").mkdir(parents=True)
    shutil.copy(fake_engine.__file__, engine_project / "acme_serve" / "__init__.py")
    (engine_project / "pyproject.toml").write_text(ACME_SERVE_PYPROJECT)
    plugin_project = shutil.copytree(EXAMPLE, root / "engine-plugin")
    wheelhouse, dist, site = root / "wheelhouse", root / "dist", root / "site"
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(wheelhouse), str(engine_project))
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(plugin_project))
    (wheel,) = dist.glob("gpustack_core_engine_acme-0.1.0-*.whl")
    pip("install", "--no-deps", "--target", str(site), str(wheel))
    return {"root": root, "wheelhouse": wheelhouse, "site": site}


@pytest.fixture(scope="module")
def host(built: dict[str, Path]) -> Iterator[PluginHost]:
    """A plugin host that sees the installed plugin (its directory is put on ``sys.path``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(built["site"]))
        importlib.invalidate_caches()
        yield PluginHost(environ={})
    for name in [m for m in sys.modules if m.partition(".")[0] == "gpustack_engine_acme"]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def acme_installation(host: PluginHost, built: dict[str, Path]) -> EngineInstallation:
    """``acme-serve`` at the plugin's default version, pip-installed from the wheelhouse only."""
    engine = host.engine("acme")
    engines_dir = built["root"] / "engines"
    options = EngineOptions(engines_dir=str(engines_dir), wheelhouse=str(built["wheelhouse"]), offline=True)
    return engine.install(engine.default_version(), options)


def test_the_installed_distribution_is_discovered_through_its_entry_point(host: PluginHost) -> None:
    record = host.owner("engines", "acme")
    assert (record.distribution, record.version, record.status) == (
        "gpustack-core-engine-acme",
        "0.1.0",
        "ok",
    )
    assert isinstance(host.engine("acme"), VenvEngine)


def test_its_version_is_installed_listed_and_located(
    host: PluginHost, built: dict[str, Path], acme_installation: EngineInstallation
) -> None:
    engine = host.engine("acme")
    options = EngineOptions(engines_dir=str(built["root"] / "engines"))
    assert acme_installation.executable == str(
        built["root"] / "engines" / "acme" / "1.0.0" / "bin" / "acme-serve"
    )
    assert acme_installation in engine.installed_versions(options)
    assert engine.locate(None, options) == acme_installation


def test_the_example_stays_short_and_the_guide_shows_it_verbatim() -> None:
    source = MODULE.read_text()
    assert len(source.splitlines()) <= 60
    guide = (REPO / "docs" / "plugin-authoring.md").read_text()
    for path in (MODULE, EXAMPLE / "pyproject.toml"):
        assert path.read_text() in guide, f"docs/plugin-authoring.md must show {path.name} as it is"


class TestAcmeConformance(EngineConformanceSuite):
    """The conformance suite on the installed plugin and its pip-installed engine."""

    ready_timeout_s = 60.0

    @pytest.fixture
    def engine(self, host: PluginHost) -> Engine:
        return host.engine("acme")

    @pytest.fixture
    def installation(self, acme_installation: EngineInstallation) -> EngineInstallation:
        return acme_installation

    @pytest.fixture
    def model_paths(self, tmp_path: Path) -> Mapping[ModelCategory, tuple[str, ...]]:
        weights = tmp_path / "tiny-model" / "model.safetensors"
        weights.parent.mkdir()
        weights.write_bytes(b"")  # acme-serve only checks that the model directory exists
        return {ModelCategory.LLM: (str(weights),)}

    @pytest.fixture
    def device_setup(self) -> DeviceSetup:
        return DeviceSetup.cpu()
