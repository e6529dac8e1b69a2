"""Bulk-seeded databases of N products owned by a few hundred users, built by the real migrations."""

import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from flask_migrate import upgrade
from sqlalchemy import func, insert, select, text

from app import create_app
from app.extensions import db
from app.models import Product, User
from app.models.ddl import SQLITE_SEARCH_TABLE

USERS = 300
CHUNK = 20_000
PRODUCT_COLUMNS = ("id", "name", "description", "price", "quantity", "user_id", "created_at", "updated_at")
WORDS = ["Desk", "Lamp", "Chair", "Table", "Shelf", "Mug", "Clock", "Rug", "Stool", "Vase", "Sofa", "Bench"]


def app_for(database_url: str, instance: Path):
    app = create_app(
        {
            "APP_ENV": "development",
            "INSTANCE_PATH": str(instance),
            "DATABASE_URL": database_url,
            "AUTH_MODE": "local",
            "LOG_LEVEL": "WARNING",
        }
    )
    with app.app_context():
        upgrade()
    return app


def _products(n: int, start: datetime):
    rng = random.Random(42)
    for i in range(n):
        yield {
            "id": i + 1,
            "name": f"{rng.choice(WORDS)} {rng.choice(WORDS).lower()} {i}",
            "description": f"Item {i}: a {rng.choice(WORDS).lower()} in good condition",
            "price": Decimal(rng.randint(100, 100_000)) / 100,
            "quantity": rng.randint(0, 50),
            "user_id": f"bench|user{i % USERS}",
            "created_at": start + timedelta(seconds=i),
            "updated_at": start + timedelta(seconds=i),
        }


def _copy(rows) -> None:
    """PostgreSQL: one COPY, so the statement-level count trigger fires once (an executemany
    would be a statement, and a trigger run, per row)."""
    columns = list(PRODUCT_COLUMNS)
    cursor = db.session.connection().connection.driver_connection.cursor()
    with cursor.copy(f"COPY products ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[column] for column in columns])


def seed(database_url: str, instance: Path, n: int) -> float | None:
    """Make the database hold exactly N products; returns the seconds spent, or None if it already did."""
    app = app_for(database_url, instance)
    with app.app_context():
        # Ids are 1..N, so the bench can address the middle row of any size.
        if db.session.execute(select(func.count(), func.max(Product.id))).one() == (n, n):
            db.engine.dispose()
            return None
        started = time.perf_counter()
        db.session.execute(Product.__table__.delete())
        db.session.execute(User.__table__.delete())
        now = datetime.now(UTC)
        db.session.execute(
            insert(User),
            [{"user_id": f"bench|user{u}", "email": f"user{u}@bench.test", "name": f"User {u}"} for u in range(USERS)]
            + [{"user_id": "local|bench@example.com", "email": "bench@example.com", "name": "bench"}],
        )
        rows = _products(n, now - timedelta(seconds=n))
        postgres = db.engine.dialect.name == "postgresql"
        if postgres:
            _copy(rows)
        else:
            batch = []
            for row in rows:
                batch.append(row)
                if len(batch) == CHUNK:
                    db.session.execute(insert(Product), batch)
                    batch = []
            if batch:
                db.session.execute(insert(Product), batch)
        if postgres:  # explicit ids leave the sequence behind
            db.session.execute(text("SELECT setval(pg_get_serial_sequence('products', 'id'), :n)"), {"n": n})
        db.session.commit()
        # Fresh planner statistics on both databases. On PostgreSQL, VACUUM too: a bulk load
        # leaves its rows in the GIN indexes' pending lists, which every search then reads
        # linearly until autovacuum comes by (a 100k-row search: 92 ms before, 1 ms after).
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE" if postgres else "ANALYZE"))
            if not postgres:
                # Likewise, a bulk load leaves the FTS index in many segments, which a search's
                # newest-first walk reads one by one (a rare term at 200k: 2.8 ms before, 0.4 after).
                conn.execute(text(f"INSERT INTO {SQLITE_SEARCH_TABLE}({SQLITE_SEARCH_TABLE}) VALUES ('optimize')"))
        db.engine.dispose()
        return time.perf_counter() - started
