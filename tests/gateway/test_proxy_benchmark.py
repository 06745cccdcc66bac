"""The proxy benchmark's parts: aiohttp's client behind the gateway, external targets, the tables.

The comparison in docs/benchmarks/proxy.md is only fair if the aiohttp variant of the gateway
answers what the gateway answers; these tests check that, and run the benchmark once at a tiny size
(its tables, no timings asserted).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette

from benchmarks import proxy as bench
from benchmarks._aiohttp_upstreams import AiohttpUpstreams, install
from gpustack_core.gateway import (
    InMemoryUsageSink,
    ModelEntry,
    Principal,
    StaticKeyAuthenticator,
    StaticRouteTable,
    Upstream,
    create_gateway,
    gateway_of,
)

from .conftest import API_KEY, MODEL, FakeEngine, _serve_in_thread


def _gateway(engine: FakeEngine, aiohttp: bool) -> tuple[Starlette, InMemoryUsageSink]:
    routes = StaticRouteTable([ModelEntry(MODEL, "gpustack", 0, "llm")])
    routes.set_instance(MODEL, Upstream("i0", engine.base_url, MODEL, MODEL))
    auth = StaticKeyAuthenticator({API_KEY: Principal("u", "k", frozenset({"inference"}), None, False)})
    usage = InMemoryUsageSink()
    app = create_gateway(routes, auth, usage, upstream_timeout_s=5.0)
    if aiohttp:
        install(gateway_of(app))
    return app, usage


@pytest.fixture
def two_gateways(start_engine) -> Iterator[dict[str, tuple[str, InMemoryUsageSink]]]:  # type: ignore[no-untyped-def]
    """The same gateway twice in front of one fake engine: own pool, and aiohttp's client."""
    engine = start_engine("e")
    out, servers = {}, []
    for name in ("ours", "aiohttp"):
        app, usage = _gateway(engine, name == "aiohttp")
        url, server, thread = _serve_in_thread(app)
        out[name] = (url, usage)
        servers.append((server, thread))
    yield out
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=20)


def test_install_replaces_the_pool_before_the_lifespan(start_engine) -> None:  # type: ignore[no-untyped-def]
    app, _ = _gateway(start_engine("e"), aiohttp=True)
    assert isinstance(gateway_of(app)._pool, AiohttpUpstreams)


def test_aiohttp_gateway_answers_what_the_gateway_answers(
    two_gateways: dict[str, tuple[str, InMemoryUsageSink]],
) -> None:
    auth = {"authorization": f"Bearer {API_KEY}"}
    answers: dict[str, tuple[str, dict[str, object], list[str]]] = {}
    for name, (url, usage) in two_gateways.items():
        with httpx.Client(base_url=url, headers=auth, timeout=30) as client:
            whole = client.post(
                "/v1/chat/completions",
                json={"model": MODEL, "messages": [{"role": "user", "content": "a b c"}], "fake_tokens": 3},
            )
            assert whole.status_code == 200, whole.text
            body = whole.json()
            del body["created"]
            with client.stream(
                "POST",
                "/v1/chat/completions",
                json={
                    "model": MODEL,
                    "messages": [{"role": "user", "content": "a b"}],
                    "stream": True,
                    "fake_tokens": 4,
                    "fake_delay_s": 0.001,
                },
            ) as streamed:
                assert streamed.status_code == 200
                assert streamed.headers["content-type"].startswith("text/event-stream")
                events = [line for line in streamed.iter_lines() if line.startswith("data: ")]
            missing = client.post("/v1/chat/completions", json={"model": "nope", "messages": []})
            assert missing.status_code == 404
        deltas = [
            "".join(c["delta"].get("content") or "" for c in json.loads(e[6:])["choices"])
            for e in events
            if e != "data: [DONE]"
        ]
        answers[name] = (events[-1], body, deltas)
        assert [(r.prompt_tokens, r.completion_tokens) for r in usage.records] == [(4, 3), (3, 4)]
    assert answers["aiohttp"] == answers["ours"]
    assert answers["ours"][0] == "data: [DONE]"
    assert "".join(answers["ours"][2]) == "tok0 tok1 tok2 tok3 "


def test_aiohttp_gateway_reports_an_engine_that_is_gone(start_engine) -> None:  # type: ignore[no-untyped-def]
    engine = start_engine("e")
    app, _ = _gateway(engine, aiohttp=True)
    url, server, thread = _serve_in_thread(app)
    try:
        engine.kill()
        r = httpx.post(
            url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {API_KEY}"},
            json={"model": MODEL, "messages": []},
            timeout=30,
        )
        assert r.status_code == 502
        assert r.json()["error"]["code"] == "upstream_unreachable"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def test_target_must_be_name_equals_http_url() -> None:
    assert bench._parse_target("litellm=http://127.0.0.1:4000/", "k") == (
        "litellm",
        "http://127.0.0.1:4000",
        "k",
    )
    for bad in ("http://127.0.0.1:4000", "=http://127.0.0.1:4000", "x=127.0.0.1:4000", "x=https://h:1"):
        with pytest.raises(SystemExit, match="NAME=http://HOST:PORT"):
            bench._parse_target(bad, "k")


def test_benchmark_runs_every_target_and_prints_both_tables(start_engine) -> None:  # type: ignore[no-untyped-def]
    """A tiny run: own gateway, the aiohttp one, and a third proxy passed as --target (a gateway in
    this process, in front of a fake engine of its own)."""
    engine = start_engine("other")
    routes = StaticRouteTable([ModelEntry(bench.MODEL, "gpustack", 0, "llm")])
    routes.set_instance(bench.MODEL, Upstream("i0", engine.base_url, bench.MODEL, bench.MODEL))
    auth = StaticKeyAuthenticator({"sk-other": Principal("u", "k", frozenset({"inference"}), None, False)})
    url, server, thread = _serve_in_thread(create_gateway(routes, auth, InMemoryUsageSink()))
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            bench.main(
                [
                    *("--concurrency", "2", "--burst", "2", "--requests", "4", "--rounds", "1"),
                    *("--tokens", "2", "--delay-ms", "1", "--stagger", "--aiohttp", "--no-inject"),
                    *("--throughput", "2", "--throughput-seconds", "0.2"),
                    *("--target", f"other={url}", "--target-key", "sk-other"),
                ]
            )
    finally:
        server.should_exit = True
        thread.join(timeout=20)
    lines = out.getvalue().splitlines()
    streams = [line.split("|")[1:-1] for line in lines if line.startswith("| 2 |")]
    assert [(r[1].strip(), r[2].strip()) for r in streams] == [
        (starts, name)
        for starts in ("staggered", "synchronized")
        for name in ("direct", "gateway", "gateway (aiohttp)", "other")
    ]
    assert all(r[10].strip() == "0" for r in streams), "errors column"
    assert [r[11].strip() != "-" for r in streams[:4]] == [True, True, True, True]  # this process listens
    tiny = [line.split("|")[1:-1] for line in lines if line.startswith("| ") and line.count("|") == 6]
    assert [r[0].strip() for r in tiny[1:]] == ["direct", "gateway", "gateway (aiohttp)", "other"]
    assert all(r[4].strip() == "0" and float(r[1]) > 0 for r in tiny[1:])
    assert engine.stats()["requests"]["/v1/chat/completions"] > 0  # type: ignore[index]
