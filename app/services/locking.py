"""Read-then-write without a window for another writer, on both databases."""

from app.extensions import db


def begin_write() -> None:
    """Start the write transaction before reading what the write depends on.

    PostgreSQL locks the rows the caller then reads `with_for_update()`. SQLite has no row
    locks and ignores FOR UPDATE, so its one write lock is taken now (BEGIN IMMEDIATE, which
    waits up to the busy timeout): no other writer can commit between our read and our write.
    """
    if db.engine.dialect.name != "sqlite":
        return
    connection = db.session.connection()
    if not connection.connection.dbapi_connection.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
