"""List queries use indexes on both databases: the default order, the owner filter and cursors."""

import json
import random
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import insert, text

from app.extensions import db
from app.models import Product, User
from app.schemas.products import ProductQuery
from app.services.paging import encode_cursor
from app.services.products import SEARCH_MATCH_LIMIT, owner_walk, page_queries, search_candidates

ROWS, OWNERS = 3000, 300


@pytest.fixture
def filled(app):
    """Enough rows, spread over enough owners, that PostgreSQL's planner prefers an index when it can."""
    rng = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with app.app_context():
        db.session.execute(insert(User), [{"user_id": f"u{n}", "email": f"u{n}@x.test"} for n in range(OWNERS)])
        db.session.execute(
            insert(Product),
            [
                {
                    "name": f"item {i}", "price": Decimal(rng.randint(100, 9999)) / 100, "quantity": 1,
                    "user_id": f"u{i % OWNERS}", "created_at": start + timedelta(seconds=i),
                    "updated_at": start + timedelta(seconds=i),
                }
                for i in range(ROWS)
            ],
        )  # fmt: skip
        db.session.commit()
        db.session.execute(text("ANALYZE"))
        db.session.commit()
        yield app


DEFAULT_SORT = ProductQuery.model_fields["sort"].default  # newest first: what a plain GET /products runs


def plan(statement) -> str:
    """The database's own plan for a statement (bound values inlined)."""
    sql = str(statement.compile(db.engine, compile_kwargs={"literal_binds": True}))
    if db.engine.dialect.name == "sqlite":
        return "\n".join(row[-1] for row in db.session.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
    return json.dumps(db.session.execute(text(f"EXPLAIN (FORMAT JSON) {sql}")).scalar())


def assert_indexed(statement, index: str) -> str:
    """The plan, checked to read through `index`: no full scan (on SQLite, no sort of the whole result either)."""
    found = plan(statement)
    if db.engine.dialect.name == "sqlite":
        assert "TEMP B-TREE" not in found, found  # no sort of the whole result
        if index == "pk_products":
            assert "SCAN products" in found or "USING INTEGER PRIMARY KEY" in found, found
        else:
            assert f"USING INDEX {index}" in found or f"USING COVERING INDEX {index}" in found, found
    else:
        assert '"Seq Scan"' not in found, found
        assert f'"Index Name": "{index}"' in found, found
    return found


@pytest.mark.parametrize("sort", [DEFAULT_SORT, "id"])
def test_default_first_page_walks_the_primary_key(filled, sort):
    with filled.app_context():
        rows, _ = page_queries(page=1, per_page=50, sort=sort)
        assert_indexed(rows, "pk_products")


@pytest.mark.parametrize("sort", [DEFAULT_SORT, "id"])
def test_owner_filter_uses_the_owner_index(filled, sort):
    with filled.app_context():
        rows, count = page_queries(page=1, per_page=50, sort=sort, user_id="u7")
        assert_indexed(rows, "ix_products_user_id_id")
        assert_indexed(count, "ix_products_user_id_id")


@pytest.mark.parametrize("sort, index", [("name", "ix_products_name_id"), ("-price", "ix_products_price_id")])
def test_sorted_pages_use_their_composite_index(filled, sort, index):
    with filled.app_context():
        rows, _ = page_queries(page=1, per_page=50, sort=sort)
        assert_indexed(rows, index)


@pytest.mark.parametrize(
    "sort, value, index",
    [
        ("id", 2900, "pk_products"),
        ("name", "item 2900", "ix_products_name_id"),
        ("-price", Decimal("50.00"), "ix_products_price_id"),
    ],
)
def test_a_deep_cursor_seeks_instead_of_skipping(filled, sort, value, index):
    with filled.app_context():
        rows, count = page_queries(page=1, per_page=50, sort=sort, cursor=encode_cursor(sort, value, 2900))
        assert count is None
        assert_indexed(rows, index)


@pytest.mark.parametrize(
    "q, indexes",
    [
        ("2999", ("ix_products_name_trgm", "ix_products_description_trgm")),
        # A phrase seeks on the trigrams spanning its words (migration 0009), and only there:
        # 0003's would hand over every row holding the words.
        ("item 2999", ("ix_products_name_phrase_trgm", "ix_products_description_phrase_trgm")),
    ],
)
def test_a_search_seeks_through_its_substring_index(filled, q, indexes):
    """`q=` finds a substring of name or description: through pg_trgm GIN indexes on PostgreSQL,
    through the FTS5 trigram table on SQLite.

    On PostgreSQL, 3,000 rows fit in a few pages, where a scan is cheaper still: scans are
    priced out so the plan shows whether the indexes match the query at all. A search finds
    its newest matches (at most SEARCH_MATCH_LIMIT, by id descending), so walking the primary
    key backwards is priced out too: that is the planner's call (right for a common term, the
    trigram indexes for a rare one); what is checked is that the trigram indexes serve it.
    The page is then read within those ids (by primary key).
    """
    with filled.app_context():
        found = search_candidates(q=q, user_id=None, limit=SEARCH_MATCH_LIMIT + 1)
        if db.engine.dialect.name == "sqlite":
            explained = plan(found)
            assert "SCAN products_search VIRTUAL TABLE" in explained, explained
            return
        db.session.execute(text("SET LOCAL enable_seqscan = off"))
        db.session.execute(text("SET LOCAL enable_indexscan = off"))
        explained = plan(found)  # read once: the statement's only plan, every index named in it
        assert '"Seq Scan"' not in explained, explained
        assert sorted(re.findall(r'"Index Name": "([^"]+)"', explained)) == sorted(indexes), explained


@pytest.mark.parametrize("q", ["item", "zzz"])  # every row of the owner matches / none does
def test_an_owners_search_walks_the_owners_rows_newest_first(filled, q):
    """An owner's search tests their rows newest first through (user_id, id) and stops at the
    limit: never a bitmap of all their rows sorted afterwards (the planner's choice on PostgreSQL
    when left alone: it cannot estimate the hidden tests, see `owner_walk`)."""
    with filled.app_context():
        found = search_candidates(q=q, user_id="u7", limit=SEARCH_MATCH_LIMIT + 1)
        with owner_walk("u7"):
            walked = assert_indexed(found, "ix_products_user_id_id")
        if db.engine.dialect.name == "postgresql":
            assert '"Scan Direction": "Backward"' in walked and '"Sort"' not in walked, walked
            assert "Bitmap" not in walked, walked
