"""CLI start-up: ``gpustack-core --version``, ``plugins`` and others beside a bare interpreter.

``python -m benchmarks cli_start [-- --rounds 7]``. Each round runs every command once, in the same
order (the machine is shared: ratios from the same round). Rows give the median wall seconds and
the median of the per-round ratios to ``python -c pass`` (the same interpreter, same venv).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _commands() -> dict[str, list[str]]:
    script = Path(sys.executable).with_name("gpustack-core")
    cli = [str(script)] if script.exists() else [sys.executable, "-m", "gpustack_core.cli"]
    return {
        "python -c pass (bare interpreter)": [sys.executable, "-c", "pass"],
        "python -c 'import typer'": [sys.executable, "-c", "import typer"],
        "gpustack-core --version": [*cli, "--version"],
        "gpustack-core plugins": [*cli, "plugins"],
        "gpustack-core plugins --json": [*cli, "plugins", "--json"],
        "gpustack-core --help": [*cli, "--help"],
    }


def _imported(module: str) -> bool:
    code = (
        "import sys\nsys.argv = ['gpustack-core', 'plugins', '--json']\nimport gpustack_core.cli.app as a\n"
        f"try:\n    a.main()\nexcept SystemExit:\n    pass\nprint({module!r} in sys.modules, file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stderr.strip().splitlines()[-1] == "True"


def main(argv: list[str]) -> None:
    """Print the start-up table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks cli_start")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    commands = _commands()
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    loads = []
    env = {**os.environ, "COLUMNS": "120"}
    for _ in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for name, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
            seconds[name].append(time.perf_counter() - started)
    bare = seconds["python -c pass (bare interpreter)"]
    print(
        f"\nCLI start-up, {args.rounds} rounds, load average {min(loads):.1f}-{max(loads):.1f} "
        f"on {os.cpu_count()} CPUs"
    )
    print(f"| {'command':<36} | {'median s':>8} | {'x bare (median of rounds)':>26} |")
    print(f"|{'-' * 38}|{'-' * 9}:|{'-' * 27}:|")
    for name, values in seconds.items():
        ratio = statistics.median(v / b for v, b in zip(values, bare, strict=True))
        print(f"| {name:<36} | {statistics.median(values):>8.3f} | {ratio:>26.1f} |")
    print("\nimported while `gpustack-core plugins --json` runs:")
    for module in ("numpy", "gguf", "httpx", "pydantic", "gpustack_core.server", "gpustack_core.gateway"):
        print(f"- {module}: {'yes' if _imported(module) else 'no'}")
