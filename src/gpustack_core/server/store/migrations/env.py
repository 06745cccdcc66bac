"""Alembic environment: runs on the connection the server hands in (``config.attributes``)."""

from __future__ import annotations

from alembic import context

from gpustack_core.server.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "gpustack-core migrations run through gpustack_core.server.store.migrate.upgrade(), "
        "which passes the connection in; the alembic command line is not supported"
    )
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
