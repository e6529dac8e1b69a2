"""Idempotency-Key on create: a retry replays the first answer, never a second product (both databases)."""

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from sqlalchemy import create_engine, event, insert, select, text, update

from app.extensions import db
from app.models import IdempotencyKey, Product
from app.models.types import utcnow
from tests.databases import postgres_base_url
from tests.live import LiveServer

LAMP = {"name": "Lamp", "description": "A desk lamp", "price": "19.99", "quantity": 3}
ON_POSTGRES = bool(postgres_base_url())


def create(client, headers, key=None, body=LAMP):
    extra = {"Idempotency-Key": key} if key is not None else {}
    return client.post("/products/create", json=body, headers={**headers, **extra})


def stored(app):
    """(products, key rows) as the database holds them."""
    with app.app_context():
        products = db.session.scalars(select(Product).order_by(Product.id)).all()
        keys = db.session.scalars(select(IdempotencyKey)).all()
        return products, keys


def test_a_retry_with_the_same_key_replays_the_first_answer(app, client, user_headers):
    first = create(client, user_headers, "order-1")
    again = create(client, user_headers, "order-1")
    assert first.status_code == again.status_code == 201
    assert again.json == first.json
    assert again.headers["Location"] == first.headers["Location"] == f"/products/{first.json['id']}"
    assert again.headers["ETag"] == first.headers["ETag"] == '"1"'
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    products, keys = stored(app)
    assert [p.id for p in products] == [first.json["id"]]
    assert [(k.user_id, k.key, k.outcome["id"]) for k in keys] == [("auth0|alice", "order-1", first.json["id"])]
    assert keys[0].expires_at - keys[0].created_at >= timedelta(hours=24)


def test_the_same_product_spelled_differently_is_the_same_request(app, client, user_headers):
    first = create(client, user_headers, "k", body={**LAMP, "price": 19.99, "quantity": "3", "extra": "ignored"})
    again = create(client, user_headers, "k", body={"quantity": 3, "price": "19.99", **LAMP})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json == first.json
    assert len(stored(app)[0]) == 1


def test_the_replay_is_the_first_answer_even_after_the_product_changed_or_went(app, client, user_headers):
    first = create(client, user_headers, "k")
    location = first.headers["Location"]
    assert client.put(f"{location}/update", json={"quantity": 9}, headers=user_headers).status_code == 200
    changed = create(client, user_headers, "k")
    assert (changed.status_code, changed.json, changed.headers["ETag"]) == (201, first.json, '"1"')
    assert client.delete(f"{location}/delete", headers=user_headers).status_code == 200
    gone = create(client, user_headers, "k")
    assert (gone.status_code, gone.json) == (201, first.json)
    assert stored(app)[0] == []  # replays never write


def test_the_same_key_with_another_body_is_422_and_writes_nothing(app, client, user_headers):
    first = create(client, user_headers, "k")
    other = create(client, user_headers, "k", body={**LAMP, "quantity": 4})
    assert other.status_code == 422
    assert other.json["code"] == "idempotency_key_reused"
    assert "4" not in other.json["message"]
    products, keys = stored(app)
    assert [p.quantity for p in products] == [3]
    assert [k.outcome["id"] for k in keys] == [first.json["id"]]


def test_keys_belong_to_their_caller(app, client, user_headers, other_headers):
    alice = create(client, user_headers, "shared")
    bob = create(client, other_headers, "shared")
    assert (alice.status_code, bob.status_code) == (201, 201)
    assert alice.json["id"] != bob.json["id"] and bob.json["user_id"] == "auth0|bob"
    assert "Idempotent-Replayed" not in bob.headers
    products, keys = stored(app)
    assert len(products) == 2
    assert sorted(k.user_id for k in keys) == ["auth0|alice", "auth0|bob"]


