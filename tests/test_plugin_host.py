"""The plugin host: discovery, allow/deny lists, duplicates, and isolation of broken plugins.

The broken-plugin cases are real installed distributions (built with hatchling, installed by pip
into a target directory) found through their entry points, exactly as a third party's would be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest

from gpustack_core import Accelerator, DetectOptions, Device, PluginHost, detect_devices, hookimpl
from gpustack_core.errors import AcceleratorNotPresent, PluginError, PluginNotFoundError

PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{dist}"
version = "{version}"

[project.entry-points."{group}"]
{ep_name} = "{module}"

[tool.hatch.build.targets.wheel]
packages = ["{module}"]
"""

GOOD_ACCELERATOR = """
from gpustack_core import Accelerator, Device, hookimpl

class FakeGpu(Accelerator):
    name = "fakegpu"
    vendor = "fakevendor"

    def detect(self, options):
        return [Device(accelerator="fakegpu", vendor="fakevendor", index=0, uuid="FAKE-0",
                       name="Fake GPU", memory_total_bytes=8 * 2**30, memory_used_bytes=2**30)]

    def visibility_env(self, devices):
        return {"FAKE_VISIBLE_DEVICES": ",".join(str(d.index) for d in devices)}

@hookimpl
def gpustack_register_accelerators(register):
    register(FakeGpu())
"""

