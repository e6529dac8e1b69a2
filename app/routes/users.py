"""Users: who am I and what admins did to my account; (admins) disabling an account, or restoring it."""

from flask_openapi3 import APIBlueprint, Tag

from app.auth import current_actor, current_identity, require_admin, require_auth
from app.auth.management import mirror
from app.routes.admin import AUDIT_HEADERS, audit_page
from app.routes.responses import SIGNED_IN, json_response
from app.schemas.audit import MyAuditList, MyAuditQuery
from app.schemas.common import ErrorOut
from app.schemas.users import AccountOut, MeOut, UserDeletedOut, UserPath, UserRestoredOut
from app.services import audit, users

bp = APIBlueprint(
    "users",
    __name__,
    abp_tags=[Tag(name="users", description="Signed-in users")],
    abp_security=SIGNED_IN,
    abp_responses={401: ErrorOut, 403: ErrorOut, 503: ErrorOut},
)


@bp.get("/me", responses={200: MeOut}, operation_id="getMe")
@require_auth
def me():
    """The signed-in user."""
    identity = current_identity()
    body = MeOut.model_validate(identity.user).model_copy(update={"is_admin": identity.is_admin})
    return json_response(body.model_dump(mode="json"))


@bp.get("/me/audit", responses={200: MyAuditList, 422: ErrorOut}, openapi_extensions=AUDIT_HEADERS)
@require_auth
def my_audit(query: MyAuditQuery):
    """Privileged actions on the caller's account and products (admins' changes, disables, grants), newest first."""
    page = audit.list_records(**query.model_dump(), subject_user_id=current_identity().user.user_id)
    return audit_page(page, query, MyAuditList)


@bp.delete("/users/<user_id>", responses={200: UserDeletedOut, 404: ErrorOut, 409: ErrorOut})
@require_admin
def delete_user(path: UserPath):
    """Delete a user's products and disable the account, in one transaction (admins; never the last admin).

    The account is kept, disabled: its tokens and sessions get 403 `account_disabled` until
    an admin restores it (it is also blocked at Auth0 when the Management API is configured).
    Deleting a disabled account again is harmless.
    """
    user, removed = users.disable_user(path.user_id, actor=current_actor())
    sync = mirror(lambda auth0: [auth0.set_blocked(user.user_id, True)])
    body = UserDeletedOut(
        message="The user's products were deleted and the account disabled.",
        products_deleted=removed,
        disabled_at=user.disabled_at,
        auth0_sync=sync,
    )
    return json_response(body.model_dump(mode="json"))


@bp.post("/users/<user_id>/restore", responses={200: UserRestoredOut, 404: ErrorOut})
@require_admin
def restore_user(path: UserPath):
    """Restore a disabled account: its tokens are accepted again (admins; idempotent).

    Its deleted products do not come back. Unblocked at Auth0 too when the Management API is configured.
    """
    user = users.restore_user(path.user_id, actor=current_actor())
    sync = mirror(lambda auth0: [auth0.set_blocked(user.user_id, False)])
    body = UserRestoredOut(user=AccountOut.model_validate(user), auth0_sync=sync)
    return json_response(body.model_dump(mode="json"))
