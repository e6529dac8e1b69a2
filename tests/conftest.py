import pytest
from flask_migrate import upgrade

from app import create_app
from app.extensions import db
from tests.databases import postgres_base_url, postgres_schema
from tests.factories import bearer
from tests.issuer import ADMIN_CLAIM, AUDIENCE, CLIENT_ID, CLIENT_SECRET, LocalOIDCIssuer


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
    with postgres_schema(base) as url:
        yield url


@pytest.fixture
def settings(tmp_path, issuer, database_url) -> dict[str, str]:
    """The test app's environment: also what live gunicorn servers of a test are started with."""
    return {
        "APP_ENV": "testing",
        "INSTANCE_PATH": str(tmp_path / "instance"),
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
