"""Trigram indexes across words, so a `q=` phrase seeks on the trigrams its words share (PostgreSQL).

pg_trgm ends a word at every character that is not a letter or digit, so 0003's indexes hold
no trigram spanning two words: a phrase's candidates were every row holding all its words
anywhere, each rechecked. These index the text with a few separators made a letter (`q`):
translate(column, ' -,./', 'qqqqq'). The search writes its condition over the same
expression (app/models/product.py, `joined_words`) and rechecks the column itself.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 10:00:00

"""
import logging
import time

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

COLUMNS = ("name", "description")
# Frozen here: the index is this exact expression, whatever the code says later.
SEPARATORS, JOINERS = " -,./", "qqqqq"
ATTEMPTS = 3
log = logging.getLogger("alembic.runtime.migration")
DEADLOCK = "40P01"


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    # 0003 created pg_trgm (or found it); its operator class is named with its schema, so the
    # index builds whatever the search_path.
    schema = op.get_bind().scalar(sa.text(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'pg_trgm'"
    ))
    # As in 0003: CONCURRENTLY lets writes go on while a big table is indexed, outside any
    # transaction; indexes built beforehand under these names are kept, an INVALID one rebuilt.
    with op.get_context().autocommit_block():
        for column in COLUMNS:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    _build_concurrently(column, schema)
                    break
                except sa.exc.OperationalError as exc:
                    # A database-wide ANALYZE (or VACUUM) that reaches this table during the build
                    # deadlocks with it (see 0003): build the INVALID leftover again.
                    if getattr(exc.orig, "sqlstate", None) != DEADLOCK or attempt == ATTEMPTS:
                        raise
                    log.warning("building the %s phrase index deadlocked (attempt %d); retrying", column, attempt)
                    time.sleep(attempt)


def _build_concurrently(column, schema):
    name = f"ix_products_{column}_phrase_trgm"
    valid = op.get_bind().scalar(
        sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"), {"name": name}
    )
    if valid is False:
        op.drop_index(name, table_name="products", postgresql_concurrently=True)
    joined = sa.func.translate(sa.column(column), SEPARATORS, JOINERS).label(f"{column}_joined")
    op.create_index(
        name, "products", [joined], if_not_exists=True, postgresql_concurrently=True,
        postgresql_using="gin", postgresql_ops={f"{column}_joined": f'"{schema}".gin_trgm_ops'},
    )


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in COLUMNS:
        op.drop_index(f"ix_products_{column}_phrase_trgm", table_name="products", if_exists=True)
