"""Admins: list users, grant and revoke admin; anyone signed in may ask whether they are one."""

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag

from app.auth import current_identity, require_admin, require_auth
from app.openapi import response_headers
from app.routes.responses import PROTECTED, SIGNED_IN, json_response
from app.schemas.common import ErrorOut
from app.schemas.users import AdminChangeOut, AdminCheckOut, AdminUserOut, EmailIn, UserList, UserOut, UserQuery
from app.services import users

bp = APIBlueprint(
    "admin",
    __name__,
    url_prefix="/admin",
    abp_tags=[Tag(name="admin", description="User administration (admins only)")],
    abp_security=SIGNED_IN,
    abp_responses={401: ErrorOut, 403: ErrorOut, 503: ErrorOut},
)


def _user_row(user, product_count: int) -> dict:
    return AdminUserOut.model_validate({**UserOut.model_validate(user).model_dump(), "product_count": product_count})


@bp.get("/users", responses={200: UserList}, openapi_extensions=response_headers(200, "X-Total-Count"))
@require_admin
def list_users(query: UserQuery):
    """List users with their product counts (X-Total-Count holds the total)."""
    page = users.list_users(**query.model_dump())
    body = UserList(users=[_user_row(user, count) for user, count in page.items])
    return json_response(body.model_dump(mode="json"), headers={"X-Total-Count": str(page.total)})


def _change_admin(email: str, is_admin: bool):
    changed = users.set_admin(email=email, is_admin=is_admin)
    management = current_app.extensions["dmarket.auth"]["management"]
    if management is None:
        sync = "not_configured"
    else:
        results = [management.set_admin(user.user_id, is_admin) for user in changed]
        sync = "updated" if all(results) else "failed"
    body = AdminChangeOut(
        user=UserOut.model_validate(changed[0]), updated=[user.user_id for user in changed], auth0_sync=sync
    )
    return json_response(body.model_dump(mode="json"))


@bp.post("/set", responses={200: AdminChangeOut, 404: ErrorOut, **PROTECTED})
@require_admin
def grant_admin(body: EmailIn):
    """Grant admin to the user with this email (idempotent)."""
    return _change_admin(body.email, True)


@bp.post("/unset", responses={200: AdminChangeOut, 404: ErrorOut, 409: ErrorOut, **PROTECTED})
@require_admin
def revoke_admin(body: EmailIn):
    """Revoke admin from the user with this email; refused (409) for the last admin."""
    return _change_admin(body.email, False)


@bp.get("/check", responses={200: AdminCheckOut})
@require_auth
def check_admin():
    """Whether the caller has admin rights."""
    return json_response({"is_admin": current_identity().is_admin})
