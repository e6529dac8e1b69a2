"""The OpenAPI document as the app publishes it, in each auth mode (built in-process, nothing contacted)."""

import tempfile

from app import create_app
from tests.issuer import AUDIENCE, CLIENT_ID

AUTH0 = {"AUTH0_ISSUER": "http://127.0.0.1:9/", "API_AUDIENCE": AUDIENCE, "CLIENT_ID": CLIENT_ID}
LOCAL = {"AUTH_MODE": "local", "AUTH0_ISSUER": "", "API_AUDIENCE": ""}


def published(mode: dict) -> dict:
    instance = tempfile.mkdtemp(prefix="dmarket-spec-")
    config = {"APP_ENV": "testing", "INSTANCE_PATH": instance, "DATABASE_URL": "sqlite://", "LOG_LEVEL": "ERROR"}
    return create_app({**config, **mode}).test_client().get("/openapi/openapi.json").json


# Auth0 mode as deployed; local mode (`make run`) publishes its development sign-in form instead.
DOCUMENTS = {"auth0": published(AUTH0), "local": published(LOCAL)}
