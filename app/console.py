"""Swagger UI at /openapi/ as the developer's console: it knows who is signed in, and its curl works.

The page is rendered by the app (not flask-openapi3's template) with a JSON block that says
who the browser's session belongs to, and one script of ours (static/console.js, no inline
script: the CSP holds). In local mode the script asks POST /session/token for a short-lived
bearer token and authorizes Swagger UI with it, so Try it out and the curl it shows carry the
same credential. In auth0 mode, with SWAGGER_UI_CLIENT_ID, the document offers an OAuth2
scheme whose Authorize runs Swagger UI's own authorization-code flow with PKCE at the issuer.
"""

import logging
from functools import wraps
from urllib.parse import urlsplit

import requests
from flask import Flask, current_app, render_template, url_for

from app.auth.decorators import session_identity
from app.auth.hints import other_host_hint
from app.errors import ApiError
from app.http import HTML_CSP

log = logging.getLogger(__name__)
OAUTH_SCHEME = "signIn"
OAUTH_SCOPES = {"openid": "Who you are", "profile": "Your name", "email": "Your email address"}
REDIRECT_PAGE = "/openapi/oauth2-redirect.html"


def oauth_endpoints(app: Flask) -> dict[str, str] | None:
    """The issuer's authorization and token endpoints, for Swagger UI's Authorize; None when it cannot say."""
    client = app.extensions["dmarket.auth"]["oauth"]
    if not app.config["SWAGGER_UI_CLIENT_ID"] or client is None:
        return None
    try:
        metadata = client.load_server_metadata()
    except (requests.RequestException, ValueError) as exc:
        log.warning("Swagger UI's Authorize sign-in left out for now: the issuer's discovery failed (%s)", exc)
        return None
    if not metadata.get("authorization_endpoint") or not metadata.get("token_endpoint"):
        return None
    return {"authorizationUrl": metadata["authorization_endpoint"], "tokenUrl": metadata["token_endpoint"]}


def oauth_scheme(endpoints: dict[str, str]) -> dict:
    return {
        "type": "oauth2",
        "description": "Sign in at the identity provider from this page (authorization code with PKCE): "
        "Swagger UI then sends the access token it receives, and shows it in each curl command.",
        "flows": {"authorizationCode": {**endpoints, "scopes": OAUTH_SCOPES}},
    }


def _oauth_config() -> dict | None:
    """Swagger UI's initOAuth settings: the public client, PKCE, and the API named as the issuer wants it."""
    cfg = current_app.config
    if not cfg["SWAGGER_UI_CLIENT_ID"]:
        return None
    return {
        "clientId": cfg["SWAGGER_UI_CLIENT_ID"],
        "usePkceWithAuthorizationCodeGrant": True,
        "scopes": list(OAUTH_SCOPES),
        "additionalQueryStringParams": {param: cfg["API_AUDIENCE"] for param in cfg["AUTH_AUDIENCE_PARAMS"]},
        "redirectUrl": f"{cfg['PUBLIC_URL'] or ''}{REDIRECT_PAGE}",
    }


def _signed_in() -> dict | None:
    """Who the browser's session belongs to; None without one (or once it has ended)."""
    try:
        identity = session_identity()
    except ApiError:  # an ended session or a disabled account: the page says "not signed in"
        return None
    if identity is None:
        return None
    user = identity.user
    return {"email": user.email, "name": user.name, "user_id": user.user_id, "is_admin": identity.is_admin}


def swagger_ui():
    """Swagger UI, told who is signed in and how this mode gets Try it out a credential."""
    cfg = current_app.config
    local = cfg["AUTH_MODE"] == "local"
    settings = {
        "docUrl": url_for("openapi.doc_url"),
        "mode": cfg["AUTH_MODE"],
        "signedIn": _signed_in(),
        "signInUrl": "/login?next=/openapi/",
        "signOutUrl": "/logout",
        "tokenUrl": "/session/token" if local else None,
        "hostHint": other_host_hint().strip() or None,
        "oauth": _oauth_config() if oauth_endpoints(current_app) else None,
        "oauthScheme": OAUTH_SCHEME,
    }
    headers = {"Cache-Control": "no-store", "Vary": "Cookie"}
    if settings["oauth"]:
        # Authorize opens the provider in a popup that reports back to this page: it needs its opener.
        headers["Cross-Origin-Opener-Policy"] = "same-origin-allow-popups"
        headers["Content-Security-Policy"] = _csp_with_issuer()
    return render_template("swagger_ui.html", settings=settings), 200, headers


def _csp_with_issuer() -> str:
    """The pages' policy (no inline script here), plus the issuer for Swagger UI's token request."""
    parts = urlsplit(oauth_endpoints(current_app)["tokenUrl"])
    return HTML_CSP.format(hashes="").replace(
        "connect-src 'self'", f"connect-src 'self' {parts.scheme}://{parts.netloc}"
    )


def _opener_kept(view):
    """The OAuth2 redirect page runs in the popup and hands the code to its opener: no COOP of its own."""

    @wraps(view)
    def page(*args, **kwargs):
        response = current_app.make_response(view(*args, **kwargs))
        response.headers["Cross-Origin-Opener-Policy"] = "unsafe-none"
        return response

    return page


def init_app(app: Flask) -> None:
    app.view_functions["openapi.openapi"] = swagger_ui
    app.view_functions["swagger.oauth2-redirect"] = _opener_kept(app.view_functions["swagger.oauth2-redirect"])