# (distribution, entry-point group, entry-point name, module, source)
DISTRIBUTIONS: list[tuple[str, str, str, str, str]] = [
    ("gpustack-test-good", "gpustack_core.accelerators", "fakegpu", "gpustack_test_good", GOOD_ACCELERATOR),
    (
        "gpustack-test-import-error",
        "gpustack_core.accelerators",
        "importerror",
        "gpustack_test_import_error",
        "import gpustack_core\nraise ImportError('libfoo.so.1: cannot open shared object file')\n",
    ),
    (
        "gpustack-test-hook-raises",
        "gpustack_core.engines",
        "hookraises",
        "gpustack_test_hook_raises",
        "from gpustack_core import hookimpl\n\n@hookimpl\ndef gpustack_register_engines(register):\n"
        "    raise RuntimeError('engine registry unreachable')\n",
    ),
    (
        "gpustack-test-wrong-type",
        "gpustack_core.sources",
        "wrongtype",
        "gpustack_test_wrong_type",
        "from gpustack_core import hookimpl\n\n@hookimpl\ndef gpustack_register_model_sources(register):\n"
        "    register('not a model source')\n",
    ),
    (
        "gpustack-test-no-name",
        "gpustack_core.accelerators",
        "noname",
        "gpustack_test_no_name",
        "from gpustack_core import Accelerator, hookimpl\n\nclass Nameless(Accelerator):\n"
        "    def detect(self, options):\n        return []\n"
        "    def visibility_env(self, devices):\n        return {}\n\n"
        "@hookimpl\ndef gpustack_register_accelerators(register):\n    register(Nameless())\n",
    ),
    (
        "gpustack-test-dup-one",
        "gpustack_core.engines",
        "twin",
        "gpustack_test_dup_one",
        "from gpustack_core import hookimpl\n\n@hookimpl\ndef gpustack_register_engines(register):\n"
        "    raise AssertionError('a rejected duplicate must never be loaded')\n",
    ),
    (
        "gpustack-test-dup-two",
        "gpustack_core.engines",
        "twin",
        "gpustack_test_dup_two",
        "from gpustack_core import hookimpl\n\n@hookimpl\ndef gpustack_register_engines(register):\n"
        "    raise AssertionError('a rejected duplicate must never be loaded')\n",
    ),
]


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the test distributions, installed by pip (no network: no build isolation)."""
    root = tmp_path_factory.mktemp("dists")
    site = root / "site"
    projects: list[str] = []
    for dist, group, ep_name, module, source in DISTRIBUTIONS:
        project = root / dist
        (project / module).mkdir(parents=True)
        (project / module / "__init__.py").write_text(textwrap.dedent(source))
        (project / "pyproject.toml").write_text(
            PYPROJECT.format(dist=dist, version="1.2.3", group=group, ep_name=ep_name, module=module)
        )
        projects.append(str(project))
    subprocess.run(
        [
            *(
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
            ),
            *("--target", str(site), *projects),
        ],
        check=True,
        capture_output=True,
    )
    return site


def _cli(site: Path, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUSTACK_CORE_PLUGINS_")}
    env["PYTHONPATH"] = str(site)
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "gpustack_core.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_broken_installed_plugins_are_isolated_and_reported(plugin_site: Path) -> None:
    result = _cli(plugin_site, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    records = {(r["area"], r["name"]): r for r in json.loads(result.stdout)}

    good = records[("accelerators", "fakegpu")]
    assert good["status"] == "ok"
    assert good["distribution"] == "gpustack-test-good"
    assert good["version"] == "1.2.3"

    imp = records[("accelerators", "importerror")]
    assert imp["status"] == "error"
    assert imp["distribution"] == "gpustack-test-import-error"
    assert imp["version"] == "1.2.3"
    assert "ImportError" in imp["error"]
    assert "libfoo.so.1" in imp["error"]

    hook = records[("engines", "hookraises")]
    assert hook["status"] == "error"
    assert "gpustack_register_engines raised RuntimeError: engine registry unreachable" in hook["error"]

    wrong = records[("sources", "wrongtype")]
    assert wrong["status"] == "error"
    assert "'str'" in wrong["error"]
    assert "ModelSource" in wrong["error"]

    nameless = records[("accelerators", "noname")]
    assert nameless["status"] == "error"
    assert "without a name" in nameless["error"]

    twin = records[("engines", "twin")]
    assert twin["status"] == "error"
    assert "gpustack-test-dup-one 1.2.3" in twin["error"]
    assert "gpustack-test-dup-two 1.2.3" in twin["error"]

    # the built-in plugins keep working beside the broken ones
    assert records[("accelerators", "cpu")]["status"] == "ok"
    assert records[("sources", "local")]["status"] == "ok"


def test_strict_exits_nonzero_only_when_a_plugin_failed(plugin_site: Path) -> None:
    failing = _cli(plugin_site, "plugins", "--strict")
    assert failing.returncode == 1
    assert "plugin(s) failed" in failing.stderr
    broken = "importerror,hookraises,wrongtype,noname,twin"
    passing = _cli(plugin_site, "plugins", "--strict", extra_env={"GPUSTACK_CORE_PLUGINS_DENY": broken})
    assert passing.returncode == 0, passing.stdout + passing.stderr


def _typer_cli(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The same command line through the Typer application (``main`` answers a plain ``plugins``
    without Typer)."""
    code = (
        "from gpustack_core.cli import build_app\n"
        + f"build_app('plugins')({list(args)!r}, prog_name='gpustack-core')"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUSTACK_CORE_PLUGINS_")}
    env["PYTHONPATH"] = str(site)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("args", [("plugins",), ("plugins", "--json"), ("plugins", "--strict", "--json")])
def test_plugins_without_typer_prints_what_the_typer_command_prints(
    plugin_site: Path, args: tuple[str, ...]
) -> None:
    fast, typer_app = _cli(plugin_site, *args), _typer_cli(plugin_site, *args)
    assert (fast.returncode, fast.stdout, fast.stderr) == (
        typer_app.returncode,
        typer_app.stdout,
        typer_app.stderr,
    )
    assert "importerror" in fast.stdout
    assert fast.returncode == (1 if "--strict" in args else 0)


def test_devices_still_detected_beside_broken_plugins(plugin_site: Path) -> None:
    result = _cli(plugin_site, "devices", "--json")
    assert result.returncode == 0, result.stderr
    found = {(d["accelerator"], d["index"]) for d in json.loads(result.stdout)["devices"]}
    assert ("fakegpu", 0) in found
    assert ("cpu", 0) in found


def test_in_process_host_sees_installed_distributions(
    plugin_site: Path, monkeypatch: pytest.MonkeyPatch, clean_plugin_env: None
) -> None:
    monkeypatch.syspath_prepend(str(plugin_site))
    host = PluginHost()
    assert host.accelerator("fakegpu").vendor == "fakevendor"
    assert host.owner("accelerators", "fakegpu").distribution == "gpustack-test-good"
    with pytest.raises(PluginNotFoundError, match=r"hookraises.*error"):
        host.engine("hookraises")


# ---------------------------------------------------------------------------- in-process plugins


class StaticAccelerator(Accelerator):
    """An accelerator whose behaviour each test chooses."""

    name = "static"
    vendor = "static"

    def __init__(self, behaviour: Callable[[], object]) -> None:
        self._behaviour = behaviour

    def detect(self, options: DetectOptions) -> list[Device]:
        return self._behaviour()  # type: ignore[return-value]

    def visibility_env(self, devices: Sequence[Device]) -> dict[str, str]:
        return {}


def _device(index: int = 0) -> Device:
    return Device(
        accelerator="static", vendor="static", index=index, uuid=f"S-{index}", name="s", memory_total_bytes=1
    )


def _plugin(obj: Accelerator, counter: list[int] | None = None) -> SimpleNamespace:
    @hookimpl
    def gpustack_register_accelerators(register: Callable[[Accelerator], None]) -> None:
        if counter is not None:
            counter.append(1)
        register(obj)

    return SimpleNamespace(gpustack_register_accelerators=gpustack_register_accelerators)


def test_discovery_is_lazy_and_happens_once() -> None:
    calls: list[int] = []
    host = PluginHost(
        entry_points=False, plugins=[("accelerators", "static", _plugin(StaticAccelerator(list), calls))]
    )
    assert calls == []
    host.plugins()
    host.accelerators()
    detect_devices(host)
    assert calls == [1]


def test_exception_inside_detect_is_isolated_and_marks_the_plugin() -> None:
    def boom() -> object:
        raise ZeroDivisionError("driver returned garbage")

    host = PluginHost(
        entry_points=False,
        plugins=[
            ("accelerators", "static", _plugin(StaticAccelerator(boom))),
        ],
    )
    report = detect_devices(host).reports[0]
    assert report.devices == ()
    assert report.error is not None
    assert "ZeroDivisionError: driver returned garbage" in report.error
    record = host.plugins()[0]
    assert record.status == "error"
    assert record.error is not None
    assert "detect() raised ZeroDivisionError" in record.error


def test_wrong_return_type_from_detect_is_reported() -> None:
    host = PluginHost(
        entry_points=False, plugins=[("accelerators", "static", _plugin(StaticAccelerator(dict)))]
    )
    report = detect_devices(host).reports[0]
    assert report.error is not None
    assert "returned dict, expected list" in report.error
    host2 = PluginHost(
        entry_points=False, plugins=[("accelerators", "static", _plugin(StaticAccelerator(lambda: ["x"])))]
    )
    assert "returned str, expected Device" in (detect_devices(host2).reports[0].error or "")


def test_absent_vendor_is_a_diagnostic_not_an_error() -> None:
    def absent() -> object:
        raise AcceleratorNotPresent("static: libstatic.so not found")

    host = PluginHost(
        entry_points=False, plugins=[("accelerators", "static", _plugin(StaticAccelerator(absent)))]
    )
    report = detect_devices(host).reports[0]
    assert report.diagnostic == "static: libstatic.so not found"
    assert report.error is None
    assert host.plugins()[0].status == "ok"


def test_guard_reraises_unexpected_errors_as_plugin_error() -> None:
    host = PluginHost(
        entry_points=False, plugins=[("accelerators", "static", _plugin(StaticAccelerator(list)))]
    )
    with pytest.raises(PluginError, match=r"static.*launch\(\) raised KeyError"):  # noqa: SIM117
        with host.guard("accelerators", "static", "launch()"):
            raise KeyError("x")


def test_two_hosts_with_different_plugin_sets_coexist(clean_plugin_env: None) -> None:
    one = PluginHost(
        entry_points=False,
        plugins=[("accelerators", "static", _plugin(StaticAccelerator(lambda: [_device()])))],
    )
    two = PluginHost(allow=["cpu"])
    assert [a.name for a in one.accelerators()] == ["static"]
    assert [a.name for a in two.accelerators()] == ["cpu"]
    assert [d.uuid for d in detect_devices(one).devices] == ["S-0"]
    assert all(d.accelerator == "cpu" for d in detect_devices(two).devices)


def test_allow_and_deny_lists_from_environment_and_arguments() -> None:
    env = {"GPUSTACK_CORE_PLUGINS_DENY": "sources:local"}
    host = PluginHost(environ=env)
    statuses = {(r.area, r.name): r.status for r in host.plugins()}
    assert statuses[("sources", "local")] == "disabled"
    assert statuses[("accelerators", "cpu")] == "ok"
    allow_env = PluginHost(environ={"GPUSTACK_CORE_PLUGINS_ALLOW": "local"})
    statuses = {(r.area, r.name): r.status for r in allow_env.plugins()}
    assert statuses[("accelerators", "cpu")] == "disabled"
    assert statuses[("sources", "local")] == "ok"
    # deny wins over allow; constructor lists override/extend the environment
    both = PluginHost(allow=["cpu", "local"], deny=["cpu"], environ={})
    statuses = {(r.area, r.name): r.status for r in both.plugins()}
    assert statuses[("accelerators", "cpu")] == "disabled"
    assert statuses[("sources", "local")] == "ok"
    assert {name for (_, name), status in statuses.items() if status == "ok"} == {"local"}
    disabled = next(r for r in both.plugins() if r.name == "cpu")
    assert disabled.error is not None
    assert "deny-list" in disabled.error


def test_object_name_clash_with_another_plugin_names_both(clean_plugin_env: None) -> None:
    class Impostor(StaticAccelerator):
        name = "cpu"

    host = PluginHost(plugins=[("accelerators", "zz-impostor", _plugin(Impostor(list)))])
    record = next(r for r in host.plugins() if r.name == "zz-impostor")
    assert record.status == "error"
    assert "already registered by gpustack-core-accelerator-cpu" in (record.error or "")
    assert host.accelerator("cpu").__class__.__name__ == "CpuAccelerator"


def test_unknown_plugin_lists_what_is_available(clean_plugin_env: None) -> None:
    with pytest.raises(PluginNotFoundError, match=r"no sources plugin named 'nope' \(available: local\)"):
        PluginHost(allow=["local"]).model_source("nope")


def test_every_hook_has_the_prefix_the_host_looks_for() -> None:
    from gpustack_core import hookspecs

    specs = [n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), f"{hookspecs.PROJECT_NAME}_spec")]
    assert len(specs) == 4
    assert all(name.startswith(hookspecs.HOOK_PREFIX) for name in specs), specs


def test_a_hook_implementation_under_another_name_is_reported_as_missing() -> None:
    @hookimpl
    def register_accelerators(register: Callable[[Accelerator], None]) -> None:
        raise AssertionError("never called: not a hook name")

    host = PluginHost(
        entry_points=False,
        plugins=[("accelerators", "misnamed", SimpleNamespace(register_accelerators=register_accelerators))],
    )
    (record,) = host.plugins()
    assert record.status == "error"
    assert record.error is not None
    assert "implements no gpustack_register_accelerators hook" in record.error
