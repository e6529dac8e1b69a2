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


def readiness() -> dict[str, str]:
    auth = current_app.extensions["dmarket.auth"]
    if auth["local_issuer"] is not None:
        keys = "local"
    else:
        keys = "ok" if auth["verifier"].keys.ready() else "unavailable"
    return {"database": "ok" if database_ok() else "unavailable", "signing_keys": keys}
