"""Pinned engine versions side by side: one directory per ``<engine>/<version>`` under the engines
directory, holding a virtual environment (or a built binary) and a marker file written last.

Layout::

    <engines_dir>/<engine>/<version>/
        gpustack-installation.json   the EngineInstallation, written when the install is complete
        bin/...                      the environment's programs (or the built binary)

A directory without the marker is an interrupted install: it is never listed, and the next install
of that version starts from scratch. Installs of one version are serialised with a lock file.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gpustack_core._platform import file_lock
from gpustack_core.errors import EngineError, EngineNotInstalledError

if TYPE_CHECKING:
    from gpustack_core.contracts import Engine
    from gpustack_core.types import EngineInstallation, EngineOptions

__all__ = [
    "ENGINES_DIR_ENV",
    "MARKER_FILE",
    "default_engine_options",
    "default_engines_dir",
    "ensure_installed",
    "install_lock",
    "install_progress",
    "install_venv",
    "install_version",
    "list_installations",
    "located_on_path",
    "record_installation",
    "remove_installation",
    "run_logged",
    "version_dir",
    "version_sort_key",
]

#: Environment variable that overrides the default engines directory.
ENGINES_DIR_ENV = "GPUSTACK_CORE_ENGINES_DIR"
#: Written last into a version's directory; its presence means the install is complete.
MARKER_FILE = "gpustack-installation.json"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def default_engines_dir() -> Path:
    """``$GPUSTACK_CORE_ENGINES_DIR``, else ``~/.cache/gpustack-core/engines``."""
    override = os.environ.get(ENGINES_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "gpustack-core" / "engines"


def default_engine_options(wheelhouse: str | None = None, offline: bool = False) -> EngineOptions:
    """Engine options rooted at :func:`default_engines_dir`."""
    from gpustack_core.types.engines import EngineOptions

    return EngineOptions(engines_dir=str(default_engines_dir()), wheelhouse=wheelhouse, offline=offline)


def _check_name(kind: str, value: str) -> str:
    if not _SAFE_NAME.match(value) or ".." in value:
        raise EngineError(
            f"invalid engine {kind} {value!r}: use letters, digits and '.', '_', '+', '-' (e.g. '0.3.36')"
        )
    return value


def version_dir(options: EngineOptions, engine: str, version: str) -> Path:
    """The directory of one engine version (it may not exist yet)."""
    root = Path(options.engines_dir).expanduser()
    return root / _check_name("name", engine) / _check_name("version", version)


def version_sort_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Order versions naturally: ``0.3.9`` < ``0.3.36`` < ``0.10.0``; text parts after numbers."""
    parts = re.findall(r"\d+|[A-Za-z]+", version)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


def record_installation(installation: EngineInstallation, directory: Path) -> None:
    """Write the marker (atomically) that makes ``directory`` a complete installation."""
    tmp = directory / f".{MARKER_FILE}.tmp"
    tmp.write_text(installation.model_dump_json(indent=2))
    os.replace(tmp, directory / MARKER_FILE)


def list_installations(options: EngineOptions, engine: str) -> list[EngineInstallation]:
    """Complete installations of ``engine`` under the engines directory, oldest version first.

    An installation whose program has disappeared is skipped. Never raises for a missing directory.
    """
    from gpustack_core.types.engines import EngineInstallation

    base = Path(options.engines_dir).expanduser() / _check_name("name", engine)
    found: list[EngineInstallation] = []
    try:
        candidates = sorted(base.iterdir())
    except OSError:
        return found
    for candidate in candidates:
        marker = candidate / MARKER_FILE
        try:
            installation = EngineInstallation.model_validate_json(marker.read_text())
        except (OSError, ValueError):
            continue
        if installation.engine == engine and Path(installation.executable).exists():
            found.append(installation)
    found.sort(key=lambda i: version_sort_key(i.version))
    return found


