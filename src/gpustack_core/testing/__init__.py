"""Helpers for tests of gpustack-core and its plugins (generated models, fixtures)."""

__all__: list[str] = []
