"""Find the ``model`` field of a ``multipart/form-data`` body while it streams in.

The gateway routes an upload (``/v1/audio/transcriptions``) by its ``model`` field without keeping
the upload in memory: it reads the body only until the ``model`` part is complete, then forwards
what it read followed by the rest of the body as it arrives. Clients (OpenAI's among them) send
plain fields before files, so usually only a few hundred bytes are held; when ``model`` comes after
a file, the file is held until then, bounded by the gateway's body limit.
"""

from __future__ import annotations

import re

__all__ = ["MultipartError", "MultipartModelSniffer", "boundary_of"]

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_NAME = re.compile(rb'(?:^|[;\s])name="([^"]*)"', re.IGNORECASE)


class MultipartError(ValueError):
    """The body is not the ``multipart/form-data`` its content type says."""


def boundary_of(content_type: str) -> bytes:
    """The boundary of a ``multipart/form-data`` content type; raises :class:`MultipartError`."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise MultipartError(
            f"expected a multipart/form-data body, got content type {content_type or 'none'!r}"
        )
    m = _BOUNDARY.search(content_type)
    if not m:
        raise MultipartError("the multipart/form-data content type has no boundary parameter")
    boundary = m.group(1).strip()
    if not boundary or not boundary.isascii():
        raise MultipartError(f"the multipart boundary {boundary!r} is empty or not ASCII (RFC 2046)")
    return boundary.encode("ascii")


class MultipartModelSniffer:
    """Accumulates the head of a multipart body until the ``model`` part is complete.

    Call :meth:`feed` with each chunk; once it returns True, :attr:`model` holds the value and
    :attr:`head` the bytes read so far (to forward first). :meth:`replace_model` rewrites the value
    in :attr:`head` when the engine knows the model by another name.
    """

    def __init__(self, boundary: bytes) -> None:
        """Prepare to scan a body delimited by ``boundary``."""
        self._delim = b"--" + boundary
        self._next_delim = b"\r\n--" + boundary
        self._buf = bytearray()
        self._pos = 0  # start of the part being examined (at its delimiter line)
        self.model: str | None = None
        self._value_span: tuple[int, int] | None = None

    @property
    def head(self) -> bytes:
        """Every byte fed so far."""
        return bytes(self._buf)

    def feed(self, chunk: bytes) -> bool:
        """Add ``chunk``; True once the ``model`` field is known. Raises :class:`MultipartError`."""
        self._buf += chunk
        if self.model is not None:
            return True
        buf = self._buf
        while True:
            start = buf.find(self._delim, self._pos)
            if start < 0 or len(buf) < start + len(self._delim) + 2:
                return False
            after = start + len(self._delim)
            if buf[after : after + 2] == b"--":
                raise MultipartError("the multipart body has no 'model' field")
            head_end = buf.find(b"\r\n\r\n", after)
            if head_end < 0:
                return False
            headers = bytes(buf[after:head_end])
            value_start = head_end + 4
            value_end = buf.find(self._next_delim, value_start)
            if value_end < 0:
                return False
            if self._is_model_part(headers):
                try:
                    self.model = bytes(buf[value_start:value_end]).decode("utf-8").strip()
                except UnicodeDecodeError as exc:
                    raise MultipartError("the multipart 'model' field is not UTF-8 text") from exc
                self._value_span = (value_start, value_end)
                return True
            self._pos = value_end + 2  # at the next delimiter

    @staticmethod
    def _is_model_part(headers: bytes) -> bool:
        for line in headers.split(b"\r\n"):
            if line.lower().startswith(b"content-disposition:"):
                m = _NAME.search(line.split(b":", 1)[1])
                return m is not None and m.group(1) == b"model"
        return False

    def replace_model(self, name: str) -> None:
        """Rewrite the ``model`` value in :attr:`head` to ``name``."""
        if self._value_span is None:
            raise RuntimeError("replace_model() before the model field was found")
        a, b = self._value_span
        self._buf[a:b] = name.encode("utf-8")
        self._value_span = (a, a + len(name.encode("utf-8")))
        self.model = name
