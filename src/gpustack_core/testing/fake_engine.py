"""A stand-in engine process for supervisor and plugin tests: a tiny OpenAI-compatible HTTP server.

Run as ``python -m gpustack_core.testing.fake_engine --port N [options]``. It prints a line per
request, answers ``GET /health`` (200, or 503 once ``--unhealthy-after`` seconds have passed),
``GET /v1/models`` (the ``--served-model-name``), and ``POST /v1/chat/completions`` (plain and
streamed) and ``/v1/completions`` by echoing the prompt, so answers are deterministic.
``--ready-after`` delays binding the port, ``--exit-after`` exits with ``--exit-code``,
``--ignore-sigterm`` makes a graceful stop need SIGKILL, ``--child`` starts a grandchild ``sleep``
in the same process group (to check whole groups are stopped), and ``--model`` names a path that
must exist, as a real engine's model must.

It uses the standard library only, so it can also be packaged as an engine's own distribution and
installed into the engine's virtual environment (the plugin-authoring example's test does).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["main"]


def _prompt(body: dict[str, Any]) -> str:
    """The text to echo: the last chat message's content, or the completion prompt."""
    messages = body.get("messages") or [{}]
    text = messages[-1].get("content") if "messages" in body else body.get("prompt")
    return text if isinstance(text, str) else json.dumps(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until killed (or ``--exit-after``); returns the exit status."""
    parser = argparse.ArgumentParser(prog="fake_engine")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--served-model-name", default="fake")
    parser.add_argument("--ready-after", type=float, default=0.0)
    parser.add_argument("--unhealthy-after", type=float, default=None)
    parser.add_argument("--exit-after", type=float, default=None)
    parser.add_argument("--exit-code", type=int, default=3)
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--say", default="fake engine starting")
    args = parser.parse_args(argv)
    if args.model is not None and not os.path.exists(args.model):
        print(f"fake engine: model {args.model} does not exist", file=sys.stderr, flush=True)
        return 2
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
            os._exit(args.exit_code)

        threading.Thread(target=_exit_later, daemon=True).start()
    time.sleep(args.ready_after)
    name = args.served_model_name

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            healthy = args.unhealthy_after is None or time.monotonic() - started < args.unhealthy_after
            if self.path == "/health":
                self._reply(200 if healthy else 503, {"status": "ok" if healthy else "error"})
            elif self.path == "/v1/models":
                self._reply(200, {"object": "list", "data": [{"id": name, "object": "model"}]})
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            except ValueError:
                self._reply(400, {"error": {"message": "the body is not JSON"}})
                return
            if body.get("model") != name:
                self._reply(404, {"error": {"message": f"model {body.get('model')!r} is not {name!r}"}})
            elif self.path == "/v1/chat/completions" and body.get("stream"):
                self._stream(_prompt(body))
            elif self.path == "/v1/chat/completions":
                message = {"role": "assistant", "content": _prompt(body)}
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
                self._reply(200, {"object": "chat.completion", "model": name, "choices": [choice]})
            elif self.path == "/v1/completions":
                choice = {"index": 0, "text": _prompt(body), "finish_reason": "stop"}
                self._reply(200, {"object": "text_completion", "model": name, "choices": [choice]})
            else:
                self._reply(404, {"error": {"message": f"no {self.path}"}})

        def _stream(self, text: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for word in text.split(" "):
                delta = {"index": 0, "delta": {"content": word + " "}, "finish_reason": None}
                chunk = {"object": "chat.completion.chunk", "model": name, "choices": [delta]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")

        def _reply(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *values: object) -> None:
            print("request: " + format % values, flush=True)

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"listening on {args.host}:{args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
