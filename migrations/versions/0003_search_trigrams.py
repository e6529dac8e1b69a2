"""Trigram indexes so a `q=` substring search seeks instead of scanning (PostgreSQL; SQLite gets its own in 0004).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 13:05:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

COLUMNS = ("name", "description")


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    # pg_trgm ships with PostgreSQL and is trusted (PG 13+): the database owner may create it.
    # It lands in the current schema unless a DBA installed it elsewhere first; its operator
    # class is named with that schema, so the index builds whatever the search_path.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema = op.get_bind().scalar(sa.text(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'pg_trgm'"
    ))
    # A plain CREATE INDEX blocks writes while it builds (both: ~10 s per million rows on a
    # 2-core VM). On a big, busy table, build them beforehand with CREATE INDEX CONCURRENTLY
    # under these names: the migration then finds them and moves on.
    for column in COLUMNS:
        op.create_index(
            f"ix_products_{column}_trgm", "products", [column], if_not_exists=True,
            postgresql_using="gin", postgresql_ops={column: f'"{schema}".gin_trgm_ops'},
        )


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in COLUMNS:
        op.drop_index(f"ix_products_{column}_trgm", table_name="products")
    # The extension stays: other objects may have come to depend on it.
