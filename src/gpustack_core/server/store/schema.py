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
    "instance_events",
    "instance_parts",
    "instances",
    "limit_counters",
    "limits",
    "metadata",
    "model_access",
    "model_fallbacks",
    "model_files",
    "scale_to_zero",
    "settings",
    "team_members",
    "teams",
    "usage",
    "usage_batches",
    "usage_hourly",
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
    sa.Column("head_address", sa.String(255), nullable=True, doc="multi-worker: host:port ranks join"),
    sa.UniqueConstraint("deployment_id", "replica", name="uq_instances_deployment_replica"),
)

instance_events = sa.Table(
    "instance_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("instance_id", ID, sa.ForeignKey("instances.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Index("ix_instance_events_instance_id_id", "instance_id", "id"),
)

#: The subordinate parts (rank >= 1) of a multi-worker instance; rank 0 is the instance row itself.
instance_parts = sa.Table(
    "instance_parts",
    metadata,
    sa.Column("instance_id", ID, sa.ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("rank", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("worker_id", ID, nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False, default=""),
    sa.Column("address", sa.String(255), nullable=True),
    sa.Column("port", sa.Integer, nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("state_changed_at", sa.DateTime, nullable=False),
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

# ---------------------------------------------------------------- governance (revision 0004)

teams = sa.Table(
    "teams",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

team_members = sa.Table(
    "team_members",
    metadata,
    sa.Column("team_id", ID, sa.ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True),
)

model_access = sa.Table(
    "model_access",
    metadata,
    sa.Column("subject_kind", sa.String(16), primary_key=True, doc="'user' or 'team'"),
    sa.Column("subject_id", ID, primary_key=True),
    sa.Column("model", sa.String(255), primary_key=True, doc="a public model name, or '*' for every model"),
)

limits = sa.Table(
    "limits",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("subject_kind", sa.String(16), nullable=False, doc="'user', 'team', 'key' or 'global'"),
    sa.Column("subject_id", sa.String(36), nullable=False, doc="'' for 'global'"),
    sa.Column("model", sa.String(255), nullable=False, doc="'' for every model"),
    sa.Column("metric", sa.String(16), nullable=False, doc="'tokens' or 'requests'"),
    sa.Column("period", sa.String(16), nullable=False, doc="'minute', 'hour', 'day', 'month' or 'total'"),
    sa.Column("max_value", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("subject_kind", "subject_id", "model", "metric", "period", name="uq_limits_subject"),
)

limit_counters = sa.Table(
    "limit_counters",
    metadata,
    sa.Column("limit_id", ID, sa.ForeignKey("limits.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("window_start", sa.BigInteger, primary_key=True, doc="UTC epoch seconds; 0 for 'total'"),
    sa.Column("used", sa.BigInteger, nullable=False, default=0),
)

model_fallbacks = sa.Table(
    "model_fallbacks",
    metadata,
    sa.Column("model", sa.String(255), primary_key=True),
    sa.Column("priority", sa.Integer, primary_key=True),
    sa.Column("fallback", sa.String(255), nullable=False),
)

#: Usage batches already added (revision 0006): a batch whose commit was reported lost is retried
#: with the same id, and finding its id here means it was written (nothing counted twice).
usage_batches = sa.Table(
    "usage_batches",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("written_at", sa.DateTime, nullable=False, index=True),
)

usage_hourly = sa.Table(
    "usage_hourly",
    metadata,
    sa.Column("user_id", sa.String(36), primary_key=True),
    sa.Column("key_id", sa.String(32), primary_key=True, doc="'' when the request used a session"),
    sa.Column("model", sa.String(255), primary_key=True),
    sa.Column("hour", sa.DateTime, primary_key=True, doc="naive UTC start of the hour"),
    sa.Column("prompt_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("completion_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("requests", sa.BigInteger, nullable=False, default=0),
)

scale_to_zero = sa.Table(
    "scale_to_zero",
    metadata,
    sa.Column("deployment_id", ID, sa.ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("idle_timeout_s", sa.Float, nullable=False),
    sa.Column("wake_replicas", sa.Integer, nullable=False),
)
