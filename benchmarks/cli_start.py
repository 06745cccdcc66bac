"""CLI start-up: ``gpustack-core --version``, ``plugins`` and others beside a bare interpreter.

``python -m benchmarks cli_start [-- --rounds 7] [--from-source]``. Each round runs every command
once, in the same order (the machine is shared: ratios from the same round). Rows give the median
wall seconds and the median of the per-round ratios to ``python -c pass`` (the same interpreter,
same venv).

Bytecode: by default the commands run with compiled bytecode, as after ``pip install`` (which
compiles every module): a warm-up round writes it into a temporary ``PYTHONPYCACHEPREFIX``, and
``PYTHONDONTWRITEBYTECODE`` is cleared for the children. ``--from-source`` keeps the caller's
environment, where ``PYTHONDONTWRITEBYTECODE=1`` (as on our shared machine) makes every start
compile the editable installs' sources again.

``--baseline PATH`` (the ``gpustack-core`` script of another checkout's venv, e.g. main's) adds
its commands to every round, so that before and after are measured side by side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main"]

#: Modules reported as imported or not while ``plugins --json`` runs.
_HEAVY = (
    "typer", "pydantic", "rich", "psutil", "pynvml", "numpy", "gguf", "httpx",
    "gpustack_core.server", "gpustack_core.gateway", "gpustack_core.scheduler._scheduler",
)  # fmt: skip


def _commands(baseline: str | None) -> dict[str, list[str]]:
    script = Path(sys.executable).with_name("gpustack-core")
    cli = [str(script)] if script.exists() else [sys.executable, "-m", "gpustack_core.cli"]
    before = (
        {
            f"baseline: gpustack-core {' '.join(args)}": [baseline, *args]
            for args in (["--version"], ["plugins"], ["plugins", "--json"], ["--help"])
        }
        if baseline
        else {}
    )
    return {
        "python -c pass (bare interpreter)": [sys.executable, "-c", "pass"],
        "python -c 'import typer'": [sys.executable, "-c", "import typer"],
        "gpustack-core --version": [*cli, "--version"],
        "gpustack-core plugins": [*cli, "plugins"],
        "gpustack-core plugins --json": [*cli, "plugins", "--json"],
        "gpustack-core --help": [*cli, "--help"],
        **before,
    }


def _imported(module: str, env: dict[str, str]) -> bool:
    code = (
        "import sys\nsys.argv = ['gpustack-core', 'plugins', '--json']\nimport gpustack_core.cli.app as a\n"
        f"try:\n    a.main()\nexcept SystemExit:\n    pass\nprint({module!r} in sys.modules, file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return out.stderr.strip().splitlines()[-1] == "True"


def main(argv: list[str]) -> None:
    """Print the start-up table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks cli_start")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--from-source", action="store_true", help="keep PYTHONDONTWRITEBYTECODE as it is (no bytecode cache)"
    )
    parser.add_argument("--baseline", help="another checkout's gpustack-core script, measured alongside")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cli-start-pycache-") as pycache:
        env = {**os.environ, "COLUMNS": "120"}
        if not args.from_source:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = pycache
        _run_rounds(args.rounds, env, "from source" if args.from_source else "bytecode cached", args.baseline)


def _run_rounds(rounds: int, env: dict[str, str], mode: str, baseline: str | None) -> None:
    commands = _commands(baseline)
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    loads = []
    for command in commands.values():  # warm-up: writes the bytecode cache; not counted
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
    for _ in range(rounds):
        loads.append(os.getloadavg()[0])
        for name, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
            seconds[name].append(time.perf_counter() - started)
    bare = seconds["python -c pass (bare interpreter)"]
    print(
        f"\nCLI start-up ({mode}), {rounds} rounds, load average {min(loads):.1f}-{max(loads):.1f} "
        f"on {os.cpu_count()} CPUs"
    )
    print(f"| {'command':<46} | {'median s':>8} | {'x bare (median of rounds)':>26} |")
    print(f"|{'-' * 48}|{'-' * 9}:|{'-' * 27}:|")
    for name, values in seconds.items():
        ratio = statistics.median(v / b for v, b in zip(values, bare, strict=True))
        print(f"| {name:<46} | {statistics.median(values):>8.3f} | {ratio:>26.1f} |")
    print("\nimported while `gpustack-core plugins --json` runs:")
    for module in _HEAVY:
        print(f"- {module}: {'yes' if _imported(module, env) else 'no'}")
