from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import UTCDateTime


class IdempotencyKey(db.Model):
    """A client's Idempotency-Key and the outcome of the write it guarded, committed with that write.

    `outcome` is a snapshot of what the write produced (the created product's fields as
    first answered), so a replay is exact even after the product was changed or deleted.
    """

    __tablename__ = "idempotency_keys"

    # Keys are scoped to the caller; they go with the user.
    user_id: Mapped[str] = mapped_column(String(255), ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)

    def __repr__(self) -> str:
        return f"<IdempotencyKey {self.user_id} {self.key!r}>"
