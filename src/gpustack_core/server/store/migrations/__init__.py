"""Alembic migration scripts of the server's database, shipped inside the package."""
