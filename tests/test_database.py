"""The database under the API: SQLite tuned for several workers, PostgreSQL surviving outages."""

import fcntl
import multiprocessing
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, delete, func, insert, inspect, select, text, update

from app import create_app
from app.extensions import db
from app.models import Product, ProductStats, User
from app.models.ddl import include_object_for, other_databases_indexes_unreflected
from app.services.products import read_product_or_404
from tests.databases import needs_postgres, postgres_base_url
from tests.factories import make_product
from tests.tcpproxy import TcpProxy

PRODUCT = {"name": "Lamp", "description": "A desk lamp", "price": "19.99", "quantity": 1}
ROOT = Path(__file__).resolve().parent.parent
HEAD = ScriptDirectory(str(ROOT / "migrations")).get_current_head()


def products_in(app) -> int:
    with app.app_context():
        return db.session.query(Product).count()


def stats(session) -> tuple[int, int]:
    """The trigger-kept sums over every slot: (products, changes)."""
    total, changes = session.execute(select(func.sum(ProductStats.total), func.sum(ProductStats.changes))).one()
    return int(total), int(changes)


@pytest.mark.skipif(bool(postgres_base_url()), reason="SQLite only")
def test_sqlite_runs_in_wal_mode_with_foreign_keys(app):
    with app.app_context():
        assert db.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1


WRITTEN = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (None, WRITTEN),  # left as the app wrote it (SQLite: naive UTC text with microseconds)
        ("2026-01-02 03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),  # CURRENT_TIMESTAMP's form
        ("2026-01-02 05:04:05+02:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),  # an offset written by hand
    ],
)
def test_timestamps_read_back_as_aware_utc_whatever_text_holds_them(app, stored, expected):
    """Every way of reading a row (ORM, Core, PreparedRead) converts the column alike."""
    with app.app_context():
        product_id = make_product(created_at=WRITTEN).id
        if stored is not None:
            db.session.execute(
                text("UPDATE products SET created_at = :t WHERE id = :id"), {"t": stored, "id": product_id}
            )
            db.session.commit()
        db.session.expire_all()
        read = [
            db.session.get(Product, product_id).created_at,
            db.session.execute(select(Product.created_at).where(Product.id == product_id)).scalar_one(),
            read_product_or_404(product_id).created_at,
        ]
    assert read == [expected] * 3
    assert all(value.utcoffset() == timedelta(0) for value in read)


@needs_postgres
def test_postgres_sessions_run_in_utc_and_other_zones_still_read_as_utc(app):
    """The app sets each session's zone to UTC; a session in another zone (a pooler that drops
    the setting, say) reads the same instants, converted to UTC."""
    with app.app_context():
        product_id = make_product(created_at=WRITTEN).id
        assert db.session.execute(text("SHOW TIME ZONE")).scalar() == "UTC"
        db.session.execute(text("SET LOCAL TIME ZONE 'Asia/Tokyo'"))
        read = db.session.execute(select(Product.created_at).where(Product.id == product_id)).scalar_one()
        db.session.rollback()
    assert read == WRITTEN
    assert read.tzinfo is UTC


@needs_postgres
def test_killed_connections_are_replaced_without_an_error(make_app):
    name = f"dmarket-test-{uuid.uuid4().hex[:8]}"
    app = make_app(DB_APPLICATION_NAME=name)
    client = app.test_client()
    with app.app_context():
        make_product()
        db.session.remove()
    assert client.get("/products").status_code == 200  # the pool now holds a connection
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        ).scalar()
    admin.dispose()
    assert killed >= 1
    response = client.get("/products")
    assert response.status_code == 200
    assert response.json[0]["name"] == "Lamp"


@needs_postgres
def test_an_outage_answers_503_then_the_first_request_after_it_succeeds(make_app, database_url, user_headers):
    real = urlsplit(database_url)
    proxy = TcpProxy(real.hostname, real.port or 5432).start()
    through_proxy = real._replace(netloc=f"{real.username}@127.0.0.1:{proxy.port}").geturl()
    app = make_app(DATABASE_URL=through_proxy, DB_CONNECT_TIMEOUT="2")
    client = app.test_client()
    assert client.post("/products/create", json=PRODUCT, headers=user_headers).status_code == 201

    proxy.cut()
    for _ in range(2):
        response = client.post("/products/create", json=PRODUCT, headers=user_headers)
        assert response.status_code == 503
        assert response.json["code"] == "database_unavailable"
        assert response.headers["Retry-After"] == "5"
    assert client.get("/products").status_code == 503

    proxy.restore()
    assert client.get("/products").status_code == 200
    assert client.post("/products/create", json=PRODUCT, headers=user_headers).status_code == 201
    proxy.cut()
    direct = make_app(DATABASE_URL=database_url)
    assert products_in(direct) == 2  # nothing from the outage was half-written


