"""Product rules: listing, lookup with rights, and changes with optimistic locking."""

import functools
import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Integer,
    and_,
    any_,
    bindparam,
    cast,
    func,
    literal_column,
    or_,
    select,
    table,
    text,
    tuple_,
)

from app.errors import Forbidden, NotFound, PreconditionFailed
from app.extensions import db, retry_if_disconnected
from app.models import Product, ProductStats, User
from app.models.ddl import SQLITE_SEARCH_TABLE
from app.models.product import PHRASE_SEPARATORS, etag_of, joined_words
from app.models.types import utcnow
from app.services import audit, idempotency
from app.services.audit import Actor
from app.services.locking import write_transaction
from app.services.paging import Page, decode_cursor, encode_cursor
from app.services.prepared import PreparedRead
from app.services.timeouts import statement_timeout
from app.services.users import Identity

EDITABLE_FIELDS = ("name", "description", "price", "quantity")


# A search lists at most this many matches, the newest; counting and sorting them is then bounded too.
SEARCH_MATCH_LIMIT = 1000
# Pages by number stop here: an OFFSET reads every row it skips. Deeper, clients walk by cursor.
MAX_PAGE = 100


def _contains(q: str):
    """Name or description contains `q`, any case, through an index.

    PostgreSQL: ILIKE, which its trigram indexes serve (migration 0003). SQLite: a phrase
    query on the FTS5 trigram table (0004), the same substring match. Terms have at least
    three letters or digits in a row (the schema's rule), so both always have a trigram.
    """
    if db.engine.dialect.name == "sqlite":
        return Product.id.in_(_sqlite_matches(q))
    return or_(*(_postgres_contains(column, q) for column in (Product.name, Product.description)))


_JOINED = str.maketrans(PHRASE_SEPARATORS, "q" * len(PHRASE_SEPARATORS))


def _postgres_contains(column, q: str):
    """`column` ILIKE '%q%', through the index that serves it best.

    A term with a separator in it (PHRASE_SEPARATORS) is a phrase: 0003's indexes know only
    each word's trigrams and would hand over every row holding all its words anywhere, each
    then rechecked. The phrase indexes (0009) hold the trigrams spanning words, over the text
    with the separators made `q`, and the term is translated alike (before escaping), so a row
    holding the phrase always matches there; one with a `q` or another separator in its place
    matches too, which the column's own ILIKE rules out. A single word stays on 0003's index
    (through the translated text it was measured 3x slower). Other separators (tabs, quotes,
    `&`, ...) are left to 0003's index: exact, only slower (docs/decisions.md).
    """
    contains = column.icontains(q, autoescape=True)
    if not any(character in PHRASE_SEPARATORS for character in q):
        return contains
    joined = joined_words(column).icontains(q.translate(_JOINED), autoescape=True)
    # The exact test as an integer comparison: no index serves it (as a plain ILIKE, the planner
    # ANDs in 0003's bitmap, every row holding the words) and the planner deems it nearly always
    # true, so the pair is estimated by the translated test alone, whose index has statistics (as
    # two ILIKEs, their product made a common phrase look rare: all its matches were read and
    # sorted instead of the newest walked). First, so a walk rejects rows before translate() runs.
    return and_(cast(contains, Integer) != 0, joined)


def _sqlite_matches(q: str):
    phrase = '"' + q.replace('"', '""') + '"'  # an FTS5 string: every character literal
    matches = select(literal_column("rowid")).select_from(table(SQLITE_SEARCH_TABLE))
    return matches.where(literal_column(SQLITE_SEARCH_TABLE).op("MATCH")(phrase))


