"""``gpustack-core download``: bring a model's files into the shared cache, with a progress bar."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from gpustack_core.errors import GPUStackError
from gpustack_core.models.api import default_cache_dir, download_model
from gpustack_core.types import DownloadProgress, SourceOptions

from ._common import console, make_host, print_json

__all__ = ["register"]


@contextmanager
def _show_library_log(err: Console) -> Iterator[None]:
    """Show the library's INFO/WARNING lines (waiting for a lock, resuming, re-fetching) on stderr."""
    logger = logging.getLogger("gpustack_core")
    handler = RichHandler(console=err, show_time=False, show_path=False)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


class _Bars:
    """One rich progress task per file, updated from download progress events."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, event: DownloadProgress) -> None:
        task = self.tasks.get(event.file)
        if task is None:
            task = self.progress.add_task(event.file, total=event.total_bytes)
            self.tasks[event.file] = task
        self.progress.update(task, completed=event.downloaded_bytes, total=event.total_bytes)


def download(
    model_ref: str = typer.Argument(
        ..., help="SOURCE:ID[@REVISION][#SELECTOR], e.g. huggingface:org/repo#Q4_K_M"
    ),
    cache_dir: str = typer.Option(
        None,
        "--cache-dir",
        help="Shared model cache (default: $GPUSTACK_CORE_CACHE_DIR or ~/.cache/gpustack-core/models).",
    ),
    offline: bool = typer.Option(False, "--offline", help="Use the cache only; fail if files are missing."),
    token: str = typer.Option(
        None, "--token", envvar="GPUSTACK_CORE_TOKEN", help="Access token for gated models."
    ),
    endpoint: str = typer.Option(
        None, "--endpoint", help="Base URL of the source (hub mirror, test server)."
    ),
    timeout: float = typer.Option(30.0, "--timeout", help="Network timeout in seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON, no progress bar."),
) -> None:
    """Download the files an engine needs for a model; resumes interrupted downloads."""
    options = SourceOptions(
        cache_dir=cache_dir or default_cache_dir(),
        offline=offline,
        token=token or None,
        endpoint=endpoint or None,
        timeout_s=timeout,
    )
    err = console(stderr=True)
    host = make_host()
    try:
        if as_json:
            with _show_library_log(err):
                metadata, result = download_model(host, model_ref, options)
        else:
            with (
                Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    TimeRemainingColumn(),
                    console=err,
                ) as progress,
                _show_library_log(err),
            ):
                metadata, result = download_model(host, model_ref, options, _Bars(progress))
    except GPUStackError as exc:
        err.print(f"[red]error[/]: {exc}", markup=True, highlight=False)
        raise typer.Exit(1) from exc
    if as_json:
        print_json(
            {
                "ref": str(result.ref),
                "commit": metadata.commit,
                "format": metadata.format.value,
                "root": result.root,
                "paths": list(result.paths),
                "downloaded_bytes": result.downloaded_bytes,
            }
        )
        return
    out = console()
    out.print(
        f"{result.ref}: {len(result.paths)} file(s) in {result.root} "
        f"({result.downloaded_bytes} bytes transferred)"
    )
    for path in result.paths:
        out.print(f"  {path}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``download`` command."""
    app.command("download")(download)
