"""Development sign-in (AUTH_MODE=local): a form instead of Auth0, the same session afterwards.

Whoever can reach the port must not become anyone: the form needs the sign-in code the
server logs at start-up (as Jupyter does), from every client, loopback included. The page
also shows the access token, to paste into Swagger UI's Authorize dialog or curl.
"""

import hmac
from typing import Annotated

from flask import current_app, redirect, render_template, request, url_for
from flask_openapi3 import APIBlueprint, Tag
from pydantic import Field

from app.auth.session import end_session, ensure_same_site_request, start_session
from app.auth.signin import HTML, REDIRECT, LoginQuery, safe_next, signed_out
from app.errors import Forbidden
from app.schemas.common import CleanText, FormModel, drop_default
from app.schemas.users import Email
from app.services.users import ensure_enabled, sync_user

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


@bp.post("/login", responses={200: HTML, 403: REFUSED})
def sign_in(form: LocalSignInForm):
    """Sign in as anyone, given the sign-in code (development only): sets the session and shows a bearer token."""
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
    return render_template("local_signed_in.html", identity=identity, token=token, next=safe_next(form.next))


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
