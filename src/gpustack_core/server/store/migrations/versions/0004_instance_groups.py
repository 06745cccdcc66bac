"""Instance groups: the subordinate parts of a multi-worker instance, and the group's head address.

Revision ID: 0004_instance_groups
Revises: 0003_first_deploy
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_instance_groups"
down_revision = "0003_first_deploy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``instances.head_address`` and the ``instance_parts`` table."""
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("head_address", sa.String(255), nullable=True))
    op.create_table(
        "instance_parts",
        sa.Column("instance_id", sa.String(36), nullable=False),
        sa.Column("rank", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("worker_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("address", sa.String(255), nullable=True),
        sa.Column("port", sa.Integer, nullable=True),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("state_changed_at", sa.DateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name="fk_instance_parts_instance_id_instances",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("instance_id", "rank", name="pk_instance_parts"),
    )
    op.create_index("ix_instance_parts_worker_id", "instance_parts", ["worker_id"])


def downgrade() -> None:
    """Drop the parts table and the head address."""
    op.drop_index("ix_instance_parts_worker_id", table_name="instance_parts")
    op.drop_table("instance_parts")
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("head_address")
