"""A fast loopback file server for the download benchmark, run in its own process.

``python -m benchmarks._file_server FILE [MIB_PER_S]`` prints ``PORT`` on stdout, then serves ``FILE`` at
``/{org}/{name}/resolve/{revision}/{path}`` (any path) with ``HEAD``, ``Range`` and the headers
``huggingface_hub`` reads (``X-Repo-Commit``, ``ETag``, ``X-Linked-Size``, ``X-Linked-Etag``).
Bodies go out with ``os.sendfile``, so the server costs little CPU and curl measures the loopback,
not the server. With ``MIB_PER_S`` each connection is paced to that rate, as a remote hub's
per-connection limit would (1 MiB pieces). It runs until stdin closes.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _make_handler(path: str, etag: str, rate: float | None) -> type[BaseHTTPRequestHandler]:
    size = os.path.getsize(path)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _range(self) -> tuple[int, int] | None:
            header = self.headers.get("Range")
            if not header or not header.startswith("bytes="):
                return None
            first, _, last = header[6:].partition("-")
            start = int(first)
            end = int(last) if last else size - 1
            return start, min(end, size - 1)

        def _headers(self, status: int, length: int, extra: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in {
                "Accept-Ranges": "bytes",
                "Content-Length": str(length),
                "X-Repo-Commit": COMMIT,
                "ETag": etag,
                "X-Linked-Size": str(size),
                "X-Linked-Etag": etag,
                **extra,
            }.items():
                self.send_header(key, value)
            self.end_headers()

        def do_HEAD(self) -> None:
            self._headers(200, size, {})

        def do_GET(self) -> None:
            parsed = self._range()
            if parsed is not None and parsed[0] >= size:
                self._headers(416, 0, {"Content-Range": f"bytes */{size}"})
                return
            start, end = parsed if parsed else (0, size - 1)
            extra = {"Content-Range": f"bytes {start}-{end}/{size}"} if parsed else {}
            self._headers(206 if parsed else 200, end - start + 1, extra)
            self.wfile.flush()
            with open(path, "rb") as handle:
                offset, left = start, end - start + 1
                began = time.monotonic()
                piece = 1 << 30 if rate is None else 1 << 20
                while left > 0:
                    if rate is not None:  # pace this connection: a remote hub's per-connection limit
                        time.sleep(max(0.0, began + (offset - start) / rate - time.monotonic()))
                    try:
                        sent = os.sendfile(
                            self.connection.fileno(), handle.fileno(), offset, min(left, piece)
                        )
                    except (BrokenPipeError, ConnectionResetError):
                        break  # the client took what it needed (a split fetch's first stream)
                    if sent == 0:
                        break
                    offset += sent
                    left -= sent

    return Handler


def main() -> None:
    path = sys.argv[1]
    rate = float(sys.argv[2]) * (1 << 20) if len(sys.argv) > 2 else None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 << 20):
            digest.update(chunk)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(path, f'"{digest.hexdigest()}"', rate))
    server.daemon_threads = True
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
