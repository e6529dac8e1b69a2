"""The audit trail: who did which privileged action to whom, when and from where.

A record is written by the action's own transaction (`write`), so a crash or a database
restart leaves both or neither; once that transaction has committed, `publish` sends one
JSON log line per record (with its request id) and counts it in /metrics. Records are never
updated or deleted here, except by `prune`, the one audited way to drop old ones.
"""

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select, text

from app import metrics
from app.extensions import db
from app.models import AuditRecord
from app.services.locking import begin_write
from app.services.paging import Page, decode_cursor, encode_cursor

log = logging.getLogger("app.audit")

CLI = "cli"
ACTIONS = (
    "admin.grant",
    "admin.revoke",
    "user.disable",
    "user.restore",
    "product.update",
    "product.delete",
    "audit.prune",
)
DONE, REFUSED = "done", "refused"
MAX_PAGE = 100
# Audit cursors are signed apart from product cursors: one is never accepted for the other.
CURSOR_SALT = "dmarket.audit-cursor"
# The PostgreSQL setting the append-only trigger lets a DELETE through with (migration 0010).
PRUNE_SETTING = "dmarket.audit_prune"
SQLITE_APPEND_ONLY = (
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log"
    " BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
)


@dataclass(frozen=True)
class Actor:
    """Who acts, as the record will name them, and where the request came from."""

    user_id: str
    email: str | None = None
    request_id: str | None = None
    address: str | None = None
    claim_admin: bool = False  # admin by the token's claim, which the users table does not hold

    @property
    def is_cli(self) -> bool:
        return self.user_id == CLI


def cli_actor() -> Actor:
    """The operator at the command line: no account, no address; a request id for the log line."""
    return Actor(user_id=CLI, request_id=f"cli-{os.urandom(8).hex()}")


def json_value(value: Any) -> Any:
    """A column value as JSON (prices as strings, times as ISO 8601)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def content(row) -> dict[str, Any]:
    """Every column of a row (a product's last content), as JSON values."""
    return {key: json_value(value) for key, value in row._mapping.items()}


def _now(dialect: str):
    """The database's clock in UTC: PostgreSQL's transaction time; SQLite's, in the text UTCDateTime reads."""
    if dialect == "sqlite":
        return func.strftime("%Y-%m-%d %H:%M:%f000", "now")
    return func.now()


_COLUMNS = AuditRecord.__table__.c


def write(
    executor,
    *,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: str,
    subject_user_id: str | None,
    changes: dict[str, Any],
    outcome: str = DONE,
) -> dict[str, Any]:
    """Insert one record through `executor` (the action's connection or session); returns it as stored."""
    values = {
        "actor_id": actor.user_id,
        "actor_email": actor.email,
        "action": action,
        "outcome": outcome,
        "target_type": target_type,
        "target_id": str(target_id),
        "subject_user_id": subject_user_id,
        "request_id": actor.request_id,
        "client_address": actor.address,
        "changes": changes,
    }
    dialect = executor.get_bind().dialect.name if hasattr(executor, "get_bind") else executor.dialect.name
    statement = AuditRecord.__table__.insert().values(at=_now(dialect)).returning(_COLUMNS.id, _COLUMNS.at)
    row = executor.execute(statement, values).one()
    return {"id": row.id, "at": row.at, **values}


def publish(records: list[dict[str, Any]]) -> None:
    """After the commit: one log line per record (LOG_FORMAT=json puts it under `audit`), and the counter."""
    for record in records:
        entry = {key: json_value(value) for key, value in record.items()}
        log.info(
            "audit %s %s by %s on %s %s",
            record["action"],
            record["outcome"],
            record["actor_id"],
            record["target_type"],
            record["target_id"],
            extra={"request_id": record["request_id"] or "-", "audit": entry},
        )
        metrics.audit_recorded(record["action"], record["outcome"])


def record_refusal(*, actor: Actor, action: str, target_type: str, target_id: str, subject_user_id, changes) -> None:
    """A refused action's record, in a transaction of its own (the action's was rolled back)."""
    db.session.rollback()
    record = write(
        db.session,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        subject_user_id=subject_user_id,
        changes=changes,
        outcome=REFUSED,
    )
    db.session.commit()
    publish([record])


def list_records(
    *,
    page: int = 1,
    per_page: int = 50,
    cursor: str | None = None,
    actor: str | None = None,
    target: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    subject_user_id: str | None = None,
) -> Page:
    """Records newest first (by id: the order they committed their ids in), by page or after a cursor."""
    conditions = []
    if actor is not None:
        conditions.append(_COLUMNS.actor_id == actor)
    if target is not None:
        conditions.append(_COLUMNS.target_id == target)
    if action is not None:
        conditions.append(_COLUMNS.action == action)
    if since is not None:
        conditions.append(_COLUMNS.at >= since)
    if until is not None:
        conditions.append(_COLUMNS.at < until)
    if subject_user_id is not None:
        conditions.append(_COLUMNS.subject_user_id == subject_user_id)
    total = None
    rows = select(AuditRecord.__table__).where(*conditions)
    if cursor is not None:
        _, last_id = decode_cursor(cursor, "-id", salt=CURSOR_SALT)
        rows = rows.where(_COLUMNS.id < last_id)
    else:
        rows = rows.offset((page - 1) * per_page)
        total = db.session.scalar(select(func.count()).select_from(AuditRecord.__table__).where(*conditions))
    items = db.session.execute(rows.order_by(_COLUMNS.id.desc()).limit(per_page + 1)).all()
    next_cursor = None
    if len(items) > per_page:
        items = items[:per_page]
        next_cursor = encode_cursor("-id", items[-1].id, items[-1].id, salt=CURSOR_SALT)
    return Page(items=items, total=total, page=page, per_page=per_page, next_cursor=next_cursor, max_page=MAX_PAGE)


def prune(*, days: int, actor: Actor) -> int:
    """Delete the records older than `days` days, and record that it was done (in the same transaction).

    The append-only trigger lets this transaction's DELETE through: on PostgreSQL through a
    setting local to it, on SQLite by dropping the trigger and creating it again within it.
    """
    dialect = db.engine.dialect.name
    if dialect == "sqlite":
        begin_write()
        older = _COLUMNS.at < func.strftime("%Y-%m-%d %H:%M:%f000", "now", f"-{int(days)} days")
        db.session.execute(text("DROP TRIGGER audit_log_no_delete"))
        deleted = db.session.execute(delete(AuditRecord).where(older)).rowcount
        db.session.execute(text(SQLITE_APPEND_ONLY))
    else:
        db.session.execute(select(func.set_config(PRUNE_SETTING, "on", True)))
        older = _COLUMNS.at < func.now() - timedelta(days=int(days))
        deleted = db.session.execute(delete(AuditRecord).where(older)).rowcount
        db.session.execute(select(func.set_config(PRUNE_SETTING, "off", True)))
    record = write(
        db.session,
        actor=actor,
        action="audit.prune",
        target_type="audit",
        target_id="audit_log",
        subject_user_id=None,
        changes={"older_than_days": days, "deleted": deleted},
    )
    db.session.commit()
    publish([record])
    return deleted
