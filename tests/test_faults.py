"""Faults: a slow or broken identity provider, rotated keys, a locked, absent or restarting database, hostile bodies.

Each fault gets a clear JSON answer with the right status, bounded latency, nothing
half-written, and recovery without restarting the API.
"""

import io
import sqlite3
import threading
import time
import uuid
from collections import Counter
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from app.extensions import db
from app.models import AuditRecord, Product, User
from tests.databases import needs_postgres, postgres_base_url
from tests.factories import bearer, make_product, make_user
from tests.faultproxy import CommitDropper
from tests.live import LiveServer

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
        fetch = client.application.extensions["dmarket.auth"]["verifier"].keys.background
        fetch.join(5)  # the fetch given up on ends by its own timeout; only then is another started
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
        fetch = client.application.extensions["dmarket.auth"]["verifier"].keys.background
        fetch.join(5)  # the fetch given up on ends by its own timeout; only then is another started
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


def _kill_pooled_connections(app) -> int:
    """Terminate the server side of every connection the app's pool holds (what a restart does to them)."""
    with app.app_context():
        pids = set()
        connections = [db.engine.connect() for _ in range(2)]
        for connection in connections:
            pids.add(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar())
            connection.rollback()
        for connection in connections:
            connection.close()  # back to the pool, alive as far as it knows
        outsider = create_engine(db.engine.url, poolclass=NullPool)
        with outsider.connect() as killer:
            for pid in pids:
                killer.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
        outsider.dispose()
        return len(pids)


@needs_postgres
class TestDeadPooledConnections:
    """Pooled connections are pinged only after idling (DB_PING_IDLE_SECONDS): a restart between two
    busy moments is met by the next statement, which reads retry; an idle connection is pinged first."""

    def test_a_read_on_a_dead_connection_is_retried(self, make_app):
        app = make_app(DB_PING_IDLE_SECONDS="60")  # never pinged in this test
        client = app.test_client()
        assert client.get("/products").status_code == 200
        assert _kill_pooled_connections(app) == 2
        for _ in range(3):
            response = client.get("/products")
            assert response.status_code == 200 and response.json == []

    @pytest.mark.parametrize("conditional", [False, True])
    def test_a_prepared_read_on_a_dead_connection_is_retried(self, make_app, conditional):
        """A product and a conditional list skip SQLAlchemy's execution layer (PreparedRead): a dead
        connection must still be replaced, and the read retried, as for every other read."""
        app = make_app(DB_PING_IDLE_SECONDS="60")
        with app.app_context():
            product_id = make_product().id
        client = app.test_client()
        paths = [f"/products/{product_id}", "/products"]
        tags = {path: client.get(path).headers["ETag"] for path in paths}
        assert _kill_pooled_connections(app) == 2
        for _ in range(3):
            for path in paths:
                response = client.get(path, headers={"If-None-Match": tags[path]} if conditional else {})
                assert response.status_code == (304 if conditional else 200), (path, response.json)

    def test_an_idle_connection_is_pinged_and_replaced_before_a_write(self, make_app, user_headers):
        app = make_app(DB_PING_IDLE_SECONDS="0")  # every reuse counts as idle
        client = app.test_client()
        assert client.get("/products").status_code == 200
        _kill_pooled_connections(app)
        for _ in range(3):
            assert create(client, user_headers).status_code == 201
        assert products_in(app) == 3

    def test_without_the_ping_a_write_on_a_dead_connection_is_a_json_503(self, make_app, user_headers):
        app = make_app(DB_PING_IDLE_SECONDS="60")
        client = app.test_client()
        assert client.get("/products").status_code == 200
        _kill_pooled_connections(app)
        statuses = [create(client, user_headers) for _ in range(3)]
        assert [r.status_code for r in statuses][-1] == 201  # the pool was invalidated by the first failure
        assert all(r.status_code in (201, 503) and r.is_json for r in statuses)
        assert products_in(app) == sum(r.status_code == 201 for r in statuses)


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