def remove_installation(installation: EngineInstallation, options: EngineOptions) -> None:
    """Delete an installation made under the engines directory.

    Raises:
        EngineError: it was located on the system (not ours to delete) or lies elsewhere.
    """
    if installation.origin == "located" or installation.prefix is None:
        raise EngineError(
            f"{installation.engine} {installation.version} at {installation.executable} was found on the "
            "system, not installed by gpustack-core; remove it with the tool that installed it"
        )
    expected = version_dir(options, installation.engine, installation.version).resolve()
    prefix = Path(installation.prefix).resolve()
    if prefix != expected:
        raise EngineError(
            f"refusing to remove {prefix}: it is not {expected}, the directory gpustack-core installs "
            f"{installation.engine} {installation.version} into"
        )
    (prefix / MARKER_FILE).unlink(missing_ok=True)  # incomplete from now on, even if rmtree stops
    shutil.rmtree(prefix)


@contextlib.contextmanager
def install_lock(options: EngineOptions, engine: str, version: str) -> Iterator[Path]:
    """Hold an exclusive lock for installing one version; yields the version's directory."""
    directory = version_dir(options, engine, version)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(directory.parent / f".{version}.lock"):
        yield directory


def run_logged(argv: Sequence[str], what: str, log: Path) -> None:
    """Run one step of an install, appending the command line and its output to ``log``.

    Parameters:
        argv: the command.
        what: the step, for the error message, e.g. ``"creating the environment"``.
        log: the install's log file (see :func:`install_version`).

    Raises:
        EngineNotInstalledError: the command failed; the message has the log's tail.
    """
    with log.open("ab") as out:
        out.write(f"{STEP_PREFIX}{what}\n$ {shlex.join(argv)}\n".encode())
        out.flush()
        result = subprocess.run(list(argv), stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise EngineNotInstalledError(f"{what} failed (exit {result.returncode}); log {log}:\n{tail}")


#: Each step :func:`run_logged` runs starts with this line in the install log, then its ``what``.
STEP_PREFIX = "## step: "


def install_progress(
    options: EngineOptions, engine: str, version: str, tail_lines: int = 5
) -> dict[str, Any] | None:
    """What an install in progress is doing, read from its log (see :func:`install_version`).

    Parameters:
        options: the engines directory.
        engine: engine name.
        version: the version being installed.
        tail_lines: how many of the log's last non-empty lines to return.

    Returns:
        ``{"phase": <the current step>, "log_tail": [...], "log": <path>, "log_bytes": n}``, or
        ``None`` when no install log of that version exists (yet).
    """
    base = Path(options.engines_dir).expanduser() / _check_name("name", engine)
    logs = sorted(base.glob(f".{_check_name('version', version)}.*.log"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return None
    log = logs[-1]
    try:
        with log.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode(errors="replace")
            lines = [line.rstrip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
            steps = [line[len(STEP_PREFIX) :] for line in lines if line.startswith(STEP_PREFIX)]
            if not steps and size > 64 * 1024:  # a long step (a build): its line is further back
                handle.seek(0)
                prefix = STEP_PREFIX.encode()
                steps = [
                    line[len(prefix) :].decode(errors="replace").rstrip()
                    for line in handle
                    if line.startswith(prefix)
                ]
    except OSError:
        return None
    output = [line for line in lines if not line.startswith(STEP_PREFIX)]
    return {
        "phase": steps[-1] if steps else "starting",
        "log_tail": output[-tail_lines:],
        "log": str(log),
        "log_bytes": size,
    }


def install_version(
    options: EngineOptions,
    engine: str,
    version: str,
    populate: Callable[[Path, Path], None],
    *,
    executable: str,
    what: str,
    origin: Literal["installed", "built"] = "installed",
    log_name: str = "install",
) -> EngineInstallation:
    """Install one version into its own directory, all or nothing: the common part of every install.

    Under :func:`install_lock`: a complete installation of that version is returned as is; an
    interrupted one is deleted; then ``populate(directory, log)`` fills the new, empty directory
    (running its steps with :func:`run_logged`), ``executable`` must exist in it, and the marker is
    written last. Whatever goes wrong (an exception, an interrupt), the directory is deleted, so a
    version is either complete or absent.

    Parameters:
        options: the engines directory.
        engine: engine name (directory name).
        version: engine version (directory name).
        populate: fills ``directory`` (first argument); may write to the log file (second argument),
            ``<engines_dir>/<engine>/.<version>.<log_name>.log``.
        executable: the program, relative to the version's directory, e.g. ``"bin/llama-server"``.
        what: what is installed, for messages, e.g. ``"vllm==0.7.3"``.
        origin: recorded in the installation: ``"installed"`` (downloaded) or ``"built"``.
        log_name: the middle of the log file's name.

    Returns:
        The recorded installation.

    Raises:
        EngineNotInstalledError: ``populate`` failed, or ``executable`` does not exist afterwards.
    """
    from gpustack_core.types.engines import EngineInstallation

    with install_lock(options, engine, version) as directory:
        existing = directory / MARKER_FILE
        if existing.exists():
            return EngineInstallation.model_validate_json(existing.read_text())
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        log = directory.parent / f".{version}.{log_name}.log"
        log.write_text("")
        try:
            populate(directory, log)
            program = directory / executable
            if not program.exists():
                raise EngineNotInstalledError(
                    f"installed {what} but {program} does not exist: {what} does not provide the "
                    f"{program.name!r} program"
                )
            installation = EngineInstallation(
                engine=engine, version=version, executable=str(program), prefix=str(directory), origin=origin
            )
            record_installation(installation, directory)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return installation


def install_venv(
    engine: str,
    version: str,
    requirements: Sequence[str],
    executable: str,
    options: EngineOptions,
    *,
    python: str | None = None,
) -> EngineInstallation:
    """Install ``requirements`` into a fresh virtual environment for one engine version.

    From the package index, or only from ``options.wheelhouse`` (``pip --no-index --find-links``)
    when one is set; ``options.offline`` without a wheelhouse is refused. An existing complete
    installation is returned as is; an interrupted one is replaced (see :func:`install_version`).

    Parameters:
        engine: engine name (directory name).
        version: engine version (directory name).
        requirements: pip requirement specifiers, e.g. ``["vllm==0.10.1.1"]``.
        executable: the program's name inside the environment's ``bin/``, e.g. ``"vllm"``.
        options: engines directory, wheelhouse, offline.
        python: interpreter to create the environment with; default: the current one.

    Raises:
        EngineNotInstalledError: venv or pip failed (with the log's tail), or the program is missing.
    """
    if options.offline and not options.wheelhouse:
        raise EngineNotInstalledError(
            f"cannot install {engine} {version} offline without a wheelhouse: set EngineOptions.wheelhouse "
            "to a directory of wheels (pip download ... -d DIR on a connected machine)"
        )

    def populate(directory: Path, log: Path) -> None:
        # No pip inside: this process's pip installs into the environment (pip --python).
        venv = [python or sys.executable, "-m", "venv", "--without-pip", str(directory)]
        run_logged(venv, "creating the environment", log)
        pip = [sys.executable, "-m", "pip", "--python", str(directory / "bin" / "python"), "install"]
        pip += ["--disable-pip-version-check"]
        if options.wheelhouse:
            pip += ["--no-index", "--find-links", options.wheelhouse]
        run_logged([*pip, *requirements], f"pip install {' '.join(requirements)}", log)

    what = " ".join(requirements)
    return install_version(options, engine, version, populate, executable=f"bin/{executable}", what=what)


def ensure_installed(engine: Engine, version: str | None, options: EngineOptions) -> EngineInstallation:
    """The installation of ``version`` (default: the plugin's default version): located if
    present, else installed through the plugin (which may take long: a download or a build)."""
    wanted = version or engine.default_version()
    found = engine.locate(wanted, options)
    if found is not None:
        return found
    return engine.install(wanted, options)


def located_on_path(engine: str, program: str, version: str = "system") -> list[EngineInstallation]:
    """``program`` found on ``PATH`` as a located installation (empty list when absent)."""
    from gpustack_core.types.engines import EngineInstallation

    found = shutil.which(program)
    if found is None:
        return []
    return [EngineInstallation(engine=engine, version=version, executable=found, origin="located")]
