"""Installing to run is separate from installing to develop: the README's serve command installs
``requirements.txt`` (the core and every built-in plugin, nothing else); ``requirements-dev.txt``
adds the dev tools on top of it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_ONLY = ("nox", "pytest", "mypy", "ruff", "hypothesis", "trio", "psycopg", "pymysql", "openai")


def _lines(name: str) -> list[str]:
    text = (ROOT / name).read_text()
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def test_runtime_requirements_are_the_core_and_every_builtin_plugin() -> None:
    lines = _lines("requirements.txt")
    assert all(line.startswith("-e ") for line in lines), lines
    plugins = {f"-e {p.parent.relative_to(ROOT)}" for p in ROOT.glob("plugins/*/*/pyproject.toml")}
    assert set(lines) == {"-e .", *plugins}
    assert not any(tool in line for line in lines for tool in DEV_ONLY)


def test_dev_requirements_build_on_the_runtime_ones() -> None:
    lines = _lines("requirements-dev.txt")
    assert lines[0] == "-r requirements.txt"
    assert not [line for line in lines if line.startswith("-e ")]


def test_readme_serve_command_installs_only_the_runtime() -> None:
    readme = (ROOT / "README.md").read_text()
    serve = re.search(r"^python3 -m venv \.venv .*gpustack-core serve$", readme, re.MULTILINE)
    assert serve is not None
    assert "-r requirements.txt" in serve.group(0)
    tests = re.search(r"^python3 -m venv \.venv .*nox -s ci$", readme, re.MULTILINE)
    assert tests is not None
    assert "-r requirements-dev.txt" in tests.group(0)
    assert (ROOT / ".ci" / "run").read_text().count(tests.group(0)) == 1
