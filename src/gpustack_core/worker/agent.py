"""The worker agent: register, heartbeat, poll assignments, run instances, report states.

Survives server restarts: every call is retried on connection errors, a 404 on heartbeat means
"register again", and running engines are never stopped because the server is unreachable.
Engine processes are supervised by :class:`~gpustack_core.supervisor.Supervisor`; with
``keep_engines_on_exit`` (the default) they outlive the agent and the next agent adopts them.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
from starlette.applications import Starlette

from gpustack_core.engines import default_engines_dir, install_progress
from gpustack_core.errors import GPUStackError
from gpustack_core.plugins import PluginHost
from gpustack_core.supervisor import ProcessStatus, RestartPolicy, Supervisor
from gpustack_core.types import (
    Device,
    DownloadResult,
    EngineCapabilities,
    EngineOptions,
    PeerCache,
    WorkerInfo,
)

from .api import WorkerApi, bind_api_socket, create_worker_api, serve_worker_api
from .groups import GroupChanged, group_failure, may_start, part_report, ready_rpc_servers
from .inventory import collect_worker_info, default_worker_name, process_tree_pids
from .metrics import EngineTarget, render_worker_metrics, scrape_engines
from .protocol import (
    Assignment,
    Assignments,
    InstanceReport,
    ModelFileReport,
    PartReport,
    Registered,
    Registration,
    mint_api_token,
    token_sha256,
)
from .runner import (
    DownloadTracker,
    build_launch_spec,
    choose_engine,
    download_model,
    free_port,
    install_engine,
)

__all__ = ["WorkerAgent", "WorkerConfig"]

logger = logging.getLogger(__name__)

_SUPERVISOR_TO_REPORT = {
    "starting": "starting",
    "restarting": "starting",
    "crashed": "starting",
    "unhealthy": "starting",
    "ready": "running",
    "failed": "error",
    "stopped": "stopped",
}


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker reaches its server and where it keeps its state.

    Attributes:
        server_url: the server's base URL (``http://host:8080``).
        token: the worker join token (``<data-dir>/token`` on the server).
        name: worker name (default: host name).
        data_dir: supervisor state, engine logs, model cache and engines live here.
        address: host or IP the server and gateway reach engines at.
        labels: labels for label selectors.
        keep_engines_on_exit: leave engines running when the agent exits, for adoption.
        engines_dir: where engine versions are found and installed (default: the shared
            ``~/.cache/gpustack-core/engines``, so that builds are reused).
        engine_bind_host: address engines listen on (default: loopback when ``address`` is
            loopback, else all interfaces, so that the server's gateway reaches them).
        ready_timeout_s: seconds an engine may take to become ready after starting.
        api_port: port of the worker's own HTTP API (engine logs for the server); 0 picks a free
            port, ``None`` serves none.
        api_host: address the worker API listens on (default: like ``engine_bind_host``).
    """

    server_url: str
    token: str
    name: str | None = None
    data_dir: Path = Path("worker-data")
    address: str = "127.0.0.1"
    labels: dict[str, str] = field(default_factory=dict)
    keep_engines_on_exit: bool = True
    engines_dir: Path | None = None
    engine_bind_host: str | None = None
    restart: RestartPolicy = field(default_factory=lambda: RestartPolicy(max_restarts=3))
    retry_interval_s: float = 2.0
    api_port: int | None = 0
    api_host: str | None = None


