from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import UTCDateTime, utcnow


class BrowserSession(db.Model):
    """A signed-in browser: its cookie holds only a random id, whose SHA-256 is the key here.

    The tokens stay on the server, so a copied cookie reveals none, and deleting the row
    (logout) makes every copy of the cookie worthless at once, on every worker and host.
    """

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie's id
    user_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("users.user_id", ondelete="CASCADE"), index=True, nullable=False
    )
    access_token: Mapped[str] = mapped_column(Text, nullable=False)
    id_token: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True, nullable=False)

    def __repr__(self) -> str:
        return f"<BrowserSession of {self.user_id}>"