def test_migrations_match_the_models_exactly(app):
    """Types, server defaults, indexes and constraint names: nothing left for autogenerate to add."""
    with app.app_context():
        with db.engine.connect() as conn:
            opts = {"compare_type": True, "compare_server_default": True}
            opts["include_object"] = include_object_for(conn.dialect.name)  # as migrations/env.py does
            context = MigrationContext.configure(conn, opts=opts)
            with other_databases_indexes_unreflected(db.metadata, conn.dialect.name):  # as migrations/env.py does
                assert compare_metadata(context, db.metadata) == []


def test_migrations_downgrade_and_upgrade_again(app):
    with app.app_context():
        downgrade(revision="base")
        assert "products" not in inspect(db.engine).get_table_names()
        upgrade()
        assert {"products", "users"} <= set(inspect(db.engine).get_table_names())


def test_the_slots_fold_back_into_one_row_and_out_again(app):
    """0008's downgrade keeps 0002's one exact row, whichever slots the writers used; its triggers count again."""
    with app.app_context():
        for n in range(3):
            make_product(name=f"Item {n}")
        db.session.execute(text("UPDATE product_stats SET total = total + 1 WHERE id = 7"))  # as another session would
        db.session.execute(text("UPDATE product_stats SET total = total - 1 WHERE id = 1"))
        db.session.commit()
        downgrade(revision="0007")
        assert db.session.execute(text("SELECT id, total FROM product_stats")).all() == [(1, 3)]
        make_product(name="Item 3")
        assert db.session.execute(text("SELECT total FROM product_stats")).scalar() == 4
        db.session.commit()  # PostgreSQL: no lock of ours in the migration's way
        upgrade()
        assert stats(db.session) == (4, 0)
        db.session.execute(delete(Product).where(Product.name == "Item 0"))
        db.session.commit()
        assert stats(db.session) == (3, 1)


def test_the_product_total_kept_by_triggers_stays_exact(app, client):
    """Every way rows come and go: one by one, in bulk, and with their owner (cascade)."""
    with app.app_context():
        for n in range(6):
            make_product("auth0|alice" if n % 2 else "auth0|bob", name=f"Item {n}")
        db.session.delete(db.session.get(Product, 1))
        db.session.commit()
        db.session.execute(delete(Product).where(Product.name == "Item 3"))
        db.session.execute(delete(User).where(User.user_id == "auth0|bob"))  # ON DELETE CASCADE
        db.session.commit()
        actual = db.session.query(Product).count()
        assert stats(db.session)[0] == actual == 2
    assert client.get("/products").headers["X-Total-Count"] == "2"


def test_every_committed_change_of_a_product_moves_the_counter(app):
    """Inserts, updates (each row, even to equal values) and deletes count; a rollback adds nothing."""
    with app.app_context():
        for n in range(3):
            make_product(name=f"Item {n}")
        assert stats(db.session) == (3, 3)
        db.session.execute(update(Product).values(quantity=Product.quantity))
        db.session.commit()
        assert stats(db.session) == (3, 6)
        db.session.execute(update(Product).where(Product.id == 0).values(quantity=1))  # no row: no change
        db.session.execute(delete(Product).where(Product.id == 1))
        db.session.commit()
        assert stats(db.session) == (2, 7)
        db.session.execute(delete(Product))
        db.session.rollback()
        assert stats(db.session) == (2, 7)


