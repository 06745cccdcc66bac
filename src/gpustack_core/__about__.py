"""Version of the gpustack-core distribution."""

__version__ = "0.1.0.dev0"
