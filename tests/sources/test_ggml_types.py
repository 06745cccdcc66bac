"""The copied GGML/GGUF type tables equal those of the installed ``gguf`` package."""

from __future__ import annotations

import subprocess
import sys

import gguf

from gpustack_core.models import ggml_types


def test_tables_match_gguf() -> None:
    assert {t.name: int(t) for t in ggml_types.GGUFValueType} == {t.name: int(t) for t in gguf.GGUFValueType}
    ours = {t.name: int(t) for t in ggml_types.GGMLQuantizationType}
    assert ours == {t.name: int(t) for t in gguf.GGMLQuantizationType}
    assert {t.name: v for t, v in ggml_types.GGML_QUANT_SIZES.items()} == {
        t.name: v for t, v in gguf.GGML_QUANT_SIZES.items()
    }


def test_reading_gguf_headers_does_not_import_numpy() -> None:
    code = (
        "import sys, gpustack_core.models.gguf_header, gpustack_core.estimate.gguf_info; "
        "print('numpy' in sys.modules, 'gguf' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
