"""Users: whether the provider verified their email, and when an admin disabled the account.

Existing accounts start unverified: the next sign-in (or token carrying email_verified)
records what the provider says.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 00:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('users', sa.Column('email_verified', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('users', sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch rebuild of `users` would drop the
    # table that `products` references with ON DELETE CASCADE.
    op.drop_column('users', 'disabled_at')
    op.drop_column('users', 'email_verified')
