"""Instance progress: what the current state waits for (download bytes/ETA, engine install phase).

Revision ID: 0003_first_deploy
Revises: 0002_governance
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_first_deploy"
down_revision = "0002_governance"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``instances.progress`` (JSON text, nullable)."""
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("progress", sa.Text, nullable=True))


def downgrade() -> None:
    """Drop ``instances.progress``."""
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("progress")
