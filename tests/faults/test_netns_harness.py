"""The fault harness itself: hosts reach each other and the root namespace, a partition cuts a
host off and a heal reconnects it, and closing the lab leaves nothing behind."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from gpustack_core.testing.netns import FaultLab, NetnsHost, netns_unavailable

pytestmark = pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable()))

CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5).close()\n"
    "except OSError as exc:\n"
    "    print(type(exc).__name__); sys.exit(1)\n"
)


def _listener(address: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((address, 0))
    sock.listen(8)
    return sock


def _connects(lab_host: NetnsHost, address: str, port: int) -> bool:
    done = lab_host.run([sys.executable, "-c", CONNECT, address, str(port)], capture_output=True)
    return done.returncode == 0


def test_hosts_reach_the_root_namespace_until_partitioned() -> None:
    with FaultLab() as lab:
        a, b = lab.add_host("a"), lab.add_host("b")
        assert a.address != b.address
        server = _listener(lab.root_address)
        try:
            port = server.getsockname()[1]
            assert _connects(a, lab.root_address, port)
            assert _connects(b, lab.root_address, port)
            lab.partition(b)
            assert not _connects(b, lab.root_address, port)
            assert _connects(a, lab.root_address, port)  # only b is cut off
            lab.heal(b)
            assert _connects(b, lab.root_address, port)
            # a host is not reachable from the root namespace's loopback-bound services
            loopback = _listener("127.0.0.1")
            try:
                assert not _connects(a, "127.0.0.1", loopback.getsockname()[1])
            finally:
                loopback.close()
        finally:
            server.close()


def test_close_removes_namespaces_links_bridge_and_processes() -> None:
    lab = FaultLab()
    host = lab.add_host("sleeper")
    process = host.popen(["sleep", "300"])
    names = [host.namespace]
    links = [host.link, lab.bridge]
    lab.close()
    assert process.poll() is not None
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not any(name in namespaces for name in names)
    interfaces = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert not any(f" {link}" in interfaces or f" {link}@" in interfaces for link in links)
    lab.close()  # idempotent
