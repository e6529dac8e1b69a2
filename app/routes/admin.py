"""Admins: list users, grant and revoke admin, read the audit trail; anyone signed in may ask whether they are one."""

from flask_openapi3 import APIBlueprint, Tag

from app.auth import current_actor, current_identity, require_admin, require_auth
from app.auth.management import mirror
from app.openapi import response_headers
from app.routes.responses import PROTECTED, SIGNED_IN, json_response, pagination_links
from app.schemas.audit import AuditList, AuditQuery
from app.schemas.common import ErrorOut
from app.schemas.users import (
    AccountOut,
    AdminChangeOut,
    AdminCheckOut,
    AdminTarget,
    AdminUserOut,
    UserList,
    UserQuery,
)
from app.services import audit, users

bp = APIBlueprint(
    "admin",
    __name__,
    url_prefix="/admin",
    abp_tags=[Tag(name="admin", description="User administration (admins only)")],
    abp_security=SIGNED_IN,
    abp_responses={401: ErrorOut, 403: ErrorOut, 503: ErrorOut},
)


def _user_row(user, product_count: int) -> dict:
    return AdminUserOut.model_validate({**AccountOut.model_validate(user).model_dump(), "product_count": product_count})


@bp.get("/users", responses={200: UserList}, openapi_extensions=response_headers(200, "X-Total-Count"))
@require_admin
def list_users(query: UserQuery):
    """List users with their product counts (X-Total-Count holds the total)."""
    page = users.list_users(**query.model_dump())
    body = UserList(users=[_user_row(user, count) for user, count in page.items])
    return json_response(body.model_dump(mode="json"), headers={"X-Total-Count": str(page.total)})


def _change_admin(target: AdminTarget, is_admin: bool):
    change = users.set_admin(email=target.email, user_id=target.user_id, is_admin=is_admin, actor=current_actor())
    sync = mirror(lambda auth0: [auth0.set_admin(user.user_id, is_admin) for user in change.updated])
    verb = "granted to" if is_admin else "revoked from"
    message = f"Admin {verb} {len(change.updated)} account(s)."
    if change.skipped_unverified:
        message += (
            f" {len(change.skipped_unverified)} other account(s) with this email were skipped: the identity"
            " provider has not verified their email (address them by user_id if you mean them)."
        )
    body = AdminChangeOut(
        user=AccountOut.model_validate(change.updated[0]),
        updated=[user.user_id for user in change.updated],
        skipped_unverified=[user.user_id for user in change.skipped_unverified],
        message=message,
        auth0_sync=sync,
    )
    return json_response(body.model_dump(mode="json"))


@bp.post("/set", responses={200: AdminChangeOut, 404: ErrorOut, **PROTECTED})
@require_admin
def grant_admin(body: AdminTarget):
    """Grant admin to one account (user_id) or to every account whose verified email this is (idempotent).

    An email reaches only accounts whose email the identity provider verified; others holding
    it are listed in `skipped_unverified`. 404 `not_found`: nobody with it has signed in;
    404 `email_not_verified` (details.skipped_unverified): only unverified accounts hold it.
    """
    return _change_admin(body, True)


@bp.post("/unset", responses={200: AdminChangeOut, 404: ErrorOut, 409: ErrorOut, **PROTECTED})
@require_admin
def revoke_admin(body: AdminTarget):
    """Revoke admin from one account (user_id) or every account whose verified email this is; never the last admin.

    The same rule and 404s as granting; 409 `last_admin` when no other enabled admin would remain.
    """
    return _change_admin(body, False)


@bp.get("/check", responses={200: AdminCheckOut})
@require_auth
def check_admin():
    """Whether the caller has admin rights."""
    return json_response({"is_admin": current_identity().is_admin})


AUDIT_HEADERS = response_headers(200, "Link", sometimes=("X-Total-Count", "X-Next-Cursor"))


def audit_page(page, query, body_model):
    """A page of audit records with the headers /products pages carry (Link, X-Total-Count, X-Next-Cursor)."""
    headers = {"Link": pagination_links(page, query)}
    if page.total is not None:
        headers["X-Total-Count"] = str(page.total)
    if page.next_cursor:
        headers["X-Next-Cursor"] = page.next_cursor
    body = body_model.model_validate({"records": [row._mapping for row in page.items]})
    return json_response(body.model_dump_json(), headers=headers)


@bp.get("/audit", responses={200: AuditList, 422: ErrorOut}, openapi_extensions=AUDIT_HEADERS)
@require_admin
def list_audit(query: AuditQuery):
    """The audit trail of privileged actions, newest first; filter by actor, target, action, since, until."""
    return audit_page(audit.list_records(**query.model_dump()), query, AuditList)
