"""The scheduler: places deployment replicas on workers' devices, or explains why it cannot.

A pure library: workers, existing placements, a deployment and its resource estimate in; a
:class:`ScheduleResult` out. Same input, same output. Policies (filters and scorers) come from the
scheduler hook; the built-ins live in :mod:`gpustack_core.scheduler.policies`. See docs/scheduler.md.

Example::

    from gpustack_core.scheduler import Scheduler
    scheduler = Scheduler.from_host(host)
    result = scheduler.schedule(deployment, estimate, workers, placements, replica=0)
    print(result.placement or result.explanation.summary)
"""

from ._explain import Explanation
from ._scheduler import STRATEGY_ORDER, Scheduler, ScheduleResult
from ._state import ClusterState, Option
from .policies import BuiltinPolicy, builtin_policies

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
