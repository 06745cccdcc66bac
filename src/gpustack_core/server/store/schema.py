"""The server's database schema (SQLAlchemy Core tables), portable across SQLite, PostgreSQL and MySQL.

JSON values are stored as text (``Text``) so that every dialect treats them the same. Times are naive
UTC ``DateTime`` values. Migrations under ``migrations/versions`` create exactly these tables; a test
compares them with alembic's autogenerate so the two cannot drift apart.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "api_keys",
    "deployments",
    "instances",
    "metadata",
    "model_files",
    "settings",
    "usage",
    "users",
    "workers",
]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = sa.String(36)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("allowed_models", sa.Text, nullable=True),
    sa.Column("expires_at", sa.DateTime, nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("last_used_at", sa.DateTime, nullable=True),
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("address", sa.String(255), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("info", sa.Text, nullable=False),
    sa.Column("last_heartbeat_at", sa.DateTime, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("replicas", sa.Integer, nullable=False),
    sa.Column("deleting", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

instances = sa.Table(
    "instances",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column(
        "deployment_id", ID, sa.ForeignKey("deployments.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("replica", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("desired", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False, default=""),
    sa.Column("worker_id", ID, nullable=True, index=True),
    sa.Column("placement", sa.Text, nullable=True),
    sa.Column("explanation", sa.Text, nullable=True),
    sa.Column("port", sa.Integer, nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("download", sa.Text, nullable=True),
    sa.Column("progress", sa.Text, nullable=True),
    sa.Column("restarts", sa.Integer, nullable=False, default=0),
    sa.Column("version", sa.Integer, nullable=False, default=0),
    sa.Column("state_changed_at", sa.DateTime, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("deployment_id", "replica", name="uq_instances_deployment_replica"),
)

model_files = sa.Table(
    "model_files",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("worker_id", ID, nullable=False),
    sa.Column("model", sa.String(512), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("downloaded_bytes", sa.BigInteger, nullable=False, default=0),
    sa.Column("total_bytes", sa.BigInteger, nullable=True),
    sa.Column("paths", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False, default=""),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("worker_id", "model", name="uq_model_files_worker_model"),
)

usage = sa.Table(
    "usage",
    metadata,
    sa.Column("user_id", sa.String(36), primary_key=True),
    sa.Column("key_id", sa.String(32), primary_key=True, doc="'' when the request used a session"),
    sa.Column("model", sa.String(255), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("prompt_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("completion_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("requests", sa.BigInteger, nullable=False, default=0),
)
