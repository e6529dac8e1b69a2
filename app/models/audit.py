from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import UTCDateTime


class AuditRecord(db.Model):
    """One privileged action (or its refusal): append-only, written in the action's own transaction.

    No foreign keys: a record outlives the product or account it names, and must not lock them.
    On PostgreSQL a trigger refuses UPDATE and DELETE (migration 0010); pruning by age is the
    `flask audit prune` command's alone.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_actor_id_id", "actor_id", "id"),
        Index("ix_audit_log_target_id_id", "target_id", "id"),
        Index("ix_audit_log_subject_user_id_id", "subject_user_id", "id"),
        Index("ix_audit_log_action_id", "action", "id"),
        Index("ix_audit_log_at", "at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)  # the database's clock, in UTC
    actor_id: Mapped[str] = mapped_column(String(255), nullable=False)  # a user id, or "cli"
    actor_email: Mapped[str | None] = mapped_column(String(320))  # as it was at the time
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)  # done | refused
    target_type: Mapped[str] = mapped_column(String(16), nullable=False)  # user | product | audit
    target_id: Mapped[str] = mapped_column(String(255), nullable=False)
    # The account the record is about (the target user, or the product's owner): what /me/audit lists.
    subject_user_id: Mapped[str | None] = mapped_column(String(255))
    request_id: Mapped[str | None] = mapped_column(String(128))
    client_address: Mapped[str | None] = mapped_column(String(64))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON().with_variant(JSONB, "postgresql"), nullable=False)

    def __repr__(self) -> str:
        return f"<AuditRecord {self.id} {self.action} {self.target_id}>"
