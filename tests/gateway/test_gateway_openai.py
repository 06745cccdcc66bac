"""The official openai client against the gateway in front of fake engine processes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpustack_core.gateway import ModelEntry, Upstream

from .conftest import API_KEY, MODEL, FakeEngine, GatewayServer


@pytest.fixture
def client(gateway: GatewayServer, start_engine) -> Iterator[openai.OpenAI]:  # type: ignore[no-untyped-def]
    gateway.engines.append(start_engine("a"))
    gateway.add_instance(gateway.engines[0])
    c = openai.OpenAI(api_key=API_KEY, base_url=gateway.base_url + "/v1", max_retries=0, timeout=30)
    yield c
    c.close()


def _metrics(gateway: GatewayServer) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    text = httpx.get(gateway.base_url + "/metrics").text
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_chat_not_streamed(client: openai.OpenAI, gateway: GatewayServer) -> None:
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "one two three"}], extra_body={"fake_tokens": 5}
    )
    assert r.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"
    assert r.usage is not None
    assert r.usage.prompt_tokens == 4
    assert r.usage.completion_tokens == 5
    [rec] = gateway.usage.records
    assert (rec.user_id, rec.key_id, rec.model) == ("user-1", "key-1", MODEL)
    assert (rec.prompt_tokens, rec.completion_tokens, rec.requests) == (4, 5, 1)


def test_chat_streamed_usage_recorded_and_hidden(client: openai.OpenAI, gateway: GatewayServer) -> None:
    """The gateway asks the engine for usage; the client, which did not ask, never sees the chunk."""
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "a b"}], stream=True, extra_body={"fake_tokens": 6}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(f"tok{i} " for i in range(6))
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks), "the usage-only chunk must be filtered out"
    assert gateway.engines[0].stats()["last_body"]["stream_options"] == {"include_usage": True}  # type: ignore[index]
    [rec] = gateway.usage.records
    assert (rec.prompt_tokens, rec.completion_tokens) == (3, 6)


def test_chat_streamed_client_asks_for_usage(client: openai.OpenAI, gateway: GatewayServer) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"fake_tokens": 3},
    )
    chunks = list(stream)
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1
    assert usage[0].completion_tokens == 3
    assert gateway.usage.records[0].completion_tokens == 3


def test_completions_both_ways(client: openai.OpenAI, gateway: GatewayServer) -> None:
    r = client.completions.create(
        model=MODEL, prompt="once upon a time", max_tokens=4, extra_body={"fake_tokens": 4}
    )
    assert r.choices[0].text == "tok0 tok1 tok2 tok3"
    stream = client.completions.create(
        model=MODEL, prompt="hello", stream=True, extra_body={"fake_tokens": 2}
    )
    assert "".join(c.choices[0].text for c in stream if c.choices) == "tok0 tok1 "
    totals = gateway.usage.totals()
    assert len(totals) == 1
    assert (totals[0].prompt_tokens, totals[0].completion_tokens, totals[0].requests) == (5, 6, 2)


def _serves(gateway: GatewayServer, category: str) -> None:
    """Make MODEL a model of ``category`` (the gateway refuses routes its category does not serve)."""
    gateway.routes.add_model(ModelEntry(MODEL, "gpustack", 1_700_000_000, category))


def test_embeddings(client: openai.OpenAI, gateway: GatewayServer) -> None:
    _serves(gateway, "embedding")
    r = client.embeddings.create(model=MODEL, input=["alpha beta", "gamma"])
    assert [d.index for d in r.data] == [0, 1]
    assert r.data[1].embedding == [0.1, 0.2, 0.3, 1.0]
    assert gateway.usage.records[0].prompt_tokens == 3


def test_models_list(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["other-model", MODEL]
    assert client.models.retrieve(MODEL).owned_by == "gpustack"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_metrics_parse_and_count(client: openai.OpenAI, gateway: GatewayServer) -> None:
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "a b c"}])
    list(
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "a"}], stream=True)
    )
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="missing", messages=[{"role": "user", "content": "a"}])
    m = _metrics(gateway)
    assert m["gpustack_gateway_requests_total"][(("model", MODEL), ("status", "200"))] == 2
    assert m["gpustack_gateway_requests_total"][(("model", ""), ("status", "404"))] == 1
    assert m["gpustack_gateway_request_duration_seconds_count"][(("model", MODEL), ("status", "200"))] == 2
    assert m["gpustack_gateway_time_to_first_token_seconds_count"][(("model", MODEL),)] == 1
    assert m["gpustack_gateway_prompt_tokens_total"][(("model", MODEL),)] == 6
    assert m["gpustack_gateway_completion_tokens_total"][(("model", MODEL),)] == 16


def test_images_speech_rerank(client: openai.OpenAI, gateway: GatewayServer) -> None:
    _serves(gateway, "image")
    img = client.images.generate(model=MODEL, prompt="a cat")
    assert img.data is not None
    assert img.data[0].b64_json == "aGVsbG8="
    _serves(gateway, "text_to_speech")
    speech = client.audio.speech.create(
        model=MODEL, voice="alloy", input="hello", extra_body={"fake_tokens": 5}
    )
    audio = speech.read()
    assert audio == b"".join(bytes([i]) * 1024 for i in range(5))
    _serves(gateway, "rerank")
    r = httpx.post(
        gateway.base_url + "/v1/rerank",
        json={"model": MODEL, "query": "q", "documents": ["a b", "c"]},
        headers={"authorization": f"Bearer {API_KEY}"},
    )
    assert r.status_code == 200
    assert len(r.json()["results"]) == 2
    assert gateway.usage.records[-1].prompt_tokens == 4


def test_transcription_multipart(client: openai.OpenAI, gateway: GatewayServer) -> None:
    audio = bytes(range(256)) * 200  # 51,200 bytes, under the 64 KiB test limit
    _serves(gateway, "speech_to_text")
    r = client.audio.transcriptions.create(model=MODEL, file=("clip.wav", audio, "audio/wav"))
    assert r.text.endswith(f"bytes for {MODEL}")
    engine_bytes = int(r.text.split()[0])
    assert engine_bytes > len(audio)  # the whole upload (file + fields + multipart framing) arrived
    assert gateway.engines[0].stats()["requests"] == {"/v1/audio/transcriptions": 1}


def test_served_name_rewritten(gateway: GatewayServer, start_engine) -> None:  # type: ignore[no-untyped-def]
    e: FakeEngine = start_engine("b")
    gateway.routes.set_instance(MODEL, Upstream("b", e.base_url, "engine-internal-name", MODEL))
    with openai.OpenAI(api_key=API_KEY, base_url=gateway.base_url + "/v1", max_retries=0) as c:
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
        assert e.stats()["last_body"]["model"] == "engine-internal-name"  # type: ignore[index]
        _serves(gateway, "speech_to_text")
        r = c.audio.transcriptions.create(model=MODEL, file=("a.wav", b"RIFF" * 10, "audio/wav"))
        assert "for engine-internal-name" in r.text
    assert gateway.usage.records[0].model == MODEL
