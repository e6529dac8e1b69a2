"""A time limit on costly statements, on both databases: the last guard behind the search rules."""

import time
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from app.errors import ServiceUnavailable
from app.extensions import db

_QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE when statement_timeout fires


def _timed_out() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The search took too long; retry with a longer, more specific term.",
        code="search_timeout",
        headers={"Retry-After": "5"},
    )


@contextmanager
def statement_timeout(milliseconds: int | None):
    """Statements run inside get at most `milliseconds` each (None or 0: no limit), then 503 `search_timeout`.

    PostgreSQL: statement_timeout for this transaction only, restored afterwards. SQLite: a
    progress handler that interrupts the statement once the deadline has passed.
    """
    if not milliseconds:
        yield
        return
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        previous = connection.scalar(text("SELECT current_setting('statement_timeout')"))
        connection.execute(text("SELECT set_config('statement_timeout', :limit, true)"), {"limit": f"{milliseconds}ms"})
        try:
            yield
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != _QUERY_CANCELED:
                raise
            db.session.rollback()
            raise _timed_out() from None
        connection.execute(text("SELECT set_config('statement_timeout', :limit, true)"), {"limit": previous})
        return
    raw = connection.connection.driver_connection
    deadline = time.perf_counter() + milliseconds / 1000
    raw.set_progress_handler(lambda: time.perf_counter() > deadline, 1000)
    try:
        yield
    except OperationalError as exc:
        if "interrupted" not in str(exc.orig):
            raise
        db.session.rollback()
        raise _timed_out() from None
    finally:
        raw.set_progress_handler(None, 0)
