"""Test support shipped with gpustack-core: conformance suites for plugin authors, helpers,
generated models and fixtures."""

__all__: list[str] = []
