"""Extension objects, created unbound and initialised by the app factory."""

import functools
import logging
import time
from contextlib import suppress

from flask_cors import CORS
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
from sqlalchemy.exc import DBAPIError, DisconnectionError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase

log = logging.getLogger(__name__)

# Named constraints keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Database(SQLAlchemy):
    """Flask-SQLAlchemy whose clean-up can never fail a request whose answer is already decided."""

    def discard_transaction(self) -> None:
        """Roll the session back; a connection that died under it is invalidated instead of raising.

        ROLLBACK on a connection the server has terminated (a restart, pg_terminate_backend, a
        cut network) raises. Nothing is left to undo there: the server already discarded the
        transaction, so the connection is thrown away and the session starts afresh.
        """
        try:
            self.session.rollback()
        except SQLAlchemyError as exc:
            log.warning("database connection discarded: %s", _reason(exc))
            self.session().invalidate()

    def _teardown_session(self, exc: BaseException | None) -> None:
        """Flask-SQLAlchemy's end-of-request clean-up (registered by its init_app), made unable to raise.

        Teardown runs after the response is decided: an exception here would make gunicorn
        replace it with its own non-JSON 500.
        """
        try:
            self.session.remove()
        except SQLAlchemyError as error:
            log.warning("database connection discarded at teardown: %s", _reason(error))
            with suppress(SQLAlchemyError):
                self.session().invalidate()
            self.session.registry.clear()  # never hand this session to a later context


def ping_when_idle(engine, idle_seconds: float) -> None:
    """Ping a pooled connection before use only when it sat idle for more than `idle_seconds`.

    `pool_pre_ping` pings on every checkout: a round trip before each request's first
    statement. A connection used moments ago is alive but for a restart in between, which the
    first statement then meets: SQLAlchemy invalidates the whole pool on it, and reads retry
    once (`retry_if_disconnected`). A connection idle for longer (a quiet hour, a server-side
    idle timeout) is pinged, and replaced if dead, as `pool_pre_ping` would.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy) -> None:
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is None or time.monotonic() - checked_in_at <= idle_seconds:
            return  # new, or used moments ago
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception:
            alive = False
        if not alive:
            raise DisconnectionError("the pooled connection was dead")  # the pool replaces it and retries


def retry_if_disconnected(read):
    """Run a read once more when its connection turned out dead (the database restarted): it wrote
    nothing, and the pool has been invalidated, so the second try gets a fresh connection."""

    @functools.wraps(read)
    def wrapper(*args, **kwargs):
        try:
            return read(*args, **kwargs)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        return read(*args, **kwargs)

    return wrapper


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return orig.__class__.__name__ if orig is not None else exc.__class__.__name__


# No expiry on commit: what a write answers is known before its COMMIT, so nothing is read
# after it (a read after the commit is the widest window for an in-doubt 503).
db = Database(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate(render_as_batch=True, compare_type=True)
cors = CORS()
