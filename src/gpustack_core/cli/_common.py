"""Helpers shared by command modules: the plugin host, JSON output and console."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from ..plugins import PluginHost

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["console", "make_host", "print_json"]


def make_host() -> PluginHost:
    """The plugin host a CLI command uses (allow/deny lists from the environment)."""
    return PluginHost()


#: Width of output that is not a terminal (a pipe, a file): wide enough that tables never wrap.
PIPE_WIDTH = 1000


def console(stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr), no soft wrapping of long messages; when the output is
    not a terminal, tables are not wrapped at 80 columns either."""
    from rich.console import Console  # imported on use: JSON output does not need rich

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return Console(stderr=stderr, soft_wrap=True, width=width)


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    print(json.dumps(data, indent=2, sort_keys=False, default=str))