def search_candidates(*, q: str, user_id: str | None, limit: int):
    """The ids of the newest `limit` matches, newest first: the index hands them over in that order,
    so the cost is bounded by `limit` rather than by how many rows match.

    With `user_id`, the owner's rows drive instead, newest first through (user_id, id), each
    tested as it comes: reading the term's whole match set to keep one owner's would cost what
    the term matches table-wide. The cost is then bounded by what one owner has.
    """
    dialect = db.engine.dialect.name
    if user_id is None:
        if dialect == "sqlite":  # FTS5 walks its rowids backwards itself: no detour through products
            return _sqlite_matches(q).order_by(literal_column("rowid").desc()).limit(limit)
        ids = select(Product.id).where(_contains(q))
    elif dialect == "sqlite" and not q.isascii():
        # LIKE folds only ASCII case; the FTS index folds every letter's.
        ids = select(Product.id).where(Product.user_id == user_id, _contains(q))
    else:
        # Tested row by row (PostgreSQL: through expressions the trigram indexes do not serve, so
        # the planner cannot trade the owner's index for a table-wide match set).
        texts = [func.coalesce(column, "") for column in (Product.name, Product.description)]
        ids = select(Product.id).where(
            Product.user_id == user_id, or_(*(t.icontains(q, autoescape=True) for t in texts))
        )
    return ids.order_by(Product.id.desc()).limit(limit)


@contextmanager
def owner_walk(user_id: str | None):
    """PostgreSQL: run an owner's search (`search_candidates` with `user_id`) as the walk it is
    written for, with bitmap scans off for that statement (`SET LOCAL`, then back to the default).

    Its tests are hidden from the trigram indexes on purpose, so the planner has no statistics
    for them and guesses that one of the owner's rows matches. It then reads every row of the
    owner through a bitmap and sorts them, where the walk backwards through (user_id, id) stops
    at the limit: for an owner of 3,334 rows at 1,000,000, all matching, 18.8 ms against 4.7 ms;
    with none matching, 15.7 ms against 14.4 ms (EXPLAIN ANALYZE, 2026-11-26). After an error
    the transaction is rolled back, which undoes the setting too.
    """
    if user_id is None or db.engine.dialect.name != "postgresql":
        yield
        return
    db.session.execute(text("SET LOCAL enable_bitmapscan = off"))
    yield
    db.session.execute(text("SET LOCAL enable_bitmapscan = DEFAULT"))


def _one_of(ids: list[int]):
    """`products.id` is one of `ids`, sent as one parameter (a thousand bound values cost more than the query)."""
    if db.engine.dialect.name == "sqlite":
        values = select(literal_column("value")).select_from(func.json_each(json.dumps(ids)))
        return Product.id.in_(values)
    return Product.id == any_(bindparam(None, ids, type_=ARRAY(Integer)))


def _sum(column):
    """The sum over the stats slots, as a bigint (PostgreSQL's sum of bigints is a numeric)."""
    return cast(func.sum(column), BigInteger)


def page_queries(*, page: int, per_page: int, sort: str, q=None, user_id=None, cursor=None, within=None):
    """The statements behind one page: rows (one extra, to know if there is a next) and the total (or None).

    A search (`q`) pages within its newest matches only: `within`, their ids, which
    `search_candidates()` found (and the caller counted). Public so the query plans can be
    checked (tests/test_explain.py): both must use indexes.
    """
    products = Product.__table__
    if q and within is None:
        raise ValueError("a search pages within its matches: pass within=, the ids search_candidates() found")
    if within is not None:
        conditions = [_one_of(within)]
    else:
        conditions = [products.c.user_id == user_id] if user_id is not None else []
    column, descending = products.c[sort.lstrip("-")], sort.startswith("-")
    keys = [column] if column is products.c.id else [column, products.c.id]
    if cursor is not None:
        value, last_id = decode_cursor(cursor, sort)
        position = [bindparam(None, value, type_=column.type)] + ([last_id] if len(keys) == 2 else [])
        left, right = (keys[0], position[0]) if len(keys) == 1 else (tuple_(*keys), tuple_(*position))
        conditions.append(left < right if descending else left > right)
    order = [key.desc() if descending else key.asc() for key in keys]
    rows = select(products).where(*conditions).order_by(*order).limit(per_page + 1)
    if cursor is not None:
        return rows, None
    rows = rows.offset((page - 1) * per_page)
    if within is not None:  # the caller counted them already
        return rows, None
    if conditions:
        total = select(func.count()).select_from(products).where(*conditions)
    else:
        total = select(_sum(ProductStats.__table__.c.total))  # kept exact by triggers: no scan of the table
    return rows, total


