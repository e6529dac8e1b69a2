"""Faults: a slow or broken identity provider, rotated keys, a locked or absent database, hostile bodies.

Each fault gets a clear JSON answer with the right status, bounded latency, nothing
half-written, and recovery without restarting the API.
"""

import io
import sqlite3
import time

import pytest

from app.extensions import db
from app.models import Product
from tests.databases import postgres_base_url
from tests.factories import bearer

PRODUCT = {"name": "Lamp", "description": "A desk lamp", "price": "19.99", "quantity": 1}


def create(client, headers, **kwargs):
    return client.post("/products/create", headers=headers, **({"json": PRODUCT} | kwargs))


def products_in(app) -> int:
    with app.app_context():
        return db.session.query(Product).count()


class TestIdentityProvider:
    def test_a_slow_jwks_answers_503_within_the_timeout_then_recovers(self, make_app, issuer, monkeypatch):
        client = make_app(HTTP_TIMEOUT="1").test_client()
        issuer.mode, issuer.delay = "slow", 6
        started = time.monotonic()
        response = create(client, bearer(issuer.token()))
        elapsed = time.monotonic() - started
        assert response.status_code == 503 and response.json["code"] == "issuer_unavailable"
        assert elapsed < 4, f"waited {elapsed:.1f}s on an issuer that takes 6s"  # bounded by HTTP_TIMEOUT
        started = time.monotonic()
        assert create(client, bearer(issuer.token())).status_code == 503
        assert time.monotonic() - started < 0.5  # the backoff answers at once instead of waiting again
        issuer.mode = "up"
        monkeypatch.setattr("app.auth.verifier.FAILURE_BACKOFF_SECONDS", 0)
        assert create(client, bearer(issuer.token())).status_code == 201

    @pytest.mark.parametrize("mode", ["garbage", "error"])
    def test_a_broken_jwks_answers_503_then_recovers(self, make_app, issuer, monkeypatch, mode):
        app = make_app()
        client = app.test_client()
        issuer.mode = mode
        response = create(client, bearer(issuer.token()))
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        assert products_in(app) == 0
        issuer.mode = "up"
        monkeypatch.setattr("app.auth.verifier.FAILURE_BACKOFF_SECONDS", 0)
        assert create(client, bearer(issuer.token())).status_code == 201

    def test_a_token_of_a_removed_key_is_rejected_after_rotation(self, make_app, issuer):
        client = make_app(JWKS_MIN_REFRESH_SECONDS="0").test_client()
        old_token = bearer(issuer.token())
        assert create(client, old_token).status_code == 201
        issuer.rotate(keep_old=False)
        new_token = bearer(issuer.token())
        assert create(client, new_token).status_code == 201  # the new key is fetched on sight
        response = create(client, old_token)
        assert response.status_code == 401
        assert "unknown key" in response.json["message"]


@pytest.mark.skipif(bool(postgres_base_url()), reason="SQLite locking")
class TestLockedDatabase:
    def test_a_locked_sqlite_database_answers_503_and_recovers(self, make_app, database_url, user_headers):
        app = make_app(SQLITE_BUSY_TIMEOUT="1")
        client = app.test_client()
        assert client.get("/me", headers=user_headers).status_code == 200  # the user row exists
        blocker = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            response = create(client, user_headers)
            assert response.status_code == 503
            assert response.json["code"] == "database_unavailable"
            assert response.headers["Retry-After"] == "5"
        finally:
            blocker.rollback()
            blocker.close()
        assert products_in(app) == 0
        assert create(client, user_headers).status_code == 201


class TestHostileBodies:
    @pytest.mark.parametrize(
        "body, status, code",
        [
            (b'{"name": "\xff\xfe", "price": 1, "quantity": 1}', 400, "invalid_json"),  # invalid UTF-8
            (b"[" * 100_000 + b"]" * 100_000, 413, "payload_too_large"),
            (b'{"a":' * 5000 + b"1" + b"}" * 5000, 400, "invalid_json"),  # nested past the parser's depth
            (b'{"name": "Lamp", "price": Infinity, "quantity": 1}', 400, "invalid_json"),
            (b'{"name": "Lamp", "price": -Infinity, "quantity": 1}', 400, "invalid_json"),
            (b'{"name": "Lamp", "price": 1, "quantity": 1' + b"9" * 5000 + b"}", 422, "validation_error"),
            (b'{"name": "La\\u0000mp", "price": 1, "quantity": 1}', 422, "validation_error"),
            (b'{"name": "Lamp", "price": 1e999999, "quantity": 1}', 422, "validation_error"),
            (b'{"name": "Lamp", "price": 1, "quantity": 1.5}', 422, "validation_error"),
        ],
    )
    def test_clear_4xx_and_nothing_written(self, app, client, user_headers, body, status, code):
        response = client.post("/products/create", data=body, content_type="application/json", headers=user_headers)
        assert (response.status_code, response.json["code"]) == (status, code)
        assert products_in(app) == 0

    def test_a_10_mb_body_is_refused_unread(self, app, client, user_headers):
        response = client.post(
            "/products/create", data=b"{" + b" " * (10 * 1024 * 1024) + b"}", content_type="application/json",
            headers=user_headers,
        )  # fmt: skip
        assert response.status_code == 413
        assert products_in(app) == 0

    @pytest.mark.parametrize(
        "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""]
    )
    def test_wrong_content_types_are_415(self, app, client, user_headers, content_type):
        response = client.post(
            "/products/create", data=b'{"name": "Lamp"}', headers={**user_headers, "Content-Type": content_type}
        )
        assert response.status_code == 415
        assert products_in(app) == 0

    def test_null_bytes_in_query_strings(self, client):
        response = client.get("/products?q=lamp%00")
        assert response.status_code == 422

    def test_huge_integers_in_paths_and_queries(self, client):
        assert client.get("/products/" + "9" * 400).status_code == 422
        assert client.get("/products?page=" + "9" * 5000).status_code == 422


class TestChunkedBodies:
    """Without Content-Length, Werkzeug cannot refuse a body up front: it must be read only up to the limit."""

    def post_chunked(self, client, headers, body: bytes):
        return client.post(
            "/products/create",
            input_stream=io.BytesIO(body),
            headers={**headers, "Transfer-Encoding": "chunked", "Content-Type": "application/json"},
            environ_overrides={"wsgi.input_terminated": True},  # what servers set for a chunked body
        )

    def test_a_10_mb_chunked_body_is_413(self, app, client, user_headers):
        response = self.post_chunked(client, user_headers, b'{"name": "' + b"x" * (10 * 1024 * 1024) + b'"}')
        assert response.status_code == 413
        assert response.json["code"] == "payload_too_large"
        assert products_in(app) == 0

    def test_a_small_chunked_body_is_read(self, app, client, user_headers):
        response = self.post_chunked(client, user_headers, b'{"name": "Lamp", "price": "2.50", "quantity": 1}')
        assert response.status_code == 201
        assert products_in(app) == 1
