"""Rate limits per client: the signed-in user when known, else the client's IP address.

One Limiter per app (its counters live in RATELIMIT_STORAGE_URI: memory per process, or
Redis shared by every worker and host). Its check is the first before-request hook after
the request id, so every request is counted, refused ones included (a bad token, no
credentials, no rights, an unknown route or method): a request whose route needs
credentials and carries valid ones is counted against its user, wherever it comes from;
every other request against its IP address.
"""

import time

from flask import Blueprint, Flask, current_app, request
from flask_limiter import Limiter, RateLimitExceeded

from app import metrics
from app.auth.decorators import identify_quietly
from app.errors import error_response

WRITE_METHODS = ["POST", "PUT", "PATCH", "DELETE"]


def client_key() -> str:
    identity = identify_quietly()
    if identity is not None:
        return f"user:{identity.user.user_id}"
    return f"ip:{request.remote_addr}"


def init_app(app: Flask) -> Limiter:
    limiter = Limiter(
        key_func=client_key,
        # Unmatched routes (404, 405) have no endpoint, which Flask-Limiter would skip: name them.
        request_identifier=lambda: request.endpoint or "unmatched",
        # One budget per client across every route; writes and sign-in have tighter ones too.
        application_limits=[lambda: current_app.config["RATELIMIT_DEFAULT"]],
        # Flask-Limiter's own headers would also stamp Retry-After on every other response
        # (a 503's included); ours go on the 429 only.
        headers_enabled=False,
        # Limits protect the service; an unreachable Redis must not take the API down with it.
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )
    limiter.init_app(app)
    app.extensions["dmarket.limiter"] = limiter
    app.register_error_handler(RateLimitExceeded, _rate_limited)
    return limiter


def _rate_limited(exc: RateLimitExceeded):
    metrics.rate_limited()
    current = current_app.extensions["dmarket.limiter"].current_limit
    reset_at = current.reset_at if current else time.time() + 60
    headers = {
        "Retry-After": str(max(1, int(reset_at - time.time()))),
        "X-RateLimit-Limit": str(exc.limit.limit.amount),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int(reset_at)),
    }
    return error_response(429, "rate_limited", f"Too many requests: the limit is {exc.description}.", headers=headers)


def _write_scope(endpoint: str) -> str:
    """One budget per operation: a REST alias (POST /products) shares its seed path's (POST /products/create)."""
    view = current_app.view_functions.get(endpoint)
    return f"{endpoint.partition('.')[0]}.{getattr(view, '__name__', endpoint)}"


def limit_writes(limiter: Limiter, *blueprints: Blueprint) -> None:
    for bp in blueprints:
        limiter.shared_limit(
            lambda: current_app.config["RATELIMIT_WRITES"],
            scope=_write_scope,
            methods=WRITE_METHODS,
            override_defaults=False,
        )(bp)


def limit_sign_in(limiter: Limiter, bp: Blueprint) -> None:
    limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"], key_func=lambda: f"ip:{request.remote_addr}")(bp)
