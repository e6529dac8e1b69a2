"""Trigram indexes so a `q=` substring search seeks instead of scanning (PostgreSQL; SQLite gets its own in 0004).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 13:05:00

"""
import logging
import time

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

COLUMNS = ("name", "description")
ATTEMPTS = 3
log = logging.getLogger("alembic.runtime.migration")
DEADLOCK = "40P01"


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
    # A plain CREATE INDEX blocks writes while it builds (~10 s per million rows on a 2-core VM
    # each); CONCURRENTLY lets them go on, but cannot run inside a transaction. Indexes built
    # beforehand under these names are kept. One left INVALID by an interrupted concurrent
    # build (by us or by hand) would be kept too by IF NOT EXISTS, and never used: rebuild it.
    with op.get_context().autocommit_block():
        for column in COLUMNS:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    _build_concurrently(column, schema)
                    break
                except sa.exc.OperationalError as exc:
                    # A concurrent build waits for every older snapshot: a database-wide ANALYZE
                    # (or VACUUM) that reaches this table meanwhile deadlocks with it, and one of
                    # the two is cancelled. Ours leaves an INVALID index behind: build it again.
                    if getattr(exc.orig, "sqlstate", None) != DEADLOCK or attempt == ATTEMPTS:
                        raise
                    log.warning("building the %s search index deadlocked (attempt %d); retrying", column, attempt)
                    time.sleep(attempt)


def _build_concurrently(column, schema):
    name = f"ix_products_{column}_trgm"
    valid = op.get_bind().scalar(
        sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"), {"name": name}
    )
    if valid is False:
        op.drop_index(name, table_name="products", postgresql_concurrently=True)
    op.create_index(
        name, "products", [column], if_not_exists=True, postgresql_concurrently=True,
        postgresql_using="gin", postgresql_ops={column: f'"{schema}".gin_trgm_ops'},
    )


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in COLUMNS:
        op.drop_index(f"ix_products_{column}_trgm", table_name="products", if_exists=True)
    # The extension stays: other objects may have come to depend on it.
