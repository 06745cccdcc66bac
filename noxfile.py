"""Development sessions. They run in the environment the README's setup built (venv_backend none),
so `nox -s <session>` needs no network once `.venv` exists."""

from __future__ import annotations

import sys

import nox

#: The interpreter nox runs under: the README's `.venv`, where everything is installed.
PY = sys.executable

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "typecheck", "docs", "tests"]
nox.options.error_on_missing_interpreters = True

SRC_PATHS = ["src", "plugins", "tests", "benchmarks", "noxfile.py", "scripts", "docs/examples"]


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
def slow(session: nox.Session) -> None:
    """Slow suites: real engine builds and end-to-end runs."""
    session.run(PY, "-m", "pytest", "-m", "slow", *session.posargs)


@nox.session
def console(session: nox.Session) -> None:
    """The web console in headless Chromium (Debian's `chromium`); GPUSTACK_CONSOLE_SCREENSHOTS=docs/console
    refreshes the committed screenshots."""
    session.run(PY, "-m", "pytest", "-m", "console", "tests/console", *session.posargs)


@nox.session
def ci(session: nox.Session) -> None:
    """Everything CI runs, in order: lint, typecheck, docs, tests, console, API fuzzing, slow suites."""
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