@pytest.mark.slow
@needs_postgres
class TestDatabaseRestart:
    """Issue 15's fault run, bounded: 2 gunicorn workers on PostgreSQL, 8 writers with Idempotency-Key, readers
    beside them; COMMIT answers lost on purpose (in-doubt commits), every connection cut and new ones refused
    for 2 s (a restart), then open connections killed again and again. Every writer retries its 503s with the
    same key until it gets 201."""

    WRITERS, READERS, RUN_SECONDS = 8, 2, 10

    @pytest.fixture
    def served(self, make_app, settings, database_url):
        app = make_app()  # migrates the test's schema, directly
        real = urlsplit(database_url)
        proxy = CommitDropper(real.hostname, real.port or 5432).start()
        through_proxy = real._replace(netloc=f"{real.username}@127.0.0.1:{proxy.port}").geturl()
        env = {**settings, "DATABASE_URL": through_proxy, "RATELIMIT_ENABLED": "false", "DB_CONNECT_TIMEOUT": "2"}
        server = LiveServer(env, workers=2).start()
        logs: list[str] = []
        drain = threading.Thread(target=lambda: logs.extend(server.process.stderr), daemon=True)
        drain.start()
        try:
            yield app, server.url, proxy, logs
        finally:
            server.stop()
            drain.join(timeout=5)
            proxy.cut()

    def test_nothing_lost_nothing_doubled_never_a_raw_500(self, served, issuer):
        app, url, proxy, logs = served
        token = bearer(issuer.token("auth0|writer", email="writer@example.com"))
        assert requests.get(f"{url}/me", headers=token, timeout=10).status_code == 200
        stop = threading.Event()
        answers: list[tuple[str, int, str | None, dict | None]] = []  # (kind, status, content type, body)
        acknowledged: dict[str, dict] = {}  # name -> the 201 body
        replays = []

        def record(kind, response):
            try:
                body = response.json()
            except ValueError:
                body = None
            answers.append((kind, response.status_code, response.headers.get("Content-Type"), body))
            return body

        def writer(n: int) -> None:
            for i in range(10_000):
                if stop.is_set():
                    return
                name, key = f"w{n}-{i}", uuid.uuid4().hex
                for _attempt in range(200):  # retry with the same key until the create is acknowledged
                    response = requests.post(
                        f"{url}/products/create",
                        json={**PRODUCT, "name": name},
                        headers={**token, "Idempotency-Key": key},
                        timeout=20,
                    )
                    body = record("write", response)
                    if response.status_code == 201:
                        acknowledged[name] = body
                        if response.headers.get("Idempotent-Replayed") == "true":
                            replays.append(name)
                        break
                    time.sleep(0.05)

        def reader() -> None:
            while not stop.is_set():
                record("read", requests.get(f"{url}/products?per_page=5&sort=-id", timeout=20))
                record("read", requests.get(f"{url}/me", headers=token, timeout=20))

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(self.WRITERS)]
        threads += [threading.Thread(target=reader) for _ in range(self.READERS)]
        for thread in threads:
            thread.start()
        started = time.monotonic()

        def at(second: float) -> None:
            time.sleep(max(0.0, started + second - time.monotonic()))

        for tick in range(10):  # t = 1..3.25 s: lose the answer to a COMMIT now and then
            at(1 + tick * 0.25)
            proxy.drop_commits(1)
        at(4)
        proxy.cut()  # the restart: every connection dropped, new ones refused...
        at(6)
        proxy.restore()  # ...for 2 s
        for tick in range(12):  # t = 6.5..9 s: kill every open connection now and then (pg_terminate_backend)
            at(6.5 + tick * 0.2)
            proxy.cut()
            proxy.restore()
        at(self.RUN_SECONDS)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)

        # Every answer is the app's JSON: 201/200, or the documented 503 (never gunicorn's raw 500).
        statuses = Counter((kind, status) for kind, status, _, _ in answers)
        assert set(statuses) <= {("write", 201), ("write", 503), ("read", 200), ("read", 503)}, statuses
        for _, status, content_type, body in answers:
            assert content_type == "application/json" and body is not None
            if status == 503:
                assert body["code"] == "database_unavailable"
        assert not [line for line in logs if "Error handling request" in line]
        # Every acknowledged create is stored, exactly once; nothing else is.
        with app.app_context():
            rows = db.session.execute(db.select(Product.id, Product.name)).all()
        names = Counter(name for _, name in rows)
        assert [name for name, count in names.items() if count > 1] == []  # stored twice
        assert set(names) == set(acknowledged)  # lost: acknowledged but missing; or stored but never acknowledged
        assert {name: body["id"] for name, body in acknowledged.items()} == {name: pid for pid, name in rows}

        # The faults happened: outage answers, lost COMMIT answers, and retries that found their write stored.
        assert statuses[("write", 503)] > 0 and proxy.dropped > 0 and replays
        # The service answers again without a restart.
        after = requests.post(f"{url}/products/create", json=PRODUCT, headers=token, timeout=20)
        assert after.status_code == 201


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