class WorkerAgent:
    """Runs one worker until cancelled."""

    def __init__(
        self, config: WorkerConfig, host: PluginHost, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self.host = host
        self.name = config.name or default_worker_name()
        self.worker_id: str | None = None
        self._transport = transport
        self._heartbeat_s = 5.0
        self._poll_s = 1.0
        self._devices: tuple[Device, ...] = ()
        self._launching: set[str] = set()
        self._stopping: set[str] = set()
        self._reported: dict[str, tuple[str, str]] = {}
        self._ports: dict[str, int] = {}
        #: process id -> the latest assignment of it (the head of a group waits on its parts here)
        self._latest: dict[str, Assignment] = {}
        #: process id -> the instance version (placement) its process was started for
        self._placement_versions: dict[str, int] = {}
        #: keys of models whose files this worker downloaded (reported for the locality policy)
        self._cached_models: set[str] = set()
        self._downloads = DownloadTracker()
        #: instances waiting for an engine install: instance id -> (engine, version)
        self._installs: dict[str, tuple[str, str]] = {}
        self.supervisor: Supervisor | None = None
        self._metrics_client: httpx.AsyncClient | None = None
        self.registered = anyio.Event()
        #: the port the worker API listens on, once :meth:`run` bound it
        self.api_port: int | None = None

    # ---------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        """Register, then heartbeat and reconcile assignments until cancelled."""
        data = Path(self.config.data_dir)
        supervisor = Supervisor(
            data / "supervisor", data / "logs", self.config.restart, detach=self.config.keep_engines_on_exit
        )
        headers = {"Authorization": f"Bearer {self.config.token}"}
        async with (
            httpx.AsyncClient(
                base_url=self.config.server_url.rstrip("/") + "/api/v1",
                headers=headers,
                transport=self._transport,
                timeout=30.0,
            ) as client,
            httpx.AsyncClient(timeout=3.0) as metrics_client,
            supervisor,
        ):
            self.supervisor = supervisor
            self._cached_models = _load_cached_models(data / "cached_models.json")
            self._metrics_client = metrics_client
            adopted = await supervisor.adopt()
            if adopted:
                logger.info("adopted %d running engine(s): %s", len(adopted), ", ".join(adopted))
            api_socket = None
            if self.config.api_port is not None:
                api_socket = bind_api_socket(self.config.api_host or self._bind_host(), self.config.api_port)
                self.api_port = api_socket.getsockname()[1]
            try:
                await self._register(client)
                async with anyio.create_task_group() as group:
                    if api_socket is not None:
                        group.start_soon(serve_worker_api, self._api_app(supervisor), api_socket)
                    group.start_soon(self._heartbeat_loop, client)
                    group.start_soon(self._assignment_loop, client, group)
            finally:
                # cancelled before the API server took the socket over (e.g. while registering)
                if api_socket is not None:
                    api_socket.close()

    def _api_app(self, supervisor: Supervisor) -> Starlette:
        def log_path(instance_id: str) -> Path:
            if instance_id in supervisor.statuses():
                return Path(supervisor.status(instance_id).log_path)
            return supervisor.log_dir / f"{instance_id}.log"

        return create_worker_api(
            WorkerApi(
                worker_name=self.name,
                token_sha256=token_sha256(self.config.token),
                log_path=log_path,
                model_cache=Path(self.config.data_dir) / "models",
                metrics=functools.partial(self.metrics_text, supervisor),
            )
        )

    async def metrics_text(self, supervisor: Supervisor) -> bytes:
        """This worker's Prometheus metrics, with its ready engines' own (see :mod:`.metrics`)."""
        targets = []
        for iid, status in supervisor.statuses().items():
            spec = supervisor.launch_spec(iid)
            host = spec.probe_host or "127.0.0.1"
            url = f"http://{f'[{host}]' if ':' in host else host}:{spec.port}/metrics"
            targets.append(EngineTarget(iid, spec.served_model_name, status, url))
        if self._metrics_client is None:  # not running: nothing to scrape
            return render_worker_metrics(self.name, self._devices, targets, {})
        texts = await scrape_engines(targets, self._metrics_client)
        return render_worker_metrics(self.name, self._devices, targets, texts)

    async def _collect_info(self) -> WorkerInfo:
        sup = self.supervisor
        roots = [] if sup is None else [s.pid for s in sup.statuses().values() if s.pid is not None]

        def collect() -> WorkerInfo:
            return collect_worker_info(
                self.host,
                self.name,
                self.config.address,
                self.config.labels,
                engine_pids=process_tree_pids(roots),
                cached_models=self._cached_models,
            )

        info = await anyio.to_thread.run_sync(collect)
        return info if self.api_port is None else info.model_copy(update={"api_port": self.api_port})

    async def _register(self, client: httpx.AsyncClient) -> None:
        while True:
            try:
                info = await self._collect_info()
                self._devices = info.devices
                response = await client.post(
                    "/worker/register", json=Registration(info=info).model_dump(mode="json")
                )
                response.raise_for_status()
                registered = Registered.model_validate(response.json())
                self.worker_id = registered.worker_id
                self._heartbeat_s = registered.heartbeat_interval_s
                self._poll_s = registered.poll_interval_s
                self.registered.set()
                logger.info("registered as worker %s (%s)", self.name, self.worker_id)
                return
            except (httpx.HTTPError, ValueError) as exc:
                logger.warning("cannot register with %s: %s; retrying", self.config.server_url, exc)
                await anyio.sleep(self.config.retry_interval_s)

    async def _heartbeat_loop(self, client: httpx.AsyncClient) -> None:
        while True:
            await anyio.sleep(self._heartbeat_s)
            try:
                info = await self._collect_info()
                self._devices = info.devices
                response = await client.post(
                    f"/worker/{self.worker_id}/heartbeat", json={"info": info.model_dump(mode="json")}
                )
                if response.status_code == 404:
                    await self._register(client)
                    continue
                response.raise_for_status()
            except httpx.HTTPError as exc:
                logger.warning("heartbeat failed: %s; engines keep running", exc)

    async def _assignment_loop(self, client: httpx.AsyncClient, group: anyio.abc.TaskGroup) -> None:
        while True:
            try:
                await self.reconcile(client, group)
            except httpx.HTTPError as exc:
                logger.warning("cannot reach the server: %s; engines keep running", exc)
            await anyio.sleep(self._poll_s)

    # ---------------------------------------------------------------- reconcile

    async def reconcile(self, client: httpx.AsyncClient, group: anyio.abc.TaskGroup) -> None:
        """Fetch assignments once; start, stop and report instances to match."""
        sup = self.supervisor
        assert sup is not None
        response = await client.get(f"/worker/{self.worker_id}/assignments")
        if response.status_code == 404:
            await self._register(client)
            return
        response.raise_for_status()
        assignments = Assignments.model_validate(response.json()).items
        wanted = {a.process_id: a for a in assignments}
        self._latest = wanted
        local = sup.statuses()
        for assignment in assignments:
            iid = assignment.process_id  # the instance id, or "<instance id>.p<rank>" for a part
            if iid in self._launching or iid in self._stopping:
                continue
            if assignment.desired == "stopped":
                self._stopping.add(iid)
                group.start_soon(self._stop, client, iid, assignment.rank == 0)
                continue
            status = local.get(iid)
            state = assignment.part_state
            if (
                status is not None
                and state == "scheduled"
                and assignment.node_count > 1
                and status.state not in {"stopped", "failed"}
                and self._placement_versions.get(iid) != assignment.version
            ):
                # a process of the group's previous placement (the group restarted between two
                # polls): its peers are gone, so it is replaced, never adopted. (One started for
                # this placement may still look "scheduled" in an answer fetched before its report.)
                self._launching.add(iid)
                group.start_soon(self._replace, client, assignment)
                continue
            if status is None or (status.state in {"stopped", "failed"} and state == "scheduled"):
                if state == "scheduled" and may_start(assignment, self._capabilities(assignment)):
                    self._launching.add(iid)
                    group.start_soon(self._launch, client, assignment)
                elif state in {"downloading", "installing", "starting", "running"}:
                    # The server believes it runs here, but no process exists (it died with an
                    # earlier agent, or its launch was interrupted): report it so it is retried.
                    message = "engine process not found on the worker"
                    if assignment.rank:
                        await self._report_part(
                            client, assignment, PartReport(state="error", message=message)
                        )
                    else:
                        await self._report(client, iid, InstanceReport(state="error", message=message))
                continue
            if assignment.port is not None and assignment.rank == 0:
                self._ports.setdefault(iid, assignment.port)
            if assignment.rank:
                part = part_report(status, self.config.address, self._ports.get(iid))
                if part is not None:
                    version = self._placement_versions.get(iid)
                    await self._report_part(client, assignment, part.model_copy(update={"version": version}))
                continue
            await self._report_status(client, assignment, status)
        for iid, status in local.items():
            if iid not in wanted and iid not in self._stopping and status.state not in {"stopped"}:
                self._stopping.add(iid)
                group.start_soon(self._stop, client, iid, False)
        for iid in list(self._launching):
            if iid not in wanted:
                continue
            install = self._installs.get(iid)
            if install is not None:
                options = EngineOptions(engines_dir=str(self._engines_dir()))
                phase = await anyio.to_thread.run_sync(install_progress, options, *install)
                if phase is not None:
                    message = f"installing {install[0]} {install[1]}: {phase['phase']}"
                    report = InstanceReport(state="installing", message=message, progress=phase)
                    await self._report(client, iid, report, force=True)
                continue
            progress = self._downloads.take(iid)
            if progress is not None and iid in wanted and wanted[iid].rank == 0:
                report = InstanceReport(state="downloading", download=progress, progress=progress)
                await self._report(client, iid, report, force=True)

    async def _report_status(
        self, client: httpx.AsyncClient, assignment: Assignment, status: ProcessStatus
    ) -> None:
        state = _SUPERVISOR_TO_REPORT[status.state]
        message = status.message if state != "running" else ""
        failure = group_failure(status) if assignment.node_count > 1 else None
        if failure is not None:  # a group's head that exited fails the group (its parts lose it too)
            state, message = "error", f"the head process failed: {failure}"
        if state == "error" and self.supervisor is not None:
            tail = self.supervisor.log_tail(assignment.instance_id, 1500).strip()
            message = f"{status.message}; last log lines:\n{tail}" if tail else status.message
        if state == "stopped":
            return
        await self._report(
            client,
            assignment.instance_id,
            InstanceReport(
                state=state,
                message=message,
                pid=status.pid,
                port=self._ports.get(assignment.instance_id),
                # a group's process reports for the placement it was started for: after the group
                # restarted on the same workers, the old process's last word is ignored
                version=self._placement_versions.get(assignment.instance_id)
                if assignment.node_count > 1
                else None,
            ),
        )

    async def _report(
        self, client: httpx.AsyncClient, iid: str, report: InstanceReport, force: bool = False
    ) -> None:
        key = (report.state, report.message)
        if not force and self._reported.get(iid) == key:
            return
        response = await client.post(
            f"/worker/{self.worker_id}/instances/{iid}/report",
            json=report.model_dump(mode="json", exclude_none=True),
        )
        response.raise_for_status()
        self._reported[iid] = key

    async def _report_part(
        self, client: httpx.AsyncClient, assignment: Assignment, report: PartReport, force: bool = False
    ) -> None:
        pid_key = assignment.process_id
        key = (report.state, report.message)
        if not force and self._reported.get(pid_key) == key:
            return
        response = await client.post(
            f"/worker/{self.worker_id}/instances/{assignment.instance_id}/parts/{assignment.rank}/report",
            json=report.model_dump(mode="json", exclude_none=True),
        )
        response.raise_for_status()
        self._reported[pid_key] = key

    def _capabilities(self, assignment: Assignment) -> EngineCapabilities | None:
        try:
            engine = self.host.engine(assignment.deployment.engine)
            with self.host.guard("engines", engine.name, "capabilities()"):
                return engine.capabilities()
        except GPUStackError:
            return None  # the launch reports the missing engine with its reason

    # ---------------------------------------------------------------- launch and stop

    async def _download(self, client: httpx.AsyncClient, assignment: Assignment) -> DownloadResult:
        data = Path(self.config.data_dir)
        model = str(assignment.deployment.model)
        key = token_sha256(self.config.token)
        peers = tuple(
            PeerCache(
                url=f"http://{_url_host(p.address)}:{p.api_port}/models/cache",
                headers={"Authorization": f"Bearer {mint_api_token(key, p.worker)}"},
            )
            for p in assignment.peers
            if p.worker != self.name
        )
        result = await anyio.to_thread.run_sync(
            download_model,
            self.host,
            assignment,
            data / "models",
            self._downloads.callback(assignment.process_id),
            peers,
        )
        await self._post_model_file(
            client,
            ModelFileReport(
                model=model, state="ready", downloaded_bytes=result.downloaded_bytes, paths=result.paths
            ),
        )
        ref = assignment.deployment.model
        keys = {str(ref), f"{ref.source}:{ref.id}"}
        if not keys <= self._cached_models:
            self._cached_models |= keys
            _save_cached_models(data / "cached_models.json", self._cached_models)
        return result

    async def _launch(self, client: httpx.AsyncClient, assignment: Assignment) -> None:
        iid = assignment.process_id
        sup = self.supervisor
        assert sup is not None
        data = Path(self.config.data_dir)
        model = str(assignment.deployment.model)
        capabilities = self._capabilities(assignment)
        head_first = capabilities is not None and capabilities.multi_worker_order == "head_first"
        grouped_head = assignment.rank == 0 and assignment.node_count > 1
        needs_weights = assignment.rank == 0 or capabilities is None or capabilities.subordinates_need_weights
        try:
            paths: tuple[str, ...] = ()
            if assignment.rank == 0:
                head_address = None
                if grouped_head and head_first:
                    # published first, so that the other ranks download while this one does;
                    # they join this address, which the engine's head process listens on
                    head_address = f"{self.config.address}:{free_port()}"
                    assignment = assignment.model_copy(update={"head_address": head_address})
                report = InstanceReport(
                    state="downloading", message=f"fetching {model}", head_address=head_address
                )
                await self._report(client, iid, report)
            if needs_weights:
                paths = (await self._download(client, assignment)).paths
            rpc_servers: tuple[str, ...] = ()
            if grouped_head and not head_first:
                await self._report(
                    client,
                    iid,
                    InstanceReport(
                        state="starting",
                        message=f"waiting for {assignment.node_count - 1} subordinate part(s) to be ready",
                    ),
                )
                rpc_servers = await self._wait_for_parts(iid)
            engines_dir = self._engines_dir()
            choice = await anyio.to_thread.run_sync(choose_engine, self.host, assignment, engines_dir)
            if choice.installation is None:
                what = f"{choice.engine} {choice.version}"
                logger.info("instance %s: installing %s (first use on this worker)", iid, what)
                if assignment.rank == 0:
                    await self._report(
                        client,
                        iid,
                        InstanceReport(
                            state="installing",
                            message=f"installing {what} (first use on this worker)",
                            progress={"phase": "starting", "log_tail": []},
                        ),
                    )
                self._installs[iid] = (choice.engine, choice.version)
                try:
                    await anyio.to_thread.run_sync(
                        install_engine, self.host, choice.engine, choice.version, engines_dir
                    )
                finally:
                    self._installs.pop(iid, None)
                logger.info("instance %s: installed %s", iid, what)
            port = free_port()
            spec = await anyio.to_thread.run_sync(
                build_launch_spec,
                self.host,
                assignment,
                paths,
                self._devices,
                engines_dir,
                port,
                self._bind_host(),
                data / "instances" / iid,
                rpc_servers,
            )
            self._ports[iid] = spec.port
            status = await sup.start(iid, spec)
            self._placement_versions[iid] = assignment.version
            if assignment.rank:
                starting = PartReport(
                    state="starting", message="waiting for readiness", pid=status.pid, port=spec.port
                )
                await self._report_part(client, assignment, starting)
            else:
                await self._report(
                    client,
                    iid,
                    InstanceReport(
                        state="starting", message="waiting for readiness", pid=status.pid, port=spec.port
                    ),
                )
        except GroupChanged as exc:
            logger.info("instance %s: not starting the head: %s", iid, exc)
        except Exception as exc:  # every failure becomes an error state with its reason
            logger.warning("instance %s failed to launch: %s", iid, exc)
            message = f"{type(exc).__name__}: {exc}"
            try:
                if needs_weights:
                    await self._post_model_file(
                        client, ModelFileReport(model=model, state="error", message=message)
                    )
                if assignment.rank:
                    await self._report_part(client, assignment, PartReport(state="error", message=message))
                else:
                    await self._report(client, iid, InstanceReport(state="error", message=message))
            except httpx.HTTPError:
                logger.warning("could not report the failure of %s", iid)
        finally:
            self._launching.discard(iid)

    async def _replace(self, client: httpx.AsyncClient, assignment: Assignment) -> None:
        sup = self.supervisor
        assert sup is not None
        try:
            await sup.stop(assignment.process_id, grace_s=10)
        except Exception as exc:
            logger.warning("stopping the previous process of %s failed: %s", assignment.process_id, exc)
        self._reported.pop(assignment.process_id, None)
        latest = self._latest.get(assignment.process_id)
        if (
            latest is None
            or latest.version != assignment.version
            or not may_start(latest, self._capabilities(latest))
        ):
            # the placement moved on, or a rank that joins its head waits for the new head's
            # address: a later pass starts it the usual way (its old process is stopped now)
            self._launching.discard(assignment.process_id)
            return
        await self._launch(client, latest)

    async def _wait_for_parts(self, iid: str) -> tuple[str, ...]:
        """The subordinates' ``host:port`` once all run (refreshed by every reconcile pass)."""
        while True:
            latest = self._latest.get(iid)
            if latest is None:
                raise GroupChanged(f"instance {iid} is no longer assigned to this worker")
            servers = ready_rpc_servers(latest)
            if servers is not None:
                return servers
            await anyio.sleep(self._poll_s)

    def _engines_dir(self) -> Path:
        return self.config.engines_dir or default_engines_dir()

    def _bind_host(self) -> str:
        if self.config.engine_bind_host:
            return self.config.engine_bind_host
        return "127.0.0.1" if self.config.address in {"127.0.0.1", "localhost", "::1"} else "0.0.0.0"

    async def _post_model_file(self, client: httpx.AsyncClient, report: ModelFileReport) -> None:
        response = await client.post(
            f"/worker/{self.worker_id}/model-files", json=report.model_dump(mode="json")
        )
        response.raise_for_status()

    async def _stop(self, client: httpx.AsyncClient, iid: str, report: bool) -> None:
        sup = self.supervisor
        assert sup is not None
        try:
            if iid in sup.statuses():
                await sup.stop(iid, grace_s=10)
            self._ports.pop(iid, None)
            self._reported.pop(iid, None)
            if report:
                await self._report(client, iid, InstanceReport(state="stopped"), force=True)
        except Exception as exc:
            logger.warning("stopping %s failed: %s", iid, exc)
        finally:
            self._stopping.discard(iid)

    def snapshot(self) -> dict[str, Any]:
        """Worker id, launching/stopping instances and process states (for diagnostics and tests)."""
        sup = self.supervisor
        return {
            "worker_id": self.worker_id,
            "launching": sorted(self._launching),
            "processes": {} if sup is None else {k: v.state for k, v in sup.statuses().items()},
        }


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def _load_cached_models(path: Path) -> set[str]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return set()
    return {str(k) for k in loaded} if isinstance(loaded, list) else set()


def _save_cached_models(path: Path, keys: set[str]) -> None:
    """Write the list atomically (a crash never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(sorted(keys)))
    os.replace(tmp, path)
