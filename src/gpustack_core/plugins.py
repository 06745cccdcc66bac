"""The plugin host: discovery through entry points, allow/deny lists, and broken-plugin isolation.

A :class:`PluginHost` holds everything it discovers; nothing is module-global, so two hosts with
different plugin sets can live in one process. Discovery is lazy (each area on its first use) and happens once
per host. A plugin that fails to import, whose hook raises, that registers the wrong type or an
object without a name, or that clashes with another distribution's name is recorded as an error
with its distribution, version and cause; every other plugin keeps working.

Environment variables (read when the host is built, from ``environ``):

``GPUSTACK_CORE_PLUGINS_ALLOW``
    Comma-separated plugin names; when set, only these load. ``area:name`` limits a name to an area.
``GPUSTACK_CORE_PLUGINS_DENY``
    Comma-separated plugin names that never load (wins over the allow-list).
"""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any, Literal, TypeVar, cast

import pluggy

from . import hookspecs
from .contracts import Accelerator, Engine, ModelSource, SchedulerPolicy
from .errors import GPUStackError, PluginError, PluginNotFoundError

__all__ = [
    "ALLOW_ENV",
    "AREAS",
    "DENY_ENV",
    "Area",
    "AreaSpec",
    "PluginHost",
    "PluginRecord",
    "PluginStatus",
]

Area = Literal["accelerators", "engines", "sources", "scheduler"]
PluginStatus = Literal["ok", "error", "disabled"]
ALLOW_ENV = "GPUSTACK_CORE_PLUGINS_ALLOW"
DENY_ENV = "GPUSTACK_CORE_PLUGINS_DENY"
IN_PROCESS = "<in-process>"

T = TypeVar("T")


@dataclass(frozen=True)
class AreaSpec:
    """How one plugin area is wired: entry-point group, hook name and interface class."""

    area: Area
    group: str
    hook: str
    interface: type[Any]


#: The four plugin areas, in the order they are reported.
AREAS: tuple[AreaSpec, ...] = (
    AreaSpec("accelerators", "gpustack_core.accelerators", "gpustack_register_accelerators", Accelerator),
    AreaSpec("engines", "gpustack_core.engines", "gpustack_register_engines", Engine),
    AreaSpec("sources", "gpustack_core.sources", "gpustack_register_model_sources", ModelSource),
    AreaSpec("scheduler", "gpustack_core.scheduler", "gpustack_register_scheduler_policies", SchedulerPolicy),
)
_AREA_BY_NAME: dict[str, AreaSpec] = {spec.area: spec for spec in AREAS}


@dataclass(frozen=True)
class PluginRecord:
    """One plugin as the host sees it: where it came from, what it provides, and whether it works."""

    area: Area
    name: str
    distribution: str | None
    version: str | None
    status: PluginStatus
    error: str | None = None
    provides: tuple[str, ...] = ()
    target: str = IN_PROCESS

    @property
    def origin(self) -> str:
        """``distribution version`` or the in-process marker, for messages."""
        if self.distribution is None:
            return IN_PROCESS
        return f"{self.distribution} {self.version or '?'}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as ``gpustack-core plugins --json`` prints it."""
        return {
            "area": self.area,
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "provides": list(self.provides),
            "target": self.target,
        }


@dataclass
class _Candidate:
    area: Area
    name: str
    distribution: str | None
    version: str | None
    target: str
    load: Callable[[], object]


@dataclass
class _AreaState:
    records: dict[str, PluginRecord] = field(default_factory=dict)
    objects: dict[str, object] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)  # object name -> plugin name


def _parse_list(text: str | None) -> list[str]:
    if not text:
        return []
    return [item.strip() for item in text.split(",") if item.strip()]


def _constant(value: object) -> Callable[[], object]:
    def load() -> object:
        return value

    return load


