"""OpenAI-style error answers: auth, unknown model, no running instance, limits, timeouts."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import openai
import pytest

from gpustack_core.gateway import Upstream

from .conftest import API_KEY, BODY_LIMIT, LIMITED_KEY, MODEL, NO_SCOPE_KEY, UPSTREAM_TIMEOUT_S, GatewayServer

CHAT = [{"role": "user", "content": "hi"}]


def _post(
    gateway: GatewayServer, body: Any = None, *, key: str | None = API_KEY, **kw: Any
) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    headers.update(kw.pop("headers", {}))
    if body is not None:
        kw["json"] = body
    return httpx.post(gateway.base_url + "/v1/chat/completions", headers=headers, timeout=30, **kw)


def _error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    if code is not None:
        assert err["code"] == code
    return dict(err)


def test_auth_errors(gateway: GatewayServer) -> None:
    _error(_post(gateway, {"model": MODEL, "messages": CHAT}, key=None), 401, "missing_api_key")
    _error(_post(gateway, {"model": MODEL, "messages": CHAT}, key="sk-wrong"), 401, "invalid_api_key")
    r = _post(gateway, {"model": MODEL}, key=None, headers={"authorization": "Basic abc"})
    _error(r, 401, "invalid_api_key")
    _error(_post(gateway, {"model": MODEL, "messages": CHAT}, key=NO_SCOPE_KEY), 403, "insufficient_scope")
    err = _error(
        _post(gateway, {"model": MODEL, "messages": CHAT}, key=LIMITED_KEY), 403, "model_not_allowed"
    )
    assert err["param"] == "model"
    r = httpx.get(gateway.base_url + "/v1/models", headers={"authorization": f"Bearer {LIMITED_KEY}"})
    assert [m["id"] for m in r.json()["data"]] == ["other-model"]
    with (
        openai.OpenAI(api_key="sk-wrong", base_url=gateway.base_url + "/v1", max_retries=0) as c,
        pytest.raises(openai.AuthenticationError),
    ):
        c.models.list()


def test_unknown_model_and_no_running_instance(gateway: GatewayServer) -> None:
    err = _error(_post(gateway, {"model": "no-such-model", "messages": CHAT}), 404, "model_not_found")
    assert "no-such-model" in err["message"]
    err = _error(_post(gateway, {"model": MODEL, "messages": CHAT}), 503, "no_running_instance")
    assert "none" in err["message"]
    gateway.routes.set_instance(MODEL, Upstream("inst-1", "http://127.0.0.1:9", MODEL, MODEL), "downloading")
    gateway.routes.set_instance(MODEL, Upstream("inst-2", "http://127.0.0.1:9", MODEL, MODEL), "error")
    err = _error(_post(gateway, {"model": MODEL, "messages": CHAT}), 503, "no_running_instance")
    assert "inst-1: downloading" in err["message"]
    assert "inst-2: error" in err["message"]


def test_malformed_bodies(gateway: GatewayServer) -> None:
    _error(_post(gateway, content=b"{not json", headers={"content-type": "application/json"}), 400)
    _error(_post(gateway, [1, 2]), 422)
    err = _error(_post(gateway, {"messages": CHAT}), 422)
    assert err["param"] == "model"
    _error(_post(gateway, {"model": 7}), 422)


def test_body_limit(gateway: GatewayServer, start_engine) -> None:  # type: ignore[no-untyped-def]
    gateway.add_instance(start_engine("a"))
    big = {"model": MODEL, "messages": [{"role": "user", "content": "x" * BODY_LIMIT}]}
    _error(_post(gateway, big), 413, "request_too_large")

    def chunked() -> Any:  # no Content-Length: the limit is enforced while reading
        yield b'{"model": "' + MODEL.encode() + b'", "pad": "'
        for _ in range(20):
            yield b"y" * 8192
        yield b'"}'

    _error(_post(gateway, content=chunked(), headers={"content-type": "application/json"}), 413)
    r = httpx.post(
        gateway.base_url + "/v1/audio/transcriptions",
        headers={"authorization": f"Bearer {API_KEY}"},
        data={"model": MODEL},
        files={"file": ("a.wav", b"z" * (BODY_LIMIT + 10), "audio/wav")},
    )
    _error(r, 413)


def test_multipart_errors(gateway: GatewayServer) -> None:
    auth = {"authorization": f"Bearer {API_KEY}"}
    url = gateway.base_url + "/v1/audio/transcriptions"
    r = httpx.post(url, headers=auth, files={"file": ("a.wav", b"abc", "audio/wav")})
    assert "no 'model' field" in _error(r, 400)["message"]
    r = httpx.post(url, headers={**auth, "content-type": "application/json"}, content=b"{}")
    assert "multipart/form-data" in _error(r, 400)["message"]
    r = httpx.post(url, headers=auth, data={"model": "ghost"}, files={"file": ("a.wav", b"abc", "audio/wav")})
    _error(r, 404, "model_not_found")


def test_upstream_timeout_is_504(gateway: GatewayServer, start_engine) -> None:  # type: ignore[no-untyped-def]
    gateway.add_instance(start_engine("slow"))
    err = _error(
        _post(gateway, {"model": MODEL, "messages": CHAT, "fake_sleep_s": UPSTREAM_TIMEOUT_S + 2}),
        504,
        "upstream_timeout",
    )
    assert "did not answer in time" in err["message"]


def test_engine_error_passes_through(gateway: GatewayServer, start_engine) -> None:  # type: ignore[no-untyped-def]
    gateway.add_instance(start_engine("a"))
    r = _post(gateway, {"model": MODEL, "messages": CHAT, "fake_status": 500})
    assert r.status_code == 500
    assert r.json()["error"]["message"] == "fake failure 500"
    assert gateway.usage.records == []  # failed requests are not billed


def test_all_instances_unreachable_is_502(gateway: GatewayServer) -> None:
    ports = []
    for _ in range(2):  # ports nothing listens on: bind, read the number, close
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
        s.close()
    for i, port in enumerate(ports):
        gateway.routes.set_instance(MODEL, Upstream(f"dead-{i}", f"http://127.0.0.1:{port}", MODEL, MODEL))
    err = _error(_post(gateway, {"model": MODEL, "messages": CHAT}), 502, "upstream_unreachable")
    assert "dead-0" in err["message"]
    assert "dead-1" in err["message"]


def test_wrong_route_for_the_model_category_is_400(gateway: GatewayServer, start_engine) -> None:  # type: ignore[no-untyped-def]
    """Chat to an embedding model (and embeddings to an LLM) is the client's 400 naming what the model
    serves; the engine is never called (it would answer 500)."""
    from gpustack_core.gateway import ModelEntry

    engine = start_engine("embedder")
    gateway.routes.add_model(ModelEntry("embedder", "gpustack", 1_700_000_003, "embedding"))
    gateway.routes.set_instance("embedder", Upstream("emb-1", engine.base_url, "embedder", "embedder"))
    before = engine.stats()
    err = _error(_post(gateway, {"model": "embedder", "messages": CHAT}), 400, "model_category_mismatch")
    assert "embedding model" in err["message"]
    assert "/v1/embeddings" in err["message"]
    assert err["param"] == "model"
    assert err["type"] == "invalid_request_error"
    assert engine.stats() == before
    with (
        openai.OpenAI(api_key=API_KEY, base_url=gateway.base_url + "/v1", max_retries=0) as client,
        pytest.raises(openai.BadRequestError, match="embedding model"),
    ):
        client.chat.completions.create(model="embedder", messages=[{"role": "user", "content": "hi"}])
    gateway.add_instance(start_engine("chat"))
    r = httpx.post(
        gateway.base_url + "/v1/embeddings",
        json={"model": MODEL, "input": "hi"},
        headers={"authorization": f"Bearer {API_KEY}"},
        timeout=30,
    )
    assert "llm model" in _error(r, 400, "model_category_mismatch")["message"]
    r = httpx.post(  # multipart routes too
        gateway.base_url + "/v1/audio/transcriptions",
        headers={"authorization": f"Bearer {API_KEY}"},
        data={"model": "embedder"},
        files={"file": ("a.wav", b"abc", "audio/wav")},
        timeout=30,
    )
    assert "/v1/audio/transcriptions" in _error(r, 400, "model_category_mismatch")["message"]
    assert engine.stats() == before


def test_unknown_paths_and_methods_are_openai_errors(gateway: GatewayServer) -> None:
    r = httpx.get(gateway.base_url + "/v1/no-such-api", timeout=10)
    assert "/v1/no-such-api" in _error(r, 404)["message"]
    r = httpx.get(gateway.base_url + "/v1/chat/completions", timeout=10)
    assert "GET is not allowed" in _error(r, 405)["message"]
    assert "POST" in r.headers["allow"]


class _BrokenAuthenticator:
    """An authenticator with a bug: the gateway must still answer in OpenAI's error shape."""

    async def authenticate(self, token: str) -> Any:
        raise RuntimeError("bug in a key store")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the gateway's pool runs on asyncio
@pytest.mark.anyio
async def test_a_bug_in_the_gateway_is_an_openai_500_not_plain_text() -> None:
    from gpustack_core.gateway import InMemoryUsageSink, StaticRouteTable, create_gateway, gateway_lifespan

    app = create_gateway(StaticRouteTable([]), _BrokenAuthenticator(), InMemoryUsageSink())  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with gateway_lifespan(app), httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        r = await client.post(
            "/v1/chat/completions", json={"model": MODEL}, headers={"authorization": "Bearer x"}
        )
    err = _error(r, 500)
    assert err["type"] == "server_error"
    assert "RuntimeError" in err["message"]