def read_connection():
    """A pooled connection for one read, outside the ORM session: a read of plain rows needs none
    of the session's transaction bookkeeping, which cost as much as the query itself.

    On PostgreSQL it runs without a transaction (autocommit): a read here is one statement, one
    snapshot either way, and BEGIN and ROLLBACK around it were two more round trips than the query.
    """
    connection = db.engine.connect()
    if connection.dialect.name == "postgresql":
        connection.execution_options(isolation_level="AUTOCOMMIT")
    return connection


# The listings' validator: grows with every committed change of products (triggers, migration 0008).
CHANGES = select(_sum(ProductStats.__table__.c.changes))


@functools.lru_cache(maxsize=512)
def _page_statements(dialect: str, **params):
    """The page's statement (rows, with the change counter and the total as scalar subqueries), and
    what answers an empty page: the counter, the total and whether any row is there now.

    Built once per distinct query and dialect, then reused: statements are immutable, and
    building one cost as much as a tenth of a first-page request. Bounded, so the variety of
    searches and cursors clients send cannot grow it.
    """
    rows, count = page_queries(**params)
    columns = [CHANGES.scalar_subquery().label("changes")]
    if count is not None:
        columns.append(count.scalar_subquery().label("total_count"))
    return rows.add_columns(*columns), select(*columns, rows.exists().label("found"))


@retry_if_disconnected
def _page_rows(params: dict) -> tuple[list, int | None, int | None]:
    """The page's rows, the total and the change counter, from one statement (one snapshot): the
    subqueries ride along, evaluated once by both databases.

    A page with no row has nothing to carry them: a second statement reads them, and says whether
    rows have appeared since. If not, the empty answer is the one that counter's state gives;
    if so, it is older than any counter read here, and goes without one.
    """
    rows, empty = _page_statements(db.engine.dialect.name, **params)
    with read_connection() as connection:
        items = connection.execute(rows).all()
        state = items[0] if items else connection.execute(empty).one()
    total = getattr(state, "total_count", None)
    return items, total, None if getattr(state, "found", False) else state.changes


def _search_rows(params: dict) -> tuple[list, int | None, bool, int | None]:
    """A search's rows, total, whether it was cut, and the change counter (None: unknown).

    Its matches' ids are found once (the newest SEARCH_MATCH_LIMIT, under SEARCH_TIMEOUT_MS),
    then the page is read and counted within them. Those are two statements, two snapshots: a
    commit between them gives an answer that no one state of the table gave. The counter read
    before and after tells: if it moved, the answer gets no counter, so no ETag that a later
    request could match.
    """
    q, user_id = params["q"], params["user_id"]
    before = db.session.scalar(CHANGES)
    with statement_timeout(current_app.config["SEARCH_TIMEOUT_MS"]), owner_walk(user_id):
        found = db.session.scalars(search_candidates(q=q, user_id=user_id, limit=SEARCH_MATCH_LIMIT + 1)).all()
    within = found[:SEARCH_MATCH_LIMIT]
    rows, _ = page_queries(**params, within=within)
    items = db.session.execute(rows).all()
    total = None if params["cursor"] is not None else len(within)  # counted already: no second pass
    changes = before if db.session.scalar(CHANGES) == before else None
    return items, total, len(found) > SEARCH_MATCH_LIMIT, changes


def _page_etag(params: dict, changes: int) -> str:
    """A strong validator of the whole answer: the representation's version, the query and the change counter.

    One counter value is one state of the products table, and the answer depends on nothing
    else: the same query on it gives the same rows, total and cursor. A change anywhere in the
    table moves it, even one this page does not show (a 304 then costs one small read).
    """
    from app import __version__  # the serialisation: a release that changes it changes every tag

    state = (__version__, sorted(params.items()), changes)
    return hashlib.blake2b(repr(state).encode(), digest_size=16).hexdigest()


def list_products(
    *, page: int, per_page: int, sort: str, q: str | None = None, user_id: str | None = None, cursor: str | None = None
) -> Page:
    """One page, by number (with the total) or after a cursor (index seek, no count: constant cost at any depth).

    Rows come back as plain rows, not ORM objects: a listing only reads, and skipping the
    identity map makes it markedly cheaper. A search finds its matches' ids once (the newest
    SEARCH_MATCH_LIMIT, under SEARCH_TIMEOUT_MS), then pages and counts within them.
    """
    params = {"page": page, "per_page": per_page, "sort": sort, "q": q, "user_id": user_id, "cursor": cursor}
    truncated = False
    if q:
        items, total, truncated, changes = _search_rows(params)
    else:
        items, total, changes = _page_rows(params)
    next_cursor = None
    if len(items) > per_page:
        items = items[:per_page]
        last = items[-1]
        next_cursor = encode_cursor(sort, getattr(last, sort.lstrip("-")), last.id)
    return Page(
        items=items,
        total=total,
        page=page,
        per_page=per_page,
        next_cursor=next_cursor,
        etag=None if changes is None else _page_etag(params, changes),
        truncated=truncated,
        max_page=MAX_PAGE,
    )


