"""Users as the identity provider describes them, mirrored locally; admin rights and their guards."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError

from app.errors import Conflict, NotFound
from app.extensions import db
from app.models import Product, User
from app.services.locking import begin_write
from app.services.paging import Page


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


def sync_user(*, claims: dict[str, Any], admin_claim: str, admin_emails: Iterable[str] = ()) -> Identity:
    """Create the user on first sight of `sub`; refresh email/name when the token has them.

    ADMIN_EMAILS grants admin on that first sight only, and only for an email the provider
    says is verified: anyone can sign up with an address they do not own.
    """
    sub = claims["sub"]
    email, name = _text(claims.get("email"), 320), _text(claims.get("name"), 255)
    user = db.session.get(User, sub)
    if user is None:
        bootstrap = bool(email) and claims.get("email_verified") is True and email.lower() in set(admin_emails)
        user = User(user_id=sub, email=email, name=name, is_admin=bootstrap)
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


def get_user_or_404(user_id: str) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(f"User {user_id} was not found.")
    return user


def product_count(user: User) -> int:
    return db.session.scalar(select(func.count()).where(Product.user_id == user.user_id))


def list_users(*, page: int, per_page: int, q: str | None = None) -> Page:
    """Users with their product counts, oldest first; `q` matches email or name."""
    counts = select(Product.user_id, func.count().label("n")).group_by(Product.user_id).subquery("product_counts")
    stmt = select(User, func.coalesce(counts.c.n, 0)).outerjoin(counts, counts.c.user_id == User.user_id)
    if q:
        stmt = stmt.where(or_(User.email.icontains(q, autoescape=True), User.name.icontains(q, autoescape=True)))
    total = db.session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = db.session.execute(
        stmt.order_by(User.created_at, User.user_id).limit(per_page).offset((page - 1) * per_page)
    ).all()
    return Page(items=[(user, count) for user, count in rows], total=total, page=page, per_page=per_page)


def users_with_email(email: str) -> list[User]:
    """Everyone known by this address (one person may reach the provider through several connections)."""
    found = db.session.scalars(
        select(User).where(func.lower(User.email) == email.strip().lower()).order_by(User.created_at)
    ).all()
    if not found:
        raise NotFound(f"No user with email {email} has signed in yet.")
    return list(found)


def admins() -> list[User]:
    return list(db.session.scalars(select(User).where(User.is_admin.is_(True)).order_by(User.created_at)).all())


def _ensure_an_admin_remains(leaving: Iterable[User]) -> None:
    """Locks the admins first (rows on PostgreSQL, the database on SQLite): two concurrent
    revocations cannot both pass the check."""
    leaving_ids = {user.user_id for user in leaving if user.is_admin}
    if not leaving_ids:
        return
    begin_write()
    admin_ids = set(db.session.scalars(select(User.user_id).where(User.is_admin.is_(True)).with_for_update()))
    if not admin_ids - leaving_ids:
        raise Conflict("This would remove the last admin; grant admin to someone else first.", code="last_admin")


def set_admin(*, email: str, is_admin: bool) -> list[User]:
    """Grant or revoke admin for every account with this email; never leaves the API without an admin."""
    users = users_with_email(email)
    if not is_admin:
        _ensure_an_admin_remains(users)
    for user in users:
        user.is_admin = is_admin
    db.session.commit()
    return users


def delete_user(user_id: str) -> int:
    """Delete a user and their products in one transaction; returns how many products went with them."""
    user = get_user_or_404(user_id)
    _ensure_an_admin_remains([user])
    removed = db.session.execute(delete(Product).where(Product.user_id == user_id)).rowcount
    db.session.delete(user)
    db.session.commit()
    return removed
