"""Who is calling: `require_auth` / `require_admin` mark views; a before-request hook enforces.

flask-openapi3 validates the request inside the registered view, before any decorator
placed under the route runs. Enforcing in a before-request hook (driven by the marks the
decorators leave, which `functools.wraps` carries onto the registered view) makes a bad
token answer 401 before a bad body can answer 422. The wrapper enforces again, in case a
view is ever reached another way.
"""

from functools import wraps

from flask import current_app, g, request

from app import metrics
from app.auth.hints import challenge, how_to_sign_in, other_host_hint
from app.auth.session import end_session, ensure_same_site_request, session_token
from app.auth.verifier import InvalidToken, IssuerUnavailable
from app.errors import Forbidden, ServiceUnavailable, Unauthorized
from app.services.audit import Actor
from app.services.users import Identity, ensure_enabled, sync_user

AUTH_LEVEL = "auth_level"


def _mark(level: str):
    def decorator(fn):
        @wraps(fn)
        def wrapper(*args, **kwargs):
            _enforce(level)
            return fn(*args, **kwargs)

        setattr(wrapper, AUTH_LEVEL, level)
        return wrapper

    return decorator


require_auth = _mark("user")
require_admin = _mark("admin")


def _required_level() -> str | None:
    if request.method == "OPTIONS":  # CORS preflights carry no credentials
        return None
    return getattr(current_app.view_functions.get(request.endpoint), AUTH_LEVEL, None)


def authenticate_if_required() -> None:
    level = _required_level()
    if level:
        _enforce(level)


def identify_quietly() -> Identity | None:
    """The caller, for the rate limiter: who to count a request against, decided before any refusal.

    Verifies the credentials when the route needs them, but never raises: a refusal (a bad
    token, no credentials, the database down while syncing the user) is kept and raised by
    `authenticate_if_required`, which runs after the limiter has counted the request.
    """
    if not _required_level():
        return None
    try:
        return current_identity()
    except Exception as exc:  # any failure is the auth hook's to answer, after the request is counted
        g.auth_failure = exc
        return None


def _enforce(level: str) -> None:
    identity = current_identity()
    if level == "admin" and not identity.is_admin:
        # Read the user again before refusing: admin granted since the token cache remembered this
        # caller (through another worker or host) counts at once. Only refusals pay for it.
        g.identity = identity = _authenticate(fresh=True)
    if level == "admin" and not identity.is_admin:
        raise Forbidden("Admin rights are required.")


def current_identity() -> Identity:
    """The authenticated caller, verified once per request."""
    if "auth_failure" in g:  # already refused once in this request (see identify_quietly)
        raise g.auth_failure
    if "identity" not in g:
        g.identity = _authenticate()
    return g.identity


def _authenticate(*, fresh: bool = False) -> Identity:
    """A bearer token when the request carries one; otherwise the browser session's token."""
    if "Authorization" in request.headers:
        return _identity(_bearer_token(), via="bearer", fresh=fresh)
    token = session_token()
    if token is None:
        how = how_to_sign_in()
        raise Unauthorized(
            f"Authentication is required: send Authorization: Bearer <access token>, or {how}.{other_host_hint()}",
            headers={"WWW-Authenticate": challenge(f"Authentication is required: {how}")},
        )
    ensure_same_site_request()
    return _identity(token, via="session", fresh=fresh)


def session_identity() -> Identity | None:
    """The browser session's caller, whatever Authorization says; None without a live session."""
    token = session_token()
    if token is None:
        return None
    ensure_same_site_request()
    return _identity(token, via="session")


def _bearer_token() -> str:
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        how = how_to_sign_in()
        raise Unauthorized(
            f"Authentication is required: send Authorization: Bearer <access token>; to get one, {how}.",
            headers={"WWW-Authenticate": challenge(f"Send Authorization: Bearer <access token>; to get one, {how}")},
        )
    return token


def _identity(token: str, *, via: str, fresh: bool = False) -> Identity:
    """The caller behind a token: from the token cache while fresh, else verified and synced (then cached).

    `fresh` reads the user again whatever the cache holds (the claims may still come from it).
    """
    auth = current_app.extensions["dmarket.auth"]
    cache = auth["tokens"]
    identity = None if fresh else cache.identity(token)
    if identity is None:
        key_set = cache.key_set()
        claims = cache.claims(token) or _verify(auth["verifier"], token, via=via)
        cfg = current_app.config
        identity = sync_user(claims=claims, admin_claim=cfg["ADMIN_CLAIM"], admin_emails=cfg["ADMIN_EMAILS"])
        cache.remember(token, claims, identity, key_set=key_set)
    ensure_enabled(identity.user)
    return identity


def _verify(verifier, token: str, *, via: str) -> dict:
    try:
        return verifier.verify(token)
    except InvalidToken as exc:
        metrics.token_rejected(str(exc))
        if via == "session":
            end_session()
            again = how_to_sign_in(again=True)
            raise Unauthorized(
                f"Your session has ended; {again}.",
                code="session_expired",
                headers={"WWW-Authenticate": challenge(f"The session has ended; {again}")},
            ) from None
        # An expired token was once valid: the remedy is a new one. Any other reason: how to get one at all.
        remedy = how_to_sign_in(again="expired" in str(exc))
        raise Unauthorized(
            f"The access token was rejected: {exc}. To get a valid one, {remedy}.",
            code="invalid_token",
            headers={"WWW-Authenticate": challenge(f"{exc}; {remedy}", error="invalid_token")},
        ) from None
    except IssuerUnavailable:
        raise ServiceUnavailable(
            "The identity provider's signing keys are unavailable; retry shortly.",
            code="issuer_unavailable",
            headers={"Retry-After": "5"},
        ) from None


def current_actor() -> Actor:
    """The caller as an audit record names them: account, email now, the request's id and the
    client address the API trusts (after TRUSTED_PROXIES)."""
    identity = current_identity()
    return Actor(
        user_id=identity.user.user_id,
        email=identity.user.email,
        request_id=g.get("request_id"),
        address=request.remote_addr,
        claim_admin=identity.claim_admin,
    )
