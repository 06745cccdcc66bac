"""The password policy for users' passwords: what a server refuses, with the reason.

A password must be at least :data:`MIN_LENGTH` characters, have no control characters, not
contain the username, not be one character repeated, and not be in the list of common passwords
shipped with the package (``data/common-passwords.txt``: the 8+ character entries of the
30,000-password frequency list of zxcvbn-python 4.5.0, ``frequency_lists.py``, MIT licence,
itself drawn from leaked-password corpora).
"""

from __future__ import annotations

import functools
import unicodedata
from importlib import resources

__all__ = ["MIN_LENGTH", "common_passwords", "password_problem"]

#: The shortest password accepted.
MIN_LENGTH = 8


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, lower-cased (read once per process; immutable)."""
    text = resources.files("gpustack_core.server").joinpath("data/common-passwords.txt").read_text("utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def password_problem(password: str, username: str | None = None) -> str | None:
    """Why ``password`` is refused for ``username``, or ``None`` when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"the password must have at least {MIN_LENGTH} characters"
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs"} for ch in password):
        return "the password must not contain control characters"
    if len(set(password)) == 1:
        return "the password must not be one character repeated"
    lowered = password.lower()
    if username and len(username) >= 3 and username.lower() in lowered:
        return "the password must not contain the username"
    if lowered in common_passwords():
        return "the password is one of the most common passwords; choose another"
    return None
