"""Idempotency keys (the IETF httpapi Idempotency-Key draft): a retried write replays its first outcome.

The key row is inserted first in the write's own transaction and the outcome is stored in
it before the COMMIT, so key and write are committed (or lost) together, on any worker or
host. A duplicate arriving while the first request is still in its transaction waits on
the key row (PostgreSQL's unique index; SQLite's single writer lock) and then replays the
committed outcome; a wait longer than IN_FLIGHT_WAIT_MS on PostgreSQL answers 409.
"""

import hashlib
import json
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import delete, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from app.errors import Conflict, ValidationFailed
from app.models import IdempotencyKey
from app.models.types import utcnow

KEY_LIFETIME = timedelta(hours=24)
IN_FLIGHT_WAIT_MS = 2000
# Expired keys removed by each new key (so removal keeps pace with creation, in small steps).
PURGE_BATCH = 50
_LOCK_NOT_AVAILABLE = "55P03"
_keys = IdempotencyKey.__table__


def fingerprint(operation: str, data: dict) -> str:
    """The request as validated (not as spelled): the same product sent twice has one fingerprint."""
    canonical = json.dumps({"operation": operation, "data": data}, sort_keys=True, default=_canonical)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _canonical(value):
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    raise TypeError(f"cannot fingerprint {type(value).__name__}")


def claim(connection, *, user_id: str, key: str, request_hash: str) -> dict | None:
    """Take `key` in the write's transaction on `connection` (None: go on, then `record()`), or return
    the outcome it already holds (the caller then writes nothing).

    Raises 422 when the key was used for a different request, 409 when its request is still
    running; the caller's transaction then rolls back.
    """
    now = utcnow()
    for _ in range(3):
        if _insert(connection, user_id=user_id, key=key, request_hash=request_hash, now=now):
            _purge_expired(connection, now)
            return None
        found = connection.execute(
            select(_keys.c.request_hash, _keys.c.outcome, _keys.c.expires_at).where(
                _keys.c.user_id == user_id, _keys.c.key == key
            )
        ).first()
        if found is None:
            continue  # purged between our insert and our read: take it again
        if found.expires_at <= now:
            connection.execute(delete(_keys).where(_keys.c.user_id == user_id, _keys.c.key == key))
            continue
        if found.request_hash != request_hash:
            raise ValidationFailed(
                "This Idempotency-Key was already used with a different request; use a new key.",
                code="idempotency_key_reused",
            )
        if found.outcome is None:
            break
        return found.outcome
    raise _in_use()


def record(connection, *, user_id: str, key: str, outcome: dict) -> None:
    """Store the outcome under the key taken by `claim()`, before the transaction commits."""
    connection.execute(update(_keys).where(_keys.c.user_id == user_id, _keys.c.key == key).values(outcome=outcome))


def _insert(connection, *, user_id: str, key: str, request_hash: str, now) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING: True when the row is ours, False when the key is taken."""
    dialect = connection.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    row = {"user_id": user_id, "key": key, "request_hash": request_hash, "created_at": now}
    statement = (
        insert(_keys).values(**row, expires_at=now + KEY_LIFETIME).on_conflict_do_nothing().returning(_keys.c.key)
    )
    if dialect != "postgresql":
        return connection.execute(statement).first() is not None
    # The insert waits while another transaction holds the same key: bound that wait only.
    connection.execute(text(f"SET LOCAL lock_timeout = {int(IN_FLIGHT_WAIT_MS)}"))
    try:
        inserted = connection.execute(statement).first() is not None
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
            raise
        raise _in_use() from None  # the caller's transaction rolls back
    connection.execute(text("SET LOCAL lock_timeout TO DEFAULT"))
    return inserted


def _purge_expired(connection, now) -> None:
    """Remove a few expired keys; rows another transaction is purging are skipped, not waited for."""
    expired = (
        select(_keys.c.user_id, _keys.c.key)
        .where(_keys.c.expires_at <= now)
        .order_by(_keys.c.expires_at)
        .limit(PURGE_BATCH)
        .with_for_update(skip_locked=True)
    )
    connection.execute(delete(_keys).where(tuple_(_keys.c.user_id, _keys.c.key).in_(expired)))


def _in_use() -> Conflict:
    return Conflict(
        "A request with this Idempotency-Key is still being processed; retry after it completes.",
        code="idempotency_key_in_use",
    )
