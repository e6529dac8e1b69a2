"""Rate limits per client: the signed-in user when known, else the client's IP address.

One Limiter per app (its counters live in RATELIMIT_STORAGE_URI: memory per process, or
Redis shared by every worker and host). It runs after authentication, so a request that
carries valid credentials is counted against its user, wherever it comes from.
"""

from flask import Blueprint, Flask, current_app, g, request
from flask_limiter import Limiter

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
        headers_enabled=True,
        # Limits protect the service; an unreachable Redis must not take the API down with it.
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )
    limiter.init_app(app)
    app.extensions["dmarket.limiter"] = limiter
    return limiter


def limit_writes(limiter: Limiter, *blueprints: Blueprint) -> None:
    for bp in blueprints:
        limiter.limit(lambda: current_app.config["RATELIMIT_WRITES"], methods=WRITE_METHODS, override_defaults=False)(
            bp
        )


def limit_sign_in(limiter: Limiter, bp: Blueprint) -> None:
    limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"], key_func=lambda: f"ip:{request.remote_addr}")(bp)
