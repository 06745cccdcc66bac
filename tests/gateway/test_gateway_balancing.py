"""Load split across instances, retry on connection failure, disconnects reaching the engine."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

from gpustack_core.gateway import LeastOutstandingBalancer, Upstream

from .conftest import API_KEY, MODEL, GatewayServer

CHAT = [{"role": "user", "content": "count"}]


def _sample(gateway: GatewayServer, name: str, **labels: str) -> float:
    text = httpx.get(gateway.base_url + "/metrics").text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def _wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_balancer_prefers_fewest_outstanding_and_rotates_ties() -> None:
    ups = [Upstream(i, f"http://{i}", "m", "m") for i in ("a", "b", "c")]
    b = LeastOutstandingBalancer()
    picks = [b.pick("m", ups) for _ in range(3)]
    assert {p.instance_id for p in picks if p} == {"a", "b", "c"}  # idle: round robin
    b.acquire("a")
    b.acquire("a")
    b.acquire("b")
    assert [b.pick("m", ups).instance_id for _ in range(3)] == ["c", "c", "c"]  # type: ignore[union-attr]
    assert b.pick("m", ups, exclude={"c"}).instance_id == "b"  # type: ignore[union-attr]
    assert b.pick("m", ups, exclude={"a", "b", "c"}) is None
    for iid in ("a", "a", "b"):
        b.release(iid)
    assert b.outstanding("a") == 0
    assert b.outstanding("b") == 0


def test_two_instances_split_the_load(gateway: GatewayServer, start_engine) -> None:  # type: ignore[no-untyped-def]
    a, b = start_engine("a"), start_engine("b")
    gateway.add_instance(a)
    gateway.add_instance(b)
    with openai.OpenAI(api_key=API_KEY, base_url=gateway.base_url + "/v1", max_retries=0) as c:
        for _ in range(4):  # sequential, idle instances: they alternate
            c.chat.completions.create(model=MODEL, messages=CHAT, extra_body={"fake_tokens": 1})
        assert a.stats()["requests"] == b.stats()["requests"] == {"/v1/chat/completions": 2}

        def one(_: int) -> str:
            s = c.chat.completions.create(
                model=MODEL, messages=CHAT, stream=True, extra_body={"fake_tokens": 15, "fake_delay_s": 0.02}
            )
            return "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices)

        with ThreadPoolExecutor(16) as pool:
            texts = list(pool.map(one, range(16)))
    assert all(t.endswith("tok14 ") for t in texts)
    sa, sb = a.stats()["streams_completed"], b.stats()["streams_completed"]
    assert sa + sb == 16
    assert min(sa, sb) >= 5, f"load not split: {sa} vs {sb}"  # type: ignore[call-overload]


@dataclass
class _Outcome:
    sent_after_kill: bool = False
    first_byte_at: float | None = None
    ok: bool = False
    error: str = ""


def test_killing_an_instance_loses_no_request_that_had_not_started(  # type: ignore[no-untyped-def]
    gateway: GatewayServer, start_engine
) -> None:
    a, b = start_engine("a"), start_engine("b")
    gateway.add_instance(a)
    gateway.add_instance(b)
    outcomes: list[_Outcome] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        out = _Outcome()
        out.sent_after_kill = i >= 100
        with lock:
            outcomes.append(out)
        body = {"model": MODEL, "messages": CHAT, "stream": True, "fake_tokens": 20, "fake_delay_s": 0.02}
        try:
            with httpx.stream(
                "POST",
                gateway.base_url + "/v1/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {API_KEY}"},
                timeout=30,
            ) as r:
                text = b""
                for chunk in r.iter_bytes():
                    if out.first_byte_at is None:
                        out.first_byte_at = time.monotonic()
                    text += chunk
            out.ok = r.status_code == 200 and text.endswith(b"data: [DONE]\n\n")
            out.error = "" if out.ok else f"{r.status_code} {text[-200:]!r}"
        except httpx.HTTPError as exc:
            out.error = repr(exc)

    with ThreadPoolExecutor(24) as pool:
        for i in range(12):
            pool.submit(one, i)
        _wait_for(lambda: a.stats()["active_streams"] > 0)
        time.sleep(0.1)
        a.kill()  # SIGKILL: in-flight streams on "a" break; the route table still lists "a"
        for i in range(24):
            pool.submit(one, 100 + i)
            time.sleep(0.01)
    # Requests sent after the kill had certainly not started streaming from "a"; a request of the
    # first batch may read its first byte late on a loaded machine although "a" already streamed
    # to it, so the client's clock alone cannot tell which of those had started.
    not_started = [o for o in outcomes if o.sent_after_kill or o.first_byte_at is None]
    assert sum(o.sent_after_kill for o in not_started) == 24
    lost = [o.error for o in not_started if not o.ok]
    assert lost == [], f"requests lost before streaming: {lost}"
    assert _sample(gateway, "gpustack_gateway_upstream_retries_total", model=MODEL) >= 1
    assert b.stats()["streams_completed"] >= 24


def test_client_disconnect_stops_the_engine(gateway: GatewayServer, start_engine) -> None:  # type: ignore[no-untyped-def]
    e = start_engine("a")
    gateway.add_instance(e)
    body = {"model": MODEL, "messages": CHAT, "stream": True, "fake_tokens": 400, "fake_delay_s": 0.025}
    with httpx.stream(
        "POST",
        gateway.base_url + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {API_KEY}"},
    ) as r:
        it = r.iter_bytes()
        got = next(it) + next(it)
        assert got.startswith(b"data: ")
    # the client is gone after 2 chunks of a 10 s stream: the engine's generator must be cancelled
    _wait_for(lambda: e.stats()["streams_cancelled"] == 1, timeout=5)
    stats = e.stats()
    assert stats["streams_completed"] == 0
    assert stats["active_streams"] == 0
    _wait_for(lambda: _sample(gateway, "gpustack_gateway_requests_total", model=MODEL, status="499") == 1)
    assert _sample(gateway, "gpustack_gateway_requests_in_flight", model=MODEL) == 0


def test_client_disconnect_while_waiting_for_answer(  # type: ignore[no-untyped-def]
    gateway: GatewayServer, start_engine
) -> None:
    gateway.add_instance(start_engine("a"))
    body = {"model": MODEL, "messages": CHAT, "fake_tokens": 40, "fake_delay_s": 0.05}  # answers after 2 s
    try:
        httpx.post(
            gateway.base_url + "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {API_KEY}"},
            timeout=httpx.Timeout(0.3, connect=10.0),  # give up waiting for the answer, not connecting
        )
        raise AssertionError("expected the client to time out")
    except httpx.ReadTimeout:
        pass
    _wait_for(lambda: _sample(gateway, "gpustack_gateway_requests_total", model=MODEL, status="499") == 1)
    assert _sample(gateway, "gpustack_gateway_requests_in_flight", model=MODEL) == 0


def test_engine_restarted_on_same_port_reuses_no_stale_connection(  # type: ignore[no-untyped-def]
    gateway: GatewayServer, start_engine
) -> None:
    """A single instance restarts: the pooled keep-alive connection to the old process is dropped."""
    first = start_engine("a")
    gateway.add_instance(first)
    body = {"model": MODEL, "messages": CHAT, "fake_tokens": 1}
    auth = {"authorization": f"Bearer {API_KEY}"}
    assert httpx.post(gateway.base_url + "/v1/chat/completions", json=body, headers=auth).status_code == 200
    first.kill()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gpustack_core.gateway.fake_engine",
            "--port",
            str(first.port),
            "--name",
            "a2",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"LISTENING {first.port}")
        for _ in range(3):
            r = httpx.post(gateway.base_url + "/v1/chat/completions", json=body, headers=auth, timeout=30)
            assert r.status_code == 200, r.text
            assert r.json()["system_fingerprint"] == "a2"
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
