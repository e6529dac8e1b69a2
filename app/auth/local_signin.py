"""Development sign-in (AUTH_MODE=local): a form instead of Auth0, the same session afterwards.

The page also shows the access token, to paste into Swagger UI's Authorize dialog or curl.
"""

from typing import Annotated

from flask import current_app, redirect, render_template, url_for
from flask_openapi3 import APIBlueprint, Tag
from pydantic import Field

from app.auth.session import end_session, ensure_same_site_request, start_session
from app.auth.signin import HTML, REDIRECT, LoginQuery, safe_next, signed_out
from app.schemas.common import CleanText, ErrorOut, RequestModel
from app.schemas.users import Email
from app.services.users import sync_user

bp = APIBlueprint(
    "signin", __name__, abp_tags=[Tag(name="sign-in", description="Development sign-in (AUTH_MODE=local)")]
)


class LocalSignInForm(RequestModel):
    email: Email
    name: Annotated[str, Field(max_length=255), CleanText] | None = None
    admin: bool = False
    next: str | None = Field(default=None, max_length=2000)


@bp.get("/login", responses={200: HTML})
def login(query: LoginQuery):
    """The development sign-in form."""
    return render_template("local_signin.html", next=safe_next(query.next))


@bp.post("/login", responses={200: HTML, 403: ErrorOut})
def sign_in(form: LocalSignInForm):
    """Sign in as anyone (development only): sets the session and shows a bearer token."""
    ensure_same_site_request()
    issuer = current_app.extensions["dmarket.auth"]["local_issuer"]
    token = issuer.mint(email=form.email, name=form.name or None, admin=form.admin)
    claims = current_app.extensions["dmarket.auth"]["verifier"].verify(token)
    cfg = current_app.config
    identity = sync_user(
        claims={**claims, "email_verified": True}, admin_claim=cfg["ADMIN_CLAIM"], admin_emails=cfg["ADMIN_EMAILS"]
    )
    start_session(user_id=identity.user.user_id, access_token=token)
    return render_template("local_signed_in.html", identity=identity, token=token, next=safe_next(form.next))


@bp.get("/logout", responses={302: REDIRECT})
def logout():
    """Sign out of the development session."""
    end_session()
    return redirect(url_for("signin.signed_out"))


bp.get("/signed-out", responses={200: HTML})(signed_out)
