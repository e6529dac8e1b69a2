"""Browser sessions: the cookie carries a random session id; the tokens stay in the database.

The cookie is Flask's signed session, holding only that id (and, during /login to
/callback, Authlib's state, nonce and PKCE verifier). Logging out deletes the row, so a
copied cookie is then worthless; any worker or host finds the row, so sessions survive
scaling out. The cookie is HttpOnly; over HTTPS it is Secure with SameSite=None (the SPA
is on another origin), over plain http (development) SameSite=Lax, which browsers accept
without Secure.
"""

import logging
from urllib.parse import urlsplit

from flask import Flask, current_app, request, session
from flask.sessions import SecureCookieSessionInterface

from app.errors import Forbidden
from app.services.sessions import create_session, delete_session, find_session

log = logging.getLogger(__name__)
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
SESSION_ID = "sid"


class SchemeAwareSessionInterface(SecureCookieSessionInterface):
    """Requests without the cookie (API clients: nearly all of them) skip the signing and cookie work."""

    def open_session(self, app: Flask, request):
        # No Cookie header at all is checked first: parsing the cookies walks every request header.
        if "HTTP_COOKIE" not in request.environ or self.get_cookie_name(app) not in request.cookies:
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
    end_session()
    session.permanent = True
    session[SESSION_ID] = create_session(
        user_id=user_id,
        access_token=access_token,
        id_token=id_token,
        lifetime=int(current_app.permanent_session_lifetime.total_seconds()),
    )


def _session_id() -> str | None:
    value = session.get(SESSION_ID)
    return value if isinstance(value, str) and 0 < len(value) <= 128 else None


def session_token() -> str | None:
    """The access token of the browser's live session; a cookie whose session is gone is cleared."""
    session_id = _session_id()
    if session_id is None:
        return None
    row = find_session(session_id)
    if row is None:
        session.clear()
        return None
    return row.access_token


def end_session() -> str | None:
    """Forget the browser's sign-in, in the cookie and the database; returns the ID token (logout hint)."""
    session_id = _session_id()
    session.clear()
    return delete_session(session_id) if session_id else None


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
    # Only an absent Origin falls back to Referer: `Origin: null` (sandboxed frames, data: URLs,
    # some redirects) is an opaque origin, never one of ours.
    if origin is None:
        origin = _origin_of(request.referrer) if request.referrer else None
    else:
        origin = origin.strip().lower()
    if origin not in trusted_origins():
        raise Forbidden(
            "A request authenticated by the session cookie must come from the API's own origin or an allowed one.",
            code="cross_site_request",
        )


def init_app(app: Flask) -> None:
    app.session_interface = SchemeAwareSessionInterface()
    if app.config.get("SECRET_KEY_FILE"):
        log.warning(
            "SECRET_KEY is not set: cookies are signed with a random key kept in %s. "
            "Set SECRET_KEY (the same on every host) before running more than one host.",
            app.config["SECRET_KEY_FILE"],
        )
