"""A stand-in engine process for supervisor tests: a tiny HTTP server with a health endpoint.

Run as ``python -m gpustack_core.testing.fake_engine --port N [options]``. It prints a line per
request, answers ``GET /health`` (200, or 503 once ``--unhealthy-after`` seconds have passed) and
``GET /v1/models``; ``--ready-after`` delays binding the port, ``--exit-after`` exits with
``--exit-code``, ``--ignore-sigterm`` makes a graceful stop need SIGKILL, and ``--child`` starts a
grandchild ``sleep`` in the same process group (to check whole groups are stopped).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until killed (or ``--exit-after``); returns the exit status."""
    parser = argparse.ArgumentParser(prog="fake_engine")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ready-after", type=float, default=0.0)
    parser.add_argument("--unhealthy-after", type=float, default=None)
    parser.add_argument("--exit-after", type=float, default=None)
    parser.add_argument("--exit-code", type=int, default=3)
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--say", default="fake engine starting")
    args = parser.parse_args(argv)
    started = time.monotonic()
    print(args.say, flush=True)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.child:
        subprocess.Popen(["sleep", "1000"])
    if args.exit_after is not None:

        def _exit_later() -> None:
            time.sleep(args.exit_after)
            print(f"fake engine exiting with {args.exit_code}", flush=True)
            sys.stdout.flush()
            import os

            os._exit(args.exit_code)

        threading.Thread(target=_exit_later, daemon=True).start()
    time.sleep(args.ready_after)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            healthy = args.unhealthy_after is None or time.monotonic() - started < args.unhealthy_after
            if self.path == "/health":
                self._reply(200 if healthy else 503, {"status": "ok" if healthy else "error"})
            elif self.path == "/v1/models":
                self._reply(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
            else:
                self._reply(404, {"error": "not found"})

        def _reply(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *values: object) -> None:
            print("request: " + format % values, flush=True)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
