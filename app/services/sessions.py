"""Browser sessions kept in the database: created at sign-in, looked up per request, deleted at logout."""

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, select

from app.extensions import db
from app.models import BrowserSession
from app.models.types import utcnow

# Expired rows removed per sign-in: enough to keep up, never a long statement.
PURGE_BATCH = 100


def _key(session_id: str) -> str:
    """The row's key: a database leak gives no cookie that works."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def create_session(*, user_id: str, access_token: str, id_token: str | None, lifetime: int) -> str:
    """Store the tokens; returns the random id (256 bits) the cookie will carry."""
    purge_expired()
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    db.session.add(
        BrowserSession(
            id=_key(session_id),
            user_id=user_id,
            access_token=access_token,
            id_token=id_token,
            created_at=now,
            expires_at=now + timedelta(seconds=lifetime),
        )
    )
    db.session.commit()
    return session_id


def find_session(session_id: str) -> BrowserSession | None:
    """The live session with this id; None when it is unknown, deleted or expired."""
    row = db.session.get(BrowserSession, _key(session_id))
    return row if row is not None and row.expires_at > utcnow() else None


def delete_session(session_id: str) -> str | None:
    """Delete the session; returns its ID token (for the provider's logout hint), if any."""
    key = _key(session_id)
    id_token = db.session.scalar(select(BrowserSession.id_token).where(BrowserSession.id == key))
    # A statement, not an ORM delete: a concurrent logout of the same session is no error.
    db.session.execute(delete(BrowserSession).where(BrowserSession.id == key))
    db.session.commit()
    return id_token


def end_sessions_of(user_id: str) -> int:
    """Delete every browser session of a user (the caller commits); returns how many there were."""
    return db.session.execute(delete(BrowserSession).where(BrowserSession.user_id == user_id)).rowcount


def purge_expired(limit: int = PURGE_BATCH) -> None:
    """Delete up to `limit` expired sessions (opportunistic: called on sign-in)."""
    expired = select(BrowserSession.id).where(BrowserSession.expires_at <= utcnow()).limit(limit)
    db.session.execute(delete(BrowserSession).where(BrowserSession.id.in_(expired.scalar_subquery())))