@retry_if_disconnected
def page_etag(
    *, page: int, per_page: int, sort: str, q: str | None = None, user_id: str | None = None, cursor: str | None = None
) -> str:
    """The tag `list_products(...)` would answer with now, from the change counter alone: one read
    of the stats slots, no product row, whatever the query (searches and cursors included)."""
    if cursor is not None:
        decode_cursor(cursor, sort)  # an edited cursor is still 422, not a 304
    params = {"page": page, "per_page": per_page, "sort": sort, "q": q, "user_id": user_id, "cursor": cursor}
    return _page_etag(params, _CHANGES_NOW.first()[0])


_CHANGES_NOW = PreparedRead(CHANGES)
_READ_ONE = PreparedRead(select(Product.__table__).where(Product.__table__.c.id == bindparam("product_id")))


@retry_if_disconnected
def read_product_or_404(product_id: int):
    """The product as a plain row (a named tuple), for answering a read: the hottest read there is,
    so it skips SQLAlchemy's execution layer (`PreparedRead`)."""
    row = _READ_ONE.first(product_id=product_id)
    if row is None:
        raise NotFound("The product was not found.")
    return row


@dataclass(frozen=True)
class Created:
    """What a create answers: the product's fields as stored (`snapshot`), or as first answered (a replay)."""

    product: dict[str, Any]
    replayed: bool = False


def snapshot(product) -> dict[str, Any]:
    """The product's fields as JSON values: what an idempotency key keeps, and what the answer is built from."""
    return {
        "id": product.id,
        "name": product.name,
        "description": product.description,
        "price": str(product.price),
        "quantity": product.quantity,
        "user_id": product.user_id,
        "created_at": product.created_at.isoformat(),
        "updated_at": product.updated_at.isoformat(),
        "version": product.version,
    }


def _caller_may_write(*, admin: bool = False):
    """EXISTS: the caller's account (`owner`) is enabled, read under a key-share lock on its row.

    An admin statement also needs the caller to be an admin still (or the token's claim,
    `claim_admin`), unless the product is the caller's own. The lock conflicts with the one a
    disable or a revocation takes first (app/services/users.py): a write that holds it commits
    before they go on; one that waits for it reads the row again when they commit (PostgreSQL's
    READ COMMITTED recheck) and finds the account disabled, or no longer an admin. SQLite has no
    row locks (the clause is left out): its writes take turns, each reading the latest state.
    One primary-key probe inside the write's own statement: no extra round trip.
    """
    users, products = User.__table__, Product.__table__
    conditions = [users.c.user_id == bindparam("owner"), users.c.disabled_at.is_(None)]
    if admin:
        claim = bindparam("claim_admin", type_=Boolean)
        conditions.append(or_(users.c.is_admin.is_(True), claim, users.c.user_id == products.c.user_id))
    probe = select(literal_column("1")).select_from(users).where(*conditions)
    return probe.with_for_update(read=True, key_share=True).exists()


def _insert_statement():
    """INSERT ... SELECT from the owner's row, only while the account is enabled (see `_caller_may_write`)."""
    products, users = Product.__table__, User.__table__
    names = ("name", "description", "price", "quantity", "version", "created_at", "updated_at")
    values = [bindparam(name, type_=products.c[name].type) for name in names]
    values[2] = cast(values[2], products.c.price.type)  # PostgreSQL would read an untyped price as text
    source = (
        select(*values, users.c.user_id)
        .where(users.c.user_id == bindparam("owner"), users.c.disabled_at.is_(None))
        .with_for_update(read=True, key_share=True)
    )
    return products.insert().from_select([*names, "user_id"], source).returning(*products.c)


