"""Engine process supervision on a worker.

::

    from gpustack_core.supervisor import Supervisor, RestartPolicy

    async with Supervisor(state_dir, log_dir, RestartPolicy(max_restarts=5)) as sup:
        await sup.start("qwen-0", spec)          # spec: a LaunchSpec from an engine plugin
        await sup.wait_ready("qwen-0", timeout_s=600)
        print(sup.status("qwen-0").state)        # "ready"
        await sup.stop("qwen-0", grace_s=10)

States: ``starting`` -> ``ready`` (<-> ``unhealthy``); an unrequested exit makes it ``crashed``, then
``restarting`` (exponential backoff) and ``starting`` again, or ``failed`` at the restart cap;
:meth:`Supervisor.stop` makes it ``stopped``. See ``docs/engines.md``.
"""

from ._logs import RotatingLogWriter, follow_log, log_tail, log_tail_lines
from ._supervisor import Supervisor
from ._types import ProcessState, ProcessStatus, RestartPolicy

__all__ = [
    "ProcessState",
    "ProcessStatus",
    "RestartPolicy",
    "RotatingLogWriter",
    "Supervisor",
    "follow_log",
    "log_tail",
    "log_tail_lines",
]
