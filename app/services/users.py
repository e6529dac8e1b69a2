"""Users as the identity provider describes them, mirrored locally; admin rights, disabled accounts and their guards."""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError

from app.errors import Conflict, Forbidden, NotFound
from app.extensions import db
from app.models import Product, User
from app.models.types import utcnow
from app.services.locking import begin_write
from app.services.paging import Page
from app.services.sessions import end_sessions_of


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


# Control characters (PostgreSQL refuses NUL) and lone surrogates (not encodable): never stored.
_UNSTORABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def email_claim(value: Any) -> str | None:
    """The address as the provider gave it, or None when it cannot be one.

    Never truncated or repaired: a cut or cleaned address could be someone else's.
    """
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not 3 <= len(value) <= 320 or "@" not in value or _UNSTORABLE.search(value):
        return None
    return value


def name_claim(value: Any) -> str | None:
    """A display name with line breaks made blanks and other unstorable characters dropped; None when empty."""
    if not isinstance(value, str):
        return None
    value = _UNSTORABLE.sub("", re.sub(r"[\t\n\r]", " ", value)).strip()[:255].strip()
    return value or None


def _refresh(user: User, *, email: str | None, verified: bool | None, name: str | None) -> bool:
    """Take the provider's latest word; returns whether anything changed.

    A new email is verified only if the same token says so; for the same email, a token
    without `email_verified` leaves the stored answer as it was.
    """
    changed = False
    if email and email != user.email:
        user.email, user.email_verified, changed = email, verified is True, True
    elif email and verified is not None and verified != user.email_verified:
        user.email_verified, changed = verified, True
    if name and name != user.name:
        user.name, changed = name, True
    return changed


def sync_user(*, claims: dict[str, Any], admin_claim: str, admin_emails: Iterable[str] = ()) -> Identity:
    """Create the user on first sight of `sub`; refresh email, email_verified and name when the token has them.

    ADMIN_EMAILS grants admin on that first sight only, and only for an email the provider
    says is verified: anyone can sign up with an address they do not own. A disabled
    account is returned as it is (the caller refuses it), never refreshed.
    """
    sub = claims["sub"]
    email, name = email_claim(claims.get("email")), name_claim(claims.get("name"))
    verified = claims.get("email_verified") if isinstance(claims.get("email_verified"), bool) else None
    user = db.session.get(User, sub)
    if user is None:
        email_verified = bool(email) and verified is True
        bootstrap = email_verified and email.lower() in set(admin_emails)
        user = User(user_id=sub, email=email, email_verified=email_verified, name=name, is_admin=bootstrap)
        db.session.add(user)
        try:
            db.session.commit()
        except IntegrityError:
            # Another worker saw the same new user first: use its row.
            db.session.rollback()
            user = db.session.get(User, sub)
    elif user.disabled_at is None and _refresh(user, email=email, verified=verified, name=name):
        db.session.commit()
    is_admin = user.is_admin or claim_grants_admin(claims.get(admin_claim))
    return Identity(user=user, is_admin=is_admin, claims=claims)


def ensure_enabled(user: User) -> None:
    """An account an admin deleted stays refused, whatever token it brings, until an admin restores it."""
    if user.disabled_at is not None:
        raise Forbidden("This account has been disabled by an administrator.", code="account_disabled")


def get_user_or_404(user_id: str) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("The user was not found.")
    return user


def product_count(user: User) -> int:
    return db.session.scalar(select(func.count()).where(Product.user_id == user.user_id))


def list_users(*, page: int, per_page: int, q: str | None = None) -> Page:
    """Users with their product counts, oldest first; `q` matches email or name.

    Each count is taken for the page's users only, through the (user_id, id) index: grouping the
    whole products table first would read every product on every page.
    """
    users = select(User)
    if q:
        users = users.where(or_(User.email.icontains(q, autoescape=True), User.name.icontains(q, autoescape=True)))
    total = db.session.scalar(select(func.count()).select_from(users.subquery()))
    count = select(func.count()).where(Product.user_id == User.user_id).correlate(User).scalar_subquery()
    rows = db.session.execute(
        users.add_columns(count).order_by(User.created_at, User.user_id).limit(per_page).offset((page - 1) * per_page)
    ).all()
    return Page(items=[(user, count) for user, count in rows], total=total, page=page, per_page=per_page)


@dataclass(frozen=True)
class AdminChange:
    """Who a grant or revocation changed, and who shares the email without the provider having verified it."""

    updated: list[User]
    skipped_unverified: list[User] = field(default_factory=list)


def verified_users_with_email(email: str) -> AdminChange:
    """Every account whose provider-verified email this is (one person may reach the provider
    through several connections); accounts merely claiming it are reported, never chosen."""
    found = db.session.scalars(
        select(User).where(func.lower(User.email) == email.strip().lower()).order_by(User.created_at, User.user_id)
    ).all()
    verified = [user for user in found if user.email_verified]
    unverified = [user for user in found if not user.email_verified]
    if not found:
        raise NotFound("No user with this email has signed in yet.")
    if not verified:
        raise NotFound(
            "No account with this email has had it verified by the identity provider; "
            "address an account by user_id instead.",
            code="email_not_verified",
            details={"skipped_unverified": [user.user_id for user in unverified]},
        )
    return AdminChange(updated=verified, skipped_unverified=unverified)


def admins() -> list[User]:
    return list(db.session.scalars(select(User).where(User.is_admin.is_(True)).order_by(User.created_at)).all())


def _ensure_an_admin_remains(leaving: Iterable[User]) -> None:
    """Only enabled admins count. Locks the admins first (rows on PostgreSQL, the database on
    SQLite): two concurrent revocations cannot both pass the check."""
    leaving_ids = {user.user_id for user in leaving if user.is_admin and user.disabled_at is None}
    if not leaving_ids:
        return
    begin_write()
    active = select(User.user_id).where(User.is_admin.is_(True), User.disabled_at.is_(None)).with_for_update()
    if not set(db.session.scalars(active)) - leaving_ids:
        raise Conflict("This would remove the last admin; grant admin to someone else first.", code="last_admin")


def set_admin(*, is_admin: bool, email: str | None = None, user_id: str | None = None) -> AdminChange:
    """Grant or revoke admin for one account (user_id) or every account whose verified email this is;
    never leaves the API without an admin."""
    if (email is None) == (user_id is None):
        raise ValueError("give exactly one of email or user_id")
    change = (
        AdminChange(updated=[get_user_or_404(user_id)]) if user_id is not None else verified_users_with_email(email)
    )
    if not is_admin:
        _ensure_an_admin_remains(change.updated)
    for user in change.updated:
        user.is_admin = is_admin
    db.session.commit()
    return change


def disable_user(user_id: str) -> tuple[User, int]:
    """What deleting a user means: their products go, the account stays, disabled, so that their next
    token is refused instead of creating them afresh. Their browser sessions end: a stolen cookie must
    not come back to life when the account is restored. Returns the user and how many products went."""
    user = get_user_or_404(user_id)
    _ensure_an_admin_remains([user])
    removed = db.session.execute(delete(Product).where(Product.user_id == user_id)).rowcount
    end_sessions_of(user_id)
    if user.disabled_at is None:
        user.disabled_at = utcnow()
    db.session.commit()
    return user, removed


def restore_user(user_id: str) -> User:
    """Let a disabled account in again (its products are gone for good)."""
    user = get_user_or_404(user_id)
    if user.disabled_at is not None:
        user.disabled_at = None
        db.session.commit()
    return user
