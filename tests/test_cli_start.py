"""CLI start-up stays lean: ``--version`` without Typer, a command imports only its own module."""

from __future__ import annotations

import subprocess
import sys

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


def test_plugins_command_imports_no_numpy_httpx_or_other_commands() -> None:
    code = (
        "import sys\nsys.argv = ['gpustack-core', 'plugins', '--json']\nfrom gpustack_core.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(*(m in sys.modules for m in ('numpy', 'gguf', 'httpx', 'gpustack_core.cli.serve_cmd', "
        "'gpustack_core.cli.estimate_cmd')), file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.split()[-5:] == ["False"] * 5


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
