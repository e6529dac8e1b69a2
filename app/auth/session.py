"""Browser sessions: a signed cookie (no server-side state) holding the user's access token.

Any worker or host can read the cookie, so sessions survive scaling out. The cookie is
HttpOnly; over HTTPS it is Secure with SameSite=None (the SPA is on another origin), over
plain http (development) SameSite=Lax, which browsers accept without Secure.
"""

from urllib.parse import urlsplit

from flask import Flask, current_app, request, session
from flask.sessions import SecureCookieSessionInterface

from app.errors import Forbidden

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class SchemeAwareSessionInterface(SecureCookieSessionInterface):
    """Requests without the cookie (API clients: nearly all of them) skip the signing and cookie work."""

    def open_session(self, app: Flask, request):
        if self.get_cookie_name(app) not in request.cookies:
            return self.session_class() if app.secret_key else None
        return super().open_session(app, request)

    def save_session(self, app: Flask, session, response) -> None:
        if not session and not session.modified:  # nothing held, nothing to clear
            if session.accessed:
                response.vary.add("Cookie")
            return
        super().save_session(app, session, response)

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure

    def get_cookie_samesite(self, app: Flask) -> str:
        return "None" if request.is_secure else "Lax"


def start_session(*, user_id: str, access_token: str, id_token: str | None = None) -> None:
    """A fresh session: whatever the browser held before (e.g. sign-in state) is dropped."""
    session.clear()
    session.permanent = True
    session["user_id"] = user_id
    session["access_token"] = access_token
    if id_token:
        session["id_token"] = id_token


def session_token() -> str | None:
    token = session.get("access_token")
    return token if isinstance(token, str) else None


def end_session() -> str | None:
    """Forget the browser's sign-in; returns the ID token, for the provider's logout hint."""
    id_token = session.get("id_token")
    session.clear()
    return id_token


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else None


def trusted_origins() -> set[str]:
    return {request.host_url.rstrip("/").lower(), *(o.lower() for o in current_app.config["CORS_ORIGINS"])}


def ensure_same_site_request() -> None:
    """A cookie-authenticated write must come from our own pages or the SPA: no cross-site forms."""
    if request.method not in UNSAFE_METHODS:
        return
    origin = request.headers.get("Origin")
    origin = origin.lower() if origin and origin != "null" else None
    if origin is None and request.referrer:
        origin = _origin_of(request.referrer)
    if origin not in trusted_origins():
        raise Forbidden(
            "A request authenticated by the session cookie must come from the API's own origin or an allowed one.",
            code="cross_site_request",
        )


def init_app(app: Flask) -> None:
    app.session_interface = SchemeAwareSessionInterface()
