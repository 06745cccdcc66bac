"""Shared engine helpers: owned-flag refusal, flag extraction, tiny GGUF models."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf import GGUFReader

from gpustack_core.engines import commands_of, emitted_flags, refuse_owned_flags, unknown_flags
from gpustack_core.errors import EngineArgumentError
from gpustack_core.testing.tiny_gguf import TinyLlamaShape, write_tiny_llama

OWNED = {"--port", "-m", "--model"}


@pytest.mark.parametrize("args", [("--port", "1"), ("--port=1",), ("-m", "x"), ("--model=x",)])
def test_owned_flags_are_refused_in_every_form(args: tuple[str, ...]) -> None:
    flag = args[0].split("=")[0]
    with pytest.raises(EngineArgumentError, match=f"sets {flag} itself") as caught:
        refuse_owned_flags("demo", ("--ok", *args), OWNED)
    assert "remove" in str(caught.value)


def test_other_flags_values_and_negative_numbers_pass_through() -> None:
    args = ("--seed", "-1", "--temp", "-0.5", "--new-flag=3", "positional", "-")
    assert refuse_owned_flags("demo", args, OWNED) == args
    assert emitted_flags(args) == ["--seed", "--temp", "--new-flag"]
    assert unknown_flags(args, {"--seed", "--temp"}) == ["--new-flag"]


def test_non_string_arguments_are_refused() -> None:
    with pytest.raises(EngineArgumentError, match="must be strings"):
        refuse_owned_flags("demo", ("--x", 3), OWNED)  # type: ignore[arg-type]


def test_commands_of_a_shell_chain() -> None:
    argv = (
        "/bin/sh",
        "-c",
        "/v/bin/ray start --head --port 6379 && exec /v/bin/vllm serve '/m dir' --port 1",
    )
    assert commands_of(argv) == [
        ("/v/bin/ray", "start", "--head", "--port", "6379"),
        ("/v/bin/vllm", "serve", "/m dir", "--port", "1"),
    ]
    assert commands_of(("a", "--b")) == [("a", "--b")]


def test_tiny_gguf_is_a_small_complete_llama(tmp_path: Path) -> None:
    path = write_tiny_llama(tmp_path / "m" / "tiny.gguf", seed=7, pooling="mean")
    reader = GGUFReader(path)
    params = sum(int(t.n_elements) for t in reader.tensors)
    assert 100_000 < params < 150_000
    fields = reader.fields
    assert bytes(fields["general.architecture"].parts[-1]).decode() == "llama"
    assert bytes(fields["tokenizer.ggml.model"].parts[-1]).decode() == "llama"
    assert len(fields["tokenizer.ggml.tokens"].data) == 260
    assert "llama.pooling_type" in fields
    assert not list(tmp_path.glob("m/.*.tmp")), "no temporary file left behind"
    again = write_tiny_llama(tmp_path / "again.gguf", seed=7, pooling="mean")
    assert again.read_bytes() == path.read_bytes(), "same seed, same file"
    with pytest.raises(ValueError, match="multiple of n_head"):
        TinyLlamaShape(n_embd=30, n_head=4)
