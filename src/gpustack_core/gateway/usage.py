"""Token usage from engine responses: JSON bodies and server-sent event streams.

Streamed chunks are forwarded as the engine wrote them: only events whose bytes contain
``"usage"`` are decoded, so the hot path never parses or re-encodes JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["SSEUsageScanner", "TokenUsage", "usage_from_body", "usage_from_object"]

_USAGE_MARK = b'"usage"'
_EVENT_SPLIT = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True)
class TokenUsage:
    """Prompt and completion tokens of one request."""

    prompt_tokens: int
    completion_tokens: int


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_object(obj: Any) -> TokenUsage | None:
    """The usage of a decoded response object, or ``None`` when it has none.

    Understands OpenAI's ``prompt_tokens``/``completion_tokens``, the ``input_tokens``/``output_tokens``
    spelling, and rerank/embedding responses that only give ``total_tokens`` (counted as prompt).
    """
    if not isinstance(obj, dict):
        return None
    u = obj.get("usage")
    if not isinstance(u, dict):
        return None
    prompt = _int(u.get("prompt_tokens")) or _int(u.get("input_tokens"))
    completion = _int(u.get("completion_tokens")) or _int(u.get("output_tokens"))
    if not prompt and not completion:
        prompt = _int(u.get("total_tokens"))
    return TokenUsage(prompt, completion)


def usage_from_body(body: bytes) -> TokenUsage | None:
    """The usage in a JSON response body, or ``None`` (also for bodies that are not JSON)."""
    if _USAGE_MARK not in body:
        return None
    try:
        return usage_from_object(json.loads(body))
    except ValueError:
        return None


def _event_data(event: bytes) -> bytes:
    """The joined ``data:`` lines of one SSE event."""
    parts = []
    for line in event.splitlines():
        if line.startswith(b"data:"):
            v = line[5:]
            parts.append(v[1:] if v.startswith(b" ") else v)
    return b"\n".join(parts)


def _last_event_end(buf: bytes) -> int:
    """Index just after the last complete event's blank line, 0 when no event is complete."""
    a = buf.rfind(b"\n\n")
    b = buf.rfind(b"\r\n\r\n")
    return max(a + 2 if a >= 0 else 0, b + 4 if b >= 0 else 0)


class SSEUsageScanner:
    """Watches an event stream for the usage chunk; optionally removes usage-only events.

    With ``strip_usage_events=False`` every chunk is returned unchanged, at once. With ``True`` (the
    gateway asked the engine for usage on the client's behalf), a partial event is held back until
    its closing blank line arrives, and events that carry ``usage`` with no ``choices`` are dropped.
    """

    def __init__(self, strip_usage_events: bool) -> None:
        """Create a scanner; see the class docstring for ``strip_usage_events``."""
        self.strip = strip_usage_events
        self.usage: TokenUsage | None = None
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """Take the next bytes of the stream; return the bytes to send to the client now."""
        if not self.strip:
            self._scan_passthrough(chunk)
            return chunk
        buf = self._pending + chunk if self._pending else chunk
        end = _last_event_end(buf)
        if end == 0:
            self._pending = buf
            return b""
        complete, self._pending = buf[:end], buf[end:]
        if _USAGE_MARK not in complete:
            return complete
        return self._filter(complete)

    def flush(self) -> bytes:
        """The end of the stream: whatever is still held back (an unterminated last event)."""
        rest, self._pending = self._pending, b""
        if rest and _USAGE_MARK in rest:
            if not self.strip:
                self._scan(rest)
                return b""
            return self._filter(rest)
        return rest if self.strip else b""

    def _scan_passthrough(self, chunk: bytes) -> None:
        buf = self._pending + chunk if self._pending else chunk
        end = _last_event_end(buf)
        if end and _USAGE_MARK in buf:
            self._scan(buf[:end])
        self._pending = buf[end:] if end < len(buf) else b""
        if len(self._pending) > 1 << 20:  # a runaway event with no terminator: stop watching it
            self._pending = b""

    def _scan(self, complete: bytes) -> None:
        for event in _EVENT_SPLIT.split(complete):
            self._usage_of(event)

    def _usage_of(self, event: bytes) -> bool:
        """Record the usage of ``event``; True when it is a usage-only event (no choices)."""
        if _USAGE_MARK not in event:
            return False
        data = _event_data(event)
        try:
            obj = json.loads(data)
        except ValueError:
            return False
        usage = usage_from_object(obj)
        if usage is None:
            return False
        self.usage = usage
        return not obj.get("choices")

    def _filter(self, complete: bytes) -> bytes:
        kept: list[bytes] = []
        dropped = False
        for event in _EVENT_SPLIT.split(complete):
            if not event:
                continue
            if self._usage_of(event):
                dropped = True
            else:
                kept.append(event)
        if not dropped:
            return complete
        return b"".join(e + b"\n\n" for e in kept)
