"""A stand-in for the ``vllm`` program (vLLM cannot be installed here): ``vllm serve MODEL ...``
waits until ``ray status`` (at ``$RAY_ADDRESS``, as the plugin sets it) shows ``--pipeline-parallel-size``
nodes, writes that status and its own argv to ``ray-status.txt`` / ``vllm-argv.json`` next to its
``bin/`` directory, then answers ``GET /health`` on ``--host``/``--port``, as ``vllm serve`` does
once its Ray workers are up."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def _arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def main() -> None:
    """Wait for the Ray cluster, record, serve /health until killed."""
    argv = sys.argv[1:]
    root = Path(__file__).resolve().parent.parent
    (root / "vllm-argv.json").write_text(json.dumps(argv))
    nodes = int(_arg(argv, "--pipeline-parallel-size"))
    ray = str(Path(__file__).resolve().parent / "ray")
    deadline = time.monotonic() + 240
    while True:
        status = subprocess.run(
            [ray, "status", "--address", os.environ["RAY_ADDRESS"]],
            capture_output=True,
            text=True,
            timeout=120,
        )
        active = status.stdout.split("Pending:")[0]
        if len(re.findall(r"^\s*1 node_", active, re.MULTILINE)) >= nodes:
            break
        if time.monotonic() > deadline:
            print(f"ray cluster did not reach {nodes} nodes:\n{status.stdout}{status.stderr}", flush=True)
            sys.exit(1)
        time.sleep(1)
    (root / "ray-status.txt").write_text(status.stdout)
    print(status.stdout, flush=True)
    ThreadingHTTPServer((_arg(argv, "--host"), int(_arg(argv, "--port"))), _Health).serve_forever()


if __name__ == "__main__":
    main()
