"""Models, before any engine sees them: what the source plugins share.

::

    api.py            resolve_model / download_model: a reference through its source plugin
    remote_source.py  RemoteModelSource: the base of hub sources (listing, headers by range requests)
    cache.py          ModelCache: the shared, locked, resumable, verified download cache
    gguf_header.py    GGUF headers: parsed from the first bytes of a file, local or remote
    formats.py        model formats from file names and headers (GGUF, safetensors)
    selection.py      which files an engine needs (a GGUF quantization, a glob, the weights)

Import the module you need (``from gpustack_core.models.api import resolve_model``); this package
imports nothing itself, so using one piece never loads the others.
"""
