"""Product rules: listing, lookup with rights, and changes with optimistic locking."""

import json
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import ARRAY, Integer, any_, bindparam, func, literal_column, or_, select, table, tuple_
from sqlalchemy.orm.exc import StaleDataError

from app.errors import Forbidden, NotFound, PreconditionFailed
from app.extensions import db
from app.models import Product, ProductStats
from app.models.ddl import SQLITE_SEARCH_TABLE
from app.services import idempotency
from app.services.locking import begin_write
from app.services.paging import Page, decode_cursor, encode_cursor
from app.services.timeouts import statement_timeout
from app.services.users import Identity

EDITABLE_FIELDS = ("name", "description", "price", "quantity")


# A search lists at most this many matches, the newest; counting and sorting them is then bounded too.
SEARCH_MATCH_LIMIT = 1000


def _conditions(*, q: str | None, user_id: str | None) -> list:
    conditions = []
    if user_id is not None:
        conditions.append(Product.user_id == user_id)
    if q:
        conditions.append(_contains(q))
    return conditions


def _contains(q: str):
    """Name or description contains `q`, any case, through an index.

    PostgreSQL: ILIKE, which its trigram indexes serve (migration 0003). SQLite: a phrase
    query on the FTS5 trigram table (0004), the same substring match. Terms have at least
    three letters or digits in a row (the schema's rule), so both always have a trigram.
    """
    if db.engine.dialect.name == "sqlite":
        return Product.id.in_(_sqlite_matches(q))
    return or_(Product.name.icontains(q, autoescape=True), Product.description.icontains(q, autoescape=True))


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


def _one_of(ids: list[int]):
    """`products.id` is one of `ids`, sent as one parameter (a thousand bound values cost more than the query)."""
    if db.engine.dialect.name == "sqlite":
        values = select(literal_column("value")).select_from(func.json_each(json.dumps(ids)))
        return Product.id.in_(values)
    return Product.id == any_(bindparam(None, ids, type_=ARRAY(Integer)))


def page_queries(*, page: int, per_page: int, sort: str, q=None, user_id=None, cursor=None, within=None):
    """The statements behind one page: rows (one extra, to know if there is a next) and the total (or None).

    A search (`q`) ranges over its newest SEARCH_MATCH_LIMIT matches only: `within`, their ids
    when the caller has them, else a subquery that finds them; its count stops one past the limit.
    Public so the query plans can be checked (tests/test_explain.py): both must use indexes.
    """
    products = Product.__table__
    if q and within is not None:
        conditions = [_one_of(within)]
    elif q:
        conditions = [products.c.id.in_(search_candidates(q=q, user_id=user_id, limit=SEARCH_MATCH_LIMIT))]
    else:
        conditions = _conditions(q=q, user_id=user_id)
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
    if q:
        matches = search_candidates(q=q, user_id=user_id, limit=SEARCH_MATCH_LIMIT + 1).subquery()
        total = select(func.count()).select_from(matches)
    elif conditions:
        total = select(func.count()).select_from(products).where(*conditions)
    else:
        total = select(ProductStats.total)  # kept exact by triggers: no scan of the table
    return rows, total


def list_products(
    *, page: int, per_page: int, sort: str, q: str | None = None, user_id: str | None = None, cursor: str | None = None
) -> Page:
    """One page, by number (with the total) or after a cursor (index seek, no count: constant cost at any depth).

    Rows come back as plain rows, not ORM objects: a listing only reads, and skipping the
    identity map makes it markedly cheaper. A search finds its matches' ids once (the newest
    SEARCH_MATCH_LIMIT, under SEARCH_TIMEOUT_MS), then pages and counts within them.
    """
    found = None
    if q:
        with statement_timeout(current_app.config["SEARCH_TIMEOUT_MS"]):
            found = db.session.scalars(search_candidates(q=q, user_id=user_id, limit=SEARCH_MATCH_LIMIT + 1)).all()
    within = found[:SEARCH_MATCH_LIMIT] if found is not None else None
    rows, count = page_queries(
        page=page, per_page=per_page, sort=sort, q=q, user_id=user_id, cursor=cursor, within=within
    )
    items = db.session.execute(rows).all()
    truncated = found is not None and len(found) > SEARCH_MATCH_LIMIT
    if cursor is not None:
        total = None
    elif within is not None:
        total = len(within)  # counted already: no second pass over the matches
    else:
        total = db.session.scalar(count)
    next_cursor = None
    if len(items) > per_page:
        items = items[:per_page]
        last = items[-1]
        next_cursor = encode_cursor(sort, getattr(last, sort.lstrip("-")), last.id)
    return Page(items=items, total=total, page=page, per_page=per_page, next_cursor=next_cursor, truncated=truncated)


