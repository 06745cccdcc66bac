"""Shared engine helpers: owned-flag refusal, flag extraction, tiny GGUF models."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf import GGUFReader

from gpustack_core.engines import commands_of, emitted_flags, refuse_owned_flags, unknown_flags
from gpustack_core.errors import EngineArgumentError
from gpustack_core.testing.gguf_models import CHATML_TEMPLATE, TinyLlamaSpec, write_llama_gguf

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
    spec = TinyLlamaSpec(seed=7, pooling="mean")
    path = write_llama_gguf(tmp_path / "m" / "tiny.gguf", spec)
    reader = GGUFReader(path)
    params = sum(int(t.n_elements) for t in reader.tensors)
    assert params == spec.n_params
    assert 100_000 < params < 200_000
    fields = reader.fields
    assert bytes(fields["general.architecture"].parts[-1]).decode() == "llama"
    assert bytes(fields["tokenizer.ggml.model"].parts[-1]).decode() == "llama"
    tokens = [bytes(fields["tokenizer.ggml.tokens"].parts[i]) for i in fields["tokenizer.ggml.tokens"].data]
    assert len(tokens) == spec.n_vocab == 512
    assert tokens[:3] == [b"<unk>", b"<s>", b"</s>"]
    assert tokens[3:259] == [f"<0x{b:02X}>".encode() for b in range(256)]
    assert "\u2581".encode() in tokens
    assert len(set(tokens)) == len(tokens), "no duplicate pieces"
    assert int(fields["llama.pooling_type"].parts[-1][0]) == 1  # mean
    assert bytes(fields["tokenizer.chat_template"].parts[-1]).decode() == CHATML_TEMPLATE
    assert not list(tmp_path.glob("m/*.partial")), "no temporary file left behind"
    again = write_llama_gguf(tmp_path / "again.gguf", spec)
    assert again.read_bytes() == path.read_bytes(), "same seed, same file"
    plain = GGUFReader(write_llama_gguf(tmp_path / "plain.gguf", TinyLlamaSpec(chat_template=None, name="x")))
    assert "llama.pooling_type" not in plain.fields
    assert "tokenizer.chat_template" not in plain.fields
    assert bytes(plain.fields["general.name"].parts[-1]).decode() == "x"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (TinyLlamaSpec(n_embd=30, n_head=4), "multiple of n_head"),
        (TinyLlamaSpec(pooling="max"), "pooling 'max'"),
        (TinyLlamaSpec(n_vocab=259), "n_vocab 259 must be at least 260"),
    ],
)
def test_inconsistent_tiny_gguf_specs_are_refused(tmp_path: Path, spec: TinyLlamaSpec, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_llama_gguf(tmp_path / "bad.gguf", spec)
    assert not list(tmp_path.iterdir()), "nothing written for a refused spec"
