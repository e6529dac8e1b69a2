"""Column types shared by the models."""

from datetime import UTC, datetime

from sqlalchemy import DateTime
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def result_processor(self, dialect, coltype):
        """Each value converted in one call, for the cost of a page's 100 timestamps.

        TypeDecorator's own processor calls the driver's conversion, then process_result_value,
        whose `replace(tzinfo=)` or `astimezone()` cost more than the parse (docs/decisions.md).
        SQLite: the stored UTC text parsed as an aware datetime at once. PostgreSQL: sessions
        run in UTC (app factory), so the driver hands over UTC datetimes already. Anything
        else (an offset written by hand, a session in another zone) takes the general path.
        """
        general = super().result_processor(dialect, coltype)
        if dialect.name == "sqlite":
            parse = datetime.fromisoformat

            def process(value):
                if value is None:
                    return None
                try:
                    return parse(value + "+00:00")
                except (TypeError, ValueError):  # not the text process_bind_param writes
                    return general(value)

            return process

        def process(value):
            return value if value is None or value.tzinfo is UTC else general(value)

        return process
