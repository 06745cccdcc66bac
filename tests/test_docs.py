"""Docs stay honest: every hook and interface method is documented, in the reference, and tested."""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

from gpustack_core import hookspecs
from gpustack_core.plugins import AREAS

REPO = Path(__file__).resolve().parent.parent


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", REPO / "scripts" / "gen_reference.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _load_generator()
HOOKS = [spec.hook for spec in AREAS]
METHODS = [(spec.interface, name) for spec in AREAS for name in GEN.interface_methods(spec.interface)]


def _test_sources() -> str:
    files = [*REPO.glob("tests/**/*.py"), *REPO.glob("plugins/*/*/tests/**/*.py")]
    return "\n".join(p.read_text() for p in files if p.name != "test_docs.py")


def test_every_hook_is_a_spec_and_nothing_else_is() -> None:
    specs = sorted(name for name, value in vars(hookspecs).items() if hasattr(value, "gpustack_core_spec"))
    assert specs == sorted(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert "Parameters:" in doc
    assert "Returns:" in doc


@pytest.mark.parametrize(("cls", "method"), METHODS, ids=lambda v: getattr(v, "__name__", v))
def test_interface_method_is_documented(cls: type, method: str) -> None:
    doc = inspect.getdoc(vars(cls)[method]) or ""
    assert len(doc) > 20, f"{cls.__name__}.{method} needs a docstring"
    sig = inspect.signature(vars(cls)[method])
    if len(sig.parameters) > 1:
        assert "Parameters:" in doc, f"{cls.__name__}.{method} must document its parameters"


def test_reference_page_is_generated_from_current_docstrings() -> None:
    committed = (REPO / "docs" / "reference" / "plugin-contract.md").read_text()
    assert committed == GEN.render(), "run: python scripts/gen_reference.py"
    for hook in HOOKS:
        assert f"hook `{hook}`" in committed
    for cls, method in METHODS:
        assert f"`{cls.__qualname__}.{method}`" in committed


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_implemented_in_a_test_or_plugin(hook: str) -> None:
    sources = _test_sources() + "\n".join(p.read_text() for p in REPO.glob("plugins/*/*/src/**/*.py"))
    assert re.search(rf"def {hook}\(", sources), f"no test or plugin implements {hook}"


@pytest.mark.parametrize(("cls", "method"), METHODS, ids=lambda v: getattr(v, "__name__", v))
def test_interface_method_is_exercised_by_a_test(cls: type, method: str) -> None:
    assert re.search(rf"\.{method}\(", _test_sources()), f"no test calls {cls.__name__}.{method}"
