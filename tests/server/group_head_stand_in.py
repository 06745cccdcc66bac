"""A stand-in for ``llama-server --rpc a,b``: connects to every RPC server (exits 2 naming the one it
cannot reach), then serves the gateway's fake OpenAI engine; exits 3 when an RPC server goes away,
as ``llama-server`` does when it loses a backend. With ``--rendezvous HOST:PORT --nodes N`` it is a
head that others join (Ray, torch distributed): it listens there and waits for ``N - 1`` ranks
before serving, and exits 3 when one of them goes away."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading

from gpustack_core.gateway import fake_engine


def _connect(endpoint: str) -> socket.socket:
    host, _, port = endpoint.rpartition(":")
    try:
        sock = socket.create_connection((host, int(port)), timeout=5)
        sock.sendall(b"PING\n")
        if sock.makefile("rb").readline().strip() != b"PONG":
            raise OSError("no PONG")
    except OSError as exc:
        print(f"cannot reach rpc server {endpoint}: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    sock.settimeout(None)
    return sock


def _watch(sock: socket.socket, endpoint: str) -> None:
    while True:
        try:
            data = sock.recv(1)
        except OSError:
            data = b""
        if not data:
            print(f"lost rpc server {endpoint}", file=sys.stderr, flush=True)
            os._exit(3)


def main() -> None:
    """Connect, then serve until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--rpc", default="")
    parser.add_argument("--rendezvous", default="", help="HOST:PORT the other ranks join (head first)")
    parser.add_argument("--nodes", type=int, default=1)
    args = parser.parse_args()
    if args.rendezvous:
        _, _, port = args.rendezvous.rpartition(":")
        listener = socket.create_server((args.host, int(port)))
        print(f"waiting for {args.nodes - 1} rank(s) at {args.rendezvous}", flush=True)
        for _ in range(args.nodes - 1):
            conn, _ = listener.accept()
            hello = conn.makefile("rb").readline().strip().decode()
            threading.Thread(target=_watch, args=(conn, hello), daemon=True).start()
            print(f"rank joined: {hello}", flush=True)
    for endpoint in filter(None, args.rpc.split(",")):
        sock = _connect(endpoint)
        threading.Thread(target=_watch, args=(sock, endpoint), daemon=True).start()
        print(f"connected to rpc server {endpoint}", flush=True)
    import uvicorn

    sock = socket.create_server((args.host, args.port), reuse_port=False, backlog=2048)
    config = uvicorn.Config(
        fake_engine.create_fake_engine(args.name), log_level="warning", access_log=False, lifespan="off"
    )
    print(f"LISTENING {args.host}:{args.port}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
