"""Unit tests of the gateway's parsing pieces: SSE usage scanning, multipart sniffing, usage injection."""

from __future__ import annotations

import json

import httpx
import pytest

from gpustack_core.gateway._bodies import ask_for_usage
from gpustack_core.gateway.multipart import MultipartError, MultipartModelSniffer, boundary_of
from gpustack_core.gateway.usage import SSEUsageScanner, TokenUsage, usage_from_body, usage_from_object


def _event(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


CONTENT = _event({"choices": [{"index": 0, "delta": {"content": "hi"}}]})
USAGE_ONLY = _event(
    {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}
)
DONE = b"data: [DONE]\n\n"
STREAM = CONTENT + CONTENT + USAGE_ONLY + DONE


@pytest.mark.parametrize("strip", [False, True])
def test_scanner_finds_usage_at_every_split_point(strip: bool) -> None:
    for cut in range(1, len(STREAM)):
        s = SSEUsageScanner(strip)
        out = s.feed(STREAM[:cut]) + s.feed(STREAM[cut:]) + s.flush()
        assert s.usage == TokenUsage(7, 3), cut
        assert out == (CONTENT + CONTENT + DONE if strip else STREAM), cut


def test_scanner_passthrough_returns_chunks_unchanged_at_once() -> None:
    s = SSEUsageScanner(False)
    half = CONTENT[:10]
    assert s.feed(half) == half  # nothing held back when the client asked for usage itself
    assert s.feed(CONTENT[10:]) == CONTENT[10:]


def test_scanner_keeps_usage_on_a_chunk_with_choices_and_handles_crlf() -> None:
    with_choices = _event(
        {"choices": [{"index": 0, "delta": {}}], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}
    )
    s = SSEUsageScanner(True)
    assert s.feed(with_choices) == with_choices
    assert s.usage == TokenUsage(1, 2)
    crlf = USAGE_ONLY.replace(b"\n\n", b"\r\n\r\n")
    s = SSEUsageScanner(True)
    assert s.feed(CONTENT + crlf) == CONTENT
    assert s.usage == TokenUsage(7, 3)


def test_usage_parsing_variants() -> None:
    assert usage_from_object({"usage": {"input_tokens": 4, "output_tokens": 5}}) == TokenUsage(4, 5)
    assert usage_from_object({"usage": {"total_tokens": 9}}) == TokenUsage(9, 0)
    assert usage_from_object({"usage": None}) is None
    assert usage_from_object({"usage": {"prompt_tokens": "x", "completion_tokens": True}}) == TokenUsage(0, 0)
    assert usage_from_body(b'not json with "usage"') is None
    assert usage_from_body(b'{"id": 1}') is None


def test_ask_for_usage() -> None:
    body = b'{"model": "m", "stream": true}  \n'
    out, strip = ask_for_usage(body, json.loads(body))
    assert strip
    assert json.loads(out) == {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    body = b'{"model": "m", "stream": true, "stream_options": {"include_usage": true}}'
    assert ask_for_usage(body, json.loads(body)) == (body, False)
    body = b'{"model": "m", "stream": true, "stream_options": {"continuous_usage_stats": false}}'
    out, strip = ask_for_usage(body, json.loads(body))
    assert strip
    assert json.loads(out)["stream_options"] == {"continuous_usage_stats": False, "include_usage": True}


def _multipart(fields: dict[str, str], files: dict[str, bytes]) -> tuple[bytes, str]:
    req = httpx.Request(
        "POST",
        "http://x/",
        data=fields,
        files={k: (k + ".bin", v, "application/octet-stream") for k, v in files.items()},
    )
    return req.read(), req.headers["content-type"]


def test_sniffer_finds_model_at_every_split_point() -> None:
    body, ctype = _multipart({"model": "whisper-x", "language": "en"}, {"file": b"\x00\r\n--" * 50})
    boundary = boundary_of(ctype)
    for cut in range(1, len(body)):
        s = MultipartModelSniffer(boundary)
        early = s.feed(body[:cut])
        assert s.feed(body[cut:]), cut
        assert s.model == "whisper-x", cut
        assert early == (cut >= body.index(b"whisper-x") + len(b"whisper-x\r\n--") + len(boundary)), cut
        assert s.head == body


def test_sniffer_model_after_file_and_rewrite() -> None:
    body = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="model"\r\n\r\nDATA\r\n'
        b'--B\r\nContent-Disposition: form-data; name="model"\r\n\r\npublic\r\n--B--\r\n'
    )
    s = MultipartModelSniffer(b"B")
    assert s.feed(body)
    assert s.model == "public"  # the file part's filename="model" is not the model field
    s.replace_model("served-name")
    assert s.head == body.replace(b"public", b"served-name")


def test_sniffer_errors() -> None:
    with pytest.raises(MultipartError, match="no 'model' field"):
        MultipartModelSniffer(b"B").feed(
            b'--B\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--B--\r\n'
        )
    with pytest.raises(MultipartError, match="boundary"):
        boundary_of("multipart/form-data")
    with pytest.raises(MultipartError, match="multipart/form-data"):
        boundary_of("application/json")
    assert boundary_of('multipart/form-data; boundary="abc"') == b"abc"