_INSERT = _insert_statement()
_ENABLED = select(User.user_id).where(User.user_id == bindparam("owner"), User.disabled_at.is_(None))


def create_product(*, owner: Identity, data: dict, idempotency_key: str | None = None) -> Created:
    """Insert the product; with an idempotency key, a repeat of the request replays the first answer instead.

    One `INSERT ... RETURNING` (no ORM unit of work): everything the answer holds is known
    before the COMMIT, so nothing is read after it.
    """
    fields = {key: data[key] for key in EDITABLE_FIELDS if key in data}
    user_id = owner.user.user_id
    values = {key: fields.get(key) for key in EDITABLE_FIELDS}
    with write_transaction() as connection:  # outside the ORM session, as _guarded_write
        if idempotency_key is not None:
            request_hash = idempotency.fingerprint("products.create", fields)
            outcome = idempotency.claim(connection, user_id=user_id, key=idempotency_key, request_hash=request_hash)
            if outcome is not None:
                if connection.execute(_ENABLED, {"owner": user_id}).first() is None:
                    raise _disabled()  # a replay answers for the account as it is now
                return Created(outcome, replayed=True)
        now = utcnow()
        values.update(owner=user_id, version=1, created_at=now, updated_at=now)
        row = connection.execute(_INSERT, values).first()
        if row is None:  # the account was disabled (another worker's cache may not know yet)
            raise _disabled()
        created = snapshot(row)
        if idempotency_key is not None:
            idempotency.record(connection, user_id=user_id, key=idempotency_key, outcome=created)
    return Created(created)


def _if_match_versions(expected_etags) -> list[int] | None:
    """The versions If-Match names (strong tags only, as RFC 9110 compares them); None for `*` or no header."""
    if expected_etags is None or expected_etags.star_tag:
        return None
    # Werkzeug reads an empty tag (`If-Match: ""`) as None: it names no version.
    return [int(tag) for tag in expected_etags.as_set() if tag and tag.isdigit() and len(tag) < 10]


def _guards(*, owner_only: bool, versions: bool) -> list:
    """What a write of one product depends on, as conditions of its own statement: the id, the
    caller's right to edit it (owner, unless admin; the account enabled, and an admin's rights
    still held, read under a lock: `_caller_may_write`), and the versions If-Match names."""
    products = Product.__table__
    conditions = [products.c.id == bindparam("product_id")]
    if owner_only:
        conditions.append(products.c.user_id == bindparam("owner"))
    conditions.append(_caller_may_write(admin=not owner_only))
    if versions:
        conditions.append(products.c.version.in_(bindparam("versions", expanding=True)))
    return conditions


@functools.lru_cache(maxsize=64)
def _update_statement(fields: tuple[str, ...], *, owner_only: bool, versions: bool):
    """The UPDATE for one set of fields, built once (building it cost a tenth of the request); values are bound."""
    products = Product.__table__
    new = {key: bindparam(f"new_{key}", type_=products.c[key].type) for key in fields}
    differs = or_(*(products.c[key].is_distinct_from(value) for key, value in new.items()))
    now = bindparam("now", type_=products.c.updated_at.type)
    return (
        products.update()
        .where(*_guards(owner_only=owner_only, versions=versions), differs)
        .values({**new, "version": products.c.version + 1, "updated_at": now})
        .returning(*products.c)
    )


@functools.lru_cache(maxsize=4)
def _delete_statement(*, owner_only: bool, versions: bool):
    products = Product.__table__
    return products.delete().where(*_guards(owner_only=owner_only, versions=versions)).returning(products.c.id)


# An admin's write reads the product first, locked, after the caller's row (the order every write
# locks in): what it was is what the audit record says changed, when the product is someone else's.
_ADMIN_READ = (
    select(Product.__table__)
    .where(Product.__table__.c.id == bindparam("product_id"), _caller_may_write(admin=True))
    .with_for_update(of=Product.__table__)
)


