import logging
import time
from logging.config import fileConfig

from alembic import context
from flask import current_app
from sqlalchemy import text

from app.models.ddl import include_object_for, other_databases_indexes_unreflected

# this is the Alembic Config object, which provides
# access to the values within the .ini file in use.
config = context.config

# Interpret the config file for Python logging.
# This line sets up loggers basically.
fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

# Every instance runs `flask db upgrade` as it starts (boot.sh). On PostgreSQL they take this
# advisory lock first: one migrates, the others wait, then find nothing to do. It is held by the
# session, not a transaction: a migration's autocommit block (CREATE INDEX CONCURRENTLY, 0003)
# commits the transaction it interrupts, and the lock must outlive that.
MIGRATION_LOCK = 0x444D61726B6574  # "DMarket"


def get_engine():
    return current_app.extensions["migrate"].db.engine


def get_engine_url():
    try:
        return get_engine().url.render_as_string(hide_password=False).replace("%", "%%")
    except AttributeError:
        return str(get_engine().url).replace("%", "%%")


# add your model's MetaData object here
# for 'autogenerate' support
# from myapp import mymodel
# target_metadata = mymodel.Base.metadata
config.set_main_option("sqlalchemy.url", get_engine_url())
target_db = current_app.extensions["migrate"].db

# other values from the config, defined by the needs of env.py,
# can be acquired:
# my_important_option = config.get_main_option("my_important_option")
# ... etc.


def get_metadata():
    if hasattr(target_db, "metadatas"):
        return target_db.metadatas[None]
    return target_db.metadata


def run_migrations_offline():
    """Run migrations in 'offline' mode.

    This configures the context with just a URL
    and not an Engine, though an Engine is acceptable
    here as well.  By skipping the Engine creation
    we don't even need a DBAPI to be available.

    Calls to context.execute() here emit the given string to the
    script output.

    """
    url = config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=get_metadata(), literal_binds=True)

    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run migrations in 'online' mode.

    In this scenario we need to create an Engine
    and associate a connection with the context.

    """

    # this callback is used to prevent an auto-migration from being generated
    # when there are no changes to the schema
    # reference: http://alembic.zzzcomputing.com/en/latest/cookbook.html
    def process_revision_directives(context, revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = current_app.extensions["migrate"].configure_args
    if conf_args.get("process_revision_directives") is None:
        conf_args["process_revision_directives"] = process_revision_directives

    connectable = get_engine()

    with connectable.connect() as connection:
        postgresql = connection.dialect.name == "postgresql"
        conf_args.setdefault("include_object", include_object_for(connection.dialect.name))
        # One transaction per migration on PostgreSQL, as Alembic advises with autocommit blocks.
        conf_args.setdefault("transaction_per_migration", postgresql)
        context.configure(connection=connection, target_metadata=get_metadata(), **conf_args)

        if postgresql:
            # Poll rather than block: a session waiting inside pg_advisory_lock holds a snapshot,
            # and CREATE INDEX CONCURRENTLY waits for every older snapshot (a deadlock).
            while not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATION_LOCK}).scalar():
                connection.rollback()
                time.sleep(0.2)
            connection.commit()
        try:
            with (
                context.begin_transaction(),
                other_databases_indexes_unreflected(get_metadata(), connection.dialect.name),
            ):
                context.run_migrations()
        finally:
            if postgresql:
                connection.rollback()
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
