"""A multi-host fault harness on one machine: hosts in Linux network namespaces on a private bridge.

::

    with FaultLab() as lab:                    # a bridge with an address in the root namespace
        b = lab.add_host("worker-b")           # a namespace joined to the bridge by a veth pair
        proc = b.popen([sys.executable, "worker.py", f"http://{lab.root_address}:{port}", ...])
        lab.partition(b)                       # its link goes down: no packet in or out
        lab.heal(b)                            # and up again
    # namespaces, links and bridge are gone, processes started with popen are killed

The server runs in the root namespace (it reaches the database on loopback) and listens on
:attr:`FaultLab.root_address`; each worker runs in its own namespace with its own address. Names
carry the process id, a counter and a random tag (namespaces ``gl<pid>-<k>-<tag>-h<i>``, links
``gl<tag>v<i>``), so concurrent test runs never collide, and
:meth:`FaultLab.close` removes everything it made even when a test fails. Needs root (or
``CAP_NET_ADMIN``) and iproute2's ``ip``; :func:`netns_unavailable` says why not otherwise.

Other faults the scenarios need: :func:`kill_tree` (``kill -9`` a process and its children) and
:func:`terminate_database_connections` (PostgreSQL's ``pg_terminate_backend``, MariaDB's ``KILL``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

__all__ = ["FaultLab", "NetnsHost", "kill_tree", "netns_unavailable", "terminate_database_connections"]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def netns_unavailable() -> str | None:
    """Why network namespaces cannot be made here, or ``None`` when they can."""
    if shutil.which("ip") is None:
        return "iproute2's 'ip' is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (or CAP_NET_ADMIN)"
    probe = f"glprobe{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"'ip netns add' failed: {made.stderr.strip()}"
    _ip("netns", "delete", probe, check=False)
    return None


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = _ip("-4", "-o", "addr", "show").stdout
    nets = []
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            nets.append(ipaddress.IPv4Interface(parts[parts.index("inet") + 1]).network)
    return nets


def _free_subnet() -> ipaddress.IPv4Network:
    used = _used_networks()
    start = os.getpid() % 200
    for k in range(200 * 256):
        second, third = 20 + (start + k // 256) % 200, k % 256
        candidate = ipaddress.IPv4Network(f"10.{second}.{third}.0/24")
        if not any(candidate.overlaps(n) for n in used):
            return candidate
    raise RuntimeError("no free 10.x.y.0/24 network for the fault lab")


@dataclass
class NetnsHost:
    """One host of a :class:`FaultLab`: a namespace, its address and its link to the bridge."""

    label: str
    namespace: str
    address: str
    link: str
    """The root-side end of its veth pair (the one :meth:`FaultLab.partition` takes down)."""
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` in the namespace and wait for it (``subprocess.run`` arguments)."""
        kwargs.setdefault("timeout", 60)
        return subprocess.run(self.argv(argv), check=kwargs.pop("check", False), **kwargs)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in the namespace, in its own session; killed by :meth:`FaultLab.close`."""
        kwargs.setdefault("start_new_session", True)
        process = subprocess.Popen(self.argv(argv), **kwargs)
        self.processes.append(process)
        return process


class FaultLab:
    """A bridge, an address for the root namespace on it, and hosts in namespaces (see the module)."""

    _counter = itertools.count()  # per process; only makes names unique, holds no resources

    def __init__(self) -> None:
        """Create the bridge; raises :class:`RuntimeError` (with the reason) where it cannot."""
        reason = netns_unavailable()
        if reason is not None:
            raise RuntimeError(f"cannot build a fault lab: {reason}")
        self.tag = secrets.token_hex(3)  # interface names have at most 15 bytes
        self.prefix = f"gl{os.getpid()}-{next(self._counter)}-{self.tag}"
        self.bridge = f"gl{self.tag}br"
        self.network = _free_subnet()
        hosts = self.network.hosts()
        self.root_address = str(next(hosts))
        self._addresses = hosts
        self.hosts: list[NetnsHost] = []
        self._closed = False
        _ip("link", "add", self.bridge, "type", "bridge")
        try:
            _ip("addr", "add", f"{self.root_address}/{self.network.prefixlen}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except RuntimeError:
            self.close()
            raise

    def add_host(self, label: str) -> NetnsHost:
        """A new namespace with loopback up and ``eth0`` on the bridge at the next free address."""
        k = len(self.hosts)
        namespace = f"{self.prefix}-h{k}"
        link, peer = f"gl{self.tag}v{k}", f"gl{self.tag}p{k}"
        host = NetnsHost(label, namespace, str(next(self._addresses)), link)
        _ip("netns", "add", namespace)
        self.hosts.append(host)
        _ip("link", "add", link, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", namespace)
        _ip("link", "set", link, "master", self.bridge)
        _ip("link", "set", link, "up")
        inside = ("ip", "netns", "exec", namespace, "ip")
        for args in (
            ("link", "set", "lo", "up"),
            ("link", "set", peer, "name", "eth0"),
            ("addr", "add", f"{host.address}/{self.network.prefixlen}", "dev", "eth0"),
            ("link", "set", "eth0", "up"),
        ):
            done = subprocess.run([*inside, *args], capture_output=True, text=True, timeout=30, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"ip {' '.join(args)} in {namespace} failed: {done.stderr.strip()}")
        return host

    def partition(self, host: NetnsHost) -> None:
        """Cut ``host`` off: its link to the bridge goes down (connections hang, nothing is reset)."""
        _ip("link", "set", host.link, "down")

    def heal(self, host: NetnsHost) -> None:
        """Reconnect ``host``."""
        _ip("link", "set", host.link, "up")

    def close(self) -> None:
        """Kill the hosts' processes, delete namespaces, links and the bridge (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for host in self.hosts:
            for process in host.processes:
                if process.poll() is None:
                    kill_tree(process.pid)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(timeout=10)
            _ip("link", "delete", host.link, check=False)  # takes its peer with it
            _ip("netns", "delete", host.namespace, check=False)
        _ip("link", "delete", self.bridge, check=False)

    def __enter__(self) -> FaultLab:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to ``pid`` and all its descendants (``kill -9`` by default); gone ones are skipped."""
    import psutil

    try:
        parent = psutil.Process(pid)
        family = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for process in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(sig)


def terminate_database_connections(url: str) -> int:
    """End every other session on ``url``'s database (PostgreSQL or MariaDB/MySQL); how many ended."""
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    engine = sa.create_engine(parsed, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            if parsed.get_backend_name() == "postgresql":
                rows = c.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid()"
                    ),
                    {"db": parsed.database},
                ).all()
                return sum(1 for (ok,) in rows if ok)
            if parsed.get_backend_name() in {"mysql", "mariadb"}:
                ids = (
                    c.execute(
                        sa.text(
                            "SELECT id FROM information_schema.processlist "
                            "WHERE db = :db AND id <> CONNECTION_ID()"
                        ),
                        {"db": parsed.database},
                    )
                    .scalars()
                    .all()
                )
                for session in ids:
                    with contextlib.suppress(sa.exc.OperationalError):  # it may have ended already
                        c.execute(sa.text(f"KILL {int(session)}"))
                return len(ids)
            raise ValueError(f"terminating connections is not supported for {parsed.get_backend_name()}")
    finally:
        engine.dispose()
