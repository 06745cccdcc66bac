"""Idempotent usage writes: ``usage_batches`` holds the id of every usage batch written.

Revision ID: 0006_usage_batches
Revises: 0005_instance_events
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_usage_batches"
down_revision = "0005_instance_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``usage_batches``."""
    op.create_table(
        "usage_batches",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("written_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_usage_batches"),
    )
    op.create_index("ix_usage_batches_written_at", "usage_batches", ["written_at"])


def downgrade() -> None:
    """Drop ``usage_batches``."""
    op.drop_table("usage_batches")