def get_product_or_404(product_id: int, *, lock: bool = False) -> Product:
    """`lock`: read it under the write lock taken by `begin_write()` (FOR UPDATE on PostgreSQL)."""
    product = db.session.get(Product, product_id, with_for_update=lock)
    if product is None:
        raise NotFound("The product was not found.")
    return product


def ensure_can_edit(product: Product, identity: Identity) -> None:
    """Only the owner or an admin may change or delete a product."""
    if product.user_id != identity.user.user_id and not identity.is_admin:
        raise Forbidden("Only the product's owner or an admin can change it.")


def _check_version(product: Product, expected_etags) -> None:
    if expected_etags is not None and not expected_etags.contains(product.etag):
        raise PreconditionFailed()


@dataclass(frozen=True)
class Created:
    """What a create answers: the product's fields as stored (`snapshot`), or as first answered (a replay)."""

    product: dict[str, Any]
    replayed: bool = False


def snapshot(product: Product) -> dict[str, Any]:
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


def create_product(*, owner: Identity, data: dict, idempotency_key: str | None = None) -> Created:
    """Insert the product; with an idempotency key, a repeat of the request replays the first answer instead.

    Everything the answer holds is known before the COMMIT (ids come back from the INSERT,
    times and the version are set here): nothing is read after it.
    """
    fields = {key: data[key] for key in EDITABLE_FIELDS if key in data}
    user_id = owner.user.user_id
    if idempotency_key is not None:
        request_hash = idempotency.fingerprint("products.create", fields)
        outcome = idempotency.claim(user_id=user_id, key=idempotency_key, request_hash=request_hash)
        if outcome is not None:
            return Created(outcome, replayed=True)
    product = Product(**fields, user_id=user_id)
    db.session.add(product)
    db.session.flush()
    created = snapshot(product)
    if idempotency_key is not None:
        idempotency.record(user_id=user_id, key=idempotency_key, outcome=created)
    db.session.commit()
    return Created(created)


def _write(product: Product, apply, expected_etags) -> Product:
    """Run `apply(product)` and commit; the version column turns a concurrent write into StaleDataError.

    With If-Match the client asked to lose such a race: 412. Without it, the client asked for
    its change to be applied: it is re-applied once to the fresh row, read under the write
    lock, where no one can overtake it again (last writer wins). Writes are optimistic first
    because races are rare and locks cost every request.
    """
    _check_version(product, expected_etags)
    if not apply(product):
        return product
    product_id = product.id
    try:
        db.session.commit()
        return product
    except StaleDataError:
        db.session.rollback()
        if expected_etags is not None:
            raise PreconditionFailed() from None
    db.session.expunge(product)  # its version is the one that lost; read the row afresh
    begin_write()
    product = get_product_or_404(product_id, lock=True)
    if apply(product):
        db.session.commit()
    return product


def update_product(*, product: Product, changes: dict, expected_etags=None) -> Product:
    """Apply editable fields only; never silently overwrite a version the client said it had."""
    fields = {key: changes[key] for key in EDITABLE_FIELDS if key in changes}

    def apply(target: Product) -> bool:
        if not any(getattr(target, key) != value for key, value in fields.items()):
            return False
        for key, value in fields.items():
            setattr(target, key, value)
        return True

    return _write(product, apply, expected_etags)


def delete_product(*, product: Product, expected_etags=None) -> None:
    def apply(target: Product) -> bool:
        db.session.delete(target)
        return True

    _write(product, apply, expected_etags)
