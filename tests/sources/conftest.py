"""Fixtures: fake hubs (real HTTP servers on 127.0.0.1) with generated models, and source options."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_hubs import HubServer, HubState, huggingface_app, modelscope_app, ollama_app
from model_files import make_gguf, make_safetensors

from gpustack_core.plugins import PluginHost
from gpustack_core.types import SourceOptions

GGUF_Q4 = make_gguf(file_type=15, n_embd=512)  # ~1.3 MB: big enough to cut and throttle
GGUF_Q8 = make_gguf(file_type=7, n_embd=128)
MMPROJ = make_gguf(n_embd=64, n_layers=1, vocab=10)
SAFETENSORS = make_safetensors(
    {"model.embed_tokens.weight": ("BF16", (64, 32)), "lm_head.weight": ("F32", (64, 32))}
)
CONFIG = b'{"architectures": ["LlamaForCausalLM"], "hidden_size": 32, "num_hidden_layers": 2}'


def gguf_repo() -> dict[str, bytes]:
    """A GGUF repository: two quantizations, a projector, a README."""
    return {
        "tiny-Q4_K_M.gguf": GGUF_Q4,
        "tiny-Q8_0.gguf": GGUF_Q8,
        "mmproj-tiny-f16.gguf": MMPROJ,
        "README.md": b"# tiny\n",
    }


def safetensors_repo() -> dict[str, bytes]:
    """A safetensors repository with config, tokenizer and an unrelated file."""
    return {
        "model.safetensors": SAFETENSORS,
        "config.json": CONFIG,
        "tokenizer.json": b'{"version": "1.0"}',
        "README.md": b"# st\n",
        "onnx/model.onnx": b"onnx",
    }


@pytest.fixture
def host() -> PluginHost:
    """A plugin host with every installed source plugin."""
    return PluginHost()


@pytest.fixture
def hf_hub() -> Iterator[tuple[HubState, HubServer]]:
    """A fake Hugging Face Hub with ``org/tiny-gguf``, ``org/tiny-st`` and gated ``org/gated``."""
    state = HubState(
        repos={"org/tiny-gguf": gguf_repo(), "org/tiny-st": safetensors_repo(), "org/gated": gguf_repo()}
    )
    state.gated.add("org/gated")
    with HubServer(huggingface_app(state)) as server:
        yield state, server


@pytest.fixture
def ms_hub() -> Iterator[tuple[HubState, HubServer]]:
    """A fake ModelScope with ``owner/tiny-gguf``, ``owner/tiny-st`` and private ``owner/private``."""
    state = HubState(
        repos={
            "owner/tiny-gguf": gguf_repo(),
            "owner/tiny-st": safetensors_repo(),
            "owner/private": gguf_repo(),
        }
    )
    state.gated.add("owner/private")
    with HubServer(modelscope_app(state)) as server:
        yield state, server


@pytest.fixture
def ollama_hub() -> Iterator[tuple[HubState, HubServer]]:
    """A fake Ollama registry with ``library/tiny:1b`` (model, projector, template, params)."""
    state = HubState(
        repos={
            "library/tiny:1b": {
                "model": GGUF_Q4,
                "projector": MMPROJ,
                "template": b"{{ .Prompt }}",
                "params": b'{"stop": ["<|end|>"]}',
            }
        }
    )
    with HubServer(ollama_app(state)) as server:
        yield state, server


@pytest.fixture
def options_for(tmp_path: Path):  # type: ignore[no-untyped-def]
    """``options_for(server, **overrides)`` -> SourceOptions with a per-test cache directory."""

    def make(server: HubServer, **overrides: object) -> SourceOptions:
        values: dict[str, object] = {
            "cache_dir": str(tmp_path / "cache"),
            "endpoint": server.url,
            "timeout_s": 10,
        }
        values.update(overrides)
        return SourceOptions.model_validate(values)

    return make
