"""A stand-in for a rank that joins its head (``ray start --address``, a torch-distributed rank):
connects to ``--head`` (retrying while the head starts), says ``JOIN <rank>``, and stays until the
head goes away (then exits 3). Usage: ``python group_join_stand_in.py --head HOST:PORT --rank N``."""

from __future__ import annotations

import argparse
import socket
import sys
import time


def main() -> None:
    """Join, then block until the head closes the connection."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--head", required=True)
    parser.add_argument("--rank", type=int, required=True)
    args = parser.parse_args()
    host, _, port = args.head.rpartition(":")
    deadline = time.monotonic() + 60
    while True:
        try:
            sock = socket.create_connection((host, int(port)), timeout=5)
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                print(f"cannot reach the head at {args.head}: {exc}", file=sys.stderr, flush=True)
                sys.exit(2)
            time.sleep(0.2)
    sock.sendall(f"JOIN {args.rank}\n".encode())
    sock.settimeout(None)
    print(f"joined head at {args.head} as rank {args.rank}", flush=True)
    while sock.recv(1):
        pass
    print(f"lost the head at {args.head}", file=sys.stderr, flush=True)
    sys.exit(3)


if __name__ == "__main__":
    main()
