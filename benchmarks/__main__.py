"""Run benchmarks: ``python -m benchmarks [NAME ...] [-- ARGS]``; no name runs them all."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    names, _, rest = (
        (argv[: argv.index("--")], None, argv[argv.index("--") + 1 :]) if "--" in argv else (argv, None, [])
    )
    available = sorted(
        m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_")
    )
    unknown = [n for n in names if n not in available]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available)}")
    for name in names or available:
        print(f"== benchmark: {name}", flush=True)
        importlib.import_module(f"benchmarks.{name}").main(list(rest))


if __name__ == "__main__":
    main(sys.argv[1:])
