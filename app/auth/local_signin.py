"""Development sign-in (AUTH_MODE=local): a form instead of Auth0, the same session afterwards.

Whoever can reach the port must not become anyone: the form needs the sign-in code the
server logs at start-up (as Jupyter does), from every client, loopback included. Signing in
ends with a 303 to `next`; Swagger UI then asks POST /session/token for a short-lived bearer
token of the signed-in user, which its Try it out and the curl command it shows both carry.
"""

import hmac
import time
from typing import Annotated

from flask import current_app, redirect, render_template, request, url_for
from flask_openapi3 import APIBlueprint, Tag
from pydantic import Field

from app.auth.decorators import session_identity
from app.auth.hints import challenge, how_to_sign_in, other_host_hint
from app.auth.session import end_session, ensure_same_site_request, start_session
from app.auth.signin import HTML, REDIRECT, SEE_OTHER, LoginQuery, safe_next, signed_out
from app.errors import Forbidden, Unauthorized
from app.schemas.common import CleanText, ErrorOut, FormModel, drop_default
from app.schemas.users import Email, MeOut, SessionTokenOut
from app.services.users import claim_grants_admin, ensure_enabled, sync_user

bp = APIBlueprint(
    "signin", __name__, abp_tags=[Tag(name="sign-in", description="Development sign-in (AUTH_MODE=local)")]
)
REFUSED = {
    "description": "A cross-site form (JSON), or a missing or wrong sign-in code: the form again for a browser, "
    "JSON (`signin_code_required`) for other clients",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}},
        "text/html": {"schema": {"type": "string"}},
    },
}
# Long enough for a session at Swagger UI (the page renews it), short enough that a copied curl is no lasting key.
SESSION_TOKEN_SECONDS = 900
CODE_HELP = "The sign-in code the server logged at start-up (also in instance/local_signin_code)"
WRONG_CODE = "The sign-in code is missing or wrong: open the link the server logged at start-up."


class LocalLoginQuery(LoginQuery):
    code: str | None = Field(
        default=None, max_length=200, description=f"{CODE_HELP}: prefills the form", json_schema_extra=drop_default
    )


class LocalSignInForm(FormModel):
    email: Email
    name: Annotated[str, Field(max_length=255), CleanText] | None = Field(default=None, json_schema_extra=drop_default)
    admin: bool = False
    next: str | None = Field(default=None, max_length=2000, json_schema_extra=drop_default)
    code: str | None = Field(default=None, max_length=200, description=CODE_HELP, json_schema_extra=drop_default)


def _code_is_right(code: str | None) -> bool:
    expected = current_app.config["LOCAL_SIGNIN_CODE"]
    return bool(code) and hmac.compare_digest(code.encode(), expected.encode())


@bp.get("/login", responses={200: HTML})
def login(query: LocalLoginQuery):
    """The development sign-in form (`?code=` from the start-up log fills in the sign-in code)."""
    right = _code_is_right(query.code)
    error = None if right or not query.code else "This link's sign-in code is not this server's; use its log's link."
    return render_template(
        "local_signin.html", next=safe_next(query.next), code=query.code if right else "", error=error, form=None
    )


@bp.post("/login", responses={303: SEE_OTHER, 403: REFUSED})
def sign_in(form: LocalSignInForm):
    """Sign in as anyone, given the sign-in code (development only): sets the session, then 303 to `next`."""
    ensure_same_site_request()
    if not _code_is_right(form.code):
        return _refuse(form)
    issuer = current_app.extensions["dmarket.auth"]["local_issuer"]
    token = issuer.mint(email=form.email, name=form.name or None, admin=form.admin)
    claims = current_app.extensions["dmarket.auth"]["verifier"].verify(token)
    cfg = current_app.config
    identity = sync_user(
        claims={**claims, "email_verified": True}, admin_claim=cfg["ADMIN_CLAIM"], admin_emails=cfg["ADMIN_EMAILS"]
    )
    ensure_enabled(identity.user)
    start_session(user_id=identity.user.user_id, access_token=token)
    # POST, then See Other: reloading the page `next` names never sends the form again.
    return redirect(safe_next(form.next), 303)


@bp.post("/session/token", responses={200: SessionTokenOut, 401: ErrorOut, 403: ErrorOut})
def session_token():
    """A bearer token for the browser's signed-in user, for 15 minutes at most (Swagger UI's Try it out and curl)."""
    identity = session_identity()
    if identity is None:
        raise Unauthorized(
            f"No browser session here: {how_to_sign_in()}.{other_host_hint()}",
            headers={"WWW-Authenticate": challenge(f"No browser session: {how_to_sign_in()}")},
        )
    claims = identity.claims
    ttl = max(1, min(SESSION_TOKEN_SECONDS, int(claims["exp"] - time.time())))  # never past the session's own
    admin = claim_grants_admin(claims.get(current_app.config["ADMIN_CLAIM"]))
    issuer = current_app.extensions["dmarket.auth"]["local_issuer"]
    token = issuer.mint(email=claims["email"], name=claims.get("name"), admin=admin, ttl=ttl)
    user = MeOut.model_validate(identity.user).model_copy(update={"is_admin": identity.is_admin})
    return SessionTokenOut(access_token=token, expires_in=ttl, user=user).model_dump(mode="json")


def _refuse(form: LocalSignInForm):
    """A person gets the form back, filled in, with the reason; a script gets the JSON error."""
    if request.accept_mimetypes.best_match(["application/json", "text/html"]) != "text/html":
        raise Forbidden(WRONG_CODE, code="signin_code_required")
    page = render_template("local_signin.html", next=safe_next(form.next), code="", error=WRONG_CODE, form=form)
    return page, 403


@bp.get("/logout", responses={302: REDIRECT})
def logout():
    """Sign out of the development session."""
    end_session()
    return redirect(url_for("signin.signed_out"))


bp.get("/signed-out", responses={200: HTML})(signed_out)
