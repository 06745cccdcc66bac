"""Interfaces that plugins implement: one class per area, registered through the hooks."""

from .accelerator import Accelerator
from .engine import Engine
from .policy import SchedulerPolicy
from .source import ModelSource, ProgressCallback

__all__ = ["Accelerator", "Engine", "ModelSource", "ProgressCallback", "SchedulerPolicy"]
