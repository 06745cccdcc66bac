"""Test support shipped with gpustack-core: conformance suites for plugin authors and helpers."""
