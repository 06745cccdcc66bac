"""The server's store: every database read and write, its tables and their migrations.

::

    schema.py      the tables (SQLAlchemy Core), one metadata for every database
    records.py     what the store returns and the REST API sends (pydantic models)
    cluster.py     Store: workers, deployments, instances, model files (on top of accounts.py)
    accounts.py    settings, users, API keys and sessions, token usage
    _sql.py        pieces both share: ids, timestamps, JSON columns, the portable upsert
    database.py    engines for SQLite, PostgreSQL and MySQL/MariaDB; first-start bootstrap
    migrate.py     alembic upgrades; migrations/versions/ holds the revisions
"""

from __future__ import annotations

from ._sql import ConflictError, utcnow
from .cluster import Store
from .database import Bootstrap, bootstrap, make_engine

__all__ = ["Bootstrap", "ConflictError", "Store", "bootstrap", "make_engine", "utcnow"]
