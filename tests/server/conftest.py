"""Fixtures of the server tests: databases (SQLite always; PostgreSQL and MariaDB when their URLs
are set), and a tiny GGUF model. Helpers live in ``server_helpers`` (imported by name: this
directory is put on ``sys.path``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_helpers import MYSQL_ENV, POSTGRES_ENV, _fresh_database


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _db_params() -> list[Any]:
    return [
        pytest.param("sqlite", id="sqlite"),
        pytest.param(
            "postgresql",
            id="postgresql",
            marks=pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason=f"{POSTGRES_ENV} not set"),
        ),
        pytest.param(
            "mysql",
            id="mysql",
            marks=pytest.mark.skipif(not os.environ.get(MYSQL_ENV), reason=f"{MYSQL_ENV} not set"),
        ),
    ]


@pytest.fixture(params=_db_params())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """``None`` (SQLite in the data directory), or a fresh PostgreSQL / MariaDB database."""
    if request.param == "sqlite":
        yield None
    elif request.param == "postgresql":
        yield from _fresh_database(os.environ[POSTGRES_ENV])
    else:
        yield from _fresh_database(os.environ[MYSQL_ENV])


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llama GGUF (about 0.5 MB) that engines load and the estimator reads."""
    from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf

    return write_llama_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf", TinyLlamaSpec.tiny())


@pytest.fixture
def store(tmp_path: Path, database_url: str | None) -> Iterator[Any]:
    """A migrated :class:`~gpustack_core.server.store.Store` on each configured database."""
    from gpustack_core.server.store import Store, migrate
    from gpustack_core.server.store.database import make_engine

    engine = make_engine(database_url or f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate.upgrade(engine)
    yield Store(engine)
    engine.dispose()
