"""Rate limits per client: the signed-in user when known, else the client's IP address.

One Limiter per app (its counters live in RATELIMIT_STORAGE_URI: memory per process, or
Redis shared by every worker and host). It runs after authentication, so a request that
carries valid credentials is counted against its user, wherever it comes from.
"""

import time

from flask import Blueprint, Flask, current_app, g, request
from flask_limiter import Limiter, RateLimitExceeded

from app import metrics
from app.errors import error_response

WRITE_METHODS = ["POST", "PUT", "PATCH", "DELETE"]


def client_key() -> str:
    identity = g.get("identity")
    if identity is not None:
        return f"user:{identity.user.user_id}"
    return f"ip:{request.remote_addr}"


def init_app(app: Flask) -> Limiter:
    limiter = Limiter(
        key_func=client_key,
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


def limit_writes(limiter: Limiter, *blueprints: Blueprint) -> None:
    for bp in blueprints:
        limiter.limit(lambda: current_app.config["RATELIMIT_WRITES"], methods=WRITE_METHODS, override_defaults=False)(
            bp
        )


def limit_sign_in(limiter: Limiter, bp: Blueprint) -> None:
    limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"], key_func=lambda: f"ip:{request.remote_addr}")(bp)
