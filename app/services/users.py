"""Users as the identity provider describes them, mirrored locally on first sight."""

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import User


@dataclass(frozen=True)
class Identity:
    """The caller: the local user plus rights that may come from the token."""

    user: User
    is_admin: bool
    claims: dict[str, Any]


def claim_grants_admin(value: Any) -> bool:
    """`true`, {"is_admin": true} or a list holding "admin"; anything else is not admin."""
    if value is True:
        return True
    if isinstance(value, dict):
        return value.get("is_admin") is True
    if isinstance(value, list):
        return "admin" in value
    return False


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def sync_user(*, claims: dict[str, Any], admin_claim: str) -> Identity:
    """Create the user on first sight of `sub`; refresh email/name when the token has them."""
    sub = claims["sub"]
    email, name = _text(claims.get("email"), 320), _text(claims.get("name"), 255)
    user = db.session.get(User, sub)
    if user is None:
        user = User(user_id=sub, email=email, name=name)
        db.session.add(user)
        try:
            db.session.commit()
        except IntegrityError:
            # Another worker saw the same new user first: use its row.
            db.session.rollback()
            user = db.session.get(User, sub)
    elif (email and email != user.email) or (name and name != user.name):
        user.email = email or user.email
        user.name = name or user.name
        db.session.commit()
    is_admin = user.is_admin or claim_grants_admin(claims.get(admin_claim))
    return Identity(user=user, is_admin=is_admin, claims=claims)
