"""Fixtures shared by the suite. Tests needing a service (Redis, PostgreSQL) that is not running skip
with the reason, except under CI=true, where .ci/run starts the services and a missing one fails."""

import os
from functools import cache
from pathlib import Path

import pytest
import redis
from flask_migrate import upgrade
from sqlalchemy import create_engine, text

from app import create_app
from app.extensions import db
from tests.databases import postgres_base_url, postgres_schema
from tests.factories import bearer
from tests.issuer import ADMIN_CLAIM, AUDIENCE, CLIENT_ID, CLIENT_SECRET, LocalOIDCIssuer

REDIS_URL = "redis://127.0.0.1:6379/0"
LOCAL_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def service_missing(reason: str):
    """Skip on a developer's machine; under CI every service must be there."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: tests needing it may not skip)", pytrace=False)
    pytest.skip(reason)


@cache
def _unreachable_postgres(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001  (any failure means: no server to use here)
        return exc.__class__.__name__
    finally:
        engine.dispose()
    return None


def reachable_postgres(url: str) -> str:
    problem = _unreachable_postgres(url)
    if problem:
        service_missing(f"PostgreSQL is not reachable at {url} ({problem}): start it (`.ci/run` shows how)")
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The machine's Redis, for tests of state shared between instances."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_missing(f"Redis is not running at {REDIS_URL} ({exc.__class__.__name__}): start redis-server")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def postgres_url() -> str:
    """A reachable PostgreSQL (TEST_DATABASE_URL, else the machine's), even when the suite runs on SQLite."""
    return reachable_postgres(postgres_base_url() or LOCAL_POSTGRES)


@pytest.fixture(scope="session")
def issuer():
    server = LocalOIDCIssuer().start()
    yield server
    server.stop()


@pytest.fixture
def database_url(tmp_path):
    """A SQLite file by default; a fresh PostgreSQL schema when TEST_DATABASE_URL is set."""
    base = postgres_base_url()
    if base is None:
        yield f"sqlite:///{tmp_path / 'test.sqlite3'}"
        return
    with postgres_schema(reachable_postgres(base)) as url:
        yield url


@pytest.fixture
def settings(tmp_path, issuer, database_url) -> dict[str, str]:
    """The test app's environment: also what live gunicorn servers of a test are started with."""
    return app_settings(issuer, tmp_path, database_url)


def app_settings(issuer, tmp: Path, database_url: str) -> dict[str, str]:
    """Auth0 mode against the suite's issuer, the instance folder and database given."""
    return {
        "APP_ENV": "testing",
        "INSTANCE_PATH": str(tmp / "instance"),
        "SECRET_KEY": "test-secret-key-that-is-long-enough-0123",
        "DATABASE_URL": database_url,
        "AUTH_MODE": "auth0",
        "AUTH0_ISSUER": issuer.url,
        "API_AUDIENCE": AUDIENCE,
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "ADMIN_CLAIM": ADMIN_CLAIM,
        "HTTP_TIMEOUT": "2",
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def make_app(issuer, settings):
    """Build a migrated app against the test issuer; keyword overrides use environment names."""
    apps = []
    issuer.reset()

    def make(**overrides):
        config = {**settings, "TESTING": True, **overrides}
        app = create_app(config)
        with app.app_context():
            upgrade()
        apps.append(app)
        return app

    yield make
    for app in apps:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def user_headers(issuer):
    return bearer(issuer.token("auth0|alice", email="alice@example.com", name="Alice"))


@pytest.fixture
def other_headers(issuer):
    return bearer(issuer.token("auth0|bob", email="bob@example.com", name="Bob"))


@pytest.fixture
def admin_headers(issuer):
    return bearer(issuer.token("auth0|root", email="root@example.com", **{ADMIN_CLAIM: {"is_admin": True}}))
