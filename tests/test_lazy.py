"""The packages' names imported on first use (PEP 562, ``gpustack_core._lazy``): each public name
resolves from the module its map names, ``dir()`` lists ``__all__``, and an unknown name fails."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

from gpustack_core._lazy import lazy_exports

PACKAGES = ("gpustack_core", "gpustack_core.types", "gpustack_core.scheduler")


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_resolves_from_the_module_its_map_names(name: str) -> None:
    package = importlib.import_module(name)
    lazy: dict[str, str] = package._LAZY
    assert set(lazy) == set(package.__all__) - {"__version__"}
    for attr, module in lazy.items():
        assert getattr(package, attr) is getattr(importlib.import_module(module, name), attr)
    assert dir(package) == sorted(package.__all__)
    with pytest.raises(AttributeError, match=re.escape(f"module {name!r} has no attribute 'missing'")):
        package.missing  # noqa: B018


def test_a_submodule_is_imported_on_first_use_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "lazy_probe_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from gpustack_core._lazy import lazy_exports\n"
        "_LAZY = {'VALUE': '._impl'}\n"
        "__all__ = ['VALUE']\n"
        "__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)\n"
    )
    (package / "_impl.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        probe = importlib.import_module("lazy_probe_pkg")
        assert dir(probe) == ["VALUE"]
        assert "lazy_probe_pkg._impl" not in sys.modules
        assert probe.VALUE == 42
        assert "lazy_probe_pkg._impl" in sys.modules
        missing = re.escape("module 'lazy_probe_pkg' has no attribute 'OTHER'")
        with pytest.raises(AttributeError, match=missing):
            probe.OTHER  # noqa: B018
    finally:
        sys.modules.pop("lazy_probe_pkg._impl", None)
        sys.modules.pop("lazy_probe_pkg", None)


def test_lazy_exports_looks_the_name_up_in_its_module_and_lists_public_sorted() -> None:
    getattr_, dir_ = lazy_exports("json", {"JSONDecoder": ".decoder"}, ["b", "a"])
    assert getattr_("JSONDecoder") is importlib.import_module("json.decoder").JSONDecoder
    assert dir_() == ["a", "b"]
