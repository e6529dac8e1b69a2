"""An exact product count kept by triggers, so totals cost the same at any table size.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 10:15:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

SQLITE_TRIGGERS = [
    """CREATE TRIGGER products_count_insert AFTER INSERT ON products
       BEGIN UPDATE product_stats SET total = total + 1 WHERE id = 1; END""",
    """CREATE TRIGGER products_count_delete AFTER DELETE ON products
       BEGIN UPDATE product_stats SET total = total - 1 WHERE id = 1; END""",
]
# Statement-level with transition tables: one update per statement, however many rows it touched.
POSTGRES_TRIGGERS = [
    """CREATE FUNCTION products_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN UPDATE product_stats SET total = total + (SELECT count(*) FROM new_rows) WHERE id = 1; RETURN NULL; END $$""",
    """CREATE FUNCTION products_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN UPDATE product_stats SET total = total - (SELECT count(*) FROM old_rows) WHERE id = 1; RETURN NULL; END $$""",
    """CREATE TRIGGER products_count_insert AFTER INSERT ON products REFERENCING NEW TABLE AS new_rows
       FOR EACH STATEMENT EXECUTE FUNCTION products_count_insert()""",
    """CREATE TRIGGER products_count_delete AFTER DELETE ON products REFERENCING OLD TABLE AS old_rows
       FOR EACH STATEMENT EXECUTE FUNCTION products_count_delete()""",
]


def upgrade():
    op.create_table('product_stats',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_product_stats_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_product_stats'))
    )
    op.execute("INSERT INTO product_stats (id, total) SELECT 1, count(*) FROM products")
    dialect = op.get_bind().dialect.name
    for statement in POSTGRES_TRIGGERS if dialect == "postgresql" else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for name in ("products_count_insert", "products_count_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON products")
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    else:
        for name in ("products_count_insert", "products_count_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table('product_stats')
