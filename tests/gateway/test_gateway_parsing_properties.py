"""Property tests of the gateway's request parsing: whatever a client sends, the answer is a
clear 4xx (``GatewayHTTPError``) or a parsed request, never another exception (a 500)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gpustack_core.gateway._bodies import ask_for_usage, content_length, parse_json_body
from gpustack_core.gateway.errors import GatewayHTTPError
from gpustack_core.gateway.multipart import MultipartError, MultipartModelSniffer, boundary_of

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_any_bytes_are_a_request_or_a_4xx(body: bytes) -> None:
    try:
        obj: dict[str, Any] | None = parse_json_body(body)
        status = 200
    except GatewayHTTPError as err:
        obj, status = None, err.status
    if obj is None:
        assert 400 <= status < 500
    else:
        assert isinstance(obj["model"], str)
        assert obj["model"]


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=200_000), st.sampled_from([b"[", b'{"a":']))
def test_any_nesting_depth_is_a_request_or_a_400(depth: int, opener: bytes) -> None:
    closer = b"]" if opener == b"[" else b"}"
    body = (
        b'{"model": "m", "x": ' + opener * depth + (b"1" if opener != b"[" else b"") + closer * depth + b"}"
    )
    try:
        status, model = 200, parse_json_body(body)["model"]
    except GatewayHTTPError as err:
        status, model = err.status, "m"
    assert status in (200, 400)
    assert model == "m"


@settings(max_examples=300, deadline=None)
@given(json_values, st.text(min_size=1, max_size=20), st.booleans())
def test_asking_for_usage_keeps_the_request_valid_json(extra: Any, model: str, has_options: bool) -> None:
    obj: dict[str, Any] = {"model": model, "stream": True, "extra": extra}
    if has_options:
        obj["stream_options"] = extra
    body = json.dumps(obj).encode()
    parsed = parse_json_body(body)
    new_body, _ = ask_for_usage(body, parsed)
    again = json.loads(new_body)
    assert again["stream_options"]["include_usage"] is True
    assert again["model"] == model
    assert again["extra"] == extra


@given(st.binary(max_size=30))
def test_content_length_is_a_number_or_a_400(raw: bytes) -> None:
    try:
        value: int | None = content_length({b"content-length": raw})
        status = 200
    except GatewayHTTPError as err:
        value, status = None, err.status
    assert status == 400 if value is None else isinstance(value, int)


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=80) | st.text(max_size=40).map(lambda b: f"multipart/form-data; boundary={b}"),
    st.binary(max_size=400) | st.text(max_size=200).map(lambda t: f"--b\r\n{t}\r\n--b--".encode()),
)
def test_multipart_sniffing_fails_only_with_multipart_errors(content_type: str, body: bytes) -> None:
    try:
        sniffer = MultipartModelSniffer(boundary_of(content_type))
        sniffer.feed(body)
    except MultipartError:
        pass
