"""Two network namespaces joined by a veth pair, for multi-host tests (small and local to these
tests; see ``gpustack_core.testing.netns`` where a shared harness exists).

:func:`netns_pair` creates ``<tag>a`` (10.231.7.1/24) and ``<tag>b`` (10.231.7.2/24) with unique
names, and deletes both afterwards (which removes the veth pair). :func:`entered` moves the calling
thread into a namespace for the sockets it creates, and back.
"""

from __future__ import annotations

import contextlib
import ctypes
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["NetnsPair", "entered", "netns_pair", "netns_unavailable"]

_CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class NetnsPair:
    """The two namespaces' names and their addresses on the veth link."""

    a: str
    b: str
    address_a: str = "10.231.7.1"
    address_b: str = "10.231.7.2"

    def exec_argv(self, namespace: str) -> list[str]:
        """The argv prefix that runs a program inside ``namespace``."""
        return ["ip", "netns", "exec", namespace]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def netns_unavailable() -> str | None:
    """Why namespaces cannot be made here, or ``None`` when they can."""
    if shutil.which("ip") is None:
        return "the `ip` tool (iproute2) is not installed"
    probe = f"g15p{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"`ip netns add` is not permitted here: {exc.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


@contextlib.contextmanager
def netns_pair() -> Iterator[NetnsPair]:
    """Create the pair (loopback up in both), yield it, delete both namespaces."""
    tag = f"g15{secrets.token_hex(3)}"
    pair = NetnsPair(a=f"{tag}a", b=f"{tag}b")
    made: list[str] = []
    try:
        for ns in (pair.a, pair.b):
            _ip("netns", "add", ns)
            made.append(ns)
        _ip(
            "link",
            "add",
            f"{tag}a",
            "netns",
            pair.a,
            "type",
            "veth",
            "peer",
            "name",
            f"{tag}b",
            "netns",
            pair.b,
        )
        for ns, address in ((pair.a, pair.address_a), (pair.b, pair.address_b)):
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", f"{tag}{ns[-1]}")
            _ip("-n", ns, "link", "set", f"{tag}{ns[-1]}", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            # a default route over the link: programs that find their address by routing
            # (Ray's node IP) pick the link's address; nothing lies beyond it
            _ip("-n", ns, "route", "add", "default", "dev", f"{tag}{ns[-1]}")
        yield pair
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


@contextlib.contextmanager
def entered(namespace: str) -> Iterator[None]:
    """Run the calling thread in ``namespace`` (sockets made meanwhile belong to it), then return."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/thread-self/ns/net", "rb") as home, open(f"/run/netns/{namespace}", "rb") as target:
        if libc.setns(target.fileno(), _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {namespace} failed")
        try:
            yield
        finally:
            if libc.setns(home.fileno(), _CLONE_NEWNET) != 0:  # pragma: no cover - never seen
                raise OSError(ctypes.get_errno(), "setns back to the original namespace failed")
