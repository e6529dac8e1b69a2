"""Users: who am I, and (admins) removing someone together with their products."""

from flask_openapi3 import APIBlueprint, Tag

from app.auth import current_identity, require_admin, require_auth
from app.routes.responses import SIGNED_IN, json_response
from app.schemas.common import ErrorOut
from app.schemas.users import MeOut, UserDeletedOut, UserPath
from app.services import users

bp = APIBlueprint(
    "users",
    __name__,
    abp_tags=[Tag(name="users", description="Signed-in users")],
    abp_security=SIGNED_IN,
    abp_responses={401: ErrorOut, 503: ErrorOut},
)


@bp.get("/me", responses={200: MeOut})
@require_auth
def me():
    """The signed-in user."""
    identity = current_identity()
    body = MeOut.model_validate(identity.user).model_copy(update={"is_admin": identity.is_admin})
    return json_response(body.model_dump(mode="json"))


@bp.delete("/users/<user_id>", responses={200: UserDeletedOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut})
@require_admin
def delete_user(path: UserPath):
    """Delete a user and all their products, in one transaction (admins; never the last admin)."""
    removed = users.delete_user(path.user_id)
    return json_response({"message": f"User {path.user_id} deleted.", "products_deleted": removed})