def _guarded_write(statement, params: dict, *, product_id: int, identity: Identity, versions, actor, action: str):
    """Run one guarded statement in the writer's turn and commit; its RETURNING row, or None.

    On a connection of its own, outside the ORM session: one statement needs none of the
    session's transaction bookkeeping, which cost more than the statement (a tenth of a PUT).
    The commit ends the transaction either way (SQLite held its write lock for the statement).
    An admin changing someone else's product is audited in the same transaction.
    """
    user_id = identity.user.user_id
    params.update(product_id=product_id, owner=user_id, versions=versions, claim_admin=identity.claim_admin)
    record = None
    with write_transaction() as connection:
        before = connection.execute(_ADMIN_READ, params).first() if identity.is_admin else None
        if identity.is_admin and before is None:
            return None
        row = connection.execute(statement, params).first()
        if row is not None and before is not None and before.user_id != user_id:
            record = _audit(connection, actor or Actor(user_id, identity.user.email), action, before, row)
    if record is not None:
        audit.publish([record])
    return row


def _audit(connection, actor: Actor, action: str, before, after) -> dict:
    """The record of an admin's change to another's product: the fields that changed, or its last content."""
    if action == "product.delete":
        changes = {"product": audit.content(before)}
    else:
        old, new = audit.content(before), audit.content(after)
        changes = {key: [old[key], new[key]] for key in (*EDITABLE_FIELDS, "version") if old[key] != new[key]}
    return audit.write(
        connection,
        actor=actor,
        action=action,
        target_type="product",
        target_id=str(before.id),
        subject_user_id=before.user_id,
        changes=changes,
    )


def _disabled() -> Forbidden:
    return Forbidden("This account has been disabled by an administrator.", code="account_disabled")


def _caller_is_admin_now(identity: Identity) -> bool:
    """The caller's account as it is now (not as a cache remembers it): 403 if disabled; whether admin."""
    state = db.session.execute(
        select(User.disabled_at, User.is_admin).where(User.user_id == identity.user.user_id)
    ).first()
    if state is None or state.disabled_at is not None:
        raise _disabled()
    return state.is_admin or identity.claim_admin


def _explain_refusal(product_id: int, identity: Identity, expected_etags):
    """Why a guarded write touched no row: 404, 403 or 412 raised; else the row as it is (nothing to change)."""
    is_admin = _caller_is_admin_now(identity)
    current = read_product_or_404(product_id)
    if current.user_id != identity.user.user_id and not is_admin:
        raise Forbidden("Only the product's owner or an admin can change it.")
    if expected_etags is not None and not expected_etags.contains(etag_of(current.version)):
        raise PreconditionFailed()
    return current


def update_product(*, product_id: int, identity: Identity, changes: dict, expected_etags=None, actor=None):
    """Apply editable fields in one `UPDATE ... RETURNING`, as a plain row.

    The statement itself checks everything a write depends on (`_guards`) and that some field
    really differs (a no-op writes nothing and keeps the version). A concurrent writer can
    therefore never be overwritten unseen, and no lock or re-read is needed. When no row
    comes back, one read says why: 404, 403, 412, or nothing to change (the row is answered as it is).
    """
    fields = {key: changes[key] for key in EDITABLE_FIELDS if key in changes}
    versions = _if_match_versions(expected_etags)
    if fields and versions != []:
        statement = _update_statement(tuple(fields), owner_only=not identity.is_admin, versions=versions is not None)
        params = {f"new_{key}": value for key, value in fields.items()}
        params["now"] = utcnow()
        row = _guarded_write(
            statement,
            params,
            product_id=product_id,
            identity=identity,
            versions=versions,
            actor=actor,
            action="product.update",
        )
        if row is not None:
            return row
    return _explain_refusal(product_id, identity, expected_etags)


def delete_product(*, product_id: int, identity: Identity, expected_etags=None, actor=None) -> None:
    """Delete in one `DELETE ... RETURNING` under the same guards as an update; a read says why when none went."""
    versions = _if_match_versions(expected_etags)
    if versions != []:
        statement = _delete_statement(owner_only=not identity.is_admin, versions=versions is not None)
        params = {"product_id": product_id, "identity": identity, "versions": versions, "actor": actor}
        deleted = _guarded_write(statement, {}, **params, action="product.delete")
        if deleted is not None:
            return
    _explain_refusal(product_id, identity, expected_etags)
    # The row is there, editable, at a version If-Match names, yet the DELETE missed it: it changed
    # between the two statements (versions only grow, so this needs one): the client reads it again.
    raise PreconditionFailed()
