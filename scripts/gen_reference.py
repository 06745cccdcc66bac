"""Generate docs/reference/plugin-contract.md from the hook specs and interface docstrings.

``python scripts/gen_reference.py`` writes the file; ``--check`` fails if the committed copy is stale.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from pydantic import BaseModel

from gpustack_core import hookspecs, types
from gpustack_core.plugins import AREAS

OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "reference" / "plugin-contract.md"


def _signature(obj: object, name: str) -> str:
    try:
        sig = str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        sig = "(...)"
    return f"{name}{sig}"


def _doc(obj: object) -> str:
    return inspect.cleandoc(inspect.getdoc(obj) or "(undocumented)")


def interface_methods(cls: type) -> list[str]:
    """Public methods a plugin implements or may override, in definition order."""
    return [
        name for name, value in vars(cls).items() if not name.startswith("_") and inspect.isfunction(value)
    ]


def render() -> str:
    """The whole reference page as Markdown."""
    out: list[str] = [
        "# Plugin contract reference",
        "",
        "Generated from the docstrings by `scripts/gen_reference.py` (`nox -s docs` checks it is current).",
        "Do not edit by hand.",
        "",
        "## Hooks",
        "",
        _doc(hookspecs),
        "",
    ]
    for spec in AREAS:
        hook = getattr(hookspecs, spec.hook)
        cls = spec.interface
        out += [
            f"### Area `{spec.area}`",
            "",
            f"Entry-point group: `{spec.group}`",
            "",
            f"#### hook `{spec.hook}`",
            "",
            "```python",
            _signature(hook, spec.hook),
            "```",
            "",
            _doc(hook),
            "",
            f"#### interface `{cls.__module__.rsplit('.', 1)[0]}.{cls.__qualname__}`",
            "",
            _doc(cls),
            "",
        ]
        for attr in ("name", "vendor", "owned_flags", "weight"):
            if attr in vars(cls):
                out.append(f"- class attribute `{attr}` (default `{vars(cls)[attr]!r}`)")
        out.append("")
        for method in interface_methods(cls):
            func = vars(cls)[method]
            abstract = (
                " (abstract: must be implemented)" if getattr(func, "__isabstractmethod__", False) else ""
            )
            out += [
                f"##### `{cls.__qualname__}.{method}`{abstract}",
                "",
                "```python",
                _signature(func, method),
                "```",
                "",
                _doc(func),
                "",
            ]
    out += ["## Value types", "", _doc(types), ""]
    for name in types.__all__:
        obj = getattr(types, name)
        if not (inspect.isclass(obj) and issubclass(obj, BaseModel)) or name == "ValueModel":
            continue
        out += [
            f"### `{name}`",
            "",
            _doc(obj),
            "",
            "| field | type | default | description |",
            "|---|---|---|---|",
        ]
        for field_name, field in obj.model_fields.items():
            annotation = getattr(field.annotation, "__name__", None) or str(field.annotation)
            annotation = annotation.replace("typing.", "").replace("|", "\\|")
            default = (
                "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
            )
            default = default.replace("|", "\\|")
            out.append(f"| `{field_name}` | `{annotation}` | `{default}` | {field.description or ''} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str]) -> int:
    """Write or check the reference page; returns a process exit status."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed page is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is stale: run `python scripts/gen_reference.py`", file=sys.stderr)
            return 1
        print(f"{OUTPUT} is current")
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
