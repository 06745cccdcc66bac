"""The plugin contract of gpustack-core: four pluggy hooks, one per area.

Each hook hands the plugin a ``register`` callback; the plugin calls it once per object it
provides. Behaviour lives on the small interface classes in :mod:`gpustack_core.contracts`
(:class:`~gpustack_core.contracts.Accelerator`, :class:`~gpustack_core.contracts.Engine`,
:class:`~gpustack_core.contracts.ModelSource`, :class:`~gpustack_core.contracts.SchedulerPolicy`),
so that a plugin is a module with one hook implementation and a class or two.

A plugin is found through an entry point in the group of its area:

- accelerators: entry-point group ``gpustack_core.accelerators``, hook :func:`gpustack_register_accelerators`
- engines: entry-point group ``gpustack_core.engines``, hook :func:`gpustack_register_engines`
- sources: entry-point group ``gpustack_core.sources``, hook :func:`gpustack_register_model_sources`
- scheduler: entry-point group ``gpustack_core.scheduler``, hook :func:`gpustack_register_scheduler_policies`

The entry point names a module (or any object) carrying ``@hookimpl`` functions. The host calls
each plugin's hook on its own, so one plugin that raises never stops another from registering.

Ordering: hooks are called once per host, lazily, in order of entry-point name within an area
(an entry point named ``builtin`` first; deterministic). Objects keep their registration order;
scheduler filters run in that order.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from .contracts import Accelerator, Engine, ModelSource, SchedulerPolicy

__all__ = [
    "HOOK_PREFIX",
    "PROJECT_NAME",
    "gpustack_register_accelerators",
    "gpustack_register_engines",
    "gpustack_register_model_sources",
    "gpustack_register_scheduler_policies",
    "hookimpl",
    "hookspec",
]

#: The pluggy project name shared by specs and implementations.
PROJECT_NAME = "gpustack_core"
#: Every hook's name starts with this (the plugin host looks at no other attribute of a plugin).
HOOK_PREFIX = "gpustack_register_"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Decorate plugin functions with this: ``@hookimpl def gpustack_register_engines(register): ...``
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def gpustack_register_accelerators(register: Callable[[Accelerator], None]) -> None:
    """Register the accelerators this plugin provides.

    Parameters:
        register: call once per :class:`~gpustack_core.contracts.Accelerator` instance. Each must
            have a non-empty, unique ``name``; a duplicate is rejected with both distributions named.

    Returns:
        Nothing; the return value is ignored. Called once per host, lazily, before the first
        device detection. An exception here marks this plugin as failed and leaves the others working.
    """


@hookspec
def gpustack_register_engines(register: Callable[[Engine], None]) -> None:
    """Register the inference engines this plugin provides.

    Parameters:
        register: call once per :class:`~gpustack_core.contracts.Engine` instance, with a non-empty,
            unique ``name`` (the name deployments use in ``Deployment.engine``).

    Returns:
        Nothing; the return value is ignored. Called once per host, lazily. An exception here marks
        this plugin as failed and leaves the others working.
    """


@hookspec
def gpustack_register_model_sources(register: Callable[[ModelSource], None]) -> None:
    """Register the model sources this plugin provides.

    Parameters:
        register: call once per :class:`~gpustack_core.contracts.ModelSource` instance, with a
            non-empty, unique ``name`` (the ``SOURCE`` part of ``SOURCE:ID`` model references).

    Returns:
        Nothing; the return value is ignored. Called once per host, lazily. An exception here marks
        this plugin as failed and leaves the others working.
    """


@hookspec
def gpustack_register_scheduler_policies(register: Callable[[SchedulerPolicy], None]) -> None:
    """Register scheduler policies (filters and scorers) this plugin provides.

    Parameters:
        register: call once per :class:`~gpustack_core.contracts.SchedulerPolicy` instance, with a
            non-empty, unique ``name``. Filters run in registration order, built-in policies first
            (their entry point is named ``builtin``), then third-party plugins by entry-point name.

    Returns:
        Nothing; the return value is ignored. Called once per host, lazily. An exception here marks
        this plugin as failed; the scheduler then runs without its policies and says so.
    """
