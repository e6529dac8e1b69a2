"""SQLite's substring index for `q=`: an FTS5 table with the trigram tokenizer, kept by triggers.

PostgreSQL has its trigram indexes (0003). SQLite 3.34+ is needed (Python 3.11 ships newer).
A later migration that rebuilds `products` (Alembic batch mode) must recreate these triggers.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 13:40:00

"""
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# External content: the index stores only trigrams; the text stays in `products`.
CREATE = [
    """CREATE VIRTUAL TABLE products_search USING fts5(
       name, description, content='products', content_rowid='id', tokenize='trigram')""",
    """CREATE TRIGGER products_search_insert AFTER INSERT ON products BEGIN
       INSERT INTO products_search(rowid, name, description) VALUES (new.id, new.name, new.description); END""",
    """CREATE TRIGGER products_search_delete AFTER DELETE ON products BEGIN
       INSERT INTO products_search(products_search, rowid, name, description)
       VALUES ('delete', old.id, old.name, old.description); END""",
    # Only when the text changes: a price or stock update does not touch the index.
    """CREATE TRIGGER products_search_update AFTER UPDATE OF name, description ON products BEGIN
       INSERT INTO products_search(products_search, rowid, name, description)
       VALUES ('delete', old.id, old.name, old.description);
       INSERT INTO products_search(rowid, name, description) VALUES (new.id, new.name, new.description); END""",
    "INSERT INTO products_search(products_search) VALUES ('rebuild')",
]


def upgrade():
    if op.get_bind().dialect.name != "sqlite":
        return
    for statement in CREATE:
        op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in ("products_search_insert", "products_search_delete", "products_search_update"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DROP TABLE IF EXISTS products_search")
