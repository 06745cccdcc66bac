"""Development sessions. They run in the environment the README's setup built (venv_backend none),
so `nox -s <session>` needs no network once `.venv` exists."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
from pathlib import Path

import nox

#: The interpreter nox runs under: the README's `.venv`, where everything is installed.
PY = sys.executable

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "typecheck", "docs", "tests"]
nox.options.error_on_missing_interpreters = True

SRC_PATHS = ["src", "plugins", "tests", "benchmarks", "noxfile.py", "scripts", "docs/examples"]

#: The native llama.cpp build the slow suite's native variants use (llama-cpp-python version).
NATIVE_LLAMA_CPP = "0.3.36"
#: Where `ci` logs the native build it runs in the background.
NATIVE_BUILD_LOG = Path(".nox") / "native-llama-cpp-build.log"
#: The background build `ci` started, for `slow` to wait on (one nox process runs every session).
_native_build: list[subprocess.Popen[bytes]] = []


def _install_native_command() -> list[str]:
    return [str(Path(PY).parent / "gpustack-core"), "engines", "install", "llama.cpp", NATIVE_LLAMA_CPP]


def _stop_native_build() -> None:
    """Never leave the background build behind nox (its cmake and compilers share its group)."""
    for build in _native_build:
        if build.poll() is None:
            os.killpg(build.pid, signal.SIGTERM)
            build.wait()


def _stop_native_build_on_signal(signum: int, frame: object) -> None:
    """SIGTERM/SIGHUP skip atexit: stop the build, then die of the signal as nox would have."""
    _stop_native_build()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _start_native_build() -> None:
    """Build the native llama.cpp now, niced, while lint, tests, console and fuzz run (they use
    the prebuilt runtime); a cached build returns at once."""
    NATIVE_BUILD_LOG.parent.mkdir(exist_ok=True)
    with NATIVE_BUILD_LOG.open("wb") as log:
        command = ["nice", "-n", "19", *_install_native_command()]
        build = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _native_build.append(build)
    atexit.register(_stop_native_build)  # normal exit and Ctrl-C
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_native_build_on_signal)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and format check on everything we write."""
    session.run(PY, "-m", "ruff", "check", *SRC_PATHS)
    session.run(PY, "-m", "ruff", "format", "--check", *SRC_PATHS)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy strict on the core library."""
    session.run(PY, "-m", "mypy", "src/gpustack_core")


@nox.session
def docs(session: nox.Session) -> None:
    """Regenerate the hook reference from the docstrings; fail if the committed copy is stale."""
    session.run(PY, "scripts/gen_reference.py", "--check")


@nox.session
def tests(session: nox.Session) -> None:
    """The default test suite (no slow marker; the browser tests run in `console`)."""
    session.run(PY, "-m", "pytest", "-m", "not slow and not console", *session.posargs)


@nox.session
def native(session: nox.Session) -> None:
    """Build the native llama.cpp (llama-server and ggml-rpc-server from the llama-cpp-python sdist;
    20-40 minutes on two cores the first time, then cached) that the slow suite's native variants,
    real RPC groups and speculative decoding use."""
    session.run(*_install_native_command())


@nox.session
def slow(session: nox.Session) -> None:
    """Slow suites: real engine builds and end-to-end runs. Tests that need the native llama.cpp
    skip without it, unless `ci` started its build: then they wait for it and fail if it failed."""
    env: dict[str, str] = {}
    if _native_build:
        build = _native_build[0]
        if build.poll() is None:
            session.log(f"waiting for the native llama.cpp build (log: {NATIVE_BUILD_LOG})")
        if build.wait() != 0:
            tail = NATIVE_BUILD_LOG.read_text(errors="replace")[-4000:]
            session.error(f"the native llama.cpp build failed ({NATIVE_BUILD_LOG}):\n{tail}")
        env["GPUSTACK_CORE_TEST_LLAMA_CPP_NATIVE"] = "1"
    session.run(PY, "-m", "pytest", "-m", "slow", *session.posargs, env=env)


@nox.session
def console(session: nox.Session) -> None:
    """The web console in headless Chromium (Debian's `chromium`); GPUSTACK_CONSOLE_SCREENSHOTS=docs/console
    refreshes the committed screenshots."""
    session.run(PY, "-m", "pytest", "-m", "console", "tests/console", *session.posargs)


@nox.session
def ci(session: nox.Session) -> None:
    """Everything CI runs, in order: lint, typecheck, docs, tests, console, API fuzzing, slow suites,
    with the native llama.cpp build running in the background from the start (the slow suite
    waits for it)."""
    _start_native_build()
    session.notify("lint")
    session.notify("typecheck")
    session.notify("docs")
    session.notify("tests")
    session.notify("console")
    session.notify("fuzz")
    session.notify("slow")


@nox.session
def fuzz(session: nox.Session) -> None:
    """schemathesis against the management API's OpenAPI document as admin, user, unauthenticated
    and worker (about 40 s each; ``-- --max-time N`` per credential)."""
    session.run(PY, "scripts/fuzz_api.py", *session.posargs)


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Run every benchmark under benchmarks/ and print their tables."""
    session.run(PY, "-m", "benchmarks", *session.posargs)
