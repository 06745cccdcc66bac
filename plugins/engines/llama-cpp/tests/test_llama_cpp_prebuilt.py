"""The prebuilt runtime (xllamacpp) without starting it: version choice, launch spec, refusals, and
the server script's command line (the slow suites run it for real)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from gpustack_engine_llama_cpp import (
    NATIVE_DEFAULT_VERSION,
    PREBUILT_DEFAULT_VERSION,
    LlamaCppEngine,
    is_prebuilt,
)
from gpustack_engine_llama_cpp._prebuilt import SERVER_SCRIPT
from gpustack_engine_llama_cpp._prebuilt_server import SPECULATIVE_TYPES, build_parser, make_params

from gpustack_core.engines import record_installation
from gpustack_core.errors import EngineArgumentError, EngineNotInstalledError
from gpustack_core.testing.engine_requests import make_launch_request
from gpustack_core.types import (
    EngineInstallation,
    EngineOptions,
    LaunchRequest,
    ModelCategory,
    PerformancePreset,
    SpeculativeDecoding,
)


def _fake_install(options: EngineOptions, version: str, program: str) -> EngineInstallation:
    """A recorded installation whose program exists (what ``install_version`` leaves behind)."""
    directory = Path(options.engines_dir) / "llama.cpp" / version
    (directory / "bin").mkdir(parents=True)
    (directory / "bin" / program).write_text("")
    installation = EngineInstallation(
        engine="llama.cpp",
        version=version,
        executable=str(directory / "bin" / program),
        prefix=str(directory),
    )
    record_installation(installation, directory)
    return installation


def test_default_is_prebuilt_and_a_native_build_is_preferred_once_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no llama-server on PATH
    engine = LlamaCppEngine()
    options = EngineOptions(engines_dir=str(tmp_path))
    assert engine.default_version() == PREBUILT_DEFAULT_VERSION
    assert is_prebuilt(PREBUILT_DEFAULT_VERSION)
    assert not is_prebuilt(NATIVE_DEFAULT_VERSION)
    assert engine.locate(None, options) is None
    prebuilt = _fake_install(options, PREBUILT_DEFAULT_VERSION, "python")
    assert engine.locate(None, options) == prebuilt
    native = _fake_install(options, "0.3.20", "llama-server")
    assert engine.locate(None, options) == native  # any native build beats the prebuilt runtime
    default_native = _fake_install(options, NATIVE_DEFAULT_VERSION, "llama-server")
    assert engine.locate(None, options) == default_native
    assert engine.locate(PREBUILT_DEFAULT_VERSION, options) == prebuilt  # a pinned version wins


def _request(**kwargs: Any) -> LaunchRequest:
    defaults: dict[str, Any] = {"vendor": "cpu", "context_length": 512}
    defaults.update(kwargs)
    return make_launch_request(
        "llama.cpp", executable="/e/llama.cpp/v/bin/python", version=PREBUILT_DEFAULT_VERSION, **defaults
    )


def test_prebuilt_launch_spec_runs_the_server_script_with_llama_server_flags() -> None:
    spec = LlamaCppEngine().launch_spec(_request(category=ModelCategory.EMBEDDING))
    assert spec.argv[:2] == ("/e/llama.cpp/v/bin/python", str(SERVER_SCRIPT))
    assert "--embeddings" in spec.argv
    assert spec.argv[spec.argv.index("--n-gpu-layers") + 1] == "0"
    parsed = build_parser().parse_args(list(spec.argv[2:]))  # every flag the plugin emits is taken
    assert parsed.embeddings
    assert parsed.n_ctx == 512


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"vendor": "nvidia", "device_count": 1}, "CPU only"),
        ({"vendor": "cpu", "node_count": 2, "node_rank": 1, "head_address": "10.0.0.1:1"}, "no RPC"),
    ],
)
def test_prebuilt_refuses_gpus_and_rpc_with_the_way_out(kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(EngineNotInstalledError, match=reason) as caught:
        LlamaCppEngine().launch_spec(_request(**kwargs))
    assert f"engines install llama.cpp {NATIVE_DEFAULT_VERSION}" in str(caught.value)


def test_embeddings_flag_points_to_the_category() -> None:
    with pytest.raises(EngineArgumentError, match="--category embedding"):
        LlamaCppEngine().validate_extra_args(("--embeddings",))
    with pytest.raises(EngineArgumentError, match="--category rerank"):
        LlamaCppEngine().validate_extra_args(("--reranking=true",))


def test_server_script_refuses_a_flag_it_does_not_take() -> None:
    result = subprocess.run(
        [sys.executable, str(SERVER_SCRIPT), "--model", "m.gguf", "--port", "1", "--flash-attn", "on"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "unrecognized arguments: --flash-attn on" in result.stderr
    assert "native build" in result.stderr


def test_server_script_takes_a_pooling_type() -> None:
    from gpustack_engine_llama_cpp._prebuilt_server import make_params

    class _Params(SimpleNamespace):
        def __init__(self) -> None:
            super().__init__(model=SimpleNamespace(), cpuparams=SimpleNamespace(), sampling=SimpleNamespace())
            self.cpuparams_batch = SimpleNamespace()

    pooling = SimpleNamespace(LLAMA_POOLING_TYPE_MEAN="mean", LLAMA_POOLING_TYPE_RANK="rank")
    xllamacpp = SimpleNamespace(CommonParams=_Params, llama_pooling_type=pooling)
    args = build_parser().parse_args(["-m", "m.gguf", "--port", "1", "--embeddings", "--pooling", "mean"])
    params = make_params(xllamacpp, args)
    assert (params.embedding, params.pooling_type) == (True, "mean")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["-m", "m.gguf", "--port", "1", "--pooling", "max"])


class _Struct(SimpleNamespace):
    """Stands in for one of xllamacpp's bound structs."""