class _HookManager(pluggy.PluginManager):
    """A plugin manager that looks only at a plugin's ``gpustack_register_*`` attributes.

    pluggy inspects every name of a registered module (``inspect.getattr_static`` on each, about
    55 per plugin module): a fifth of ``gpustack-core plugins``' start-up. Every hook of ours
    has that prefix, so nothing else can be a hook implementation; a misspelled one is reported
    as before ("implements no ... hook").
    """

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        """pluggy's parsing, for names with our hooks' prefix only."""
        if not name.startswith(hookspecs.HOOK_PREFIX):
            return None
        return super().parse_hookimpl_opts(plugin, name)


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


class PluginHost:
    """Discovers, loads and isolates plugins for all four areas.

    Parameters:
        allow: plugin names to load (``name`` or ``area:name``); ``None`` reads
            ``GPUSTACK_CORE_PLUGINS_ALLOW`` from ``environ``, and no list means all.
        deny: plugin names never to load; added to ``GPUSTACK_CORE_PLUGINS_DENY``.
        environ: environment to read lists from; defaults to ``os.environ``.
        entry_points: discover installed plugins through entry points (turn off for a host that
            only uses plugins passed in-process).
        plugins: in-process plugins as ``(area, name, plugin)`` triples, where ``plugin`` is a module
            or object with ``@hookimpl`` functions; treated exactly like installed ones.
    """

    def __init__(
        self,
        *,
        allow: Iterable[str] | None = None,
        deny: Iterable[str] | None = None,
        environ: Mapping[str, str] | None = None,
        entry_points: bool = True,
        plugins: Iterable[tuple[Area, str, object]] = (),
    ) -> None:
        env = os.environ if environ is None else environ
        self._allow: frozenset[str] | None = (
            frozenset(allow) if allow is not None else (frozenset(_parse_list(env.get(ALLOW_ENV))) or None)
        )
        self._deny = frozenset(deny or ()) | frozenset(_parse_list(env.get(DENY_ENV)))
        self._use_entry_points = entry_points
        self._in_process: list[tuple[Area, str, object]] = list(plugins)
        self._lock = threading.RLock()
        self._states: dict[str, _AreaState] = {}
        self._entry_points: Any = None  # EntryPoints (SelectableGroups before Python 3.12)

    # ------------------------------------------------------------------ discovery

    def _enabled(self, area: Area, name: str) -> str | None:
        """``None`` when enabled, else why it is disabled."""
        keys = {name, f"{area}:{name}"}
        if keys & self._deny:
            return f"denied by the deny-list ({DENY_ENV} or deny=)"
        if self._allow is not None and not keys & self._allow:
            return f"not in the allow-list ({ALLOW_ENV} or allow=)"
        return None

    def _discover(self, spec: AreaSpec) -> list[_Candidate]:
        found: list[_Candidate] = []
        seen: set[tuple[str, str, str | None]] = set()
        if self._use_entry_points:
            if self._entry_points is None:  # one scan of the installed distributions for all areas
                self._entry_points = metadata.entry_points()
            for ep in self._entry_points.select(group=spec.group):
                dist = ep.dist
                # one parse of the distribution's METADATA for both fields (``dist.version`` parses again)
                dist_meta = dist.metadata if dist is not None else None
                dist_name = dist_meta["Name"] if dist_meta is not None else None
                key = (ep.name, ep.value, dist_name)
                if key in seen:  # the same distribution on sys.path twice
                    continue
                seen.add(key)
                found.append(
                    _Candidate(
                        area=spec.area,
                        name=ep.name,
                        distribution=dist_name,
                        version=dist_meta["Version"] if dist_meta is not None else None,
                        target=ep.value,
                        load=ep.load,
                    )
                )
        for area, name, plugin in self._in_process:
            if area == spec.area:
                found.append(_Candidate(area, name, None, None, IN_PROCESS, _constant(plugin)))
        found.sort(key=lambda c: (c.name != "builtin", c.name, c.distribution or ""))
        return found

    def _load_area(self, spec: AreaSpec) -> _AreaState:
        state = _AreaState()
        candidates = self._discover(spec)
        by_name: dict[str, list[_Candidate]] = {}
        for cand in candidates:
            by_name.setdefault(cand.name, []).append(cand)
        for cand in candidates:
            if cand.name in state.records:
                continue
            why_disabled = self._enabled(spec.area, cand.name)
            if why_disabled is not None:
                state.records[cand.name] = self._record(cand, "disabled", why_disabled)
                continue
            clash = by_name[cand.name]
            if len(clash) > 1:
                origins = " and ".join(
                    f"{c.distribution or IN_PROCESS} {c.version or ''}".strip() for c in clash
                )
                state.records[cand.name] = self._record(
                    cand,
                    "error",
                    f"plugin name {cand.name!r} in area {spec.area!r} is provided by both {origins}; "
                    "neither is loaded: uninstall one of them",
                )
                continue
            state.records[cand.name] = self._load_one(spec, cand, state)
        return state

    def _record(
        self, cand: _Candidate, status: PluginStatus, error: str | None, provides: tuple[str, ...] = ()
    ) -> PluginRecord:
        return PluginRecord(
            area=cand.area,
            name=cand.name,
            distribution=cand.distribution,
            version=cand.version,
            status=status,
            error=error,
            provides=provides,
            target=cand.target,
        )

    def _load_one(self, spec: AreaSpec, cand: _Candidate, state: _AreaState) -> PluginRecord:
        try:
            plugin = cand.load()
        except Exception as exc:  # any import-time failure is isolated
            return self._record(cand, "error", f"import of {cand.target} failed: {_describe(exc)}")
        manager = _HookManager(hookspecs.PROJECT_NAME)
        manager.add_hookspecs(hookspecs)
        try:
            manager.register(plugin, name=f"{spec.area}:{cand.name}")
        except Exception as exc:  # pluggy's validation of hook signatures
            return self._record(cand, "error", f"invalid hook implementation: {_describe(exc)}")
        hook: pluggy.HookCaller = getattr(manager.hook, spec.hook)
        impls = hook.get_hookimpls()
        if not impls:
            return self._record(
                cand, "error", f"{cand.target} implements no {spec.hook} hook (decorate it with @hookimpl)"
            )
        staged: list[tuple[str, object]] = []

        def register(obj: object) -> None:
            if not isinstance(obj, spec.interface):
                raise PluginError(
                    f"registered {type(obj).__name__!r}, which is not a "
                    f"{spec.interface.__module__}.{spec.interface.__qualname__}"
                )
            obj_name = getattr(obj, "name", None)
            if not isinstance(obj_name, str) or not obj_name:
                raise PluginError(f"registered a {type(obj).__name__} without a name (set its `name`)")
            if obj_name in state.objects or any(n == obj_name for n, _ in staged):
                owner = state.records.get(state.owners.get(obj_name, ""))
                other = owner.origin if owner is not None else cand.distribution or IN_PROCESS
                raise PluginError(
                    f"{spec.area} name {obj_name!r} is already registered by {other}; "
                    f"{cand.distribution or IN_PROCESS} cannot register it again"
                )
            staged.append((obj_name, obj))

        try:
            for impl in impls:
                impl.function(register=register)
        except Exception as exc:
            return self._record(cand, "error", f"{spec.hook} raised {_describe(exc)}")
        if not staged:
            return self._record(cand, "error", f"{spec.hook} registered nothing")
        for obj_name, obj in staged:
            state.objects[obj_name] = obj
            state.owners[obj_name] = cand.name
        return self._record(cand, "ok", None, tuple(n for n, _ in staged))

    def _area(self, area: Area) -> _AreaState:
        """The loaded state of one area; each area is discovered on first use, once."""
        with self._lock:
            state = self._states.get(area)
            if state is None:
                state = self._states[area] = self._load_area(_AREA_BY_NAME[area])
            return state

    # ------------------------------------------------------------------ public queries

    def plugins(self) -> list[PluginRecord]:
        """Every plugin found, in every area, with its status; loads plugins on first call."""
        return [record for spec in AREAS for record in self._area(spec.area).records.values()]

    def failed(self) -> list[PluginRecord]:
        """Plugins whose status is ``error``."""
        return [r for r in self.plugins() if r.status == "error"]

    def _objects(self, area: Area) -> list[Any]:
        return list(self._area(area).objects.values())

    def _one(self, area: Area, name: str) -> Any:
        state = self._area(area)
        obj = state.objects.get(name)
        if obj is not None:
            return obj
        available = ", ".join(sorted(state.objects)) or "none"
        failed = [r for r in state.records.values() if r.status != "ok" and name in (r.name, *r.provides)]
        hint = f"; plugin {failed[0].name!r} is {failed[0].status}: {failed[0].error}" if failed else ""
        raise PluginNotFoundError(f"no {area} plugin named {name!r} (available: {available}){hint}")

    def accelerators(self) -> list[Accelerator]:
        """Working accelerator objects, in registration order."""
        return cast("list[Accelerator]", self._objects("accelerators"))

    def accelerator(self, name: str) -> Accelerator:
        """The accelerator called ``name``; raises :class:`PluginNotFoundError` listing what exists."""
        return cast(Accelerator, self._one("accelerators", name))

    def engines(self) -> list[Engine]:
        """Working engine objects, in registration order."""
        return cast("list[Engine]", self._objects("engines"))

    def engine(self, name: str) -> Engine:
        """The engine called ``name``; raises :class:`PluginNotFoundError` listing what exists."""
        return cast(Engine, self._one("engines", name))

    def model_sources(self) -> list[ModelSource]:
        """Working model-source objects, in registration order."""
        return cast("list[ModelSource]", self._objects("sources"))

    def model_source(self, name: str) -> ModelSource:
        """The model source called ``name``; raises :class:`PluginNotFoundError` listing what exists."""
        return cast(ModelSource, self._one("sources", name))

    def scheduler_policies(self) -> list[SchedulerPolicy]:
        """Working scheduler policies: built-ins first, then third-party, in registration order."""
        return cast("list[SchedulerPolicy]", self._objects("scheduler"))

    def owner(self, area: Area, object_name: str) -> PluginRecord:
        """The plugin record that registered ``object_name`` in ``area``."""
        state = self._area(area)
        plugin = state.owners.get(object_name)
        if plugin is None:
            raise PluginNotFoundError(f"no {area} object named {object_name!r}")
        return state.records[plugin]

    # ------------------------------------------------------------------ runtime isolation

    @contextmanager
    def guard(self, area: Area, object_name: str, action: str) -> Iterator[None]:
        """Run a call into a plugin object, isolating unexpected failures.

        Errors of the contract (subclasses of :class:`~gpustack_core.errors.GPUStackError`) pass
        through unchanged. Anything else marks the owning plugin as failed and is re-raised as
        :class:`~gpustack_core.errors.PluginError` naming the distribution, version and cause.
        """
        try:
            yield
        except GPUStackError:
            raise
        except Exception as exc:
            message = self._fail(area, object_name, f"{action} raised {_describe(exc)}")
            raise PluginError(message) from exc

    def check_type(self, area: Area, object_name: str, action: str, value: object, expected: type[T]) -> T:
        """Return ``value`` if it is an ``expected``; otherwise mark the plugin failed and raise."""
        if isinstance(value, expected):
            return value
        message = self._fail(
            area, object_name, f"{action} returned {type(value).__name__}, expected {expected.__name__}"
        )
        raise PluginError(message)

    def _fail(self, area: Area, object_name: str, cause: str) -> str:
        with self._lock:
            state = self._area(area)
            plugin = state.owners.get(object_name)
            record = state.records.get(plugin or "")
            if record is None:
                return f"{area} object {object_name!r}: {cause}"
            message = f"{area} plugin {record.name!r} ({record.origin}): {cause}"
            state.records[record.name] = replace(record, status="error", error=message)
            return message
