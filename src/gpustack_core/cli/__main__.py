"""``python -m gpustack_core.cli``: the same as the ``gpustack-core`` command."""

from .app import main

main()
