"""A TCP stand-in for llama.cpp's ``rpc-server``: listens on ``--host``/``--port`` and answers each
``PING`` line with ``PONG`` until the peer closes.

Usage: ``python group_rpc_stand_in.py --host H --port P``."""

from __future__ import annotations

import argparse
import socket
import threading


def _serve(conn: socket.socket) -> None:
    with conn, conn.makefile("rwb") as stream:
        for line in stream:
            if line.strip() == b"PING":
                stream.write(b"PONG\n")
                stream.flush()


def main() -> None:
    """Accept connections until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = socket.create_server((args.host, args.port))
    print(f"rpc stand-in listening on {args.host}:{args.port}", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=_serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
