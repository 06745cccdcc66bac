"""Sampling parameters that make a real engine's answer repeatable, for tests that talk to engines.

A random-weight model samples anything, including end-of-sequence as its first token (then a
stream has one chunk and a completion zero tokens). Tests send :data:`DETERMINISTIC_SAMPLING`:
greedy decoding, a fixed seed, and ``ignore_eos`` so that exactly ``max_tokens`` tokens come
back. llama.cpp's server, vLLM and SGLang all accept these fields in an OpenAI request body
(``ignore_eos`` is an extension; with the official client, pass it through ``extra_body``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DETERMINISTIC_SAMPLING", "deterministic"]

#: Greedy, seeded, and never stopping before ``max_tokens``.
DETERMINISTIC_SAMPLING: dict[str, Any] = {"temperature": 0.0, "top_k": 1, "seed": 42, "ignore_eos": True}


def deterministic(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` (an OpenAI request) with :data:`DETERMINISTIC_SAMPLING` added (a new dict)."""
    return {**body, **DETERMINISTIC_SAMPLING}
