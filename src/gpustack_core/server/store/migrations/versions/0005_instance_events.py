"""Instance state timeline: ``instance_events`` (state, message, time), deleted with the instance.

Revision ID: 0005_instance_events
Revises: 0004_instance_groups
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_instance_events"
down_revision = "0004_instance_groups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``instance_events``."""
    op.create_table(
        "instance_events",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("instance_id", sa.String(36), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name="fk_instance_events_instance_id_instances",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_instance_events"),
    )
    op.create_index("ix_instance_events_instance_id_id", "instance_events", ["instance_id", "id"])


def downgrade() -> None:
    """Drop ``instance_events`` (with its index: MySQL refuses to drop an index a foreign key uses)."""
    op.drop_table("instance_events")
