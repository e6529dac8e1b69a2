"""The audit trail: one append-only record per privileged action (issue 29).

A new table, its indexes and, on PostgreSQL, a trigger refusing UPDATE, DELETE and TRUNCATE
on it: nothing here touches `users` or `products`, so the migration takes no lock on them and
runs while the API serves. The one way to delete records is `flask audit prune` (by age,
AUDIT_RETENTION_DAYS), itself recorded: its transaction sets `dmarket.audit_prune` to `on`
with set_config(..., true), which the trigger lets a DELETE through with, for that
transaction only. Anyone who can set it can also drop the trigger: against the API's own
role, an operator who wants more makes another role own the table and grants the API's role
only INSERT and SELECT on it (docs/deployment.md). On SQLite, triggers refuse UPDATE and
DELETE; the prune drops and creates the DELETE one again within its transaction.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 04:00:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('dmarket.audit_prune', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % refused (prune old records with flask audit prune)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""
SQLITE_TRIGGERS = (
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log"
    " BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    # The same text as app/services/audit.py SQLITE_APPEND_ONLY, which the prune creates again.
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log"
    " BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
)


def upgrade():
    dialect = op.get_bind().dialect.name
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.String(length=255), nullable=False),
    sa.Column('actor_email', sa.String(length=320), nullable=True),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('target_type', sa.String(length=16), nullable=False),
    sa.Column('target_id', sa.String(length=255), nullable=False),
    sa.Column('subject_user_id', sa.String(length=255), nullable=True),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.Column('client_address', sa.String(length=64), nullable=True),
    sa.Column('changes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_action_id', ['action', 'id'], unique=False)
        batch_op.create_index('ix_audit_log_actor_id_id', ['actor_id', 'id'], unique=False)
        batch_op.create_index('ix_audit_log_at', ['at'], unique=False)
        batch_op.create_index('ix_audit_log_subject_user_id_id', ['subject_user_id', 'id'], unique=False)
        batch_op.create_index('ix_audit_log_target_id_id', ['target_id', 'id'], unique=False)
    if dialect == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log"
            " FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log"
            " FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
    elif dialect == "sqlite":
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade():
    # Dropping the table drops its triggers too (both databases).
    op.drop_table('audit_log')
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
