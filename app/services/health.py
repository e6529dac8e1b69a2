"""What readiness means: every dependency a request may need answers now."""

import logging

from flask import current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db

log = logging.getLogger(__name__)


def database_ok() -> bool:
    try:
        db.session.execute(text("SELECT 1"))
        return True
    except SQLAlchemyError as exc:
        log.warning("readiness: database unavailable (%s)", exc.__class__.__name__)
        return False
    finally:
        db.session.rollback()


# Reported, never failing readiness: with keys cached, bearer calls keep working while the provider is down.
INFORMATIONAL = ("identity_provider",)


def readiness() -> tuple[dict[str, str], str | None]:
    """Each dependency's state, and why the issuer failed when it did (e.g. an issuer mismatch)."""
    auth = current_app.extensions["dmarket.auth"]
    if auth["local_issuer"] is not None:
        keys = provider = "local"
        detail = None
    else:
        cache = auth["verifier"].keys
        keys = "ok" if cache.ready() else "unavailable"
        provider = "unreachable" if cache.reachable is False else "ok"
        detail = cache.last_error
    checks = {"database": "ok" if database_ok() else "unavailable", "signing_keys": keys, "identity_provider": provider}
    return checks, detail
