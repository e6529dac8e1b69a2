"""Users as the identity provider describes them, mirrored locally; admin rights, disabled accounts and their guards."""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError

from app.errors import Conflict, Forbidden, NotFound
from app.extensions import db
from app.models import Product, User
from app.models.types import utcnow
from app.services import audit
from app.services.audit import Actor
from app.services.locking import begin_write
from app.services.paging import Page
from app.services.sessions import end_sessions_of


@dataclass(frozen=True)
class Identity:
    """The caller: the local user plus rights that may come from the token."""

    user: User
    is_admin: bool
    claims: dict[str, Any]
    claim_admin: bool = False  # admin through the token's claim (which no revocation here can take away)


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
    claim_admin = claim_grants_admin(claims.get(admin_claim))
    return Identity(user=user, is_admin=user.is_admin or claim_admin, claims=claims, claim_admin=claim_admin)


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


def _lock_for_admin_action(actor: Actor, user_ids: Iterable[str], *, with_admins: bool = False) -> dict[str, User]:
    """Lock, in one statement and in user_id order, the actor's row, the targets' and (`with_admins`)
    every enabled admin's, then check that the actor may still act: the rule that makes a disable or
    a revocation final for admin actions too.

    The rows are read again under the lock (FOR UPDATE on PostgreSQL; SQLite's write lock,
    BEGIN IMMEDIATE). A revocation or disable of the actor that committed first is seen here;
    one that comes later waits for this transaction. One sorted statement per action: two
    admins acting on each other queue instead of deadlocking.
    """
    begin_write()
    ids = set(user_ids) | (set() if actor.is_cli else {actor.user_id})
    condition = User.user_id.in_(ids)
    if with_admins:
        condition = or_(condition, and_(User.is_admin.is_(True), User.disabled_at.is_(None)))
    locked = select(User).where(condition).order_by(User.user_id).with_for_update()
    rows = {user.user_id: user for user in db.session.scalars(locked.execution_options(populate_existing=True))}
    if not actor.is_cli:
        me = rows.get(actor.user_id)
        if me is None or me.disabled_at is not None:
            raise Forbidden("This account has been disabled by an administrator.", code="account_disabled")
        if not (me.is_admin or actor.claim_admin):
            raise Forbidden("Admin rights are required.")
    return rows


def _last_admin_would_go(locked: dict[str, User], leaving: Iterable[User]) -> bool:
    """Only enabled admins count (all of them are among the locked rows)."""
    leaving_ids = {user.user_id for user in leaving if user.is_admin and user.disabled_at is None}
    active = {user_id for user_id, user in locked.items() if user.is_admin and user.disabled_at is None}
    return bool(leaving_ids) and not active - leaving_ids


LAST_ADMIN = "This would remove the last admin; grant admin to someone else first."


def set_admin(*, is_admin: bool, actor: Actor, email: str | None = None, user_id: str | None = None) -> AdminChange:
    """Grant or revoke admin for one account (user_id) or every account whose verified email this is;
    never leaves the API without an admin. One audit record per account changed, in the same
    transaction; a revocation refused as the last admin's is recorded as refused."""
    if (email is None) == (user_id is None):
        raise ValueError("give exactly one of email or user_id")
    found = AdminChange(updated=[get_user_or_404(user_id)]) if user_id is not None else verified_users_with_email(email)
    action = "admin.grant" if is_admin else "admin.revoke"
    locked = _lock_for_admin_action(actor, [user.user_id for user in found.updated], with_admins=not is_admin)
    change = AdminChange([locked[user.user_id] for user in found.updated], found.skipped_unverified)
    addressed = {"addressed": {"email": email} if email is not None else {"user_id": user_id}}
    skipped = [user.user_id for user in change.skipped_unverified]
    if not is_admin and _last_admin_would_go(locked, change.updated):
        for user in change.updated:
            audit.record_refusal(
                actor=actor,
                action=action,
                target_type="user",
                target_id=user.user_id,
                subject_user_id=user.user_id,
                changes={"reason": "last_admin", **addressed},
            )
        raise Conflict(LAST_ADMIN, code="last_admin")
    records = []
    for user in change.updated:
        before, user.is_admin = user.is_admin, is_admin
        changes = {"is_admin": [before, is_admin], "target_email": user.email, **addressed}
        if skipped:
            changes["skipped_unverified"] = skipped
        records.append(_write(actor, action, user, changes))
    db.session.commit()
    audit.publish(records)
    return change


def _write(actor: Actor, action: str, user: User, changes: dict) -> dict:
    return audit.write(
        db.session,
        actor=actor,
        action=action,
        target_type="user",
        target_id=user.user_id,
        subject_user_id=user.user_id,
        changes=changes,
    )


def disable_user(user_id: str, *, actor: Actor) -> tuple[User, int]:
    """What deleting a user means: their products go, the account stays, disabled, so that their next
    token is refused instead of creating them afresh. Their browser sessions end: a stolen cookie must
    not come back to life when the account is restored. Returns the user and how many products went.

    The user's row is locked before their products are deleted, and every write of theirs reads
    that row under a lock of its own (app/services/products.py): a write that got there first
    commits before the products are deleted, and any later one finds the account disabled.
    The audit record keeps the deleted products' last content.
    """
    get_user_or_404(user_id)
    locked = _lock_for_admin_action(actor, [user_id], with_admins=True)
    user = locked[user_id]
    if _last_admin_would_go(locked, [user]):
        audit.record_refusal(
            actor=actor,
            action="user.disable",
            target_type="user",
            target_id=user_id,
            subject_user_id=user_id,
            changes={"reason": "last_admin"},
        )
        raise Conflict(LAST_ADMIN, code="last_admin")
    removed = db.session.execute(delete(Product).where(Product.user_id == user_id).returning(*Product.__table__.c))
    products = sorted((audit.content(row) for row in removed), key=lambda product: product["id"])
    sessions = end_sessions_of(user_id)
    before = user.disabled_at
    if user.disabled_at is None:
        user.disabled_at = utcnow()
    changes = {
        "disabled_at": [audit.json_value(before), audit.json_value(user.disabled_at)],
        "target_email": user.email,
        "products_deleted": products,
        "sessions_ended": sessions,
    }
    record = _write(actor, "user.disable", user, changes)
    db.session.commit()
    audit.publish([record])
    return user, len(products)


def restore_user(user_id: str, *, actor: Actor) -> User:
    """Let a disabled account in again (its products are gone for good)."""
    get_user_or_404(user_id)
    user = _lock_for_admin_action(actor, [user_id])[user_id]
    before = user.disabled_at
    user.disabled_at = None
    changes = {"disabled_at": [audit.json_value(before), None], "target_email": user.email}
    record = _write(actor, "user.restore", user, changes)
    db.session.commit()
    audit.publish([record])
    return user
