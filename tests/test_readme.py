"""The README's embedding example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf

README = Path(__file__).resolve().parent.parent / "README.md"


def _embedding_example() -> str:
    section = README.read_text().split("## Embedding", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "README's Embedding section has no python example"
    return match.group(1)


def test_embedding_example_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], clean_plugin_env: None
) -> None:
    model = write_llama_gguf(tmp_path / "tiny-Q8_0.gguf", TinyLlamaSpec())
    exec(compile(_embedding_example(), str(README), "exec"), {"model_path": str(model)})
    output = capsys.readouterr().out
    assert "cpu:0" in output
    assert f"gguf {model.stat().st_size} ['tiny-Q8_0.gguf']" in output
    assert "placed: cpu_only" in output
