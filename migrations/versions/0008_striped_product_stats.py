"""product_stats in 16 slots with a change counter: the list's validator, and no single hot row.

Every INSERT, UPDATE and DELETE on `products` adds the rows it touched to `changes`, and
INSERT/DELETE to `total` (as 0002 did), in the writing transaction. The sums over all slots
are the product count (X-Total-Count) and a counter that grows with every committed change:
one value of it is one state of the table, which is what a list's ETag needs.

Slots are ids 0-15; 0002's row keeps id 1 (and its total). PostgreSQL: a session writes the
slot `pg_backend_pid() % 16`, so concurrent writers mostly lock different rows; each
statement adds its row count (a statement that touched no row writes nothing). SQLite has one
writer at a time: its row triggers use slot 1 only, one per row. A later migration that
rebuilds `products` (Alembic batch mode) must recreate these triggers.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 09:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

SLOTS = 16
OPERATIONS = ("insert", "update", "delete")

SQLITE_TRIGGERS = [
    """CREATE TRIGGER products_count_insert AFTER INSERT ON products
       BEGIN UPDATE product_stats SET total = total + 1, changes = changes + 1 WHERE id = 1; END""",
    """CREATE TRIGGER products_count_update AFTER UPDATE ON products
       BEGIN UPDATE product_stats SET changes = changes + 1 WHERE id = 1; END""",
    """CREATE TRIGGER products_count_delete AFTER DELETE ON products
       BEGIN UPDATE product_stats SET total = total - 1, changes = changes + 1 WHERE id = 1; END""",
]


def _postgres_function(operation: str, rows: str, total: str) -> str:
    return f"""CREATE FUNCTION products_count_{operation}() RETURNS trigger LANGUAGE plpgsql AS $$
       DECLARE n bigint := (SELECT count(*) FROM {rows});
       BEGIN
         IF n > 0 THEN
           UPDATE product_stats SET total = {total}, changes = changes + n WHERE id = pg_backend_pid() % {SLOTS};
         END IF;
         RETURN NULL;
       END $$"""


# Statement-level with transition tables (as 0002): one update per statement, however many rows it touched.
POSTGRES_TRIGGERS = [
    _postgres_function("insert", "new_rows", "total + n"),
    _postgres_function("update", "new_rows", "total"),
    _postgres_function("delete", "old_rows", "total - n"),
    """CREATE TRIGGER products_count_insert AFTER INSERT ON products REFERENCING NEW TABLE AS new_rows
       FOR EACH STATEMENT EXECUTE FUNCTION products_count_insert()""",
    """CREATE TRIGGER products_count_update AFTER UPDATE ON products REFERENCING NEW TABLE AS new_rows
       FOR EACH STATEMENT EXECUTE FUNCTION products_count_update()""",
    """CREATE TRIGGER products_count_delete AFTER DELETE ON products REFERENCING OLD TABLE AS old_rows
       FOR EACH STATEMENT EXECUTE FUNCTION products_count_delete()""",
]

# 0002's triggers, for the downgrade.
SQLITE_0002_TRIGGERS = [
    """CREATE TRIGGER products_count_insert AFTER INSERT ON products
       BEGIN UPDATE product_stats SET total = total + 1 WHERE id = 1; END""",
    """CREATE TRIGGER products_count_delete AFTER DELETE ON products
       BEGIN UPDATE product_stats SET total = total - 1 WHERE id = 1; END""",
]
POSTGRES_0002_TRIGGERS = [
    """CREATE FUNCTION products_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN UPDATE product_stats SET total = total + (SELECT count(*) FROM new_rows) WHERE id = 1; RETURN NULL; END $$""",
    """CREATE FUNCTION products_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN UPDATE product_stats SET total = total - (SELECT count(*) FROM old_rows) WHERE id = 1; RETURN NULL; END $$""",
    """CREATE TRIGGER products_count_insert AFTER INSERT ON products REFERENCING NEW TABLE AS new_rows
       FOR EACH STATEMENT EXECUTE FUNCTION products_count_insert()""",
    """CREATE TRIGGER products_count_delete AFTER DELETE ON products REFERENCING OLD TABLE AS old_rows
       FOR EACH STATEMENT EXECUTE FUNCTION products_count_delete()""",
]


def _drop_triggers(dialect: str) -> None:
    """Before the table changes: SQLite's batch mode recreates it, and renaming refuses triggers naming it."""
    for operation in OPERATIONS:
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS products_count_{operation} ON products")
            op.execute(f"DROP FUNCTION IF EXISTS products_count_{operation}()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS products_count_{operation}")


def upgrade():
    dialect = op.get_bind().dialect.name
    _drop_triggers(dialect)
    with op.batch_alter_table('product_stats', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_product_stats_single_row'), type_='check')
        batch_op.add_column(sa.Column('changes', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.create_check_constraint(batch_op.f('ck_product_stats_slot'), f'id >= 0 AND id < {SLOTS}')
    others = ", ".join(f"({slot}, 0)" for slot in range(SLOTS) if slot != 1)
    op.execute(f"INSERT INTO product_stats (id, total) VALUES {others}")
    for statement in POSTGRES_TRIGGERS if dialect == "postgresql" else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade():
    dialect = op.get_bind().dialect.name
    _drop_triggers(dialect)
    op.execute("UPDATE product_stats SET total = (SELECT sum(total) FROM product_stats) WHERE id = 1")
    op.execute("DELETE FROM product_stats WHERE id <> 1")
    with op.batch_alter_table('product_stats', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_product_stats_slot'), type_='check')
        batch_op.drop_column('changes')
        batch_op.create_check_constraint(batch_op.f('ck_product_stats_single_row'), 'id = 1')
    for statement in POSTGRES_0002_TRIGGERS if dialect == "postgresql" else SQLITE_0002_TRIGGERS:
        op.execute(statement)