def _fake_xllamacpp() -> SimpleNamespace:
    """The part of ``xllamacpp`` that ``make_params`` touches, with llama.cpp's struct layout."""

    class _Params(_Struct):
        def __init__(self) -> None:
            super().__init__(
                model=_Struct(), cpuparams=_Struct(), cpuparams_batch=_Struct(), sampling=_Struct()
            )
            self.speculative = _Struct(
                types=["NONE"],
                draft=_Struct(mparams=_Struct(path=""), n_max=3, n_min=0, p_min=0.0),
                ngram_simple=_Struct(size_m=48, size_n=12),
            )

    names = [t.upper().replace("-", "_") for t in SPECULATIVE_TYPES]
    kinds = SimpleNamespace(**{f"COMMON_SPECULATIVE_TYPE_{n}": n for n in names})
    return SimpleNamespace(CommonParams=_Params, common_speculative_type=kinds)


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        (
            SpeculativeDecoding(method="draft_model", draft_model="/m/draft.gguf", num_speculative_tokens=5),
            {"types": ["DRAFT_SIMPLE"], "path": "/m/draft.gguf", "n_max": 5, "size_m": 48},
        ),
        (
            SpeculativeDecoding(method="ngram", num_speculative_tokens=6),
            {"types": ["NGRAM_SIMPLE"], "path": "", "n_max": 3, "size_m": 6},
        ),
    ],
)
def test_prebuilt_runtime_maps_speculative_presets(
    preset: SpeculativeDecoding, expected: dict[str, Any]
) -> None:
    """The wheel binds llama.cpp's ``common_params_speculative``: the preset's flags reach it."""
    request = _request(performance=PerformancePreset(speculative=preset))
    spec = LlamaCppEngine().launch_spec(request)
    assert "--spec-type" in spec.argv
    params = make_params(_fake_xllamacpp(), build_parser().parse_args(list(spec.argv[2:])))
    speculative = params.speculative
    got = {
        "types": speculative.types,
        "path": speculative.draft.mparams.path,
        "n_max": speculative.draft.n_max,
        "size_m": speculative.ngram_simple.size_m,
    }
    assert got == expected


def test_server_script_refuses_an_unknown_speculative_type() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["-m", "m.gguf", "--port", "1", "--spec-type", "draft-simple,medusa"])
    args = build_parser().parse_args(["-m", "m.gguf", "--port", "1", "--spec-type", "draft-simple,ngram-mod"])
    assert args.spec_type == ["draft-simple", "ngram-mod"]
