"""CLI start-up stays lean: ``--version`` without Typer, a command imports only its own module."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from gpustack_core import __version__
from gpustack_core.cli.app import COMMAND_MODULES, COMMANDS, build_app


def _run(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_version_imports_neither_typer_nor_pydantic() -> None:
    code = (
        "import sys\nsys.argv = ['gpustack-core', '--version']\nfrom gpustack_core.cli import main\nmain()\n"
        "print('typer' in sys.modules, 'pydantic' in sys.modules)"
    )
    assert _run(code) == ["gpustack-core", __version__, "False", "False"]


#: Modules that listing the installed plugins (all built-in ones load) must not import.
NOT_FOR_PLUGINS_JSON = (
    "typer", "pydantic", "rich", "psutil", "pynvml", "numpy", "gguf", "httpx",
    "gpustack_core.cli.serve_cmd", "gpustack_core.cli.estimate_cmd", "gpustack_core.scheduler._scheduler",
    "gpustack_core.models.cache", "gpustack_core.models.gguf_header", "gpustack_core.models.selection",
    "platform",
)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "shown"),
    [(["plugins", "--json"], ['"status": "ok"']), (["plugins"], ["┃ area ", "│ ok "])],
    ids=["json", "table"],
)
def test_listing_plugins_imports_no_typer_rich_pydantic_numpy_httpx_or_other_commands(
    args: list[str], shown: list[str]
) -> None:
    code = (
        f"import sys\nsys.argv = ['gpustack-core', *{args!r}]\nfrom gpustack_core.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(*(m for m in {NOT_FOR_PLUGINS_JSON!r} if m in sys.modules), 'checked', file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for text in shown:  # the plugins did load
        assert text in out.stdout
    assert out.stderr.splitlines()[-1] == "checked", out.stderr


def test_every_builtin_plugin_imports_without_pydantic() -> None:
    """A plugin's module stays cheap to import: value types are imported where they are built."""
    code = (
        "import sys\nfrom gpustack_core.plugins import PluginHost\nrecords = PluginHost().plugins()\n"
        "print(sorted(r.name for r in records if r.status != 'ok'), 'pydantic' in sys.modules, len(records))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUSTACK_CORE_PLUGINS_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    failed, pydantic_loaded, count = out.stdout.rsplit(" ", 2)
    assert failed == "[]"
    assert pydantic_loaded == "False"
    assert int(count) >= 20


def test_every_command_module_is_in_the_registry() -> None:
    assert sorted(set(COMMANDS.values())) == sorted(COMMAND_MODULES)
    full = {c.name for c in build_app().registered_commands} | {g.name for g in build_app().registered_groups}
    assert full == set(COMMANDS)
    for name in COMMANDS:
        app = build_app(name)
        names = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
        assert names == {name}


def test_a_single_command_app_runs_it_and_help_lists_all() -> None:
    result = CliRunner().invoke(build_app("plugins"), ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    assert '"area"' in result.output
    help_text = CliRunner().invoke(build_app(), ["--help"]).output
    assert all(name in help_text for name in COMMANDS)
