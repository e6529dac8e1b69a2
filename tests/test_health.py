"""Probes: /health says the process answers; /health/ready says it can serve real requests."""

from app import create_app
from tests.databases import postgres_base_url
from tests.issuer import AUDIENCE


def test_liveness_touches_nothing(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_ready_when_database_and_signing_keys_answer(client, issuer):
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json == {
        "status": "ready",
        "checks": {"database": "ok", "signing_keys": "ok", "identity_provider": "ok"},
    }
    assert issuer.jwks_requests == 1  # the probe warmed the key cache


def test_cached_keys_keep_it_ready_while_the_provider_is_reported_down(make_app, issuer, user_headers):
    app = make_app(JWKS_MIN_REFRESH_SECONDS="0")  # every probe asks the issuer again (in the background)
    client = app.test_client()
    assert client.get("/health/ready").json["checks"]["identity_provider"] == "ok"
    issuer.mode = "error"
    client.get("/health/ready")
    app.extensions["dmarket.auth"]["verifier"].keys.background.join(5)

    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json["status"] == "ready"
    assert response.json["checks"] == {"database": "ok", "signing_keys": "ok", "identity_provider": "unreachable"}
    assert response.json["detail"] == "HTTPError fetching keys"
    assert client.get("/me", headers=user_headers).status_code == 200  # bearer calls go on with the cached keys


def test_not_ready_while_the_issuer_is_down(client, issuer):
    issuer.mode = "error"
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json == {
        "status": "unavailable",
        "checks": {"database": "ok", "signing_keys": "unavailable", "identity_provider": "unreachable"},
        "detail": "HTTPError fetching keys",
    }


def test_not_ready_without_a_database(issuer, tmp_path):
    issuer.reset()
    if postgres_base_url():
        url = "postgresql+psycopg://postgres@127.0.0.1:1/none"  # nothing listens on port 1
    else:
        url = f"sqlite:///{tmp_path}/missing/dir/db.sqlite3"
    app = create_app(
        {
            "APP_ENV": "testing",
            "INSTANCE_PATH": str(tmp_path),
            "DATABASE_URL": url,
            "AUTH0_ISSUER": issuer.url,
            "API_AUDIENCE": AUDIENCE,
            "LOG_LEVEL": "CRITICAL",
        }
    )
    response = app.test_client().get("/health/ready")
    assert response.status_code == 503
    assert response.json == {
        "status": "unavailable",
        "checks": {"database": "unavailable", "signing_keys": "ok", "identity_provider": "ok"},
    }


def test_local_mode_needs_no_issuer(make_app):
    client = make_app(AUTH_MODE="local", AUTH0_ISSUER="").test_client()
    assert client.get("/health/ready").json["checks"]["signing_keys"] == "local"


def test_probes_are_never_rate_limited(make_app):
    client = make_app(RATELIMIT_DEFAULT="1 per minute").test_client()
    assert [client.get("/health").status_code for _ in range(3)] == [200, 200, 200]
