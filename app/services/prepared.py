"""The hottest one-row reads, run on a pooled DBAPI connection without SQLAlchemy's execution layer.

SQLAlchemy still does the parts that need knowing: it compiles the statement for the engine's
dialect (once), converts each column through its type's result processor (Decimal prices,
aware datetimes), hands out the connection from its pool (checkout events, pings, recycling)
and takes it back. What is skipped is the per-execution bookkeeping (an execution context, a
cursor result, a row object): 30 of a product read's 51 us in-process. Served by gunicorn, that
took `GET /products/{id}` from 38% to 45-46% of the bare-Flask ceiling (docs/benchmarks.md).

Only for statements whose bound values need no conversion (integer ids here): bind processing
is not applied. A lost connection is reported as SQLAlchemy reports it (a DBAPIError with
`connection_invalidated`), after the pool has been emptied as SQLAlchemy empties it, so
`retry_if_disconnected` retries on a fresh connection.
"""

from collections import namedtuple
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy.exc import DBAPIError

from app.extensions import db


@dataclass
class _Plan:
    sql: str
    positional: tuple[str, ...] | None  # bind names in order (qmark style), or None (named style)
    types: tuple  # each column's type, as the dialect implements it
    row: type
    autocommit: bool  # PostgreSQL: one statement, no BEGIN/ROLLBACK round trips
    processors: tuple | None = None  # each column's result processor (or None), from the first cursor


class PreparedRead:
    def __init__(self, statement):
        self.statement = statement
        self._plans: WeakKeyDictionary = WeakKeyDictionary()  # per engine (the tests build many apps)

    def _plan(self, engine) -> _Plan:
        plan = self._plans.get(engine)
        if plan is None:
            dialect = engine.dialect
            compiled = self.statement.compile(dialect=dialect)
            columns = list(self.statement.selected_columns)
            plan = self._plans[engine] = _Plan(
                sql=str(compiled),
                positional=tuple(compiled.positiontup) if compiled.positional else None,
                types=tuple(column.type.dialect_impl(dialect) for column in columns),
                row=namedtuple("Row", [column.key for column in columns], rename=True),
                autocommit=dialect.name == "postgresql",
            )
        return plan

    def first(self, **params: Any):
        """The first row (a named tuple, its columns converted), or None."""
        engine = db.engine
        plan = self._plan(engine)
        bound = tuple(params[name] for name in plan.positional) if plan.positional is not None else params
        dbapi_error = engine.dialect.loaded_dbapi.Error
        try:
            pooled = engine.raw_connection()
        except dbapi_error as exc:  # the server refused a new connection (restarting, say)
            raise _as_sqlalchemy_error(engine, exc, None, None) from exc
        connection, cursor = pooled.driver_connection, None
        try:
            if plan.autocommit:
                connection.autocommit = True
            cursor = connection.cursor()
            cursor.execute(plan.sql, bound)
            raw = cursor.fetchone()
            if plan.processors is None:  # as SQLAlchemy does: a processor may depend on the driver's type code
                plan.processors = tuple(
                    type_.result_processor(engine.dialect, description[1])
                    for type_, description in zip(plan.types, cursor.description, strict=True)
                )
            cursor.close()
        except dbapi_error as exc:
            error = _as_sqlalchemy_error(engine, exc, plan.sql, bound, connection, cursor)
            if error.connection_invalidated:
                pooled.invalidate(exc)
                engine.pool.dispose()  # its other connections died with this one: new ones from now on
            raise error from exc
        finally:
            if plan.autocommit and pooled.is_valid:
                connection.autocommit = False  # as the pool's next user expects it
            pooled.close()
        if raw is None:
            return None
        return plan.row(
            *[value if process is None else process(value) for process, value in zip(plan.processors, raw, strict=True)]
        )


def _as_sqlalchemy_error(engine, exc, statement, params, connection=None, cursor=None) -> DBAPIError:
    """The driver's error as SQLAlchemy would raise it, saying whether the connection was lost."""
    lost = engine.dialect.is_disconnect(exc, connection, cursor)
    return DBAPIError.instance(statement, params, exc, engine.dialect.loaded_dbapi.Error, connection_invalidated=lost)