def test_an_expired_key_creates_again_and_expired_keys_are_purged(app, client, user_headers, other_headers):
    first = create(client, user_headers, "k")
    create(client, other_headers, "bobs")
    with app.app_context():
        db.session.execute(update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    again = create(client, user_headers, "k")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert again.json["id"] != first.json["id"]
    products, keys = stored(app)
    assert len(products) == 3
    # alice's key now holds the new product; bob's expired key went with the new key's write
    assert [(k.key, k.outcome["id"]) for k in keys] == [("k", again.json["id"])]
    assert keys[0].expires_at > utcnow() + timedelta(hours=23)


def test_without_a_key_nothing_is_kept(app, client, user_headers):
    assert create(client, user_headers).status_code == 201
    assert create(client, user_headers).status_code == 201
    products, keys = stored(app)
    assert (len(products), keys) == (2, [])


@pytest.mark.parametrize("key", ["", " padded", "x" * 256, "caf\xe9", "tab\there", "del\x7f"])
def test_malformed_keys_are_422_and_write_nothing(app, client, user_headers, key):
    response = create(client, user_headers, key)
    assert response.status_code == 422
    assert response.json["code"] == "validation_error"
    assert response.json["details"][0]["field"] == "Idempotency-Key"
    assert stored(app) == ([], [])


def test_the_longest_key_and_inner_spaces_are_fine(client, user_headers):
    for key in ("x" * 255, 'a "quoted" key with spaces', "8e03978e-40d5-43e8-bc93-6894a57f9324"):
        assert create(client, user_headers, key).status_code == 201
        assert create(client, user_headers, key).headers["Idempotent-Replayed"] == "true"


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL: a duplicate waits on the key's row lock")
def test_a_duplicate_of_a_request_still_in_flight_is_409_on_postgresql(app, client, user_headers, monkeypatch):
    monkeypatch.setattr("app.services.idempotency.IN_FLIGHT_WAIT_MS", 300)
    assert client.get("/me", headers=user_headers).status_code == 200
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    with engine.connect() as in_flight:  # the first request, inside its transaction
        now = utcnow()
        in_flight.execute(
            insert(IdempotencyKey).values(
                user_id="auth0|alice", key="k", request_hash="0" * 64, created_at=now, expires_at=now
            )
        )
        started = time.monotonic()
        response = create(client, user_headers, "k")
        assert time.monotonic() - started < 3
        in_flight.rollback()  # ...which then failed: the key was never taken
    engine.dispose()
    assert response.status_code == 409
    assert response.json["code"] == "idempotency_key_in_use"
    assert stored(app) == ([], [])
    assert create(client, user_headers, "k").status_code == 201


@pytest.mark.skipif(ON_POSTGRES, reason="SQLite: one writer at a time")
def test_a_duplicate_of_a_request_still_in_flight_waits_then_503_on_sqlite(
    make_app, database_url, user_headers
):  # fmt: skip
    app = make_app(SQLITE_BUSY_TIMEOUT="1")
    client = app.test_client()
    assert client.get("/me", headers=user_headers).status_code == 200
    in_flight = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=0)
    in_flight.execute("BEGIN IMMEDIATE")
    in_flight.execute(
        "INSERT INTO idempotency_keys (user_id, key, request_hash, created_at, expires_at) "
        "VALUES ('auth0|alice', 'k', 'x', '2026-01-01', '2999-01-01')"
    )
    try:
        response = create(client, user_headers, "k")
    finally:
        in_flight.rollback()
        in_flight.close()
    assert response.status_code == 503
    assert response.json["code"] == "database_unavailable" and response.headers["Retry-After"] == "5"
    assert stored(app) == ([], [])
    assert create(client, user_headers, "k").status_code == 201


@pytest.mark.slow
def test_concurrent_duplicates_create_one_product(make_app, settings, issuer):
    """The same request sent 12 times at once to 2 gunicorn workers: one product, one answer."""
    app = make_app()
    alice = {"Authorization": f"Bearer {issuer.token('auth0|alice')}", "Idempotency-Key": "race"}
    with LiveServer({**settings, "RATELIMIT_ENABLED": "false"}, workers=2) as server:
        requests.get(f"{server.url}/me", headers=alice, timeout=30)
        with ThreadPoolExecutor(max_workers=12) as pool:
            responses = list(
                pool.map(lambda _: requests.post(f"{server.url}/products/create", json=LAMP, headers=alice, timeout=30),
                         range(12))
            )  # fmt: skip
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409} and 201 in statuses, statuses
    answers = {r.text for r in responses if r.status_code == 201}
    assert len(answers) == 1
    products, keys = stored(app)
    assert len(products) == len(keys) == 1
    assert sum("Idempotent-Replayed" not in r.headers for r in responses if r.status_code == 201) == 1


class TestNoReadAfterCommit:
    """What a write answers is known before its COMMIT: nothing is read after it (the in-doubt window)."""

    @pytest.fixture
    def statements(self, app, client, user_headers):
        assert client.get("/me", headers=user_headers).status_code == 200  # the user exists: no commit for it
        log = []
        with app.app_context():
            engine = db.engine
        listeners = [
            (engine, "before_cursor_execute", lambda conn, cursor, statement, *args: log.append(statement)),
            (engine, "commit", lambda conn: log.append("COMMIT")),
        ]
        for target, name, fn in listeners:
            event.listen(target, name, fn)
        yield log
        for target, name, fn in listeners:
            event.remove(target, name, fn)

    @pytest.mark.parametrize("key", [None, "k"])
    def test_create(self, client, user_headers, statements, key):
        assert create(client, user_headers, key).status_code == 201
        assert statements.count("COMMIT") == 1
        assert statements[-1] == "COMMIT", statements

    def test_update(self, app, client, user_headers, statements):
        location = create(client, user_headers).headers["Location"]
        statements.clear()
        response = client.put(f"{location}/update", json={"quantity": 5}, headers=user_headers)
        assert response.status_code == 200 and response.json["quantity"] == 5 and response.headers["ETag"] == '"2"'
        assert statements[-1] == "COMMIT", statements


class TestTeardown:
    """A connection that dies after the answer is decided must not replace it (issue 15: gunicorn's raw 500)."""

    @pytest.fixture
    def kill_after_request(self, app):
        """After each request's view, kill its database connection the way a restart would."""
        killed = []

        def kill(response):
            connection = db.session.connection()  # the request's transaction is still open
            if connection.dialect.name == "postgresql":
                pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
                admin = create_engine(app.config["SQLALCHEMY_DATABASE_URI"], isolation_level="AUTOCOMMIT")
                with admin.connect() as conn:
                    conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                admin.dispose()
            else:
                connection.connection.dbapi_connection.close()
            killed.append(True)
            return response

        app.after_request(kill)
        return killed

    def test_a_read_keeps_its_answer(self, app, client, user_headers, kill_after_request):
        assert create(client, user_headers).status_code == 201
        response = client.get("/products")
        assert response.status_code == 200 and response.json[0]["name"] == "Lamp"
        assert len(kill_after_request) == 2

    def test_a_create_keeps_its_answer_and_the_next_request_works(self, app, client, user_headers, kill_after_request):
        first = create(client, user_headers, "k")
        assert first.status_code == 201
        again = create(client, user_headers, "k")
        assert again.status_code == 201 and again.json == first.json
        assert len(stored(app)[0]) == 1
