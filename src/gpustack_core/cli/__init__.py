"""The ``gpustack-core`` command line. Each command group lives in its own module."""

from .app import build_app, main

__all__ = ["build_app", "main"]