@needs_postgres
class TestAuditedWritesUnderFaults:
    """An audited action and its record are one transaction: a COMMIT whose answer is lost, or the
    connection cut in the middle of the action (a database restart), leaves both or neither."""

    @pytest.fixture
    def proxied(self, make_app, database_url, issuer):
        direct = make_app()  # migrates and seeds the test's schema, directly
        with direct.app_context():
            make_user("auth0|root", email="root@example.com", is_admin=True)
            make_user("auth0|bob", email="bob@example.com")
            lamp = make_product("auth0|alice").id
        real = urlsplit(database_url)
        proxy = CommitDropper(real.hostname, real.port or 5432).start()
        # Sessions in UTC from the start: a new connection then commits nothing of its own (the app sets the
        # zone otherwise), so each COMMIT the proxy loses is the action's.
        query = real.query.replace("options=", "options=-ctimezone%3DUTC+")
        through_proxy = real._replace(netloc=f"{real.username}@127.0.0.1:{proxy.port}", query=query).geturl()
        client = make_app(DATABASE_URL=through_proxy, DB_CONNECT_TIMEOUT="2").test_client()
        root = bearer(issuer.token("auth0|root", email="root@example.com"))
        assert client.get("/me", headers=root).status_code == 200  # synced now: no COMMIT of its own later
        try:
            yield direct, client, proxy, root, lamp
        finally:
            proxy.cut()

    @staticmethod
    def audited(app, action: str) -> int:
        with app.app_context():
            return db.session.scalar(db.select(db.func.count()).where(AuditRecord.action == action))

    def test_a_lost_commit_answer_leaves_both(self, proxied):
        app, client, proxy, root, lamp = proxied
        actions = [
            ("product.update", lambda: client.put(f"/products/{lamp}", json={"quantity": 8}, headers=root)),
            ("admin.grant", lambda: client.post("/admin/set", json={"user_id": "auth0|bob"}, headers=root)),
            ("user.disable", lambda: client.delete("/users/auth0%7Calice", headers=root)),
            ("user.restore", lambda: client.post("/users/auth0%7Calice/restore", headers=root)),
        ]
        for action, call in actions:
            proxy.drop_commits(1)
            response = call()
            assert response.status_code == 503 and response.json["code"] == "database_unavailable", action
            assert proxy.dropped >= 1
            assert self.audited(app, action) == 1, action  # the COMMIT was made: the record is there...
        with app.app_context():  # ...and so is every action's effect
            bob, alice = db.session.get(User, "auth0|bob"), db.session.get(User, "auth0|alice")
            assert bob.is_admin and alice.disabled_at is None
            assert db.session.get(Product, lamp) is None  # the disable deleted it, after the update
            disabled = db.session.scalar(db.select(AuditRecord).where(AuditRecord.action == "user.disable"))
            assert [p["quantity"] for p in disabled.changes["products_deleted"]] == [8]

    @pytest.mark.parametrize("action", ["product.delete", "user.disable"])
    def test_a_connection_cut_in_the_middle_leaves_neither(self, proxied, action):
        app, client, proxy, root, lamp = proxied
        with app.app_context():  # the action's product DELETE takes a second: the cut lands inside it
            db.session.execute(
                db.text(
                    "CREATE FUNCTION slow_delete() RETURNS trigger LANGUAGE plpgsql AS"
                    " $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$"
                )
            )
            db.session.execute(
                db.text("CREATE TRIGGER slow_delete AFTER DELETE ON products EXECUTE FUNCTION slow_delete()")
            )
            db.session.commit()
        path = f"/products/{lamp}" if action == "product.delete" else "/users/auth0%7Calice"
        answers = []
        call = threading.Thread(target=lambda: answers.append(client.delete(path, headers=root)))
        call.start()
        time.sleep(0.4)
        proxy.cut()  # the restart: the server loses the connection mid-transaction and rolls it back
        call.join(timeout=30)
        proxy.restore()
        assert answers[0].status_code == 503 and answers[0].json["code"] == "database_unavailable"
        time.sleep(1.5)  # the server-side transaction ends (pg_sleep finishes, the lost client is noticed)
        assert self.audited(app, action) == 0
        with app.app_context():
            assert db.session.get(Product, lamp) is not None
            assert db.session.get(User, "auth0|alice").disabled_at is None
        again = client.delete(path, headers=root)  # recovered: done once, recorded once
        assert again.status_code == 200
        assert self.audited(app, action) == 1
        with app.app_context():
            assert db.session.get(Product, lamp) is None
