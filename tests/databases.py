"""Where tests keep their data: a temp SQLite file, or a fresh PostgreSQL schema per test.

Set TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1:5432/test) to run the suite on
PostgreSQL. Each test gets its own schema (selected through the connection's search_path,
so live servers started by a test share it too) and drops it afterwards: concurrent runs
never see each other's rows.
"""

import os
import uuid
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from sqlalchemy import create_engine, text

from app.config import database_url as normalise


def postgres_base_url() -> str | None:
    raw = os.environ.get("TEST_DATABASE_URL", "").strip()
    return normalise(raw) if raw else None


needs_postgres = pytest.mark.skipif(not postgres_base_url(), reason="set TEST_DATABASE_URL to run on PostgreSQL")


def with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["options"] = f"-csearch_path={schema}"
    return urlunsplit(parts._replace(query=urlencode(query)))


@contextmanager
def postgres_schema(base_url: str):
    """A new schema for one test, dropped afterwards; yields a URL that uses it.

    pg_trgm is installed in public first, as a DBA would: were the migration to put it in a
    test's schema, dropping that schema would take the extension, and the search indexes
    of every concurrent run, with it.
    """
    schema = f"test_{uuid.uuid4().hex[:16]}"
    engine = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public"))
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield with_search_path(base_url, schema)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
