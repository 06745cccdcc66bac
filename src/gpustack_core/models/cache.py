"""The shared model cache: layout, inter-process lock, resumable verified downloads.

Layout under ``cache_dir``::

    <source>/<model id>/refs/<quoted revision name>     text: the revision directory it resolved to
    <source>/<model id>/<revision>/<file path>          complete, verified files only
    <source>/<model id>/<revision>/.gpustack/metadata[#<selector>].json  last ``resolve`` (offline use)
    <source>/<model id>/<revision>/.gpustack/manifest.json   completed files: size, sha256, mtime
    <source>/<model id>/<revision>/.gpustack/partial/<quoted path>   interrupted downloads
    .locks/<source>/<model id>/<revision>.lock          inter-process lock of that revision

``<revision>`` is the commit where the source has one, else the revision name. A file is moved into
place (atomic rename) only after its size and sha256 (where the source publishes one) match.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .._platform import file_lock
from ..errors import DownloadError, ModelAccessDeniedError, ModelNotFoundError, OfflineModeError
from ._transfer import RANGE_BYTES, ShortRead, StreamSample, fetch_into_partial, network_bound, resume_point

if TYPE_CHECKING:
    import httpx

    from ..types import DownloadProgress, ModelMetadata, PeerCache

__all__ = ["DEFAULT_CONNECTIONS", "FileRequest", "ModelCache", "check_response", "free_bytes"]

_log = logging.getLogger(__name__)
_HASH_CHUNK = 8 << 20
_PROGRESS_INTERVAL_S = 0.2
DEFAULT_CONNECTIONS = 4
"""Connections per large file once its first connection is split into parallel range requests
(``hf_transfer`` uses 8; this machine class has 2 cores)."""


@dataclass(frozen=True)
class FileRequest:
    """One file to bring into the cache: where it is, and what it must be."""

    path: str
    url: str
    size_bytes: int | None = None
    sha256: str | None = None


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem holding ``path`` (its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_response(response: httpx.Response, what: str) -> None:
    """Raise the matching model-source error for an HTTP error status (``what`` names the URL)."""
    status = response.status_code
    if status < 400:
        return
    if status == 404:
        raise ModelNotFoundError(f"{what}: not found (HTTP 404); check the model id, revision and file name")
    if status in (401, 403):
        raise ModelAccessDeniedError(
            f"{what}: access denied (HTTP {status}); the model is gated or private: accept its terms at "
            "the source and pass a token (--token or SourceOptions.token)"
        )
    raise DownloadError(f"{what}: HTTP {status} {response.reason_phrase}; try again later")


def _sha256_file(path: Path, hasher: Any = None) -> Any:
    import hashlib  # on use: OpenSSL's loading is not paid by plugins that only import this module

    hasher = hasher or hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            hasher.update(chunk)
    return hasher


class _Rate:
    """Bytes per second over the download so far, and throttled progress emission."""

    def __init__(self, file: str, total: int | None, start_bytes: int, callback: Any) -> None:
        self.file, self.total, self.callback = file, total, callback
        self.start_bytes = start_bytes
        self.started = time.monotonic()
        self.last_emit = 0.0

    def emit(self, done_bytes: int, *, force: bool = False, done: bool = False) -> None:
        from ..types.models import DownloadProgress

        if self.callback is None:
            return
        now = time.monotonic()
        if not force and now - self.last_emit < _PROGRESS_INTERVAL_S:
            return
        self.last_emit = now
        elapsed = now - self.started
        rate = (done_bytes - self.start_bytes) / elapsed if elapsed > 0 else None
        eta = (self.total - done_bytes) / rate if rate and self.total is not None else None
        self.callback(
            DownloadProgress(
                file=self.file,
                downloaded_bytes=done_bytes,
                total_bytes=self.total,
                bytes_per_second=rate,
                eta_seconds=max(eta, 0.0) if eta is not None else None,
                done=done,
            )
        )


class ModelCache:
    """One shared cache directory used by every remote model source (see the module docstring).

    Holds no state beyond its root path; several instances, threads, processes or machines
    sharing the filesystem coordinate through the lock files.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        connections: int = DEFAULT_CONNECTIONS,
        range_bytes: int = RANGE_BYTES,
        split: Callable[[StreamSample], bool] = network_bound,
    ) -> None:
        self.root = Path(os.path.expanduser(str(root)))
        #: connections per large file (parallel range requests); 1 fetches every file as one stream
        self.connections = max(1, connections)
        #: bytes per range request; a file over twice this size may be split into parallel ranges
        self.range_bytes = max(1, range_bytes)
        #: whether a large file's first connection, from what it measured, is split into ranges
        #: (default :func:`~gpustack_core.models._transfer.network_bound`: when it waited on the
        #: network; ``lambda sample: True`` always splits)
        self.split = split

    # -- layout -------------------------------------------------------------------------------
    def model_dir(self, source: str, model_id: str) -> Path:
        """Directory of one model at one source."""
        parts = [p for p in model_id.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise ModelNotFoundError(f"model id {model_id!r} cannot be used as a cache path")
        return self.root.joinpath(source, *parts)

    def revision_dir(self, source: str, model_id: str, revision: str) -> Path:
        """Directory holding the files of one revision."""
        if revision in ("", ".", "..", "refs"):
            raise ModelNotFoundError(f"revision {revision!r} cannot be used as a cache directory")
        return self.model_dir(source, model_id) / quote(revision, safe="")

    def _state_dir(self, source: str, model_id: str, revision: str) -> Path:
        return self.revision_dir(source, model_id, revision) / ".gpustack"

    def write_ref(self, source: str, model_id: str, name: str, revision: str) -> None:
        """Record that revision name ``name`` resolved to ``revision`` (used in offline mode)."""
        path = self.model_dir(source, model_id) / "refs" / quote(name, safe="")
        _atomic_write(path, revision.encode())

    def read_ref(self, source: str, model_id: str, name: str) -> str | None:
        """The revision ``name`` last resolved to, or None."""
        path = self.model_dir(source, model_id) / "refs" / quote(name, safe="")
        try:
            return path.read_text().strip() or None
        except OSError:
            return None

    def _metadata_path(self, source: str, model_id: str, revision: str, selector: str | None) -> Path:
        name = f"metadata#{quote(selector, safe='')}.json" if selector else "metadata.json"
        return self._state_dir(source, model_id, revision) / name

    def save_metadata(self, source: str, model_id: str, revision: str, metadata: ModelMetadata) -> None:
        """Store what ``resolve`` returned, for offline mode (one file per selector: the headers
        read depend on which files the selector chose)."""
        path = self._metadata_path(source, model_id, revision, metadata.ref.selector)
        _atomic_write(path, metadata.model_dump_json().encode())

    def load_metadata(
        self, source: str, model_id: str, revision: str, selector: str | None = None
    ) -> ModelMetadata | None:
        """Stored metadata of a revision and selector, or None when absent or unreadable."""
        from ..types.models import ModelMetadata

        path = self._metadata_path(source, model_id, revision, selector)
        try:
            return ModelMetadata.model_validate_json(path.read_bytes())
        except (OSError, ValueError):
            return None

    # -- locking ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, source: str, model_id: str, revision: str) -> Iterator[None]:
        """Hold the inter-process lock of one revision (a lock file, see ``_platform.file_lock``).

        A second process blocks until the first releases it. The lock is ``flock`` on POSIX,
        which works between processes of one machine and, on Linux NFS clients (emulated with
        POSIX locks), between machines; ``msvcrt.locking`` on Windows.
        """
        model_dir = self.model_dir(source, model_id).relative_to(self.root)
        path = self.root / ".locks" / model_dir / (quote(revision, safe="") + ".lock")

        def waiting() -> None:
            _log.info("waiting for another process downloading %s:%s@%s", source, model_id, revision)

        with file_lock(path, on_wait=waiting):
            yield

    # -- completeness ---------------------------------------------------------------------------
    def _manifest_path(self, source: str, model_id: str, revision: str) -> Path:
        return self._state_dir(source, model_id, revision) / "manifest.json"

    def _load_manifest(self, source: str, model_id: str, revision: str) -> dict[str, Any]:
        try:
            data = json.loads(self._manifest_path(source, model_id, revision).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_manifest(self, source: str, model_id: str, revision: str, manifest: dict[str, Any]) -> None:
        _atomic_write(
            self._manifest_path(source, model_id, revision), json.dumps(manifest, indent=1).encode()
        )

    def is_complete(self, source: str, model_id: str, revision: str, file: FileRequest) -> bool:
        """Whether ``file`` is in the cache and verified.

        Cheap when nothing changed (size and mtime match the manifest); otherwise the file is
        re-hashed against the expected sha256 (or, lacking one, only its size is checked).
        """
        path = self.revision_dir(source, model_id, revision) / file.path
        entry = self._load_manifest(source, model_id, revision).get(file.path)
        return self._verify_existing(path, file, entry)

    def _verify_existing(self, path: Path, file: FileRequest, entry: Any) -> bool:
        try:
            stat = path.stat()
        except OSError:
            return False
        if file.size_bytes is not None and stat.st_size != file.size_bytes:
            return False
        if (
            isinstance(entry, dict)
            and entry.get("mtime_ns") == stat.st_mtime_ns
            and entry.get("size") == stat.st_size
            and (file.sha256 is None or entry.get("sha256") == file.sha256.lower())
        ):
            return True
        if file.sha256 is None:
            return (
                isinstance(entry, dict) and entry.get("size") == stat.st_size and file.size_bytes is not None
            )
        return str(_sha256_file(path).hexdigest()) == file.sha256.lower()

    # -- download -------------------------------------------------------------------------------
    def ensure_files(
        self,
        source: str,
        model_id: str,
        revision: str,
        files: Sequence[FileRequest],
        *,
        client: httpx.Client | None,
        offline: bool = False,
        progress: Callable[[DownloadProgress], None] | None = None,
        retries: int = 3,
        peers: Sequence[PeerCache] = (),
    ) -> tuple[list[str], int]:
        """Make ``files`` present and verified; returns (local paths, bytes transferred).

        Holds the revision's lock for the whole call, so a second process waits and then finds
        the files complete. A corrupted cached file (size or hash mismatch) is fetched again.
        A missing file is first copied from each of ``peers`` (other workers' caches, same layout)
        in turn, verified like a download, and only then fetched from the source.

        Raises:
            OfflineModeError: ``offline`` and a file is missing or corrupt.
            DownloadError: network failure after ``retries`` resumed attempts (run again to
                resume), verification failure, or disk full (says how much was needed and free).
            ModelNotFoundError, ModelAccessDeniedError: HTTP 404 / 401 / 403.
        """
        from ..types.models import DownloadProgress

        rev_dir = self.revision_dir(source, model_id, revision)
        paths = [str(rev_dir / f.path) for f in files]
        with self.lock(source, model_id, revision):
            manifest = self._load_manifest(source, model_id, revision)
            missing: list[FileRequest] = []
            for f in files:
                path = rev_dir / f.path
                if self._verify_existing(path, f, manifest.get(f.path)):
                    if progress is not None:
                        size = path.stat().st_size
                        progress(
                            DownloadProgress(file=f.path, downloaded_bytes=size, total_bytes=size, done=True)
                        )
                    continue
                if path.exists():
                    _log.warning("cached file %s failed verification; fetching it again", path)
                    path.unlink()
                manifest.pop(f.path, None)
                missing.append(f)
            if not missing:
                return paths, 0
            if offline:
                raise OfflineModeError(
                    f"offline mode: {len(missing)} file(s) of {source}:{model_id}@{revision} are not in the "
                    f"cache {self.root} (first: {missing[0].path}); run without --offline to download them"
                )
            if client is None:
                raise DownloadError("no HTTP client given for a download")
            self._check_space(rev_dir, missing, source, model_id, revision)
            transferred = 0
            relative = rev_dir.relative_to(self.root).as_posix()
            for f in missing:
                if not self._from_peers(rev_dir, relative, f, peers, progress):
                    transferred += self._download_one(rev_dir, f, client, progress, retries)
                stat = (rev_dir / f.path).stat()
                manifest[f.path] = {
                    "size": stat.st_size,
                    "mtime_ns": stat.st_mtime_ns,
                    "sha256": f.sha256.lower() if f.sha256 else None,
                }
                self._save_manifest(source, model_id, revision, manifest)
            return paths, transferred

    def _from_peers(
        self,
        rev_dir: Path,
        relative: str,
        file: FileRequest,
        peers: Sequence[PeerCache],
        progress: Callable[[DownloadProgress], None] | None,
    ) -> bool:
        """Copy ``file`` from the first peer that has it, verified; ``False`` when none could."""
        if not peers or (file.sha256 is None and file.size_bytes is None):
            return False  # nothing to verify a peer's copy against: ask the source
        import httpx  # on use, like the downloads (keeps the CLI's start-up light)

        for peer in peers:
            url = f"{peer.url.rstrip('/')}/{quote(relative)}/{quote(file.path)}"
            try:
                with httpx.Client(headers=peer.headers, timeout=30.0) as client:
                    copy = FileRequest(file.path, url, file.size_bytes, file.sha256)
                    self._download_one(rev_dir, copy, client, progress, retries=0)
            except (
                DownloadError,
                ModelNotFoundError,
                ModelAccessDeniedError,
                httpx.HTTPError,
                OSError,
            ) as exc:
                _log.info("peer %s could not provide %s: %s; trying the next", peer.url, file.path, exc)
                self._partial_path(rev_dir, file).unlink(missing_ok=True)
                continue
            _log.info("copied %s from peer %s", file.path, peer.url)
            return True
        return False

    def _partial_path(self, rev_dir: Path, file: FileRequest) -> Path:
        return rev_dir / ".gpustack" / "partial" / (quote(file.path, safe="") + ".partial")

    def _check_space(
        self, rev_dir: Path, missing: Sequence[FileRequest], source: str, model_id: str, revision: str
    ) -> None:
        needed = 0
        for f in missing:
            if f.size_bytes is None:
                continue
            have = resume_point(self._partial_path(rev_dir, f))
            needed += max(f.size_bytes - have, 0)
        free = free_bytes(rev_dir)
        if needed > free:
            raise DownloadError(
                f"not enough disk space for {source}:{model_id}@{revision} in {self.root}: "
                f"{needed} bytes needed, {free} bytes free; free some space or choose another --cache-dir"
            )

    def _download_one(
        self,
        rev_dir: Path,
        file: FileRequest,
        client: httpx.Client,
        progress: Callable[[DownloadProgress], None] | None,
        retries: int,
    ) -> int:
        import httpx

        partial = self._partial_path(rev_dir, file)
        partial.parent.mkdir(parents=True, exist_ok=True)
        transferred = [0]
        attempt = 0
        while True:
            try:
                digest = self._fetch_into(partial, file, client, progress, transferred)
                break
            except (httpx.TransportError, ShortRead) as exc:
                attempt += 1
                have = resume_point(partial)
                if attempt > retries:
                    raise DownloadError(
                        f"download of {file.url} failed after {attempt} attempt(s) at byte {have}: {exc}; "
                        "the partial file is kept, run the download again to resume"
                    ) from exc
                _log.warning("download of %s interrupted at byte %d (%s); resuming", file.url, have, exc)
                time.sleep(min(0.2 * 2**attempt, 5.0))
        self._verify_partial(partial, file, digest)
        dest = rev_dir / file.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, dest)
        return transferred[0]

    def _fetch_into(
        self,
        partial: Path,
        file: FileRequest,
        client: httpx.Client,
        progress: Callable[[DownloadProgress], None] | None,
        transferred: list[int],
    ) -> str | None:
        """Fill ``partial`` with the rest of ``file``; ``transferred[0]`` counts bytes received.

        Returns the sha256 of the whole partial file, computed while writing (the existing prefix
        is hashed too when resuming), or None when nothing was fetched. A large file's stream may be
        split into parallel range requests (see :mod:`gpustack_core.models._transfer`); one fsync at
        the end.
        """
        have = resume_point(partial)
        if file.size_bytes is not None and have > file.size_bytes:
            partial.unlink()
            have = 0
        if file.size_bytes is not None and have == file.size_bytes and have > 0:
            return None
        rate = _Rate(file.path, file.size_bytes, have, progress)
        try:
            digest = fetch_into_partial(
                client,
                file.url,
                partial,
                have=have,
                size=file.size_bytes,
                connections=self.connections,
                range_bytes=self.range_bytes,
                split=self.split,
                check=check_response,
                progress=rate.emit,
                transferred=transferred,
            )  # fsynced
        except OSError as exc:
            done = partial.stat().st_size if partial.exists() else 0
            if exc.errno == errno.ENOSPC:
                needed = (file.size_bytes or done) - done
                raise DownloadError(
                    f"disk full while writing {partial}: {needed} more bytes needed, "
                    f"{free_bytes(partial)} free; free some space and run the download again to resume"
                ) from exc
            raise DownloadError(f"cannot write {partial}: {exc}") from exc
        rate.emit(file.size_bytes or partial.stat().st_size, force=True, done=True)
        return digest

    def _verify_partial(self, partial: Path, file: FileRequest, digest: str | None) -> None:
        size = partial.stat().st_size
        if file.size_bytes is not None and size != file.size_bytes:
            partial.unlink()
            raise DownloadError(
                f"{file.url}: got {size} bytes, expected {file.size_bytes}; the partial file was removed, "
                "run the download again"
            )
        if file.sha256 is not None:
            digest = digest or str(_sha256_file(partial).hexdigest())
            if digest != file.sha256.lower():
                partial.unlink()
                raise DownloadError(
                    f"{file.url}: sha256 {digest} does not match the published {file.sha256}; the file was "
                    "removed, run the download again (if it persists the source is serving a bad file)"
                )


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
