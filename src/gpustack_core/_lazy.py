"""Public names imported on first use (PEP 562), for the package's ``__init__`` modules.

A package's ``__init__`` maps each public name to the submodule that defines it and takes its
module ``__getattr__`` and ``__dir__`` from :func:`lazy_exports`; it keeps the real imports under
``if TYPE_CHECKING:``, so that type checkers see the names. ``import gpustack_core`` runs on the
CLI's start-up path: this module imports :mod:`importlib` only, besides ``collections.abc`` and
``typing``, which the packages' own ``from typing import ...`` loads anyway.
"""

import importlib
from collections.abc import Callable, Collection, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    module_name: str, mapping: Mapping[str, str], public: Collection[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of the package ``module_name``.

    ``mapping``: public name -> the module that defines it, relative to ``module_name`` (e.g.
    ``".types"``). ``public``: what ``dir()`` lists, sorted (the package's ``__all__``). A name is
    looked up in its module on every access (:func:`importlib.import_module` imports the module
    once); a name not in ``mapping`` raises :class:`AttributeError`. Nothing is cached here.

    Example, after the package's ``__all__``::

        __getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
    """

    def __getattr__(name: str) -> Any:
        module = mapping.get(name)
        if module is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module, module_name), name)

    def __dir__() -> list[str]:
        return sorted(public)

    return __getattr__, __dir__
