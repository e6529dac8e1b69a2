"""Browser sign-in with Auth0 (or any OpenID provider): /login, /callback, /logout.

The authorization-code flow with PKCE, state and nonce, through Authlib's Flask client.
The tokens are kept in a server-side session whose random id is all the cookie holds,
so the browser (and Swagger UI) can then call the API without handling tokens.
"""

import logging
import re
from urllib.parse import quote, urlencode

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.base_client import MismatchingStateError, OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Flask, current_app, redirect, render_template, request, session
from flask_openapi3 import APIBlueprint, Tag
from joserfc.errors import JoseError
from pydantic import Field

from app.auth.session import end_session, start_session
from app.auth.verifier import InvalidToken, IssuerUnavailable
from app.config import issuer_url
from app.errors import ApiError, BadRequest, ServiceUnavailable
from app.http import public_url
from app.schemas.common import ErrorOut, RequestModel, drop_default
from app.services.users import ensure_enabled, sync_user

log = logging.getLogger(__name__)
REDIRECT = {"description": "Redirect (see Location)"}
SEE_OTHER = {"description": "Signed in: See Other, to `next` (Location)"}
HTML = {"description": "An HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}
PROFILE_CLAIMS = ("email", "name", "email_verified")

bp = APIBlueprint("signin", __name__, abp_tags=[Tag(name="sign-in", description="Browser sign-in")])


class LoginQuery(RequestModel):
    next: str | None = Field(
        default=None,
        max_length=2000,
        description="Relative path to return to after sign-in",
        json_schema_extra=drop_default,
    )


class CallbackQuery(RequestModel):
    code: str | None = Field(default=None, max_length=2000, json_schema_extra=drop_default)
    state: str | None = Field(default=None, max_length=2000, json_schema_extra=drop_default)
    error: str | None = Field(default=None, max_length=200, json_schema_extra=drop_default)
    error_description: str | None = Field(default=None, max_length=2000, json_schema_extra=drop_default)


# What `next` may take of the sign-in cookie, once its non-ASCII characters are escaped (up to 12 bytes
# each): browsers drop a cookie past 4 KB, and the sign-in with it.
NEXT_MAX_BYTES = 1024


def safe_next(value: str | None) -> str:
    """Only a path on this site: anything absolute or scheme-relative would be an open redirect."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if len(quote(value, safe="/?&=%")) > NEXT_MAX_BYTES:
        return "/"
    if any(ord(ch) < 32 or ch == "\\" for ch in value):
        return "/"
    return value


def _provider():
    client = current_app.extensions["dmarket.auth"]["oauth"]
    if client is None:
        raise ApiError(
            "Browser sign-in is not configured: set CLIENT_ID (and CLIENT_SECRET) for the Auth0 application.",
            code="sign_in_not_configured",
            status=501,
        )
    return client


def _provider_down(exc: Exception) -> ServiceUnavailable:
    log.warning("identity provider unreachable during sign-in: %s", exc.__class__.__name__)
    return ServiceUnavailable(
        "The identity provider is unavailable; retry shortly.", code="issuer_unavailable", headers={"Retry-After": "5"}
    )


def _provider_unavailable():
    """None when the provider answers; else the API's own 503 (a page for browsers), never a dead link.

    Authlib keeps the provider's endpoints for the process's life, so without asking, a warm
    worker would send the browser to a host that does not answer.
    """
    if current_app.extensions["dmarket.auth"]["verifier"].keys.issuer_answers():
        return None
    if request.accept_mimetypes.best_match(["application/json", "text/html"]) != "text/html":
        raise _provider_down(IssuerUnavailable("the issuer does not answer"))
    log.warning("identity provider unreachable: %s answered with the sign-in unavailable page", request.path)
    return render_template("signin_unavailable.html", retry=request.full_path.rstrip("?")), 503, {"Retry-After": "5"}


def _resource_params() -> dict[str, str]:
    """The API named as Auth0 wants it (`audience`), as RFC 8707 does (`resource`), or both (AUTH_AUDIENCE_PARAMS)."""
    cfg = current_app.config
    return {param: cfg["API_AUDIENCE"] for param in cfg["AUTH_AUDIENCE_PARAMS"]}


def _callback_url() -> str:
    return current_app.config["AUTH0_CALLBACK_URL"] or public_url("signin.callback")


@bp.get("/login", responses={302: REDIRECT, 501: ErrorOut, 503: ErrorOut})
def login(query: LoginQuery):
    """Sign in: redirects to the identity provider (authorization code + PKCE)."""
    provider = _provider()
    target = safe_next(query.next)
    if unavailable := _provider_unavailable():
        return unavailable
    # Authlib keeps each attempt's state in the cookie: only the newest one can finish, and the
    # cookie stays under the 4 KB browsers keep however often /login is opened.
    for pending in [key for key in session if key.startswith("_state_")]:
        del session[pending]
    try:
        response = provider.authorize_redirect(_callback_url(), **_resource_params())
    except (requests.RequestException, ValueError) as exc:
        raise _provider_down(exc) from None
    session["next"] = target
    return response


@bp.get(
    "/callback", responses={303: SEE_OTHER, 400: ErrorOut, 403: ErrorOut, 501: ErrorOut, 502: ErrorOut, 503: ErrorOut}
)
def callback(query: CallbackQuery):
    """Where the provider sends the browser back: exchanges the code and starts the session."""
    provider = _provider()
    if query.error:
        # Name the provider's error code (e.g. access_denied) but never echo arbitrary text.
        reason = f": {query.error}" if re.fullmatch(r"[a-z_]{1,64}", query.error) else ""
        raise BadRequest(f"Sign-in was not completed{reason}.", code="sign_in_failed")
    if not query.code or not query.state:
        raise BadRequest("The provider's answer has no authorization code or state.", code="sign_in_failed")
    target = safe_next(session.get("next"))
    # RFC 8707: the token request names the resource again (Auth0 ignores it there).
    resource = {k: v for k, v in _resource_params().items() if k == "resource"}
    try:
        token = provider.authorize_access_token(**resource)
    except MismatchingStateError:
        raise BadRequest("The sign-in state does not match; start again at /login.", code="invalid_state") from None
    except OAuthError as exc:
        if exc.error in ("invalid_client", "unauthorized_client"):
            raise ApiError(
                "The identity provider refused this API's client credentials.", code="sign_in_misconfigured", status=502
            ) from None
        reason = f": {exc.error}" if re.fullmatch(r"[a-z_]{1,64}", exc.error or "") else ""
        raise BadRequest(f"The provider refused the sign-in{reason}.", code="sign_in_failed") from None
    except (JoseError, AuthlibBaseError):
        raise BadRequest("The provider's ID token is not valid.", code="invalid_id_token") from None
    except (requests.RequestException, ValueError) as exc:
        raise _provider_down(exc) from None
    _start(token)
    return redirect(target, 303)


def _start(token: dict) -> None:
    """Keep the access token only once this API itself accepts it, for the user the ID token names."""
    verifier = current_app.extensions["dmarket.auth"]["verifier"]
    try:
        claims = verifier.verify(token.get("access_token") or "")
    except InvalidToken as exc:
        raise BadRequest(
            f"The provider issued an access token this API does not accept ({exc}){_hint(str(exc))}.",
            code="sign_in_failed",
        ) from None
    except IssuerUnavailable as exc:
        raise _provider_down(exc) from None
    profile = token.get("userinfo") or {}
    if profile.get("sub") != claims["sub"]:
        raise BadRequest("The ID token and the access token name different users.", code="sign_in_failed")
    if "email" in profile:
        # The ID token's email is verified only if the ID token itself says so.
        claims = {k: v for k, v in claims.items() if k != "email_verified"}
    cfg = current_app.config
    identity = sync_user(
        claims={**claims, **{k: profile[k] for k in PROFILE_CLAIMS if k in profile}},
        admin_claim=cfg["ADMIN_CLAIM"],
        admin_emails=cfg["ADMIN_EMAILS"],
    )
    ensure_enabled(identity.user)
    start_session(user_id=identity.user.user_id, access_token=token["access_token"], id_token=token.get("id_token"))


def _hint(reason: str) -> str:
    """What to check, for the reasons a setting explains; none where it would mislead."""
    if "not valid yet" in reason or "expired" in reason:
        return "; check the clocks of this server and the provider, or JWT_LEEWAY"
    if "aud claim" in reason or "malformed" in reason:
        return "; check API_AUDIENCE and AUTH_AUDIENCE_PARAMS"
    if "iss claim" in reason:
        return "; check AUTH0_ISSUER (compared exactly, trailing slash included)"
    return ""


@bp.get("/logout", responses={302: REDIRECT, 503: ErrorOut})
def logout():
    """Sign out here, then at the provider (its end-session endpoint, or Auth0's /v2/logout)."""
    id_token = end_session()
    cfg = current_app.config
    return_to = cfg["LOGOUT_REDIRECT_URL"] or public_url("signin.signed_out")
    provider = current_app.extensions["dmarket.auth"]["oauth"]
    if provider is None:
        return redirect(return_to)
    if unavailable := _provider_unavailable():  # signed out here already; the provider's session needs it up
        return unavailable
    try:
        end_session_endpoint = provider.load_server_metadata().get("end_session_endpoint")
    except (requests.RequestException, ValueError):
        end_session_endpoint = None
    if end_session_endpoint:
        params = {"post_logout_redirect_uri": return_to, "client_id": cfg["CLIENT_ID"]}
        if id_token:
            params["id_token_hint"] = id_token
        return redirect(f"{end_session_endpoint}?{urlencode(params)}")
    auth0_params = urlencode({"client_id": cfg["CLIENT_ID"], "returnTo": return_to})
    return redirect(f"{issuer_url(cfg['AUTH0_ISSUER'], 'v2/logout')}?{auth0_params}")


def signed_out():
    """Where sign-out lands: says the session has ended."""
    return render_template("signed_out.html")


bp.get("/signed-out", responses={200: HTML})(signed_out)


def oauth_client(app: Flask):
    """The provider client, built once per app from its settings; None without a CLIENT_ID."""
    cfg = app.config
    if not cfg["CLIENT_ID"]:
        return None
    oauth = OAuth(app)
    return oauth.register(
        "auth0",
        client_id=cfg["CLIENT_ID"],
        client_secret=cfg["CLIENT_SECRET"],
        server_metadata_url=issuer_url(cfg["AUTH0_ISSUER"], ".well-known/openid-configuration"),
        client_kwargs={
            "scope": "openid profile email",
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": "client_secret_post" if cfg["CLIENT_SECRET"] else "none",
            "default_timeout": cfg["HTTP_TIMEOUT"],
        },
    )
