"""The scheduler: places deployment replicas on workers' devices, or explains why it cannot.

A pure library: workers, existing placements, a deployment and its resource estimate in; a
:class:`ScheduleResult` out. Same input, same output. Policies (filters and scorers) come from the
scheduler hook; the built-ins live in :mod:`gpustack_core.scheduler.policies`. See docs/scheduler.md.

Example::

    from gpustack_core.scheduler import Scheduler
    scheduler = Scheduler.from_host(host)
    result = scheduler.schedule(deployment, estimate, workers, placements, replica=0)
    print(result.placement or result.explanation.summary)

The names are imported on first use (PEP 562): the plugin host loads the built-in policies
(``gpustack_core.scheduler.policies``) without the scheduler itself.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._explain import Explanation
    from ._scheduler import STRATEGY_ORDER, Scheduler, ScheduleResult
    from ._state import ClusterState, Option
    from .policies import BuiltinPolicy, builtin_policies

_LAZY = {
    "STRATEGY_ORDER": "._scheduler",
    "BuiltinPolicy": ".policies",
    "ClusterState": "._state",
    "Explanation": "._explain",
    "Option": "._state",
    "ScheduleResult": "._scheduler",
    "Scheduler": "._scheduler",
    "builtin_policies": ".policies",
}

__all__ = [
    "STRATEGY_ORDER",
    "BuiltinPolicy",
    "ClusterState",
    "Explanation",
    "Option",
    "ScheduleResult",
    "Scheduler",
    "builtin_policies",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