def _write_products(url: str, start, rounds: int) -> tuple[int, int]:
    """One session's inserts, updates and deletes, a transaction each; returns (its slot, rows it changed)."""
    engine = create_engine(url)
    changed = 0
    try:
        with engine.connect() as conn:
            slot = conn.execute(text("SELECT pg_backend_pid() % 16")).scalar()
            conn.commit()
            start.wait(timeout=30)
            for n in range(rounds):
                rows = [
                    {**PRODUCT, "price": Decimal("1.50"), "name": f"{n}-{k}", "user_id": "auth0|alice"}
                    for k in range(3)
                ]
                ids = conn.execute(insert(Product).returning(Product.id), rows).scalars().all()
                conn.commit()
                conn.execute(update(Product).where(Product.id.in_(ids)).values(quantity=Product.quantity + 1))
                conn.execute(delete(Product).where(Product.id == ids[0]))
                conn.commit()
                changed += len(ids) * 2 + 1
    finally:
        engine.dispose()
    return slot, changed


@needs_postgres
def test_concurrent_writers_use_their_own_slots_and_the_sums_stay_exact(app, database_url):
    """Sessions write the slot of their backend's pid, so they seldom wait on each other's row;
    whatever the interleaving, the sums over all slots are the row count and every change."""
    with app.app_context():
        make_product(name="Kept")
    sessions = 6
    start = threading.Barrier(sessions)
    with ThreadPoolExecutor(sessions) as pool:
        done = list(pool.map(lambda _: _write_products(database_url, start, 20), range(sessions)))
    with app.app_context():
        actual = db.session.query(Product).count()
        assert actual == 1 + sessions * 20 * 2
        assert stats(db.session) == (actual, 1 + sum(changed for _, changed in done))
        touched = db.session.execute(select(ProductStats.id).where(ProductStats.changes > 0)).scalars().all()
        assert {slot for slot, _ in done} <= set(touched)
        assert db.session.query(ProductStats).count() == 16


def _upgrade_with_the_others(settings: dict, ready) -> None:
    """One starting instance: build the app, wait until every other one is built too, then upgrade."""
    app = create_app(settings)
    with app.app_context():
        ready.wait(timeout=60)
        upgrade()


@needs_postgres
def test_instances_starting_together_migrate_once(settings):
    """Every container runs `flask db upgrade` at start: on PostgreSQL they queue on a lock instead of racing."""
    processes = multiprocessing.get_context("fork")
    ready = processes.Barrier(4)
    starts = [processes.Process(target=_upgrade_with_the_others, args=(settings, ready)) for _ in range(4)]
    for start in starts:
        start.start()
    for start in starts:
        start.join(timeout=120)
    assert [start.exitcode for start in starts] == [0, 0, 0, 0]
    engine = create_engine(settings["DATABASE_URL"])
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
        assert {"products", "users", "product_stats"} <= set(inspect(conn).get_table_names())
        assert conn.execute(text("SELECT count(*), sum(total), sum(changes) FROM product_stats")).one() == (16, 0, 0)
    engine.dispose()


@pytest.mark.skipif(bool(postgres_base_url()), reason="SQLite's writer queue")
class TestSqliteWriterQueue:
    """SQLite writers queue on a file lock beside the database (the next wakes as the last finishes),
    instead of polling in SQLite's busy handler; PostgreSQL locks rows and needs none."""

    def hold_the_turn(self, app):
        with app.app_context():
            path = f"{db.engine.url.database}-writers.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another open file, as another worker holds it; free now
        return fd

    def test_a_write_waits_for_the_turn_then_succeeds(self, app, client, user_headers):
        fd = self.hold_the_turn(app)
        answers = []
        writer = threading.Thread(
            target=lambda: answers.append(client.post("/products/create", json=PRODUCT, headers=user_headers))
        )
        writer.start()
        writer.join(0.5)
        assert writer.is_alive() and products_in(app) == 0  # queued, nothing written
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        writer.join(10)
        assert answers[0].status_code == 201 and products_in(app) == 1

    def test_a_refused_write_gives_the_turn_back(self, app, client, user_headers, other_headers):
        created = client.post("/products/create", json=PRODUCT, headers=user_headers).json
        refused = client.put(f"/products/{created['id']}/update", json={"quantity": 5}, headers=other_headers)
        assert refused.status_code == 403
        fd = self.hold_the_turn(app)  # BlockingIOError if the refused write still held it
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        assert (
            client.put(f"/products/{created['id']}/update", json={"quantity": 5}, headers=user_headers).status_code
            == 200
        )
