"""``gpustack-core estimate``: table and JSON output for local GGUF and safetensors models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpustack_core.cli.app import build_app
from gpustack_core.cli.estimate_cmd import parse_size
from gpustack_core.estimate import EstimateOptions, GGUFEstimator, read_gguf_file

FIXTURES = Path(__file__).parent / "fixtures"


def test_json_for_a_local_gguf(tiny_gguf: Path, clean_plugin_env: None) -> None:
    result = CliRunner().invoke(build_app(), ["estimate", str(tiny_gguf), "--ctx-size", "1024", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["model"] == f"local:{tiny_gguf}"
    strategies = [c["strategy"] for c in data["claims"]]
    assert strategies == ["single_device", "cpu_only"]
    cpu = data["claims"][-1]
    expected = GGUFEstimator(read_gguf_file(tiny_gguf), EstimateOptions(ctx_size=1024)).cpu_only()
    assert cpu["host_memory_bytes"] == expected.host_memory_bytes
    assert sum(i["bytes"] for i in cpu["host_items"]) == cpu["host_memory_bytes"]


def test_table_with_device_memory_and_local_ref_syntax(small_q8_gguf: Path, clean_plugin_env: None) -> None:
    est = GGUFEstimator(read_gguf_file(small_q8_gguf), EstimateOptions(ctx_size=4096, ubatch_size=256))
    each = int(est.full_offload().devices[0].memory_bytes * 0.8)  # one is too small, two hold it
    args = [
        "estimate",
        f"local:{small_q8_gguf}",
        "-c",
        "4096",
        "--device-memory",
        f"{each},{each}",
        "-ub",
        "256",
    ]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    assert "option 1: multi_device" in result.output
    assert "KV cache f16/f16 x 4096 tokens" in result.output
    assert "compute buffer (ubatch 256, ctx 4096" in result.output


def test_safetensors_directory(tmp_path: Path, clean_plugin_env: None) -> None:
    model = tmp_path / "llama3"
    model.mkdir()
    shutil.copy(FIXTURES / "Meta-Llama-3-8B.config.json", model / "config.json")
    (model / "model.safetensors").write_bytes(
        _safetensors({"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}, 8)
    )
    args = ["estimate", str(model), "--max-model-len", "8192", "--gpus", "2", "--json"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [c["tensor_parallel_size"] for c in data["claims"]] == [1, 2]
    assert "valid tensor-parallel sizes: 1, 2, 4, 8, 16, 32" in " ".join(data["notes"])


def test_sglang_semantics_and_kv_tokens_on_the_given_device(tmp_path: Path, clean_plugin_env: None) -> None:
    model = tmp_path / "llama3"
    model.mkdir()
    shutil.copy(FIXTURES / "Meta-Llama-3-8B.config.json", model / "config.json")
    (model / "model.safetensors").write_bytes(
        _safetensors({"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}, 8)
    )
    base = ["estimate", str(model), "--max-model-len", "8192", "--device-memory", "80GiB", "--json"]
    runner = CliRunner()
    sglang = runner.invoke(build_app(), [*base, "--engine", "sglang", "--mem-fraction-static", "0.8"])
    assert sglang.exit_code == 0, sglang.output
    claim = json.loads(sglang.output)["claims"][0]
    assert not any(i["label"].startswith("activation") for i in claim["devices"][0]["items"])
    assert any("mem_fraction_static=0.8" in n for n in claim["notes"])
    assert any("KV cache on the given devices" in n and "tokens" in n for n in claim["notes"])
    bad = runner.invoke(build_app(), [*base, "--engine", "tgi"])
    assert bad.exit_code == 2
    assert "engine" in bad.output


def _safetensors(header: dict[str, object], n_data: int) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + b"\0" * n_data


def test_bad_input_gets_a_clear_error(tmp_path: Path, clean_plugin_env: None) -> None:
    runner = CliRunner()
    missing = runner.invoke(build_app(), ["estimate", str(tmp_path / "nope.gguf")])
    assert missing.exit_code == 1
    assert "does not exist" in missing.output
    bad_cache = runner.invoke(build_app(), ["estimate", str(tmp_path), "--cache-type-k", "q3"])
    assert bad_cache.exit_code == 2
    assert "not a KV cache type" in bad_cache.output
    bad_size = runner.invoke(build_app(), ["estimate", str(tmp_path), "--device-memory", "lots"])
    assert bad_size.exit_code == 2
    assert "not a size" in bad_size.output


@pytest.mark.parametrize(
    ("text", "expected"),
    [("24GiB", 24 * 2**30), ("80GB", 80 * 10**9), ("512 MiB", 512 * 2**20), ("1000", 1000)],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_hub_reference_goes_through_models_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_plugin_env: None
) -> None:
    """A hub reference is resolved by gpustack_core.models.api (a stand-in here) and estimated."""
    import sys
    from types import SimpleNamespace

    from gpustack_core.types import ModelFormat, ModelMetadata, ModelRef

    seen: list[str] = []

    def resolve_model(host: object, ref: ModelRef, options: object) -> ModelMetadata:
        seen.append(str(ref))
        config = json.loads((FIXTURES / "Qwen2.5-7B-Instruct.config.json").read_text())
        return ModelMetadata(ref=ref, format=ModelFormat.SAFETENSORS, files=(), config=config)

    fake = SimpleNamespace(resolve_model=resolve_model, default_cache_dir=lambda: str(tmp_path))
    monkeypatch.setitem(sys.modules, "gpustack_core.models.api", fake)
    args = [
        "estimate",
        "huggingface:Qwen/Qwen2.5-7B-Instruct",
        "--max-model-len",
        "4096",
        "--gpus",
        "8",
        "--json",
    ]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    assert seen == ["huggingface:Qwen/Qwen2.5-7B-Instruct"]
    data = json.loads(result.output)
    assert [c["tensor_parallel_size"] for c in data["claims"]] == [1, 2, 4]  # 28 heads / 4 KV heads
