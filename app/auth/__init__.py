"""Authentication: token verification, the caller's identity, and the local issuer."""

import logging
from pathlib import Path

from flask import Flask
from flask_openapi3 import APIBlueprint

from app import metrics
from app.auth import hints, session
from app.auth.cache import TokenCache
from app.auth.decorators import (
    authenticate_if_required,
    current_actor,
    current_identity,
    require_admin,
    require_auth,
)
from app.auth.local_issuer import LocalIssuer
from app.auth.management import client_for
from app.auth.signin import oauth_client
from app.auth.verifier import JWKSCache, TokenVerifier, fetch_oidc_jwks

__all__ = ["current_actor", "current_identity", "init_app", "require_admin", "require_auth", "signin_blueprint"]

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Build the verifier once; in local mode its keys come from the in-process issuer."""
    cfg = app.config
    issuer = None
    if cfg["AUTH_MODE"] == "local":
        issuer = LocalIssuer(
            instance_path=app.instance_path,
            issuer=cfg["AUTH0_ISSUER"],
            audience=cfg["API_AUDIENCE"],
            admin_claim=cfg["ADMIN_CLAIM"],
        )
        fetch = issuer.jwks
        log.warning(
            "AUTH_MODE=local: development sign-in; tokens come from `flask auth token`. Never use in production."
        )
        _announce_signin_code(cfg)
    else:
        fetch = fetch_oidc_jwks(cfg["AUTH0_ISSUER"], timeout=cfg["HTTP_TIMEOUT"])
    keys = JWKSCache(
        metrics.watch_jwks(app, fetch),
        min_refresh=cfg["JWKS_MIN_REFRESH_SECONDS"],
        max_age=cfg["JWKS_MAX_AGE_SECONDS"],
        stale_if_error=cfg["JWKS_STALE_IF_ERROR_SECONDS"],
        timeout=cfg["HTTP_TIMEOUT"],
        saved_at=Path(app.instance_path) / "signing-keys.json",
    )
    verifier = TokenVerifier(
        keys=keys, issuer=cfg["AUTH0_ISSUER"], audience=cfg["API_AUDIENCE"], leeway=cfg["JWT_LEEWAY"]
    )
    app.extensions["dmarket.auth"] = {
        "verifier": verifier,
        "tokens": TokenCache(size=cfg["TOKEN_CACHE_SIZE"], identity_seconds=cfg["IDENTITY_CACHE_SECONDS"], keys=keys),
        "local_issuer": issuer,
        "oauth": oauth_client(app) if issuer is None else None,
        "management": client_for(cfg) if issuer is None else None,
    }
    session.init_app(app)
    hints.init_app(app)
    app.before_request(authenticate_if_required)

    from app.auth.cli import admin_cli, audit_cli, auth_cli
    from app.auth.routes import bp

    app.cli.add_command(auth_cli)
    app.cli.add_command(admin_cli)
    app.cli.add_command(audit_cli)
    if issuer is not None:
        app.register_api(bp)


def _announce_signin_code(cfg) -> None:
    """Whoever reads the server's log (or instance/) can sign in; whoever merely reaches the port cannot."""
    if cfg["LOCAL_SIGNIN_CODE_FILE"]:
        log.warning(
            "AUTH_MODE=local: to sign in, open %s (the code is kept in %s)",
            local_signin_url(cfg, cfg["LOCAL_SIGNIN_CODE"]),
            cfg["LOCAL_SIGNIN_CODE_FILE"],
        )
    else:
        log.warning("AUTH_MODE=local: to sign in, open %s", local_signin_url(cfg, "<LOCAL_SIGNIN_CODE>"))


def local_signin_url(cfg, code: str) -> str:
    """The development sign-in link, on the API's public address (the issuer's when none is set)."""
    return f"{(cfg['PUBLIC_URL'] or cfg['AUTH0_ISSUER']).rstrip('/')}/login?code={code}"


def signin_blueprint(app: Flask) -> APIBlueprint:
    """The development form in local mode; the provider's sign-in flow otherwise."""
    if app.config["AUTH_MODE"] == "local":
        from app.auth.local_signin import bp
    else:
        from app.auth.signin import bp
    return bp
