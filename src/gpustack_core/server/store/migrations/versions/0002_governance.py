"""Governance: teams and members, model access, limits and their counters, fallbacks, hourly usage,
scale-to-zero policies.

Revision ID: 0002_governance
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_governance"
down_revision = "0001"
branch_labels = None
depends_on = None

_TABLES = (
    "scale_to_zero",
    "usage_hourly",
    "model_fallbacks",
    "limit_counters",
    "limits",
    "model_access",
    "team_members",
    "teams",
)


def upgrade() -> None:
    """Create the governance tables."""
    op.create_table(
        "teams",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_teams"),
        sa.UniqueConstraint("name", name="uq_teams_name"),
    )
    op.create_table(
        "team_members",
        sa.Column("team_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name="fk_team_members_team_id_teams", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_team_members_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("team_id", "user_id", name="pk_team_members"),
    )
    op.create_index("ix_team_members_user_id", "team_members", ["user_id"])
    op.create_table(
        "model_access",
        sa.Column("subject_kind", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("subject_kind", "subject_id", "model", name="pk_model_access"),
    )
    op.create_table(
        "limits",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("subject_kind", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("metric", sa.String(16), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("max_value", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_limits"),
        sa.UniqueConstraint(
            "subject_kind", "subject_id", "model", "metric", "period", name="uq_limits_subject"
        ),
    )
    op.create_table(
        "limit_counters",
        sa.Column("limit_id", sa.String(36), nullable=False),
        sa.Column("window_start", sa.BigInteger, nullable=False),
        sa.Column("used", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(
            ["limit_id"], ["limits.id"], name="fk_limit_counters_limit_id_limits", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("limit_id", "window_start", name="pk_limit_counters"),
    )
    op.create_table(
        "model_fallbacks",
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("fallback", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("model", "priority", name="pk_model_fallbacks"),
    )
    op.create_table(
        "scale_to_zero",
        sa.Column("deployment_id", sa.String(36), nullable=False),
        sa.Column("idle_timeout_s", sa.Float, nullable=False),
        sa.Column("wake_replicas", sa.Integer, nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name="fk_scale_to_zero_deployment_id_deployments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("deployment_id", name="pk_scale_to_zero"),
    )
    op.create_table(
        "usage_hourly",
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("hour", sa.DateTime, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "key_id", "model", "hour", name="pk_usage_hourly"),
    )


def downgrade() -> None:
    """Drop the governance tables."""
    for table in _TABLES:
        op.drop_table(table)
